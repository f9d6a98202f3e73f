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
    """

    def __init__(
        self,
        clips_dir: str | os.PathLike[str],
        split: str,
        size: int | tuple[int, int] | None = None,
    ) -> None:
        if split not in SPLITS:
            raise WillieError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        self.shards = ClipShards(Path(clips_dir) / split)
        _T, H, W = self.shards.clip_shape
        if size is None:
            size = (H, W)
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if self.size[0] > H or self.size[1] > W:
            raise WillieError(
                f"requested clip size {self.size} exceeds the stored {H}×{W}: clips are only "
                "downsampled; raise preprocess.size and re-run preprocess"
            )

    @property
    def clip_shape(self) -> tuple[int, int, int]:
        return (self.shards.clip_shape[0], *self.size)

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, index: int) -> torch.Tensor:
        clip = torch.from_numpy(self.shards[index].copy())  # copy: the map is read-only
        return area_resize(to_unit_range(clip), self.size).unsqueeze(0)  # [1, T, H, W]
