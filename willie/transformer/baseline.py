"""The trivial baseline a token model must beat: "the frame before, at the same place".

p(code at position p of latent frame t) = q             if it equals the code at p in frame t−1
                                          (1 − q)/(V − 1) for each other code
and uniform 1/V in a stream's first latent frame. q is fitted on the training streams (the
maximum-likelihood value: the share of tokens that repeat the frame before). Film footage is
mostly still backgrounds, so this is far below uniform; a transformer that cannot beat it has
learnt nothing the previous frame did not already say.
"""

from __future__ import annotations

import math

import numpy as np

from willie.transformer.data import TokenStreams


def _repeats(streams: TokenStreams) -> tuple[int, int, int]:
    """(tokens that repeat the frame before, tokens that have a frame before, all tokens)."""
    per_frame = streams.manifest.tokens_per_frame
    same = comparable = total = 0
    for stream in streams.streams:
        codes = stream[1:]  # BOS is never a target
        total += len(codes)
        if len(codes) > per_frame:
            same += int((codes[per_frame:] == codes[:-per_frame]).sum())
            comparable += len(codes) - per_frame
    return same, comparable, total


def copy_previous_baseline(train: TokenStreams, val: TokenStreams) -> dict[str, float]:
    """The baseline's fitted repeat probability and its bits per token on both splits."""
    vocab = train.manifest.codebook_size
    same, comparable, _ = _repeats(train)
    q = min(max(same / max(comparable, 1), 1e-6), 1 - 1e-6)
    result = {"baseline_repeat_probability": q, "uniform_bits_per_token": math.log2(vocab)}
    for name, streams in (("train", train), ("val", val)):
        s, c, n = _repeats(streams)
        bits = -(s * np.log2(q) + (c - s) * np.log2((1 - q) / (vocab - 1)))
        bits += (n - c) * math.log2(vocab)
        result[f"baseline_{name}_bits_per_token"] = float(bits / max(n, 1))
    return result
