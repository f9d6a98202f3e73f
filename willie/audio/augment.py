"""Audio augmentation for the codec's training: the film has seconds of sound, not hours.

Each clip is played at a random speed (pitch and tempo together, as a projector running fast
or slow: log-uniform in [1/(1+s), 1+s]) from a random start, read back with linear
interpolation and reflected at the ends, and scaled by a random gain (± `gain_db`). New
whistle pitches and loudnesses, from the same sounds.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def speed_and_gain(
    audio: Tensor, generator: torch.Generator, speed: float, gain_db: float
) -> Tensor:
    """[B, 1, S] → [B, 1, S] replayed at random speeds and gains (one draw per clip)."""
    B, _, S = audio.shape
    log_speed = (torch.rand(B, generator=generator) * 2 - 1) * math.log1p(speed)
    start = torch.rand(B, generator=generator) * S
    gain = 10 ** ((torch.rand(B, generator=generator) * 2 - 1) * gain_db / 20)
    t = start[:, None] + torch.arange(S)[None] * log_speed.exp()[:, None]  # [B, S] positions
    t = t % (2 * (S - 1))
    t = torch.where(t > S - 1, 2 * (S - 1) - t, t)  # reflect at the ends
    lo = t.floor().long().clamp(max=S - 2)
    frac = (t - lo).to(audio.device)
    x = audio[:, 0]
    lo = lo.to(audio.device)
    played = x.gather(1, lo) * (1 - frac) + x.gather(1, lo + 1) * frac
    return (played * gain.to(audio.device)[:, None]).clamp(-1, 1)[:, None]
