"""Spatiotemporal patch discriminator: 3D convs, blur-pool down-sampling, capped widths.

Like MAGVIT-v2's (a StyleGAN discriminator inflated to 3D) but lean for CPU: the input may be
patchified like the tokenizer's (`patch_size` 2: p×p pixels to p² channels), and only the
input conv runs at that resolution; each stage first blur-pools time and space by 2, then
convolves at the reduced size. It judges overlapping space-time patches, so it needs no
causality and works on any clip size; its logits are a grid, not one number per clip.
"""

from __future__ import annotations

from itertools import pairwise

import torch.nn.functional as F
from einops import repeat
from torch import Tensor, nn

from willie.tokenizer.layers import Conv3d, blur_kernel, channels_last, space_to_depth


class BlurPool3d(nn.Module):
    """Anti-aliased 2× subsampling of T, H and W: [1,2,1]³ blur, stride 2 (ceil of odd sizes)."""

    def __init__(self) -> None:
        super().__init__()
        k = blur_kernel()
        kernel = k[:, None, None] * k[None, :, None] * k[None, None, :]
        self.register_buffer("kernel", kernel[None, None], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        x = F.pad(x, (1, 1, 1, 1, 1, 1), mode="replicate")
        weight = channels_last(repeat(self.kernel.to(x.dtype), "1 1 t h w -> c 1 t h w", c=c))
        return F.conv3d(x, weight, stride=2, groups=c)


class DiscriminatorStage(nn.Module):
    """Blur-pool by 2, then 3×3×3 conv + LeakyReLU: [B, Cin, T, H, W] -> [B, Cout, ⌈T/2⌉, ...]."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.pool = BlurPool3d()
        self.conv = Conv3d(dim_in, dim_out, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(self.pool(x)))


class Discriminator(nn.Module):
    """[B, 1, T, H, W] -> patch logits [B, 1, t', h', w'], each axis halved (ceil) per stage.

    Stage i has `channels · min(2^(i+1), max_mult)` channels (the paper's capped multipliers).
    """

    def __init__(
        self,
        *,
        channels: int = 32,
        max_mult: int = 4,
        num_downsamples: int = 3,
        patch_size: int = 1,
    ) -> None:
        super().__init__()
        widths = [channels * min(2**i, max_mult) for i in range(num_downsamples + 1)]
        self.patch = patch_size
        self.conv_in = nn.Sequential(
            Conv3d(patch_size**2, channels, 3, padding=1), nn.LeakyReLU(0.2)
        )
        self.stages = nn.Sequential(
            *(DiscriminatorStage(w_in, w_out) for w_in, w_out in pairwise(widths))
        )
        self.to_logits = nn.Sequential(
            Conv3d(widths[-1], widths[-1], 3, padding=1),
            nn.LeakyReLU(0.2),
            Conv3d(widths[-1], 1, 1),
        )

    def forward(self, video: Tensor) -> Tensor:
        x = space_to_depth(video, self.patch)
        # A 1-channel conv's layout is ambiguous, so state the channels-last layout once here.
        return self.to_logits(self.stages(channels_last(self.conv_in(x))))
