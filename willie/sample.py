"""The `sample` stage: new clips from the transformer, decoded by the tokenizer, upscaled.

    BOS (+ the tokens of a real val clip's first `prompt_frames` frames)
      → transformer, KV-cached, temperature / top-k / top-p, one seed per sample
      → tokens [latent frames × h × w] → tokenizer.decode, the whole sequence in one pass
        (causal decoder: continuous across the 17-frame clip boundaries)
      → super-resolution (tokenizer size → preprocess.size) → uint8 frames
      → stages/samples/: MP4 + GIF per sample, contact sheet, index.html (willie.gallery)

With `prompt_frames` = 0 the stage writes `num_clips` unconditional samples; with a prompt it
writes as many continuations of real val clips besides them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from willie.checkpoint import load_artifact_config
from willie.config import SampleConfig
from willie.data import ClipDataset, area_resize, to_uint8
from willie.engine import resolve_device
from willie.errors import WillieError
from willie.gallery import Sample, write_gallery
from willie.superres.model import VideoSuperRes, load_superres
from willie.tokenizer.model import VideoTokenizer, load_tokenizer
from willie.transformer.generate import generate, sampler
from willie.transformer.model import TokenTransformer, load_transformer


@dataclass
class Generator:
    """The three trained models, checked to fit together."""

    tokenizer: VideoTokenizer
    transformer: TokenTransformer
    superres: VideoSuperRes | None
    latent_hw: tuple[int, int]  # tokens per latent frame: h × w
    size: tuple[int, int]  # the tokenizer's frame size

    @property
    def time_factor(self) -> int:
        return self.tokenizer.arch.temporal_downsample

    def latent_frames(self, frames: int) -> int:
        return 1 + (frames - 1) // self.time_factor

    @torch.inference_mode()
    def encode_prompt(self, clip: torch.Tensor, frames: int) -> torch.Tensor:
        """[1, T, H, W] real clip → the tokens of its first `frames` frames, [1, n] raster."""
        codes = self.tokenizer.encode(clip[None, :, :frames])  # [1, t, h, w]
        return rearrange(codes, "b t h w -> b (t h w)")

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor) -> np.ndarray:
        """[n] tokens (whole latent frames, no BOS) → uint8 frames [T, H', W'] (upscaled)."""
        h, w = self.latent_hw
        codes = rearrange(tokens, "(t h w) -> 1 t h w", h=h, w=w)
        video = self.tokenizer.decode(codes).clamp(-1, 1)  # [1, 1, T, H, W]
        if self.superres is not None:
            video = self.superres.upscale(video)
        return to_uint8(video[0, 0])


def load_generator(
    tokenizer_dir: Path, transformer_dir: Path, superres_dir: Path | None, device: torch.device
) -> Generator:
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
    return Generator(tokenizer, transformer, superres, (latent[1], latent[2]), (size, size))


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


def run_sample(
    cfg: SampleConfig,
    tokenizer_dir: str | Path = "stages/tokenizer",
    transformer_dir: str | Path = "stages/transformer",
    superres_dir: str | Path = "stages/superres",
    clips_dir: str | Path = "data/clips",
    out_dir: str | Path = "stages/samples",
) -> dict[str, Any]:
    """Generate, decode, upscale and write the gallery; returns speed metrics."""
    device = resolve_device(cfg.device)
    models = load_generator(
        Path(tokenizer_dir),
        Path(transformer_dir),
        Path(superres_dir) if cfg.upscale else None,
        device,
    )
    h, w = models.latent_hw
    per_frame = h * w
    total_latent = models.latent_frames(cfg.frames)
    jobs: list[tuple[str, int, torch.Tensor, np.ndarray | None, dict[str, Any]]] = []
    for i in range(cfg.num_clips):
        bos = torch.full((1, 1), models.transformer.arch.bos, device=device)
        jobs.append((f"uncond_{i:03d}", cfg.seed + i, bos, None, {"prompt": "none"}))
    if cfg.prompt_frames:
        val_small = ClipDataset(clips_dir, "val", size=models.size)
        if cfg.prompt_frames > val_small.clip_shape[0]:
            raise WillieError(
                f"sample.prompt_frames ({cfg.prompt_frames}) exceeds the clip length "
                f"({val_small.clip_shape[0]} frames) of {clips_dir}: lower it"
            )
        val_full = ClipDataset(clips_dir, "val")
        picks = np.linspace(0, len(val_small) - 1, cfg.num_clips).round().astype(int)
        for i, index in enumerate(picks):
            clip = val_small[int(index)].to(device)  # [1, T, h, w]
            prompt = models.encode_prompt(clip, cfg.prompt_frames)
            bos = torch.full((1, 1), models.transformer.arch.bos, device=device)
            out_size = models.size if models.superres is None else val_full.clip_shape[1:]
            real = area_resize(val_full[int(index)][0, : cfg.prompt_frames], tuple(out_size))
            where = {
                "prompt": f"val clip {int(index)}",
                "prompt_start_s": round(float(val_full.shards.start_time_s[int(index)]), 2),
            }
            jobs.append(
                (f"cont_{i:03d}", cfg.seed + cfg.num_clips + i, torch.cat([bos, prompt], 1),
                 to_uint8(real), where)
            )  # fmt: skip
    total_tokens = sum(total_latent * per_frame - (p.shape[1] - 1) for _, _, p, _, _ in jobs)

    samples: list[Sample] = []
    token_seconds = 0.0
    started = time.perf_counter()
    bar, advance = _progress(total_tokens)
    with bar:
        for name, seed, prompt, real, where in jobs:
            new = total_latent * per_frame - (prompt.shape[1] - 1)
            pick = sampler(
                temperature=cfg.temperature,
                top_k=cfg.top_k,
                top_p=cfg.top_p,
                generator=torch.Generator().manual_seed(seed),
            )
            t0 = time.perf_counter()
            tokens = generate(models.transformer, prompt, new, pick, progress=lambda _: advance(1))
            seconds = time.perf_counter() - t0
            token_seconds += seconds
            frames = models.decode(tokens[0, 1:])
            settings = {
                "seed": seed,
                "temperature": cfg.temperature,
                "top_k": cfg.top_k,
                "top_p": cfg.top_p,
                **where,
                "tokens": int(tokens.shape[1] - 1),
                "tokens_per_s": round(new / seconds, 1),
            }
            prompt_frames = cfg.prompt_frames if real is not None else 0
            samples.append(Sample(name, frames, prompt_frames, settings, real))
    seconds = time.perf_counter() - started
    write_gallery(out_dir, samples, fps=cfg.fps)
    frames_total = sum(len(s.frames) for s in samples)
    return {
        "samples": len(samples),
        "frames_per_sample": len(samples[0].frames),
        "height": samples[0].height,
        "width": samples[0].width,
        "tokens_per_s": round(total_tokens / token_seconds, 1),
        "frames_per_s": round(frames_total / seconds, 2),
        "seconds": round(seconds, 1),
    }
