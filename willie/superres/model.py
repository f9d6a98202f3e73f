"""Video super-resolution: a few neighbouring low-res frames → one high-res frame.

    video [B, 1, T, h, w] in [-1, 1]
      → temporal neighbourhoods: for each output frame t the input frames t-r..t+r
        (r = (frames - 1) / 2; indices clamped, so clip edges replicate their end frame),
        folded into channels: [(B T), frames, h, w]
      → 2D conv net at low resolution: conv in, residual blocks, conv
      → pixel shuffle (×scale), conv at high resolution → residual [(B T), 1, h·s, w·s],
        minus its mean over each scale×scale block (it adds detail, never shifts the average)
      → + bicubic up-sampling of the centre frame; with `area_consistent`, that up-sampling
        corrected so that each scale×scale block averages to its low-res pixel
      → [B, 1, T, h·s, w·s]

The last conv starts at zero, so an untrained model *is* bicubic (area-consistent bicubic)
and training only has to learn what bicubic misses. The correction never moves a block's
average, so with `area_consistent` every output frame area-downsamples exactly to its input
frame (before `upscale` clamps it to [-1, 1]): the part of the picture the low-res pixels
determine is taken from them, and the network only draws the detail inside each block. Every
output frame depends on its own neighbourhood only, so a video can be upscaled in chunks of
frames with exactly the result of one pass.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from willie.errors import WillieError
from willie.training.checkpoint import ArtifactArch, load_artifact


@dataclass(frozen=True)
class SuperResArch(ArtifactArch):
    """Architecture of the super-resolution model; saved as `config.json` beside the weights."""

    KIND: ClassVar[str] = "super-resolution"

    scale: int = 2  # output size / input size, both axes
    frames: int = 3  # input frames per output frame (odd: the output sits at the centre)
    channels: int = 32  # width of the low-resolution conv net
    blocks: int = 4  # residual blocks
    area_consistent: bool = False  # each output block averages to its input pixel

    def __post_init__(self) -> None:
        if self.scale < 2:
            raise WillieError(f"superres.scale must be an integer ≥ 2, got {self.scale}")
        if self.frames < 1 or self.frames % 2 == 0:
            raise WillieError(
                f"superres.frames must be odd and ≥ 1 (the output frame sits at the centre of "
                f"its inputs), got {self.frames}"
            )
        if self.channels < 1 or self.blocks < 0:
            raise WillieError(
                f"superres.channels must be ≥ 1 and blocks ≥ 0; got {self.channels}, {self.blocks}"
            )

    @property
    def radius(self) -> int:
        """Frames of context on each side of the output frame."""
        return (self.frames - 1) // 2


def temporal_neighbourhoods(
    video: Tensor, frames: int, times: Sequence[int] | None = None
) -> Tensor:
    """[B, 1, T, h, w] → [B, len(times), frames, h, w]: frames t-r..t+r for each t in `times`.

    Indices outside the clip are clamped: at the edges the end frame is repeated, as if the
    clip stood still before its start and after its end.
    """
    T = video.shape[2]
    radius = (frames - 1) // 2
    centres = torch.arange(T) if times is None else torch.as_tensor(list(times))
    offsets = torch.arange(-radius, radius + 1)
    index = (centres[:, None] + offsets[None, :]).clamp(0, T - 1).to(video.device)  # [t, f]
    return video[:, 0][:, index]  # [B, t, f, h, w]


def bicubic_upsample(frames: Tensor, scale: int) -> Tensor:
    """Bicubic ×scale of the last two dims of [..., h, w] (align_corners=False, not clamped)."""
    lead = frames.shape[:-2]
    flat = frames.reshape(-1, 1, *frames.shape[-2:])
    up = F.interpolate(flat, scale_factor=scale, mode="bicubic", align_corners=False)
    return up.reshape(*lead, *up.shape[-2:])


def block_means(frames: Tensor, scale: int) -> Tensor:
    """[N, 1, H, W] → [N, 1, H/scale, W/scale]: each scale×scale block's average (area)."""
    return F.avg_pool2d(frames, scale)


def spread_blocks(values: Tensor, scale: int) -> Tensor:
    """[N, 1, h, w] → [N, 1, h·scale, w·scale]: each value over its whole block (nearest)."""
    return F.interpolate(values, scale_factor=scale, mode="nearest")


def area_consistent_upsample(frames: Tensor, scale: int) -> Tensor:
    """[N, 1, h, w] → bicubic ×scale with each block moved so that its average is its input
    pixel: area-downsampling the result gives `frames` back exactly.

    Bicubic alone does not: its blocks' averages differ from the pixels they came from (on the
    film's unseen boat by enough to cost 0.28 dB of PSNR against the original). This is the
    exact projection onto the frames that area-downsample to the input (one step of
    back-projection with a nearest kernel, which for area down-sampling is exact)."""
    up = bicubic_upsample(frames, scale)
    return up + spread_blocks(frames - block_means(up, scale), scale)


class ResBlock(nn.Module):
    """conv 3×3 → LeakyReLU → conv 3×3, plus the input (EDSR's block, no normalization)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class VideoSuperRes(nn.Module):
    """[B, 1, T, h, w] low-res video in [-1, 1] → [B, 1, T, h·scale, w·scale] (not clamped)."""

    def __init__(self, arch: SuperResArch | None = None) -> None:
        super().__init__()
        self.arch = arch = arch or SuperResArch()
        c, s = arch.channels, arch.scale
        self.conv_in = nn.Sequential(nn.Conv2d(arch.frames, c, 3, padding=1), nn.LeakyReLU(0.2))
        self.blocks = nn.Sequential(*(ResBlock(c) for _ in range(arch.blocks)))
        self.conv_mid = nn.Conv2d(c, c, 3, padding=1)
        self.upsample = nn.Sequential(
            nn.Conv2d(c, c * s * s, 3, padding=1), nn.PixelShuffle(s), nn.LeakyReLU(0.2)
        )
        self.conv_out = nn.Conv2d(c, 1, 3, padding=1)
        # Zero residual at initialisation: the untrained model is exactly bicubic.
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def residual(self, stacks: Tensor) -> Tensor:
        """[N, frames, h, w] neighbourhoods → [N, 1, h·s, w·s] correction to bicubic.

        The correction has zero mean over every s×s block, so it adds detail without moving
        what the low-resolution pixel already says (its area average): no drift of brightness
        or of large shapes on scenes unlike the training ones.
        """
        features = self.conv_in(stacks)
        features = features + self.conv_mid(self.blocks(features))
        correction = self.conv_out(self.upsample(features))
        s = self.arch.scale
        return correction - spread_blocks(block_means(correction, s), s)

    def forward(self, video: Tensor, times: Sequence[int] | None = None) -> Tensor:
        """Upscale the frames `times` of `video` (all by default): [B, 1, len(times), H, W]."""
        if video.ndim != 5 or video.shape[1] != 1:
            raise ValueError(f"expected a [B, 1, T, h, w] video, got {tuple(video.shape)}")
        B = video.shape[0]
        stacks = temporal_neighbourhoods(video, self.arch.frames, times)
        stacks = rearrange(stacks, "b t f h w -> (b t) f h w")
        centre = stacks[:, self.arch.radius : self.arch.radius + 1]  # [(b t), 1, h, w]
        upsample = area_consistent_upsample if self.arch.area_consistent else bicubic_upsample
        out = upsample(centre, self.arch.scale) + self.residual(stacks)
        return rearrange(out, "(b t) 1 h w -> b 1 t h w", b=B)

    @torch.no_grad()
    def upscale(self, video: Tensor, *, chunk: int = 16) -> Tensor:
        """Inference: [B, 1, T, h, w] → [B, 1, T, h·s, w·s] clamped to [-1, 1], for any T.

        Frames are predicted `chunk` at a time (the same result, bounded memory).
        """
        T = video.shape[2]
        parts = [
            self(video, range(start, min(T, start + chunk))).clamp_(-1, 1)
            for start in range(0, T, chunk)
        ]
        return torch.cat(parts, dim=2)


def load_superres(
    directory: str | os.PathLike[str] = "stages/superres", device: str | torch.device = "cpu"
) -> VideoSuperRes:
    """The trained model published by `willie train-superres`, in eval mode."""
    return load_artifact(directory, "train_superres", VideoSuperRes, SuperResArch, device)


def low_res_size(size: tuple[int, int], scale: int) -> tuple[int, int]:
    """The model's input size for stored frames of `size`; refuses sizes scale does not divide."""
    H, W = size
    if H % scale or W % scale:
        raise WillieError(
            f"superres.scale={scale} does not divide the stored clip size {H}×{W}: the "
            "low-resolution input would not be a whole number of pixels. Choose a scale that "
            "divides both sides, or set preprocess.size to a multiple of the scale"
        )
    return H // scale, W // scale
