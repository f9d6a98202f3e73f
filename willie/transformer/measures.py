"""How well the transformer predicts tokens it did not train on: bits per token."""

from __future__ import annotations

import math

import torch

from willie.training.engine import autocast
from willie.transformer.data import ScoringWindows, TokenStreams
from willie.transformer.model import IGNORE, TokenTransformer


@torch.no_grad()
def bits_per_token(
    model: TokenTransformer,
    streams: TokenStreams,
    length: int,
    *,
    max_windows: int,
    batch_size: int,
    device: torch.device,
) -> tuple[float, int]:
    """Mean bits per predicted token (and the count), each scored once with ≥ length/2 tokens
    of its past where the stream has them (`ScoringWindows`)."""
    model.eval()
    windows = ScoringWindows(streams, length)
    picks = torch.linspace(0, len(windows) - 1, min(max_windows, len(windows))).round().long()
    nats, count = 0.0, 0
    for start in range(0, len(picks), batch_size):
        batch = torch.stack([windows[int(i)] for i in picks[start : start + batch_size]])
        ids, targets = batch.to(device).unbind(1)
        valid = int((targets != IGNORE).sum())
        with autocast(device):
            loss = model(ids, targets)
        nats += float(loss) * valid
        count += valid
    return nats / max(count, 1) / math.log(2), count
