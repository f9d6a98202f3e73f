"""The data layer: the film in, training tensors out.

    download.py    archive.org, local files or the synthetic cartoon → data/raw + manifest
    synthetic.py   the procedurally drawn cartoon and its soundtrack (the offline demo's film)
    video.py       PyAV: probe, decode gray frames and mono sound, write MP4 (+AAC)/GIF
    preprocess.py  data/raw → scene-split, re-timed clips → data/clips (Arrow shards)
    shards.py      the Arrow clip shard format: frames + soundtrack (writer, memory-mapped reader)
    dataset.py     ClipDataset, AudioClips: shards as float tensors for training

`ClipDataset` (and the small tensor helpers beside it) are importable from `willie.data`
itself; they load torch on first use, so `willie download` never pays for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from willie.data.dataset import (
        SPLITS,
        AudioClips,
        ClipDataset,
        area_resize,
        to_uint8,
        to_unit_range,
    )

__all__ = ["SPLITS", "AudioClips", "ClipDataset", "area_resize", "to_uint8", "to_unit_range"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from willie.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'willie.data' has no attribute {name!r}")
