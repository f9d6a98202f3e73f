"""Preprocess throughput on the real clip against the bare PyAV grayscale decode, same run.

    python bench/bench_preprocess.py

The stage (`run_preprocess`: bar detection, decode + crop + resize, re-timing, cut
detection, clip cutting, shard writing) must reach ≥ 0.7× the frames/s of decoding the same
file to grayscale with PyAV. Two decode baselines: `to_ndarray(format="gray")` (PyAV's
grayscale conversion) and the luma plane taken as-is (no conversion at all: the floor).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import av
import numpy as np
from _common import machine, median_seconds, shared_clip

from willie.atomic import write_json
from willie.config import PreprocessConfig
from willie.data.download import manifest_of
from willie.data.preprocess import run_preprocess


def decode_gray(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for frame in container.decode(stream) if frame.to_ndarray(format="gray").size)


def decode_luma(path: Path) -> int:
    count = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            plane = frame.planes[0]
            luma = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
            count += luma[:, : plane.width].size > 0
    return count


def main() -> None:
    clip = shared_clip()
    frames = decode_gray(clip)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        raw.mkdir()
        (raw / clip.name).symlink_to(clip)
        write_json(raw / "manifest.json", manifest_of(raw, [clip.name]))
        cfg = PreprocessConfig()

        def stage() -> None:
            run_preprocess(cfg, raw, Path(tmp) / "clips")

        rates = {
            "PyAV decode → to_ndarray(gray)": frames / median_seconds(lambda: decode_gray(clip)),
            "PyAV decode → luma plane (floor)": frames / median_seconds(lambda: decode_luma(clip)),
            f"preprocess stage ({cfg.size[0]}×{cfg.size[1]})": frames / median_seconds(stage),
        }
    print(f"machine: {machine()}")
    print(f"input: {clip.name}, {frames} frames 640×480, median of 5 runs")
    stage_rate = rates[next(k for k in rates if k.startswith("preprocess"))]
    for name, rate in rates.items():
        print(f"  {name:<36} {rate:8.0f} frames/s   stage/this = {stage_rate / rate:5.2f}×")


if __name__ == "__main__":
    main()
