"""The shared real footage split by shot, for benchmarks of generalization to unseen footage.

    boat  — the steamboat: all of steamboat_willie_opening.mp4 and the first shot of
            steamboat_willie_0-18s.mp4 (two encodings of one scene: 29.97 and 23.976 fps)
    wheel — Mickey at the wheel: the second and third shots of steamboat_willie_0-18s.mp4
            (one scene to preprocess: the cut between them, at 9.97 s, keeps the framing)

Each file goes through the preprocess stage's own code (bars, re-timing, cuts, clips) into a
temporary directory; its clips are then grouped by the scene preprocess found, so a model
trained on one shot can be tested on the other (one it has never seen).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from _common import REPO

from willie.atomic import write_json
from willie.config import PreprocessConfig
from willie.data.dataset import ClipDataset
from willie.data.download import manifest_of
from willie.data.preprocess import run_preprocess

DATA = REPO.parent / "shared" / "data"
OPENING = DATA / "steamboat_willie_opening.mp4"  # one scene: the boat
FIRST_SHOTS = DATA / "steamboat_willie_0-18s.mp4"  # scenes: boat, wheel
SHOTS = ("boat", "wheel")


def _clips_by_scene(video: Path, size: int, stride: int, workdir: Path) -> dict[int, torch.Tensor]:
    """{scene: [N, 1, 17, size, size] in [-1, 1]} of one video, through the preprocess stage."""
    raw = workdir / video.stem / "raw"
    raw.mkdir(parents=True)
    (raw / video.name).symlink_to(video)
    write_json(raw / "manifest.json", manifest_of(raw, [video.name]))
    clips_dir = workdir / video.stem / "clips"
    run_preprocess(PreprocessConfig(size=size, stride=stride), raw, clips_dir)
    by_scene: dict[int, list[torch.Tensor]] = {}
    for split in ("train", "val"):
        dataset = ClipDataset(clips_dir, split)
        for i, scene in enumerate(dataset.shards.scene.tolist()):
            by_scene.setdefault(int(scene), []).append(dataset[i])
    return {scene: torch.stack(clips) for scene, clips in sorted(by_scene.items())}


def shot_clips(size: int = 64, stride: int = 8) -> dict[str, torch.Tensor]:
    """{"boat": [N, 1, 17, H, W], "wheel": [M, 1, 17, H, W]} in [-1, 1], in time order."""
    for path in (OPENING, FIRST_SHOTS):
        if not path.is_file():
            raise SystemExit(f"this benchmark needs the real footage at {path} (../shared)")
    with tempfile.TemporaryDirectory() as tmp:
        opening = _clips_by_scene(OPENING, size, stride, Path(tmp))
        first = _clips_by_scene(FIRST_SHOTS, size, stride, Path(tmp))
    if len(opening) != 1 or len(first) != 2:
        raise SystemExit(
            f"expected 1 scene in {OPENING.name} and 2 in {FIRST_SHOTS.name}; preprocess found "
            f"{len(opening)} and {len(first)}"
        )
    return {
        "boat": torch.cat([opening[0], first[0]]),
        "wheel": first[1],
    }
