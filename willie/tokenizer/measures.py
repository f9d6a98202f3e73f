"""How well the tokenizer reconstructs val clips: PSNR, SSIM, codebook use, compression."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from einops import rearrange

from willie.data.dataset import ClipDataset, spread, to_uint8
from willie.evaluation.distribution import frame_change_curve
from willie.quality import psnr, ssim
from willie.tokenizer.fsq import codebook_usage
from willie.tokenizer.model import VideoTokenizer


class Evaluation(NamedTuple):
    metrics: dict[str, float]  # val PSNR/SSIM, codebook usage and perplexity, compression
    strip: np.ndarray  # [T, 4·H, 2·W] uint8: real | recon of up to 4 clips, for a GIF
    psnr_by_frame: np.ndarray  # [T] PSNR of each frame index, averaged over the clips
    clips: torch.Tensor | None = None  # with `keep`: the clips measured [N, 1, T, H, W], CPU
    recon: torch.Tensor | None = None  # … and their reconstructions, clamped to [-1, 1]


@torch.no_grad()
def evaluate(
    tokenizer: VideoTokenizer,
    val: ClipDataset,
    device: torch.device,
    *,
    max_clips: int,
    batch_size: int,
    keep: bool = False,
) -> Evaluation:
    """Reconstruct up to `max_clips` val clips (spread over the split) once and measure them
    every way; `keep` also returns the clips and their reconstructions (for `evaluate`'s
    realism and motion, which need them again)."""
    tokenizer.eval()
    picks = spread(len(val), max_clips)
    count = len(picks)
    psnrs, ssims, by_frame, indices, strip = [], [], [], [], None
    kept: dict[str, list[torch.Tensor]] = {"clips": [], "recon": []}
    changes: dict[str, float] = {"recon": 0.0, "real": 0.0}  # summed over clips
    for start in range(0, count, batch_size):
        real = torch.stack([val[i] for i in picks[start : start + batch_size]])
        real = real.to(device)
        recon, idx, _ = tokenizer(real)
        recon = recon.clamp(-1, 1)
        psnrs.append(psnr(recon, real).cpu())
        ssims.append(ssim(recon, real).cpu())
        frames = range(real.shape[2])
        by_frame.append(torch.stack([psnr(recon[:, :, t], real[:, :, t]) for t in frames], 1))
        indices.append(idx.cpu())
        if keep:
            kept["clips"].append(real.float().cpu())
            kept["recon"].append(recon.float().cpu())
        for name, clips in (("recon", recon), ("real", real)):  # as evaluate measures samples
            changes[name] += float(frame_change_curve(clips.float()).mean()) * len(clips)
        if strip is None:
            pairs = torch.cat([real[:4], recon[:4]], dim=-1)  # real | recon side by side
            frames = rearrange(pairs, "b 1 t h w -> t (b h) w")
            strip = to_uint8(frames)
    usage = codebook_usage(torch.cat(indices), tokenizer.codebook_size)
    T, H, W = val.clip_shape
    t, h, w = tokenizer.latent_shape(T, H, W)
    bits_per_token = float(np.log2(tokenizer.codebook_size))
    token_bits = t * h * w * bits_per_token
    metrics = {
        "psnr": float(torch.cat(psnrs).mean()),
        "ssim": float(torch.cat(ssims).mean()),
        "codebook_usage": float(usage.usage),
        "perplexity": float(usage.perplexity),
        "codebook_size": tokenizer.codebook_size,
        "bits_per_pixel": token_bits / (T * H * W),
        "compression_ratio": (T * H * W * 8) / token_bits,
        "val_clips": count,
        # how much the reconstructions move from frame to frame, and the real clips: the
        # motion a sample decoded by this tokenizer can have (grain it cannot keep is left out)
        "frame_change": changes["recon"] / count,
        "frame_change_real": changes["real"] / count,
    }
    frames = {k: torch.cat(v) for k, v in kept.items()} if keep else {}
    return Evaluation(metrics, strip, torch.cat(by_frame).mean(0).cpu().numpy(), **frames)
