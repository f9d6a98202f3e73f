"""The MAGVIT-v2-style causal video tokenizer: encoder → FSQ → decoder.

    video [B, 1, 1 + 4k, H, W] in [-1, 1]
      → patchify: p×p pixels → p² channels (space-to-depth, `patch_size` p; 1 = none)
      → Encoder: causal conv, then per level residual blocks and, between levels, separate
        space (blur-pool 2×) and time (causal blur-pool 2×, frame 0 kept alone) stages
      → z [B, D, 1 + k, H/8, W/8] → FSQ → codes (and integer indices [B, 1 + k, H/8, W/8])
      → Decoder: the mirror, with depth-to-time and depth-to-space up-sampling, then
        unpatchify → recon [B, 1, 1 + 4k, H, W]

Latent frame 0 encodes frame 0 alone; latent frame j ≥ 1 covers frames 4j-3..4j. Every layer
is causal, so encoding (or decoding) a prefix of a clip gives a prefix of the result.
Down-sampling happens in the first levels (as in Cosmos' factorized tokenizer): the full
resolution levels are the expensive ones, so they should be few and narrow; with
`patch_size` 2 (Cosmos patchifies too) no convolution runs at full resolution at all.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import ClassVar

import torch
from einops import rearrange, reduce
from torch import Tensor, nn

from willie.errors import WillieError
from willie.tokenizer.fsq import FSQ
from willie.tokenizer.layers import (
    DOWNSAMPLERS,
    NORMS,
    CausalConv3d,
    Conv3d,
    ResBlock,
    SpaceDownsample,
    SpaceToDepthDown,
    SpaceUpsample,
    TimeDownsample,
    TimeToDepthDown,
    TimeUpsample,
    channels_last,
    depth_to_space,
    make_norm,
    space_to_depth,
)
from willie.training.checkpoint import ArtifactArch, load_artifact


@dataclass(frozen=True)
class TokenizerArch(ArtifactArch):
    """Architecture of the tokenizer; saved as `config.json` beside `model.safetensors`."""

    KIND: ClassVar[str] = "tokenizer"

    channels: int = 64  # width of the first (full resolution) level
    channel_mults: tuple[int, ...] = (1, 2, 2, 4)  # one per level; level i has channels·mults[i]
    num_res_blocks: int = 1  # per level, in the encoder and in the decoder
    num_mid_blocks: int = 1  # extra blocks at the latent resolution, each side of FSQ
    levels: tuple[int, ...] = (8, 5, 5, 5)  # FSQ levels: D = len(levels) latent channels
    spatial_downsample: int = 8  # patch_size × 2^(space stages)
    patch_size: int = 1  # space-to-depth of the input: no convolution runs at full resolution
    temporal_downsample: int = 4  # 2^(time stages)
    temporal_dilations: tuple[int, int] = (1, 2)  # of the two time convs in each residual block
    norm_groups: int = 8
    # The defaults below are the first architecture's, so its config.json files still load;
    # params.yaml chooses (see TokenizerConfig).
    norm: str = "group"  # group | channel | none (layers.make_norm)
    space_down: str = "blur"  # blur (blur-pool + 3×3 conv) | s2d (space-to-depth + 1×1 conv)
    time_down: str = "blur"  # blur (causal blur-pool + conv) | s2d (time-to-depth + 1×1 conv)

    def __post_init__(self) -> None:
        # JSON gives lists; keep the dataclass hashable and comparable.
        for name in ("channel_mults", "levels", "temporal_dilations"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.channels < 1 or self.num_res_blocks < 0 or self.num_mid_blocks < 0:
            raise WillieError(
                "tokenizer.channels must be ≥ 1 and num_res_blocks, num_mid_blocks ≥ 0; got "
                f"{self.channels}, {self.num_res_blocks}, {self.num_mid_blocks}"
            )
        transitions = len(self.channel_mults) - 1
        patch = self.patch_size
        if patch < 1 or patch & (patch - 1) or patch > self.spatial_downsample:
            raise WillieError(
                f"tokenizer.patch_size must be a power of 2 ≤ spatial_downsample "
                f"({self.spatial_downsample}), got {patch}"
            )
        for name in ("spatial_downsample", "temporal_downsample"):
            factor = getattr(self, name)
            if factor < 1 or factor & (factor - 1):
                raise WillieError(f"tokenizer.{name} must be a power of 2, got {factor}")
            stages = int(math.log2(factor // (patch if name == "spatial_downsample" else 1)))
            if stages > transitions:
                raise WillieError(
                    f"tokenizer.{name}={factor} needs {stages} level transitions "
                    f"but channel_mults={self.channel_mults} gives {transitions}; "
                    "add channel multipliers or lower the factor"
                )
        for width in self.widths:
            if width % self.norm_groups:
                raise WillieError(
                    f"tokenizer widths {self.widths} (channels × channel_mults) must be divisible "
                    f"by norm_groups={self.norm_groups}"
                )
        if len(self.temporal_dilations) != 2 or min(self.temporal_dilations) < 1:
            raise WillieError(
                f"tokenizer.temporal_dilations must be two integers ≥ 1 (one per conv of a "
                f"residual block), got {self.temporal_dilations}"
            )
        for name, allowed in (
            ("norm", NORMS),
            ("space_down", DOWNSAMPLERS),
            ("time_down", DOWNSAMPLERS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise WillieError(
                    f"tokenizer.{name} must be one of {', '.join(allowed)}; got {value!r}"
                )
        if min(self.levels, default=0) < 2:
            raise WillieError(f"tokenizer.levels must be integers ≥ 2, got {self.levels}")

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.channels * m for m in self.channel_mults)

    @property
    def space_stages(self) -> int:
        """Blur-pool stages in space, after the patchify."""
        return int(math.log2(self.spatial_downsample // self.patch_size))

    @property
    def time_stages(self) -> int:
        return int(math.log2(self.temporal_downsample))


class Encoder(nn.Module):
    """[B, 1, T, H, W] -> pre-quantization features [B, widths[-1], t, h, w]."""

    def __init__(self, arch: TokenizerArch) -> None:
        super().__init__()
        widths, groups = arch.widths, arch.norm_groups
        block = {"groups": groups, "dilations": arch.temporal_dilations, "norm": arch.norm}
        self.patch = arch.patch_size
        self.conv_in = CausalConv3d(self.patch**2, widths[0])
        layers: list[nn.Module] = []
        for level, width in enumerate(widths):
            layers += [ResBlock(width, width, **block) for _ in range(arch.num_res_blocks)]
            if level == len(widths) - 1:
                break
            next_width = widths[level + 1]
            if level < arch.space_stages:
                down = SpaceToDepthDown if arch.space_down == "s2d" else SpaceDownsample
                layers.append(down(width, next_width))
            elif width != next_width:
                layers.append(CausalConv3d(width, next_width, kernel_size=(1, 1, 1)))
            if level < arch.time_stages:
                down = TimeToDepthDown if arch.time_down == "s2d" else TimeDownsample
                layers.append(down(next_width))
        layers += [ResBlock(widths[-1], widths[-1], **block) for _ in range(arch.num_mid_blocks)]
        layers += [make_norm(arch.norm, widths[-1], groups), nn.SiLU()]
        self.layers = nn.Sequential(*layers)

    def forward(self, video: Tensor) -> Tensor:
        x = space_to_depth(video, self.patch)
        # A 1-channel conv's layout is ambiguous, so state the channels-last layout once here.
        return self.layers(channels_last(self.conv_in(x)))


class Decoder(nn.Module):
    """Latent codes [B, D, t, h, w] -> video [B, 1, T, H, W]; the encoder's mirror."""

    def __init__(self, arch: TokenizerArch) -> None:
        super().__init__()
        widths, groups = arch.widths, arch.norm_groups
        block = {"groups": groups, "dilations": arch.temporal_dilations, "norm": arch.norm}
        self.conv_in = CausalConv3d(len(arch.levels), widths[-1])
        layers: list[nn.Module] = [
            ResBlock(widths[-1], widths[-1], **block) for _ in range(arch.num_mid_blocks)
        ]
        for level in reversed(range(len(widths))):
            width = widths[level]
            layers += [ResBlock(width, width, **block) for _ in range(arch.num_res_blocks)]
            if level == 0:
                break
            prev_width = widths[level - 1]
            if level - 1 < arch.time_stages:
                layers.append(TimeUpsample(width))
            if level - 1 < arch.space_stages:
                layers.append(SpaceUpsample(width, prev_width))
            elif width != prev_width:
                layers.append(CausalConv3d(width, prev_width, kernel_size=(1, 1, 1)))
        layers += [make_norm(arch.norm, widths[0], groups), nn.SiLU()]
        self.layers = nn.Sequential(*layers)
        self.patch = arch.patch_size
        self.conv_out = CausalConv3d(widths[0], self.patch**2)

    def forward(self, codes: Tensor) -> Tensor:
        return depth_to_space(self.conv_out(self.layers(self.conv_in(codes))), self.patch)


class VideoTokenizer(nn.Module):
    """Causal video tokenizer: grayscale clips [B, 1, 1 + 4k, H, W] in [-1, 1] <-> FSQ tokens."""

    def __init__(self, arch: TokenizerArch | None = None) -> None:
        super().__init__()
        self.arch = arch or TokenizerArch()
        self.encoder = Encoder(self.arch)
        self.to_latent = Conv3d(self.arch.widths[-1], len(self.arch.levels), 1)
        self.fsq = FSQ(levels=self.arch.levels)
        self.decoder = Decoder(self.arch)

    @property
    def codebook_size(self) -> int:
        return self.fsq.codebook_size

    @property
    def last_layer(self) -> nn.Parameter:
        """The decoder's final conv weight, for the adaptive adversarial weight."""
        return self.decoder.conv_out.weight

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Token grid (t, h, w) of a clip of `frames`×`height`×`width`; checks the sizes fit."""
        sd, td = self.arch.spatial_downsample, self.arch.temporal_downsample
        if frames < 1 or (frames - 1) % td:
            raise ValueError(
                f"clip frames must be 1 + {td}·k (1, {1 + td}, {1 + 2 * td}, …), got {frames}"
            )
        if height % sd or width % sd:
            raise ValueError(
                f"clip height and width must be divisible by {sd}, got {height}×{width}"
            )
        return 1 + (frames - 1) // td, height // sd, width // sd

    def _check_video(self, video: Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != 1:
            raise ValueError(f"expected video [B, 1, T, H, W], got {tuple(video.shape)}")
        self.latent_shape(*video.shape[2:])

    def encoder_features(self, video: Tensor) -> Tensor:
        """[B, 1, T, H, W] -> [B, widths[-1]]: the encoder trunk's output (before the projection
        to FSQ's D channels) averaged over time and space; a feature for Fréchet distances."""
        self._check_video(video)
        return reduce(self.encoder(video), "b c t h w -> b c", "mean")

    def encode_codes(self, video: Tensor) -> Tensor:
        """[B, 1, T, H, W] -> quantized codes [B, D, t, h, w] in [-1, 1] (fp32)."""
        return self._quantize(video)[0]

    def encode(self, video: Tensor) -> Tensor:
        """[B, 1, T, H, W] -> token indices [B, t, h, w] int64."""
        return self._quantize(video)[1]

    def decode_codes(self, codes: Tensor) -> Tensor:
        """[B, D, t, h, w] codes -> [B, 1, 1 + 4(t-1), 8h, 8w] video (not clamped)."""
        return self.decoder(codes)

    def decode(self, indices: Tensor) -> Tensor:
        """[B, t, h, w] indices -> [B, 1, 1 + 4(t-1), 8h, 8w] video (not clamped)."""
        codes = self.fsq.indices_to_codes(indices)  # [B, t, h, w, D]
        return self.decode_codes(rearrange(codes, "b t h w d -> b d t h w"))

    def forward(self, video: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """video -> (recon [B, 1, T, H, W], indices [B, t, h, w], codes [B, D, t, h, w])."""
        codes, indices = self._quantize(video)
        return self.decode_codes(codes), indices, codes

    def _quantize(self, video: Tensor) -> tuple[Tensor, Tensor]:
        self._check_video(video)
        z = self.to_latent(self.encoder(video))  # [B, D, t, h, w]
        return self.fsq(z)


def load_tokenizer(
    directory: str | os.PathLike[str] = "stages/tokenizer", device: str | torch.device = "cpu"
) -> VideoTokenizer:
    """The trained tokenizer published by `willie train-tokenizer`, in eval mode."""
    return load_artifact(directory, "train_tokenizer", VideoTokenizer, TokenizerArch, device)
