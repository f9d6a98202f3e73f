"""How much the super-resolution model adds over bicubic on val clips: PSNR and SSIM."""

from __future__ import annotations

import numpy as np
import torch

from willie.data.dataset import ClipDataset, area_resize, to_uint8
from willie.quality import psnr, ssim
from willie.superres.model import VideoSuperRes, bicubic_upsample, low_res_size


@torch.no_grad()
def evaluate(
    model: VideoSuperRes, val: ClipDataset, device: torch.device, *, max_clips: int
) -> tuple[dict[str, float], np.ndarray]:
    """Val PSNR/SSIM of the model and of bicubic on whole clips at full frame size.

    Also one frame (the middle of the first val clip) as bicubic | model | original, uint8.
    """
    model.eval()
    count, scale = min(len(val), max_clips), model.arch.scale
    scores: dict[str, list[torch.Tensor]] = {k: [] for k in ("psnr", "ssim", "psnr_b", "ssim_b")}
    compare = None
    low_size = low_res_size(val.clip_shape[1:], scale)
    for index in range(count):
        real = val[index].unsqueeze(0).to(device)  # [1, 1, T, H, W]
        low = area_resize(real, low_size)
        upscaled = model.upscale(low)
        bicubic = bicubic_upsample(low, scale).clamp(-1, 1)
        scores["psnr"].append(psnr(upscaled, real).cpu())
        scores["ssim"].append(ssim(upscaled, real).cpu())
        scores["psnr_b"].append(psnr(bicubic, real).cpu())
        scores["ssim_b"].append(ssim(bicubic, real).cpu())
        if compare is None:
            middle = real.shape[2] // 2
            row = torch.cat([v[0, 0, middle] for v in (bicubic, upscaled, real)], dim=-1)
            compare = to_uint8(row)  # [H, 3W]
    mean = {k: float(torch.cat(v).mean()) for k, v in scores.items()}
    metrics = {
        "psnr": mean["psnr"],
        "psnr_bicubic": mean["psnr_b"],
        "gain_db": mean["psnr"] - mean["psnr_b"],
        "ssim": mean["ssim"],
        "ssim_bicubic": mean["ssim_b"],
        "ssim_gain": mean["ssim"] - mean["ssim_b"],
        "val_clips": count,
    }
    assert compare is not None
    return metrics, compare
