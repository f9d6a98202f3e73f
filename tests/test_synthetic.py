"""The synthetic cartoon: a real, deterministic H.264 film with bars, cuts, motion and grain."""

from __future__ import annotations

import json
import math
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from willie.data.synthetic import (
    FRAME_HEIGHT,
    FRAME_WIDTH,
    PICTURE_BOX,
    SCENE_KINDS,
    SyntheticFilm,
    plan_scenes,
    render_frames,
    render_synthetic_film,
)
from willie.data.video import iter_gray_frames, probe
from willie.errors import WillieError

SECONDS = 8.0  # three scenes, two cuts


@pytest.fixture(scope="module")
def film(tmp_path_factory: pytest.TempPathFactory) -> SyntheticFilm:
    return render_synthetic_film(
        tmp_path_factory.mktemp("synthetic") / "film.mp4", seed=7, seconds=SECONDS
    )


@pytest.fixture(scope="module")
def decoded(film: SyntheticFilm) -> np.ndarray:
    """[T, H, W] uint8, the film as the preprocess stage will read it."""
    return np.stack([frame.pixels for frame in iter_gray_frames(film.path)])


def picture(frames: np.ndarray) -> np.ndarray:
    x, y, w, h = PICTURE_BOX
    return frames[..., y : y + h, x : x + w]


def consecutive_differences(frames: np.ndarray) -> np.ndarray:
    """[T - 1] mean absolute difference of each frame from the one before, inside the picture."""
    return np.abs(np.diff(picture(frames).astype(np.int16), axis=0)).mean(axis=(1, 2))


def test_mp4_decodes_with_declared_frame_count_size_and_fps(film, decoded):
    info = probe(film.path)
    assert (info.codec, info.width, info.height, info.fps) == (
        "h264",
        FRAME_WIDTH,
        FRAME_HEIGHT,
        24,
    )
    assert film.frames == info.frames == len(decoded) == round(SECONDS * 24)
    assert (film.width, film.height, film.fps) == (FRAME_WIDTH, FRAME_HEIGHT, 24)
    assert decoded.shape[1:] == (FRAME_HEIGHT, FRAME_WIDTH)


def test_picture_box_is_4_by_3_between_black_bars(film, decoded):
    x, _, w, h = film.picture_box
    assert film.picture_box == PICTURE_BOX
    assert w * 3 == h * 4 and x > 0 and x + w < FRAME_WIDTH
    assert decoded[:, :, :x].mean() < 10 and decoded[:, :, x + w :].mean() < 10
    assert picture(decoded).mean() > 60
    assert (picture(decoded).mean(axis=(0, 1)) > 30).all()  # no dark column inside the box


def test_cut_frames_mark_jumps_in_frame_difference(film, decoded):
    differences = consecutive_differences(decoded)
    at_cuts = differences[[cut - 1 for cut in film.cut_frames]]
    within = np.delete(differences, [cut - 1 for cut in film.cut_frames])
    assert len(film.cut_frames) == 2
    assert (at_cuts > 3 * np.median(differences)).all(), (at_cuts, np.median(differences))
    # a single threshold separates every cut from every change inside a scene
    assert at_cuts.min() > 2 * within.max(), (at_cuts, within.max())


def test_consecutive_frames_differ_within_every_scene(film, decoded):
    differences = consecutive_differences(decoded)
    within = np.delete(differences, [cut - 1 for cut in film.cut_frames])
    assert within.min() > 1.0


@pytest.mark.parametrize("kind", sorted(SCENE_KINDS))
def test_every_scene_kind_moves_from_frame_to_frame(kind):
    """Motion in the drawing itself, before grain and flicker are added."""
    painter = SCENE_KINDS[kind](np.random.default_rng(0), 320, 240, 5.0)
    pictures = []
    for t in (2.0, 2.0 + 1 / 24):
        image = Image.new("L", (320, 240))
        painter.paint(image, t)
        pictures.append(np.asarray(image).astype(np.int16))
    changed = (pictures[0] != pictures[1]).mean()
    assert changed > 0.01, f"{kind}: only {changed:.2%} of the pixels changed"


def test_same_seed_gives_identical_frames_and_bytes(tmp_path):
    a = render_synthetic_film(tmp_path / "a.mp4", seed=3, seconds=5)
    b = render_synthetic_film(tmp_path / "b.mp4", seed=3, seconds=5)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.cut_frames == b.cut_frames
    frames = np.stack(list(render_frames(seed=3, seconds=5)))
    assert np.array_equal(frames, np.stack(list(render_frames(seed=3, seconds=5))))


def test_different_seeds_give_different_films():
    plans = {plan_scenes(seed=seed, seconds=24) for seed in range(6)}
    assert len(plans) == 6
    layouts = {tuple((s.kind, s.start) for s in plan) for plan in plans}
    assert len(layouts) > 1  # scene order or lengths change, not only the hidden scene seeds
    first = next(render_frames(seed=0, seconds=2))
    assert not np.array_equal(first, next(render_frames(seed=1, seconds=2)))


@pytest.mark.parametrize(
    ("seconds", "scenes"),
    [(1, range(1, 2)), (4, range(2, 3)), (24, range(7, 10)), (60, range(17, 24))],
)
def test_scene_count_scales_with_length(seconds, scenes):
    plan = plan_scenes(seed=0, seconds=seconds)
    assert len(plan) in scenes
    assert plan[0].start == 0 and sum(s.frames for s in plan) == round(seconds * 24)
    assert all(a.start + a.frames == b.start for a, b in pairwise(plan))
    assert all(a.kind != b.kind for a, b in pairwise(plan))


def test_one_second_film_is_a_single_scene(tmp_path):
    film = render_synthetic_film(tmp_path / "short.mp4", seed=0, seconds=1)
    assert (film.frames, film.cut_frames) == (24, ())


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"seconds": 0}, "seconds"),
        ({"seconds": -3}, "seconds"),
        ({"seconds": math.nan}, "seconds"),
        ({"seconds": 2, "fps": 0}, "fps"),
        ({"seconds": 2, "seed": -1}, "seed"),
    ],
)
def test_rejects_bad_arguments_naming_the_problem(tmp_path, kwargs, problem):
    kwargs = {"seed": 0, **kwargs}
    with pytest.raises(WillieError, match=problem):
        render_synthetic_film(tmp_path / "bad.mp4", **kwargs)
    with pytest.raises(WillieError, match=problem):
        next(render_frames(**kwargs))
    assert not (tmp_path / "bad.mp4").exists()


def test_the_demo_val_split_is_a_recombination(tmp_path: Path) -> None:
    """The offline demo as params.yaml configures it (data.source: synthetic): every val scene
    is a kind of scene the train split also shows, re-arranged (its own positions, tones, camera
    height and side) — known parts in a new arrangement, not a world no model trained on."""
    from tests.conftest import synthetic_raw_dir
    from willie.config import load_section
    from willie.data.preprocess import run_preprocess

    params = Path(__file__).parents[1] / "params.yaml"
    data, cfg = load_section("data", params), load_section("preprocess", params)
    raw = synthetic_raw_dir(tmp_path, seed=data.seed, seconds=data.synthetic_seconds)
    run_preprocess(cfg, raw, tmp_path / "clips")
    manifest = json.loads((tmp_path / "clips/manifest.json").read_text())
    plan = plan_scenes(seed=data.seed, seconds=data.synthetic_seconds)
    kinds = {scene.start: scene.kind for scene in plan}
    by_split: dict[str, set[str]] = {"train": set(), "val": set()}
    for scene in manifest["scenes"]:
        by_split[scene["split"]].add(kinds[scene["start"]])
    assert by_split["val"] and by_split["val"] <= by_split["train"], by_split
