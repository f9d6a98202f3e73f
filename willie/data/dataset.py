"""PyTorch access to the clip shards written by `willie preprocess`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from willie.data.shards import ClipShards
from willie.errors import WillieError

SPLITS = ("train", "val")


def to_unit_range(clips: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float32 [-1, 1]."""
    return clips.float().mul_(2 / 255).sub_(1)


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """float [-1, 1] → uint8 [0, 255] numpy (rounded, clamped): the inverse of to_unit_range."""
    return ((video.detach().float() + 1) * 127.5).round().clamp(0, 255).byte().cpu().numpy()


def pcm_to_unit(audio: np.ndarray) -> torch.Tensor:
    """int16 PCM → float32 [-1, 1]."""
    return torch.from_numpy(audio.astype(np.float32) / 32767)


def split_shards(clips_dir: str | os.PathLike[str], split: str) -> ClipShards:
    """The shards of one split (`train` or `val`) of `clips_dir`."""
    if split not in SPLITS:
        raise WillieError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return ClipShards(Path(clips_dir) / split)


def spread(count: int, limit: int) -> list[int]:
    """Up to `limit` indices spread evenly over range(count): a subset that sees all of a split."""
    return np.linspace(0, count - 1, min(count, limit)).round().astype(int).tolist()


def area_resize(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-downsample the last two dims of [..., T, H, W] frames to `size`."""
    if tuple(video.shape[-2:]) == tuple(size):
        return video
    lead = video.shape[:-2]
    frames = video.reshape(-1, 1, *video.shape[-2:])  # (... T) 1 H W
    return F.interpolate(frames, size=size, mode="area").reshape(*lead, *size)


class ClipDataset(Dataset[torch.Tensor]):
    """Clips of one split as float tensors in [-1, 1] of shape [1, T, H, W].

    `ClipDataset("data/clips", "train", size=64)` area-downsamples on the fly from the stored
    resolution (e.g. the tokenizer's 64×64 input from 128×128 shards). Reads are memory-mapped
    random access; safe with DataLoader workers (each reopens the maps) and DistributedSampler.

    With `audio=True` an item is `(video [1, T, H, W], audio [1, S], has_audio)`: the clip's
    soundtrack in [-1, 1] (S = T × audio_rate / fps), all zeros where `has_audio` is False —
    the flag, not the zeros, says whether the clip has sound.
    """

    def __init__(
        self,
        clips_dir: str | os.PathLike[str],
        split: str,
        size: int | tuple[int, int] | None = None,
        *,
        audio: bool = False,
    ) -> None:
        self.shards = split_shards(clips_dir, split)
        _T, H, W = self.shards.clip_shape
        if size is None:
            size = (H, W)
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if self.size[0] > H or self.size[1] > W:
            raise WillieError(
                f"requested clip size {self.size} exceeds the stored {H}×{W}: clips are only "
                "downsampled; raise preprocess.size and re-run preprocess"
            )
        self.audio = audio

    @property
    def clip_shape(self) -> tuple[int, int, int]:
        return (self.shards.clip_shape[0], *self.size)

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, bool]:
        clip = torch.from_numpy(self.shards[index].copy())  # copy: the map is read-only
        video = area_resize(to_unit_range(clip), self.size).unsqueeze(0)  # [1, T, H, W]
        if not self.audio:
            return video
        sound = self.shards.audio(index)
        if sound is None:
            return video, torch.zeros(1, self.shards.audio_samples), False
        return video, pcm_to_unit(sound).unsqueeze(0), True  # [1, S]


class AudioClips(Dataset[torch.Tensor]):
    """The soundtracks of one split's clips that have one: [1, S] float in [-1, 1] each.

    `indices` maps an item back to its clip in the split's shards.
    """

    def __init__(self, clips_dir: str | os.PathLike[str], split: str) -> None:
        self.shards = split_shards(clips_dir, split)
        self.indices = np.flatnonzero(self.shards.has_audio)
        self.rate = self.shards.audio_rate

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> torch.Tensor:
        return pcm_to_unit(self.shards.audio(int(self.indices[index]))).unsqueeze(0)  # [1, S]
