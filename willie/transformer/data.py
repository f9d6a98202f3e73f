"""Token streams for the transformer: consecutive clips of a scene chained into one sequence.

A clip of F = 1 + 4k frames starting at frame s has latent frames [t, h, w]: latent 0 is frame
s alone, latent j ≥ 1 covers frames s + 4j − 3 .. s + 4j. The clip starting at s + F − 1 begins
where this one ends, so a scene's stream is

    BOS, clip(s) latents 0..k, clip(s + F − 1) latents 1..k, clip(s + 2(F − 1)) latents 1..k, …

flattened in raster order (time, then rows, then columns). It decodes through the causal
tokenizer to 1 + 4·(latent frames − 1) continuous frames: no restart at clip boundaries.
Where the tokens have sound, each latent frame's audio tokens follow its video tokens
(willie.transformer.layout).
With a clip stride that divides F − 1 (the default 8 of 16), each residue of the start frame
gives one chain, so every clip is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from willie.atomic import read_json
from willie.errors import WillieError
from willie.transformer.layout import StreamLayout
from willie.transformer.model import IGNORE


@dataclass(frozen=True)
class TokenManifest:
    """`data/tokens/manifest.json`, as the transformer needs it."""

    codebook_size: int
    levels: tuple[int, ...]
    latent_shape: tuple[int, int, int]  # (t, h, w) per clip
    clip_shape: tuple[int, int, int]  # (frames, height, width) the tokenizer saw
    audio: dict[str, Any] | None = None  # the audio tokens' description; None: no sound

    @property
    def tokens_per_frame(self) -> int:
        return self.latent_shape[1] * self.latent_shape[2]

    def layout(self, sound: bool = True) -> StreamLayout:
        """The streams' layout: with the sound's tokens where there are some and `sound`."""
        if self.audio is None or not sound:
            return StreamLayout(self.tokens_per_frame, self.codebook_size)
        return StreamLayout(
            self.tokens_per_frame,
            self.codebook_size,
            int(self.audio["group"]),
            int(self.audio["codebook_size"]) + 1,  # + NOSOUND
        )

    @classmethod
    def read(cls, tokens_dir: str | os.PathLike[str]) -> TokenManifest:
        path = Path(tokens_dir) / "manifest.json"
        if not path.is_file():
            raise WillieError(f"{path}: no token manifest; run `dvc repro tokenize` first")
        data: dict[str, Any] = read_json(path)
        manifest = cls(
            codebook_size=int(data["codebook_size"]),
            levels=tuple(data["levels"]),
            latent_shape=tuple(data["latent_shape"]),  # type: ignore[arg-type]
            clip_shape=tuple(data["clip_shape"]),  # type: ignore[arg-type]
            audio=data.get("audio"),
        )
        if int(np.prod(manifest.levels)) != manifest.codebook_size:
            raise WillieError(
                f"{path}: codebook_size {manifest.codebook_size} is not the product of the FSQ "
                f"levels {list(manifest.levels)}; re-run `dvc repro tokenize`"
            )
        return manifest


def chain_clips(scene: np.ndarray, start: np.ndarray, clip_frames: int) -> list[list[int]]:
    """Rows of clips grouped into chains, each clip starting where the previous one ended."""
    step = clip_frames - 1
    row_at = {
        (int(sc), int(st)): row for row, (sc, st) in enumerate(zip(scene, start, strict=True))
    }
    chains = []
    for row, (sc, st) in enumerate(zip(scene, start, strict=True)):
        if (int(sc), int(st) - step) in row_at:
            continue  # continues another chain
        chain = [row]
        while (key := (int(sc), int(start[chain[-1]]) + step)) in row_at:
            chain.append(row_at[key])
        chains.append(chain)
    return chains


class TokenStreams:
    """The streams of one split (`data/tokens/<split>`), each an int64 array starting with BOS."""

    def __init__(
        self,
        tokens_dir: str | os.PathLike[str],
        split: str,
        *,
        restarts: bool = False,
        sound: bool = True,
    ) -> None:
        """restarts: also every clip that does not begin a chain, as a stream of its own
        (BOS + its tokens), so that a model learns scene beginnings from every clip rather
        than from the few chain starts (what unconditional samples start from).
        sound: interleave the audio tokens where `tokenize` made some."""
        self.manifest = TokenManifest.read(tokens_dir)
        self.layout = self.manifest.layout(sound)
        directory = Path(tokens_dir) / split
        if not (directory / "tokens.npy").is_file():
            raise WillieError(f"{directory}/tokens.npy missing; run `dvc repro tokenize` first")
        tokens = np.load(directory / "tokens.npy", mmap_mode="r")  # [N, t, h, w]
        audio = None
        if self.layout.audio:
            audio = np.load(directory / "audio_tokens.npy", mmap_mode="r")  # [N, t, G]
        scene = np.load(directory / "scene.npy")
        start = np.load(directory / "start_frame.npy")
        if (directory / "variant.npy").is_file():  # copies chain within themselves only
            variant = np.load(directory / "variant.npy")
            pairs = np.stack([variant, scene], axis=1)
            scene = np.unique(pairs, axis=0, return_inverse=True)[1].reshape(-1)
        if len(tokens) and int(tokens.max()) >= self.manifest.codebook_size:
            raise WillieError(
                f"{directory}/tokens.npy holds code {int(tokens.max())} ≥ codebook_size "
                f"{self.manifest.codebook_size} of its manifest; re-run `dvc repro tokenize`"
            )
        bos = self.manifest.codebook_size
        period = self.layout.period

        def clip(row: int) -> np.ndarray:  # [t · period] ids
            t = len(tokens[row])
            return self.layout.interleave(
                tokens[row].reshape(t, -1), None if audio is None else audio[row]
            )

        self.streams: list[np.ndarray] = []
        for chain in chain_clips(scene, start, self.manifest.clip_shape[0]):
            parts = [np.array([bos]), clip(chain[0])]
            parts += [clip(row)[period:] for row in chain[1:]]
            self.streams.append(np.concatenate(parts).astype(np.int64))
            if restarts:
                for row in chain[1:]:
                    self.streams.append(np.concatenate([[bos], clip(row)]).astype(np.int64))

    @property
    def num_tokens(self) -> int:
        return sum(len(s) - 1 for s in self.streams)  # predicted tokens (BOS is never a target)


class TokenWindows(Dataset[torch.Tensor]):
    """Windows of `length` inputs cut from the streams: item = [4, length] (ids, targets, the
    anchors: the ids at each target's place in its stream's first latent frame,
    `StreamLayout.anchors`, and the targets' slots in their period, `StreamLayout.slots`).

    Windows start every `stride` tokens; a stream shorter than the window is padded (targets
    IGNORE), so short scenes still train.
    """

    def __init__(self, streams: TokenStreams, length: int, stride: int | None = None) -> None:
        self.streams, self.length, self.layout = streams.streams, length, streams.layout
        stride = stride or length
        self.index: list[tuple[int, int]] = []
        for i, stream in enumerate(self.streams):
            last = max(0, len(stream) - 1 - length)
            starts = list(range(0, last + 1, stride))
            if starts[-1] != last:
                starts.append(last)  # cover the stream's tail
            self.index += [(i, s) for s in starts]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> torch.Tensor:
        i, start = self.index[item]
        piece = torch.from_numpy(self.streams[i][start : start + self.length + 1])
        ids = torch.full((self.length,), int(self.streams[i][0]), dtype=torch.long)  # pad: BOS
        targets = torch.full((self.length,), IGNORE, dtype=torch.long)
        ids[: len(piece) - 1] = piece[:-1]
        targets[: len(piece) - 1] = piece[1:]
        anchors = self.layout.anchors(torch.from_numpy(self.streams[i]), start, self.length)
        return torch.stack([ids, targets, anchors, self.layout.slots(start, self.length)])


class ScoringWindows(Dataset[torch.Tensor]):
    """Windows of `length` over the streams in which every target is scored exactly once, with
    history, for evaluation: a window starts every `length // 2` tokens and scores only the
    targets the window before it did not (the others are IGNORE), so each token past a stream's
    first half-window is predicted from ≥ length/2 tokens of its past, as in generation, where
    the rolling cache holds it. Item = [4, length] (ids, targets, anchors, slots)."""

    def __init__(self, streams: TokenStreams, length: int) -> None:
        self.windows = TokenWindows(streams, length, max(1, length // 2))
        self.scored_from: list[int] = []
        previous: tuple[int, int] | None = None
        for stream, start in self.windows.index:
            same = previous is not None and previous[0] == stream
            end = previous[1] + length if same and previous is not None else start
            self.scored_from.append(max(0, end - start))
            previous = (stream, start)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, item: int) -> torch.Tensor:
        item_rows = self.windows[item]
        item_rows[1, : self.scored_from[item]] = IGNORE  # the targets
        return item_rows
