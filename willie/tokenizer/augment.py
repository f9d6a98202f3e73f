"""Training-clip augmentation for the tokenizer: mirror and shift, drawn per clip.

Measured on the shared footage split by shot (bench/sweep_unseen.py, 300 steps, unseen-shot
PSNR): a random shift of up to 8 pixels +1.1 and +0.5 dB (wheel→boat, boat→wheel), and it
cuts train − unseen PSNR from ~5 dB to ~1.3 dB; a left-right mirror +0.25 and +0.45 dB. A
shifted clip is the same drawing seen from elsewhere, so the network cannot learn its training
scenes by where things sit in the frame.

The parameters are drawn apart from their use, so that a benchmark can give two models the
very same augmented clips.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def draw_augmentation(batch: int, *, flip: bool, shift: int, generator: torch.Generator) -> Tensor:
    """[B, 3] int64 per clip: (mirror 0/1, dy, dx) with dy, dx in [-shift, shift]."""
    mirror = (torch.rand(batch, generator=generator) < 0.5).long() * int(flip)
    offsets = torch.randint(-shift, shift + 1, (batch, 2), generator=generator)
    return torch.cat([mirror[:, None], offsets], dim=1)


def apply_augmentation(clips: Tensor, params: Tensor, shift: int) -> Tensor:
    """Mirror, then translate each clip [B, C, T, H, W] by its (dy, dx), reflecting at the
    borders (the frame's edge continues the picture rather than a black band)."""
    params = params.tolist()
    out = []
    for clip, (mirror, dy, dx) in zip(clips, params, strict=True):
        if mirror:
            clip = clip.flip(-1)
        if dy or dx:
            H, W = clip.shape[-2:]
            padded = F.pad(clip, (shift, shift, shift, shift), mode="reflect")  # [C, T, ...]
            clip = padded[..., shift - dy : shift - dy + H, shift - dx : shift - dx + W]
        out.append(clip)
    return torch.stack(out)
