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


def _repeats(streams: TokenStreams, kind: str) -> tuple[int, int, int]:
    """(tokens that repeat the frame before, tokens that have a frame before, all tokens) of
    one kind: "video", "audio", or "sound" (the audio tokens that are not NOSOUND; a NOSOUND
    frame before counts as no frame before)."""
    layout = streams.layout
    per_frame = layout.video if kind == "video" else layout.audio
    nosound = layout.audio_offset + layout.nosound
    same = comparable = total = 0
    for stream in streams.streams:
        frames = stream[1:].reshape(-1, layout.period)  # BOS is never a target
        codes = frames[:, : layout.video] if kind == "video" else frames[:, layout.video :]
        codes = codes.reshape(-1)
        before = np.concatenate([np.full(per_frame, -1), codes[:-per_frame]])
        counted = codes != nosound if kind == "sound" else np.ones(len(codes), bool)
        has_before = counted & (before >= 0) & ((before != nosound) | (kind != "sound"))
        total += int(counted.sum())
        comparable += int(has_before.sum())
        same += int((has_before & (codes == before)).sum())
    return same, comparable, total


def copy_previous_baseline(train: TokenStreams, val: TokenStreams) -> dict[str, float]:
    """The baseline's fitted repeat probability and its bits per token on both splits, for the
    pictures' tokens (`baseline_*`) and, where the streams have sound, the sound's
    (`audio_baseline_*`, over the audio symbols: the same rule, a latent frame's sound before;
    `sound_baseline_*` over the tokens that are not NOSOUND, among the 1,000 codes)."""
    layout = train.layout
    kinds = [("video", "", layout.codebook_size)]
    if layout.audio:
        kinds.append(("audio", "audio_", layout.audio_symbols))
        kinds.append(("sound", "sound_", layout.audio_symbols - 1))
    result = {}
    for kind, prefix, vocab in kinds:
        same, comparable, _ = _repeats(train, kind)
        q = min(max(same / max(comparable, 1), 1e-6), 1 - 1e-6)
        result[f"{prefix}baseline_repeat_probability"] = q
        result[f"{prefix}uniform_bits_per_token"] = math.log2(vocab)
        for name, streams in (("train", train), ("val", val)):
            s, c, n = _repeats(streams, kind)
            bits = -(s * np.log2(q) + (c - s) * np.log2((1 - q) / (vocab - 1)))
            bits += (n - c) * math.log2(vocab)
            result[f"{prefix}baseline_{name}_bits_per_token"] = float(bits / n) if n else math.nan
    return result
