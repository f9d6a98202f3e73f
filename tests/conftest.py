"""Shared fixtures: the real footage beside the checkout, and a small synthetic film."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_CLIP = REPO.parent / "shared" / "data" / "steamboat_willie_opening.mp4"
SHARED_CLIP_WITH_SOUND = REPO.parent / "shared" / "data" / "steamboat_willie_0-18s.mp4"


@pytest.fixture(scope="session")
def shared_clip() -> Path:
    """7 s of the real film (640×480 pillarboxed, 29.97 fps); never copied into the project."""
    if not SHARED_CLIP.is_file():
        pytest.skip(f"real footage not available: {SHARED_CLIP} is absent (../shared missing)")
    return SHARED_CLIP


@pytest.fixture(scope="session")
def shared_clip_with_sound() -> Path:
    """18.7 s of the real film (the boat, then Mickey at the wheel; 854×480, 23.976 fps, AAC)."""
    if not SHARED_CLIP_WITH_SOUND.is_file():
        pytest.skip(f"real footage not available: {SHARED_CLIP_WITH_SOUND} is absent")
    return SHARED_CLIP_WITH_SOUND


@pytest.fixture(autouse=True)
def isolated_tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test logs to its own MLflow store and download cache, never the workspace's."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("WILLIE_CACHE_DIR", str(tmp_path / "cache"))


def synthetic_raw_dir(root: Path, *, seed: int, seconds: float) -> Path:
    """`root/raw` as `download` leaves it for a synthetic film of `seconds` (film + manifest)."""
    from willie.atomic import write_json
    from willie.data.download import manifest_of
    from willie.data.synthetic import render_synthetic_film

    raw = root / "raw"
    raw.mkdir()
    render_synthetic_film(raw / "film.mp4", seed=seed, seconds=seconds)
    write_json(raw / "manifest.json", manifest_of(raw, ["film.mp4"], "synthetic"))
    return raw
