"""Random-access clip reads from the Arrow shards vs decoding the same clips at load time.

    python bench/bench_clip_reads.py

Clips of 17×128×128 from the real footage. Shard reads are single-process, random order,
warm page cache, each clip copied out of the memory map (`ClipShards`), and as the training
input (`ClipDataset`: float32 in [-1, 1]). The baseline seeks with PyAV to each clip's start
and decodes its frames through the same crop and area resize — what a loader without
preprocessed shards would do. Goal: ≥ 10,000 clips/s and ≥ 500× the decode baseline.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import machine, shared_clip

from willie.atomic import write_json
from willie.config import PreprocessConfig
from willie.data.dataset import ClipDataset
from willie.data.download import manifest_of
from willie.data.preprocess import run_preprocess
from willie.data.shards import ClipRow, ClipShards, ClipShardWriter
from willie.data.video import Box, iter_gray_frames

CLIPS = 1024  # real clips repeated into ~285 MB of shards, so reads are not all one page set


def rate(fn, indices: np.ndarray, min_seconds: float = 1.0) -> float:
    fn(int(indices[0]))  # warm
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        for i in indices:
            fn(int(i))
        done += len(indices)
    return done / (time.perf_counter() - start)


def main() -> None:
    clip = shared_clip()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw = root / "raw"
        raw.mkdir()
        (raw / clip.name).symlink_to(clip)
        write_json(raw / "manifest.json", manifest_of(raw, [clip.name]))
        run_preprocess(PreprocessConfig(size=128), raw, root / "clips")
        real = ClipShards(root / "clips" / "train")
        manifest = json.loads((root / "clips" / "manifest.json").read_text())
        box = Box(**manifest["files"][0]["crop_box"]["used"])

        big = root / "big"
        with ClipShardWriter(big / "train", real.clip_shape) as writer:
            for i in range(CLIPS):
                j = i % len(real)
                writer.add(
                    ClipRow(real[j].copy(), 0, float(real.start_time_s[j]), real.frame_indices[j])
                )
        shards = ClipShards(big / "train")
        dataset = ClipDataset(big, "train")
        order = rng.permutation(CLIPS)
        shard_rate = rate(lambda i: shards[i].copy(), order)
        dataset_rate = rate(lambda i: dataset[i], order)

        starts = real.start_time_s[rng.integers(0, len(real), 24)]
        T = real.clip_shape[0]
        t0 = time.perf_counter()
        for s in starts:
            frames = iter_gray_frames(
                clip, crop=box, size=(128, 128), start_s=float(s), max_frames=T
            )
            decoded = np.stack([f.pixels for f in frames])
        decode_rate = len(starts) / (time.perf_counter() - t0)
        assert decoded.shape == real.clip_shape

    print(f"machine: {machine()}")
    print(f"clips: {CLIPS} × {'×'.join(map(str, real.clip_shape))} uint8, random order")
    print(f"  decode at load time (PyAV seek+decode)  {decode_rate:10.1f} clips/s   1×")
    for name, value in (
        ("shard read (uint8 copy)", shard_rate),
        ("ClipDataset (float32 [-1, 1])", dataset_rate),
    ):
        print(f"  {name:<38} {value:10.0f} clips/s   {value / decode_rate:,.0f}×")


if __name__ == "__main__":
    main()
