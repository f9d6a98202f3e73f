"""How well the transformer predicts tokens it did not train on: bits per token, over all the
stream's tokens and per kind (the pictures' and, where the stream has it, the sound's)."""

from __future__ import annotations

import math

import torch

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
) -> dict[str, tuple[float, int]]:
    """Mean bits per predicted token and the count: "all", and per kind ("video", "audio"),
    each token scored once with ≥ length/2 tokens of its past where the stream has them
    (`ScoringWindows`)."""
    model.eval()
    windows = ScoringWindows(streams, length)
    picks = torch.linspace(0, len(windows) - 1, min(max_windows, len(windows))).round().long()
    nats: dict[str, float] = {}
    counts: dict[str, int] = {}
    for start in range(0, len(picks), batch_size):
        batch = torch.stack([windows[int(i)] for i in picks[start : start + batch_size]])
        ids, targets = batch.to(device).unbind(1)
        with autocast(device):
            parts = model.losses(ids, targets)
        for kind, (summed, count) in parts.items():
            for key in (kind, "all"):
                nats[key] = nats.get(key, 0.0) + float(summed)
                counts[key] = counts.get(key, 0) + int(count)
    return {k: (nats[k] / max(counts[k], 1) / math.log(2), counts[k]) for k in nats}
