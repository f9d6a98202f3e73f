"""How well the transformer predicts tokens it did not train on: bits per token, over all the
stream's tokens and per kind (the pictures' and, where the stream has it, the sound's)."""

from __future__ import annotations

import math

import torch

from willie.config import Precision
from willie.training.engine import autocast
from willie.transformer.data import ScoringWindows, TokenStreams
from willie.transformer.model import TokenTransformer


@torch.no_grad()
def bits_per_token(
    model: TokenTransformer,
    streams: TokenStreams,
    length: int,
    *,
    max_windows: int,
    batch_size: int,
    device: torch.device,
    precision: Precision = "auto",
) -> dict[str, tuple[float, int]]:
    """Mean bits per predicted token and the count: "all", and per kind ("video", "audio", and
    "sound": the audio tokens that are not NOSOUND),
    each token scored once with ≥ length/2 tokens of its past where the stream has them
    (`ScoringWindows`)."""
    model.eval()
    windows = ScoringWindows(streams, length)
    picks = torch.linspace(0, len(windows) - 1, min(max_windows, len(windows))).round().long()
    nats: dict[str, float] = {}
    counts: dict[str, int] = {}
    for start in range(0, len(picks), batch_size):
        batch = torch.stack([windows[int(i)] for i in picks[start : start + batch_size]])
        ids, targets, anchors, slots = batch.to(device).unbind(1)
        with autocast(device, precision):
            parts = model.losses(ids, targets, anchors, slots)
        for kind, (summed, count) in parts.items():
            for key in (kind, "all") if kind != "sound" else (kind,):  # sound ⊂ audio
                nats[key] = nats.get(key, 0.0) + float(summed)
                counts[key] = counts.get(key, 0) + int(count)
    # no token of a kind (a val split without sound): NaN, not a flattering 0
    return {
        k: (nats[k] / counts[k] / math.log(2) if counts[k] else math.nan, counts[k]) for k in nats
    }
