"""Building blocks of the causal video tokenizer, named for what they are.

Every block is causal in time: output frame `t` depends on input frames `≤ t` only. Time
padding is on the past side and replicates the first frame (as NVIDIA Cosmos does), so a
token never learns *where* in a clip it sits. Normalization is per frame, because statistics
pooled over time would let a past token see the future.

Shapes everywhere are `[B, C, T, H, W]`; in memory, activations are channels-last
(`[B, T, H, W, C]`, `torch.channels_last_3d`): oneDNN's 3D convolutions run ~25% faster that
way on CPU, and per-frame normalization then needs no copy. Parameters stay contiguous (for
safetensors and the optimizer); `Conv3d` lays its weight out channels-last on the fly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn


def channels_last(x: Tensor) -> Tensor:
    """Same shape, laid out as [B, T, H, W, C] in memory (a no-op when it already is)."""
    return x.contiguous(memory_format=torch.channels_last_3d)


# Under CPU bf16 autocast, oneDNN's 3D convolution returns a garbage weight gradient (1e31–1e36,
# at random) when the input is 2 or fewer in every one of T, H and W (measured with torch
# 2.13.0 on an AMD EPYC with avx512_bf16 and no AMX: a 3×3×3 conv of 128 channels on a
# 2×2×2 input, 2 of 12 backward passes). Such inputs, which the discriminator's last levels
# see on small clips, are computed in fp32: they cost nothing.
TINY_BF16_INPUT = 2


class Conv3d(nn.Conv3d):
    """`nn.Conv3d` whose output is channels-last: convolutions follow their weight's layout."""

    def forward(self, x: Tensor) -> Tensor:
        weight = channels_last(self.weight)
        if (
            x.device.type == "cpu"
            and max(x.shape[2:]) <= TINY_BF16_INPUT
            and torch.is_autocast_enabled("cpu")
        ):
            with torch.autocast("cpu", enabled=False):
                return self._conv_forward(x.float(), weight, self.bias)
        return self._conv_forward(x, weight, self.bias)


def space_to_depth(video: Tensor, patch: int) -> Tensor:
    """[B, C, T, H, W] -> [B, C·p², T, H/p, W/p]: each p×p block of pixels becomes channels."""
    return rearrange(video, "b c t (h p) (w q) -> b (c p q) t h w", p=patch, q=patch)


def depth_to_space(x: Tensor, patch: int) -> Tensor:
    """[B, C·p², T, h, w] -> [B, C, T, h·p, w·p]: the inverse of `space_to_depth`."""
    return rearrange(x, "b (c p q) t h w -> b c t (h p) (w q)", p=patch, q=patch)


def pad_past(x: Tensor, frames: int) -> Tensor:
    """Prepend `frames` copies of the first frame: [B, C, T, H, W] -> [B, C, frames + T, H, W]."""
    if frames == 0:
        return x
    return F.pad(x, (0, 0, 0, 0, frames, 0), mode="replicate")


class CausalConv3d(nn.Module):
    """Conv3d that sees only the present and the past; `dilation` spaces its taps in time.

    Space is zero-padded to keep H and W; time is padded by `dilation * (kt - 1)` replicas of
    the first frame, so T is kept too and frame 0 is computed from frame 0 alone.
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        *,
        kernel_size: tuple[int, int, int] = (3, 3, 3),
        dilation: int = 1,
    ) -> None:
        super().__init__()
        kt, kh, kw = kernel_size
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"spatial kernel must be odd to keep H, W; got {kernel_size}")
        self.time_pad = dilation * (kt - 1)
        self.conv = Conv3d(
            dim_in,
            dim_out,
            kernel_size,
            padding=(0, kh // 2, kw // 2),
            dilation=(dilation, 1, 1),
        )

    @property
    def weight(self) -> nn.Parameter:
        return self.conv.weight

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(pad_past(x, self.time_pad))


class SpaceTimeConv(nn.Module):
    """A 3×3×3 causal conv factorized into 1×3×3 (space) then 3×1×1 (time), as in Cosmos.

    About half the cost of a full 3×3×3 kernel at these widths on CPU, and fewer parameters.
    """

    def __init__(self, dim_in: int, dim_out: int, *, dilation: int = 1) -> None:
        super().__init__()
        self.space = CausalConv3d(dim_in, dim_out, kernel_size=(1, 3, 3))
        self.time = CausalConv3d(dim_out, dim_out, kernel_size=(3, 1, 1), dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:
        return self.time(self.space(x))


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over channels and space of each frame separately; never across time."""

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        x = rearrange(x, "b c t h w -> (b t) c h w")
        x = super().forward(x)
        return rearrange(x, "(b t) c h w -> b c t h w", b=b)


class ChannelRMSNorm(nn.Module):
    """RMS normalization over the channels of each position of each frame, with a learned gain.

    Mixes nothing across space or time, so it keeps what GroupNorm removes: a frame's overall
    level (its brightness) stays in the features.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gain = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1) * (self.scale * self.gain[:, None, None, None])


NORMS = ("group", "channel", "none")
DOWNSAMPLERS = ("blur", "s2d")


def make_norm(kind: str, dim: int, groups: int) -> nn.Module:
    """`group`: FrameGroupNorm; `channel`: ChannelRMSNorm; `none`: identity."""
    if kind == "group":
        return FrameGroupNorm(groups, dim)
    if kind == "channel":
        return ChannelRMSNorm(dim)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class ResBlock(nn.Module):
    """norm → SiLU → conv → norm → SiLU → conv, plus a skip (1×1×1 when the width changes)."""

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        *,
        groups: int,
        dilations: tuple[int, int] = (1, 1),
        norm: str = "group",
    ) -> None:
        super().__init__()
        self.block = nn.Sequential(
            make_norm(norm, dim_in, groups),
            nn.SiLU(),
            SpaceTimeConv(dim_in, dim_out, dilation=dilations[0]),
            make_norm(norm, dim_out, groups),
            nn.SiLU(),
            SpaceTimeConv(dim_out, dim_out, dilation=dilations[1]),
        )
        self.skip = Conv3d(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x) + self.skip(x)


def blur_kernel(taps: int = 3) -> Tensor:
    """Binomial low-pass filter, [1, 2, 1] for 3 taps, summing to 1."""
    row = torch.tensor([1.0])
    for _ in range(taps - 1):
        row = torch.cat([row, torch.zeros(1)]) + torch.cat([torch.zeros(1), row])
    return row / row.sum()


class SpaceBlurPool(nn.Module):
    """Anti-aliased 2× spatial subsampling of each frame: [1,2,1]² blur with stride 2.

    [B, C, T, H, W] -> [B, C, T, H/2, W/2]. Borders are replicate-padded so the blur does not
    darken the edges.
    """

    def __init__(self) -> None:
        super().__init__()
        k = blur_kernel()
        self.register_buffer("kernel", torch.outer(k, k)[None, None, None], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        x = F.pad(x, (1, 1, 1, 1, 0, 0), mode="replicate")
        weight = channels_last(repeat(self.kernel.to(x.dtype), "1 1 t h w -> c 1 t h w", c=c))
        return F.conv3d(x, weight, stride=(1, 2, 2), groups=c)


class TimeBlurPool(nn.Module):
    """Causal anti-aliased 2× time subsampling that keeps frame 0 alone.

    [B, C, 1 + 2m, H, W] -> [B, C, 1 + m, H, W]: output 0 is frame 0, output j ≥ 1 is
    (x[2j-2] + 2·x[2j-1] + x[2j]) / 4 — it ends at frame 2j, so it never sees the future.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernel", blur_kernel()[None, None, :, None, None], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        x = pad_past(x, 2)
        weight = channels_last(repeat(self.kernel.to(x.dtype), "1 1 t h w -> c 1 t h w", c=c))
        return F.conv3d(x, weight, stride=(2, 1, 1), groups=c)


class SpaceDownsample(nn.Module):
    """Blur-pool H, W by 2, then a 1×3×3 conv to the next level's width."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.pool = SpaceBlurPool()
        self.conv = CausalConv3d(dim_in, dim_out, kernel_size=(1, 3, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pool(x))


class TimeDownsample(nn.Module):
    """Causal blur-pool 1 + 2m frames to 1 + m, then a causal 3×1×1 conv."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.pool = TimeBlurPool()
        self.conv = CausalConv3d(dim, dim, kernel_size=(3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pool(x))


class SpaceToDepthDown(nn.Module):
    """Lossless 2× spatial down-sampling: each 2×2 block to channels, then a 1×1 conv (a
    2×2 stride-2 conv). Unlike blur-pooling, it keeps the fine lines of the drawing.

    [B, Cin, T, H, W] -> [B, Cout, T, H/2, W/2].
    """

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.conv = Conv3d(dim_in * 4, dim_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(channels_last(space_to_depth(x, 2)))


class TimeToDepthDown(nn.Module):
    """Lossless causal 2× time down-sampling: [B, C, 1 + 2m, H, W] -> [B, C, 1 + m, H, W].

    Frame 0 is paired with a copy of itself, then frames (2j-1, 2j) become latent j's
    channels — the frames `TimeUpsample` unfolds it back into; a 1×1 conv mixes each pair.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = Conv3d(dim * 2, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = rearrange(pad_past(x, 1), "b c (t p) h w -> b (p c) t h w", p=2)
        return self.conv(channels_last(x))


def _init_subpixel_(conv: Conv3d, factor: int) -> None:
    """ICNR init: all `factor` sub-positions start equal, so depth-to-X is nearest at init."""
    dim_out = conv.weight.shape[0] // factor
    weight = torch.empty(dim_out, *conv.weight.shape[1:])
    nn.init.kaiming_uniform_(weight, a=5**0.5)
    with torch.no_grad():
        conv.weight.copy_(repeat(weight, "o ... -> (o r) ...", r=factor))
        if conv.bias is not None:
            conv.bias.zero_()


class SpaceUpsample(nn.Module):
    """Depth-to-space (pixel shuffle): [B, Cin, T, H, W] -> [B, Cout, T, 2H, 2W]."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.conv = Conv3d(dim_in, dim_out * 4, 1)
        _init_subpixel_(self.conv, 4)

    def forward(self, x: Tensor) -> Tensor:
        # Shuffle in the [B, T, H, W, C] memory view, so the one copy lands channels-last.
        x = rearrange(self.conv(x), "b c t h w -> b t h w c")
        x = rearrange(x, "b t h w (c p q) -> b t (h p) (w q) c", p=2, q=2)
        return rearrange(x, "b t h w c -> b c t h w")


class TimeUpsample(nn.Module):
    """Depth-to-time, the mirror of `TimeDownsample`: [B, C, 1 + m, H, W] -> [B, C, 1 + 2m, H, W].

    Each latent frame unfolds into 2 frames; the extra leading frame is dropped, so latent 0
    gives frame 0 and latent j gives frames 2j-1 and 2j — the frames it was encoded from.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = Conv3d(dim, dim * 2, 1)
        _init_subpixel_(self.conv, 2)

    def forward(self, x: Tensor) -> Tensor:
        x = rearrange(self.conv(x), "b c t h w -> b t h w c")
        x = rearrange(x, "b t h w (c p) -> b (t p) h w c", p=2)
        return channels_last(rearrange(x[:, 1:], "b t h w c -> b c t h w"))
