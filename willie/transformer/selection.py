"""Which training step to publish: the one whose samples look most like the film.

Val bits/token on another shot of the film says how well a model predicts footage it never
saw, and on a few minutes of film it is lowest almost at once (step 50 of 400, measured), long
before the model can draw anything. The published model is therefore chosen by what its
samples look like: at each evaluation `RealismProbe` generates a few clips — unconditional,
and continuations of val prompts — decodes them with the trained tokenizer, and scores each
generated frame's best SSIM against the real frames of the corpus (willie.evaluation.realism:
no trained model judges the pictures). Val bits/token are still measured and reported.

With `select: realism_motion` (the default) the probe's realism counts only as far as its
samples move like the film: it is multiplied by min(1, m / 0.5, 2 / m), m the samples' frame
change over the same tokenizer's reconstructions of the probe's val clips (the motion a sample
it decodes can have; raw footage's is mostly grain). A step whose samples hold the prompt still
scores well on realism alone — the nearest real frame is the prompt — and it was the step
published (measured: README).

With `select: worst_kind_motion` the realism that counts is that of the worse of the two kinds
— unconditional samples and continuations — not their mean: early steps continue a prompt
well but cannot yet draw a scene's first frame from nothing, later ones (with
`transformer.frame_positions`) draw it and continue a shot they never saw worse, and the mean
cannot tell the two apart (measured: README). On one training shot that later step costs the
continuations more than it gives the unconditional samples, so the preset keeps the mean.

With `transformer.opening` the step whose drawn first frames look most like the film (the
probe also draws a few first latent frames from nothing and scores them) is published too, to
draw the first latent frame of unconditional samples: the later step that draws a scene from
nothing is not the earlier one that continues a shot it never saw best, and each then does
its part (`select: continuation_motion` picks the second by its continuations alone).

The probe samples at `transformer.select_temperature` (set it to `sample.temperature`): the
step that draws best at T = 1 is an early one that cannot yet draw a scene from nothing, while
at the temperature samples are made with a later step draws better (measured: README).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from willie.data.dataset import ClipDataset
from willie.evaluation.distribution import frame_change_curve
from willie.evaluation.realism import FrameStats, RealFrames, match_frames, real_frames
from willie.tokenizer.model import VideoTokenizer, load_tokenizer
from willie.transformer.data import TokenManifest
from willie.transformer.generate import generate, sampler
from willie.transformer.layout import StreamLayout
from willie.transformer.model import TokenTransformer

PROMPT_FRAMES = 5  # real frames a continuation starts from: 2 latent frames
MOTION_BAND = (0.5, 2.0)  # samples' frame change over real's: neither frozen nor flickering


Select = Literal["realism_motion", "worst_kind_motion", "continuation_motion", "realism"]
OPENINGS_PER_SAMPLE = 4  # first frames drawn per probe sample to score an opening model


@dataclass(frozen=True)
class ProbeScore:
    realism: float  # mean best SSIM of the generated frames against the corpus
    motion: float  # their frame change ÷ the tokenizer's reconstructions of real val clips
    unconditional: float = math.nan  # the realism of each kind of sample
    continuation: float = math.nan
    opening: float = math.nan  # the realism of first frames drawn from nothing

    @property
    def motion_factor(self) -> float:
        """1 inside MOTION_BAND, falling in proportion outside it (0 for a frozen sample)."""
        low, high = MOTION_BAND
        return min(1.0, self.motion / low, high / max(self.motion, 1e-12))

    @property
    def realism_in_motion(self) -> float:
        return self.realism * self.motion_factor

    @property
    def worst_kind_in_motion(self) -> float:
        return min(self.unconditional, self.continuation) * self.motion_factor

    def criterion(self, select: Select) -> float:
        """What `transformer.select` maximizes."""
        if select == "realism":
            return self.realism
        if select == "realism_motion":
            return self.realism_in_motion
        if select == "continuation_motion":
            return self.continuation * self.motion_factor
        return self.worst_kind_in_motion


@torch.inference_mode()
def val_prompts(
    tokenizer: VideoTokenizer,
    clips: torch.Tensor,
    picks: list[int],
    tokens_dir: Path,
    layout: StreamLayout,
    frames: int = PROMPT_FRAMES,
) -> torch.Tensor:
    """clips [S, 1, T, H, W], the val clips of rows `picks` → the stream tokens of their first
    `frames` frames [S, n], with their sound as `tokenize` wrote it where the layout has some."""
    codes = tokenizer.encode(clips[:, :, :frames])  # [S, t, h, w]
    sound = None
    if layout.audio:  # `tokenize`'s val rows are the val clips
        sound = np.load(Path(tokens_dir) / "val" / "audio_tokens.npy", mmap_mode="r")[picks]
        sound = sound[:, : codes.shape[1]]
    rows = [
        layout.interleave(codes[i].flatten(1).cpu().numpy(), None if sound is None else sound[i])
        for i in range(len(picks))
    ]
    return torch.from_numpy(np.stack(rows)).to(clips.device)  # [S, n]


class RealismProbe:
    """Realism of a model's samples: `samples` unconditional and as many continuations."""

    def __init__(
        self,
        tokenizer_dir: Path,
        clips_dir: Path,
        tokens_dir: Path,
        *,
        sound: bool = True,
        samples: int,
        frames: int,
        temperature: float,
        device: torch.device,
    ) -> None:
        manifest = TokenManifest.read(tokens_dir)
        layout = manifest.layout(sound)
        self.temperature = temperature
        self.tokenizer: VideoTokenizer = load_tokenizer(tokenizer_dir, device)
        self.size = manifest.clip_shape[1]
        self.latent_hw = manifest.latent_shape[1:]
        self.latent_frames = 1 + (frames - 1) // self.tokenizer.arch.temporal_downsample
        self.samples, self.device = samples, device
        corpus = RealFrames.concat(
            [real_frames(clips_dir, split, self.size) for split in ("train", "val")]
        )
        self.reference = FrameStats.of(corpus.frames)
        val = ClipDataset(clips_dir, "val", size=self.size)
        picks = torch.linspace(0, len(val) - 1, samples).round().long().tolist()
        clips = torch.stack([val[i] for i in picks]).to(device)  # [S, 1, T, H, W]
        with torch.inference_mode():
            recon = self.tokenizer(clips)[0].clamp(-1, 1)  # [S, 1, T, H, W]
        self.real_motion = float(frame_change_curve(recon).mean())
        self.layout = layout
        self.prompt_tokens = val_prompts(self.tokenizer, clips, picks, tokens_dir, layout)

    @torch.inference_mode()
    def score(self, model: TokenTransformer, seed: int = 0) -> ProbeScore:
        """Mean realism of the generated frames of every probe sample, and their motion."""
        model.eval()
        bos = torch.full((self.samples, 1), model.arch.bos, device=self.device)
        total = self.latent_frames * self.layout.period
        scores, motion = [], []
        for prompt, skip in ((bos, 0), (torch.cat([bos, self.prompt_tokens], 1), PROMPT_FRAMES)):
            pick = sampler(
                temperature=self.temperature, generator=torch.Generator().manual_seed(seed)
            )
            tokens = generate(model, prompt, total - (prompt.shape[1] - 1), pick)
            video, _ = self.layout.split(tokens[:, 1:])  # the pictures: the probe judges those
            codes = video.reshape(self.samples, self.latent_frames, *self.latent_hw)
            video = self.tokenizer.decode(codes).clamp(-1, 1)[:, 0, skip:]  # [S, T, H, W]
            frames = FrameStats.of(video[:, ::2].flatten(0, 1).float().cpu())
            scores.append(match_frames(frames, self.reference).best)
            motion.append(float(frame_change_curve(video.float()).mean()))
        return ProbeScore(
            realism=float(torch.cat(scores).mean()),
            motion=float(np.mean(motion)) / max(self.real_motion, 1e-12),
            unconditional=float(scores[0].mean()),
            continuation=float(scores[1].mean()),
            opening=self.opening_realism(model, seed),
        )

    @torch.inference_mode()
    def opening_realism(self, model: TokenTransformer, seed: int = 0) -> float:
        """Mean realism of OPENINGS_PER_SAMPLE × `samples` first latent frames drawn from
        BOS, each decoded alone (one frame: the causal tokenizer's first latent frame is the
        clip's first frame): how well the model draws a scene from nothing."""
        rows = OPENINGS_PER_SAMPLE * self.samples
        bos = torch.full((rows, 1), model.arch.bos, device=self.device)
        pick = sampler(temperature=self.temperature, generator=torch.Generator().manual_seed(seed))
        tokens = generate(model, bos, self.layout.period, pick)
        video, _ = self.layout.split(tokens[:, 1:])
        codes = video.reshape(rows, 1, *self.latent_hw)
        first = self.tokenizer.decode(codes).clamp(-1, 1)[:, 0, 0]  # [rows, H, W]
        return float(match_frames(FrameStats.of(first.float().cpu()), self.reference).best.mean())
