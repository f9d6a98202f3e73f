"""Image-quality measures on video tensors in [-1, 1] (reported on the [0, 1] scale)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor


def to_unit(video: Tensor) -> Tensor:
    return ((video.float() + 1) / 2).clamp(0, 1)


def psnr(recon: Tensor, target: Tensor) -> Tensor:
    """Per-clip PSNR in dB of [B, C, T, H, W] videos in [-1, 1] (peak 1 on the [0, 1] scale)."""
    mse = (to_unit(recon) - to_unit(target)).square().flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp(min=1e-10))


SSIM_WINDOW, SSIM_SIGMA = 11, 1.5  # Wang et al. 2004
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2  # stabilizers for a dynamic range of 1


def gaussian_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """[size] the normalized 1-D Gaussian; SSIM's window is its outer product with itself."""
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _gaussian_window() -> Tensor:
    g = gaussian_1d()
    return (g[:, None] * g[None, :])[None, None]  # [1, 1, k, k]


def ssim(recon: Tensor, target: Tensor) -> Tensor:
    """Per-clip SSIM (Wang et al. 2004: 11×11 Gaussian window, σ 1.5), averaged over frames."""
    x = rearrange(to_unit(recon), "b c t h w -> (b t) c h w")
    y = rearrange(to_unit(target), "b c t h w -> (b t) c h w")
    channels = x.shape[1]
    window = _gaussian_window().to(x).expand(channels, 1, -1, -1)

    def blur(v: Tensor) -> Tensor:
        return F.conv2d(v, window, groups=channels)  # valid: no padding artefacts

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    score = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    )
    per_frame = score.flatten(1).mean(1)
    return rearrange(per_frame, "(b t) -> b t", b=recon.shape[0]).mean(1)
