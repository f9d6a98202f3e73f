"""The `sample` stage: new clips from the transformer, decoded by the tokenizers, upscaled.

    BOS + the tokens of a real val clip's first `prompt_frames` frames (and of their sound),
        or, unconditional, BOS + a first latent frame drawn by the opening model
        (`stages/transformer/opening`), the best of `opening_candidates` draws by the
        transformer's likelihood
      → transformer, KV-cached, temperature / top-k / top-p, one seed per sample
      → per latent frame: h × w picture tokens (+ its sound's tokens, where it learnt sound)
      → tokenizer.decode, the whole sequence in one pass (causal decoder: continuous across
        the 17-frame clip boundaries); the audio tokenizer decodes the sound likewise
      → super-resolution (tokenizer size → preprocess.size) → uint8 frames
      → stages/samples/: MP4 (+ AAC) + GIF per sample, contact sheet, index.html
        (willie.generation.gallery)

With `prompt_frames` = 0 the stage writes `num_clips` unconditional samples; with a prompt it
writes as many continuations of real val clips besides them. All samples are generated in one
batch through one KV cache, from one seeded generator (a continuation's prompt tokens are
forced at its first positions).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from willie.audio.model import AudioTokenizer, load_audio_tokenizer
from willie.config import SampleConfig
from willie.data.dataset import ClipDataset, area_resize, pcm_to_unit, to_uint8
from willie.errors import WillieError
from willie.generation.gallery import Sample, write_gallery
from willie.superres.model import VideoSuperRes, load_superres
from willie.tokenizer.model import VideoTokenizer, load_tokenizer
from willie.tokenizer.tokenize import audio_groups, ungroup_audio
from willie.training.checkpoint import load_artifact_config
from willie.training.engine import resolve_device
from willie.transformer.generate import draw_openings, generate, sampler
from willie.transformer.layout import StreamLayout
from willie.transformer.model import TokenTransformer, load_transformer


@dataclass
class Generator:
    """The trained models, checked to fit together."""

    tokenizer: VideoTokenizer
    transformer: TokenTransformer
    superres: VideoSuperRes | None
    latent_hw: tuple[int, int]  # tokens per latent frame: h × w
    size: tuple[int, int]  # the tokenizer's frame size
    codec: AudioTokenizer | None = None  # the sound's tokenizer, where the transformer has sound
    # draws an unconditional sample's first latent frame (`stages/transformer/opening`; None
    # for a transformer published before it: the transformer draws it)
    opener: TokenTransformer | None = None
    opener_step: int = -1  # the training step its weights are from
    audio_rate: int = 0
    steps_per_frame: int = 0  # audio token steps per video frame

    @property
    def layout(self) -> StreamLayout:
        arch = self.transformer.arch
        if not arch.video_tokens:  # published before streams had sound: pictures only
            return StreamLayout(self.latent_hw[0] * self.latent_hw[1], arch.codebook_size)
        return arch.layout

    @property
    def audio_per_frame(self) -> int:
        return self.steps_per_frame * (self.codec.arch.hop if self.codec is not None else 0)

    @property
    def time_factor(self) -> int:
        return self.tokenizer.arch.temporal_downsample

    def latent_frames(self, frames: int) -> int:
        return 1 + (frames - 1) // self.time_factor

    @torch.inference_mode()
    def encode_prompt(
        self, clips: torch.Tensor, frames: int, sound: list[torch.Tensor | None] | None = None
    ) -> torch.Tensor:
        """[B, 1, T, H, W] real clips → the stream tokens of their first `frames` frames,
        [B, n]; with sound, each row's `sound` ([S] of the clip, or None: silent) too."""
        codes = self.tokenizer.encode(clips[:, :, :frames])  # [B, t, h, w]
        video = rearrange(codes, "b t h w -> b t (h w)").cpu().numpy()
        rows = []
        for i in range(len(video)):
            groups = None
            if self.layout.audio:
                groups = self._sound_groups(None if sound is None else sound[i], frames)
            rows.append(torch.from_numpy(self.layout.interleave(video[i], groups)))
        return torch.stack(rows).to(clips.device)

    def _sound_groups(self, sound: torch.Tensor | None, frames: int) -> np.ndarray:
        """The audio symbols [t, G] of a prompt's first `frames` frames (NOSOUND if silent, or
        without the audio tokenizer: sound turned off)."""
        latent = self.latent_frames(frames)
        nosound = self.layout.nosound
        if sound is None or self.codec is None:
            return np.full((latent, self.layout.audio), nosound)
        piece = sound[: frames * self.audio_per_frame].reshape(1, 1, -1)
        indices = self.codec.encode(piece.to(self.tokenizer.last_layer.device))[0].cpu().numpy()
        return audio_groups(indices, self.steps_per_frame, latent, nosound)

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """[n] stream tokens (whole latent frames, no BOS) → (uint8 frames [T, H', W']
        (upscaled), their sound [T · audio_rate / fps] float, or None without sound)."""
        h, w = self.latent_hw
        video, symbols = self.layout.split(tokens[None])
        codes = rearrange(video, "1 t (h w) -> 1 t h w", h=h, w=w)
        pictures = self.tokenizer.decode(codes).clamp(-1, 1)  # [1, 1, T, H, W]
        if self.superres is not None:
            pictures = self.superres.upscale(pictures)
        sound = None if symbols is None or self.codec is None else self.decode_sound(symbols[0])
        return to_uint8(pictures[0, 0]), sound

    def decode_sound(self, symbols: torch.Tensor) -> np.ndarray:
        """[t, G] audio symbols → [S] float sound; NOSOUND steps are silence."""
        assert self.codec is not None
        steps = ungroup_audio(
            symbols.cpu().numpy(), self.steps_per_frame, self.codec.arch.codebooks
        )
        mute = (steps == self.layout.nosound).any(-1)  # [n]
        codes = torch.from_numpy(np.where(steps == self.layout.nosound, 0, steps))[None]
        sound = self.codec.decode(codes.to(self.tokenizer.last_layer.device)).clamp(-1, 1)
        sound = sound[0, 0].float().cpu().numpy().reshape(len(steps), -1)
        sound[mute] = 0
        return sound.reshape(-1)


def load_generator(
    tokenizer_dir: Path,
    transformer_dir: Path,
    superres_dir: Path | None,
    device: torch.device,
    audio_dir: Path | None = None,
) -> Generator:
    """The models; the audio tokenizer (`audio_dir`) only where the transformer learnt sound
    and sound is wanted (`audio_dir` not None)."""
    tokenizer = load_tokenizer(tokenizer_dir, device)
    transformer = load_transformer(transformer_dir, device)
    config = load_artifact_config(transformer_dir, "train_transformer")
    if tuple(transformer.arch.levels) != tuple(tokenizer.arch.levels):
        raise WillieError(
            f"{transformer_dir} was trained on FSQ levels {list(transformer.arch.levels)} but "
            f"{tokenizer_dir} has {list(tokenizer.arch.levels)}: the vocabularies differ. "
            "Re-run `dvc repro train_transformer` after changing the tokenizer"
        )
    size = int(load_artifact_config(tokenizer_dir, "train_tokenizer")["size"])
    superres = None
    if superres_dir is not None:
        superres = load_superres(superres_dir, device)
        expected = list(load_artifact_config(superres_dir, "train_superres")["input_size"])
        if expected != [size, size]:
            raise WillieError(
                f"{superres_dir} upscales {expected[0]}×{expected[1]} frames but the tokenizer "
                f"makes {size}×{size}: set superres.scale = preprocess.size / tokenizer.size "
                "and re-run `dvc repro train_superres`, or set sample.upscale: false"
            )
    latent = config["latent_shape"]
    models = Generator(tokenizer, transformer, superres, (latent[1], latent[2]), (size, size))
    if (transformer_dir / "opening" / "model.safetensors").is_file():
        models.opener = load_transformer(transformer_dir / "opening", device)
        models.opener_step = int(
            load_artifact_config(transformer_dir / "opening", "train_transformer").get("step", -1)
        )
        if models.opener.arch != transformer.arch:
            raise WillieError(
                f"{transformer_dir / 'opening'} is not of {transformer_dir}'s architecture: "
                "both are published by one run; re-run `dvc repro train_transformer`"
            )
    symbols = transformer.arch.audio_symbols
    if symbols and audio_dir is not None:
        codec = load_audio_tokenizer(audio_dir, device)
        if codec is None or codec.codebook_size + 1 != symbols:
            raise WillieError(
                f"{transformer_dir} learnt {symbols - 1} audio codes but {audio_dir} has "
                f"{'no sound' if codec is None else codec.codebook_size}: re-run `dvc repro`"
            )
        audio_config = load_artifact_config(audio_dir, "train_audio_tokenizer")
        group = transformer.arch.audio_tokens  # per latent frame: 4 frames
        models.codec, models.audio_rate = codec, int(audio_config["rate"])
        models.steps_per_frame = group // (models.time_factor * codec.arch.codebooks)
    return models


def _progress(total: int) -> tuple[Any, Callable[[int], None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=False,
    )
    task = bar.add_task("tokens", total=total)
    return bar, lambda n: bar.advance(task, n)


@dataclass
class Group:
    """Samples generated together in one batch: same prompt length, one KV cache."""

    name: str
    prompt: torch.Tensor  # [B, 1 + n] BOS, then the prompt's tokens
    real: list[np.ndarray] = field(default_factory=list)  # per row: the real prompt frames
    real_sound: list[np.ndarray | None] = field(default_factory=list)  # per row: their sound
    where: list[dict[str, Any]] = field(default_factory=list)  # per row: what was prompted

    def __post_init__(self) -> None:
        if not self.where:
            self.where = [{"prompt": "none"}] * self.size

    @property
    def size(self) -> int:
        return int(self.prompt.shape[0])


def prompted_group(
    models: Generator, cfg: SampleConfig, clips_dir: Path, device: torch.device
) -> Group:
    """Continuations of `num_clips` val clips spread over the split: their first
    `prompt_frames` frames, encoded, as one batch of prompts."""
    val_small = ClipDataset(clips_dir, "val", size=models.size)
    if cfg.prompt_frames > val_small.clip_shape[0]:
        raise WillieError(
            f"sample.prompt_frames ({cfg.prompt_frames}) exceeds the clip length "
            f"({val_small.clip_shape[0]} frames) of {clips_dir}: lower it"
        )
    val_full = ClipDataset(clips_dir, "val")
    out_size = models.size if models.superres is None else val_full.clip_shape[1:]
    picks = np.linspace(0, len(val_small) - 1, cfg.num_clips).round().astype(int).tolist()
    clips = torch.stack([val_small[i] for i in picks]).to(device)  # [B, 1, T, h, w]
    sound: list[torch.Tensor | None] = []
    for i in picks:
        pcm = val_full.shards.audio(i)
        sound.append(None if pcm is None else pcm_to_unit(pcm))
    prompts = models.encode_prompt(clips, cfg.prompt_frames, sound)  # [B, n]
    heard = cfg.prompt_frames * models.audio_per_frame
    real_sound = [None if x is None else x[:heard].numpy() for x in sound]
    bos = torch.full((len(picks), 1), models.transformer.arch.bos, device=device)
    real = [
        to_uint8(area_resize(val_full[i][0, : cfg.prompt_frames], tuple(out_size))) for i in picks
    ]
    where = [
        {
            "prompt": f"val clip {i}",
            "prompt_start_s": round(float(val_full.shards.start_time_s[i]), 2),
        }
        for i in picks
    ]
    return Group("cont", torch.cat([bos, prompts], 1), real, real_sound, where)


def run_sample(
    cfg: SampleConfig,
    tokenizer_dir: str | Path = "stages/tokenizer",
    transformer_dir: str | Path = "stages/transformer",
    superres_dir: str | Path = "stages/superres",
    clips_dir: str | Path = "data/clips",
    out_dir: str | Path = "stages/samples",
    audio_dir: str | Path = "stages/audio_tokenizer",
) -> dict[str, Any]:
    """Generate, decode, upscale and write the gallery; returns speed metrics."""
    device = resolve_device(cfg.device)
    models = load_generator(
        Path(tokenizer_dir),
        Path(transformer_dir),
        Path(superres_dir) if cfg.upscale else None,
        device,
        Path(audio_dir) if cfg.audio else None,
    )
    per_frame = models.layout.period  # stream tokens per latent frame
    total_latent = models.latent_frames(cfg.frames)
    bos = models.transformer.arch.bos
    generator = torch.Generator().manual_seed(cfg.seed)
    pick = sampler(
        temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, generator=generator
    )
    # The first latent frame (after BOS) is the anchor every later frame looks back to: an
    # unconditional sample's is drawn first, with its own settings (a continuation's is its
    # prompt), by the opening model where the run published one, the best of
    # `opening_candidates` draws by the transformer's likelihood.
    opening_temperature = cfg.opening_temperature or cfg.temperature
    opening_top_p = cfg.opening_top_p or cfg.top_p
    opening_pick = sampler(
        temperature=opening_temperature, top_k=cfg.top_k, top_p=opening_top_p, generator=generator
    )
    started = time.perf_counter()
    opener = models.opener or models.transformer  # [B, 1 + period]: BOS, first latent frame
    bos_rows = torch.full((cfg.num_clips, 1), bos, device=device)
    prompt = draw_openings(
        opener, models.transformer, bos_rows, per_frame, opening_pick, cfg.opening_candidates
    )
    drawn: dict[str, Any] = {"prompt": "none"}
    if models.opener is not None:
        drawn["opening_step"] = models.opener_step
    unconditional = Group("uncond", prompt, where=[drawn] * cfg.num_clips)
    groups = [unconditional]
    if cfg.prompt_frames:
        groups.append(prompted_group(models, cfg, Path(clips_dir), device))
    total_tokens = total_latent * per_frame * sum(g.size for g in groups)

    # One batch through one KV cache: every row starts at BOS; a continuation's prompt tokens
    # are forced at its first positions while the other rows already sample.
    new = total_latent * per_frame
    longest = max(g.prompt.shape[1] - 1 for g in groups)
    forced = torch.cat(
        [
            torch.nn.functional.pad(g.prompt[:, 1:], (0, longest - g.prompt.shape[1] + 1), value=-1)
            for g in groups
        ]
    )  # [B, longest]
    bos_column = torch.full((len(forced), 1), models.transformer.arch.bos, device=device)
    samples: list[Sample] = []
    bar, advance = _progress(total_tokens)
    with bar:
        rows = len(forced)
        tokens = generate(
            models.transformer,
            bos_column,
            new,
            pick,
            progress=lambda _: advance(rows),
            forced=forced,
        )  # [B, 1 + total_latent · period]
        token_seconds = time.perf_counter() - started
    batch_row = 0
    for group in groups:
        for row in range(group.size):
            stream = tokens[batch_row, 1:]
            video, sound = models.decode(stream)  # [T, H, W] uint8, [S]
            if group.real:  # the prompt as the real footage, not its reconstruction
                video[: cfg.prompt_frames] = group.real[row]
                real_sound = group.real_sound[row] if group.real_sound else None
                if sound is not None and real_sound is not None:
                    sound[: len(real_sound)] = real_sound
            settings = {
                "seed": cfg.seed,
                "batch_row": batch_row,
                "temperature": cfg.temperature,
                "top_k": cfg.top_k,
                "top_p": cfg.top_p,
                "opening_temperature": opening_temperature,
                "opening_top_p": opening_top_p,
                "opening_candidates": cfg.opening_candidates,
                **group.where[row],
                "tokens": int(tokens.shape[1] - 1),
                "tokens_per_s": round(new * rows / token_seconds, 1),
            }
            pictures = models.layout.split(stream[None])[0].reshape(-1).cpu().numpy()
            samples.append(
                Sample(
                    f"{group.name}_{row:03d}",
                    video,
                    cfg.prompt_frames if group.real else 0,
                    settings,
                    group.real[row] if group.real else None,
                    tokens=pictures,  # the pictures' codes
                    audio=sound,
                    audio_rate=models.audio_rate,
                )
            )
            batch_row += 1
    seconds = time.perf_counter() - started
    write_gallery(out_dir, samples, fps=cfg.fps)
    with_sound = sum(s.audio is not None for s in samples)
    frames_total = sum(len(s.frames) for s in samples)
    return {
        "samples": len(samples),
        "frames_per_sample": len(samples[0].frames),
        "height": samples[0].height,
        "width": samples[0].width,
        "tokens_per_s": round(total_tokens / token_seconds, 1),
        "frames_per_s": round(frames_total / seconds, 2),
        # seconds of video made per second of wall time: generation + decoding + upscaling
        "real_time_factor": round(frames_total / cfg.fps / seconds, 3),
        "seconds": round(seconds, 1),
        "samples_with_sound": with_sound,
    }
