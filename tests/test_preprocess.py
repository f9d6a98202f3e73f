import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from willie.atomic import write_json
from willie.config import PreprocessConfig
from willie.data.preprocess import (
    decode,
    detect_cuts,
    detect_picture_box,
    fit_aspect,
    frame_differences,
    retime,
    run_preprocess,
    same_shots,
    split_clips,
)
from willie.data.shards import ClipShards
from willie.data.synthetic import render_synthetic_film
from willie.data.video import Box, probe
from willie.errors import WillieError


def make_raw_dir(root: Path, *videos: Path) -> Path:
    """A `download`-stage output pointing at `videos` (linked, never copied into the project);
    its manifest names them only, so that broken files reach `preprocess`."""
    raw = root / "raw"
    raw.mkdir()
    for video in videos:
        (raw / video.name).symlink_to(video)
    write_json(
        raw / "manifest.json", {"source": "file", "files": [{"file": v.name} for v in videos]}
    )
    return raw


@pytest.fixture(scope="module")
def real_clips(shared_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("real")
    metrics = run_preprocess(PreprocessConfig(), make_raw_dir(root, shared_clip), root / "clips")
    return root / "clips", metrics


def test_real_clip_pillarbox_is_cropped(shared_clip: Path) -> None:
    # The picture spans x = 34..612 of 640 (README of the footage); the edge is anti-aliased.
    box = detect_picture_box(shared_clip, probe(shared_clip), black_level=24)
    assert 34 <= box.x <= 40 and 606 <= box.x + box.width <= 612
    assert box.y == 0 and box.height == 480


def test_real_clip_is_retimed_to_24fps_dropping_the_repeats(shared_clip: Path) -> None:
    box = fit_aspect(Box(36, 0, 574, 480), (128, 128))
    frames, _, _ = decode(shared_clip, box, (128, 128))
    d = frame_differences(frames)
    keep = retime(d, 30000 / 1001, 24.0)
    assert len(frames) == 210 and len(keep) == 168
    dropped = np.setdiff1d(np.arange(210), keep)
    # Every dropped frame is a near-copy of its predecessor; real motion is far larger.
    assert d[dropped].max() < 0.25 * np.median(d[keep][1:])
    assert np.all(np.diff(dropped) >= 3), "one repeat per ~5 frames, never two in a row"


def test_real_clip_stage_outputs(real_clips: tuple[Path, dict]) -> None:
    clips_dir, metrics = real_clips
    assert metrics["frames_decoded"] == 210
    assert metrics["frames_kept"] == 168 and metrics["duplicates_dropped"] == 42
    assert metrics["scenes"] == 1  # the opening is one continuous shot
    manifest = json.loads((clips_dir / "manifest.json").read_text())
    assert manifest["clip_shape"] == [17, 128, 128] and manifest["fps"] == 24
    assert manifest["split_rule"] == "by_time"  # one scene: val is its last 15 %
    train, val = ClipShards(clips_dir / "train"), ClipShards(clips_dir / "val")
    assert (len(train), len(val)) == (16, 2) == (metrics["clips_train"], metrics["clips_val"])
    assert train[0].shape == (17, 128, 128) and train[0].dtype == np.uint8
    # No frame is shared between train and val; each clip is 17 consecutive kept frames.
    assert set(train.frame_indices.ravel()).isdisjoint(val.frame_indices.ravel())
    assert np.all(np.diff(train.frame_indices, axis=1) == 1)
    # Bars are gone: no black columns left at the sides of the frames.
    assert train[0][:, :, :2].mean() > 40 and train[0][:, :, -2:].mean() > 40


def test_cuts_need_a_jump_above_threshold_and_local_motion() -> None:
    d = np.full(60, 0.02)
    d[0] = np.inf
    d[20] = 0.5  # a cut
    d[40:44] = 0.15  # fast motion: large but not against its neighbours
    np.testing.assert_array_equal(detect_cuts(d, threshold=0.12), [20])


def test_retime_keeps_everything_at_native_rate() -> None:
    d = np.random.default_rng(0).random(100)
    np.testing.assert_array_equal(retime(d, 24.0, 24.0), np.arange(100))
    np.testing.assert_array_equal(retime(d, 23.976, 24.0), np.arange(100))


def test_split_by_scene_keeps_scenes_whole() -> None:
    cfg = PreprocessConfig(clip_frames=5, stride=5, val_fraction=0.3)
    scenes = [(0, 50), (50, 100), (100, 150), (150, 200)]
    train, val, rule = split_clips(scenes, cfg)
    assert rule == "by_scene" and train and val
    assert {c.scene for c in train}.isdisjoint({c.scene for c in val})
    assert split_clips(scenes, cfg) == (train, val, rule)  # deterministic
    for c in train + val:
        lo, hi = scenes[c.scene]
        assert lo <= c.start and c.start + 5 <= hi


def test_too_short_video_is_refused_before_writing(shared_clip: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.mp4"
    with av.open(str(shared_clip)) as src, av.open(str(short), "w") as dst:
        stream = src.streams.video[0]
        out = dst.add_stream_from_template(stream)
        for i, packet in enumerate(src.demux(stream)):
            if i >= 12:
                break
            packet.stream = out
            dst.mux(packet)
    cfg = PreprocessConfig()
    with pytest.raises(WillieError, match="shorter than one clip"):
        run_preprocess(cfg, make_raw_dir(tmp_path, short), tmp_path / "clips")
    assert not (tmp_path / "clips").exists()


def test_truncated_video_is_refused_before_writing(shared_clip: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    data = shared_clip.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(WillieError, match=r"broken\.mp4"):
        run_preprocess(PreprocessConfig(), make_raw_dir(tmp_path, broken), tmp_path / "clips")
    assert not (tmp_path / "clips").exists()


def test_audio_only_file_is_refused(tmp_path: Path) -> None:
    audio = tmp_path / "tone.m4a"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(WillieError, match="has no video stream"):
        run_preprocess(PreprocessConfig(), make_raw_dir(tmp_path, audio), tmp_path / "clips")


def test_crash_mid_write_leaves_previous_output(
    real_clips: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips_dir = tmp_path / "clips"
    shutil.copytree(real_clips[0], clips_dir)
    before = sorted(p.relative_to(clips_dir) for p in clips_dir.rglob("*"))

    import willie.data.preprocess

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(willie.data.preprocess, "write_json", crash)  # after every shard is written
    with pytest.raises(RuntimeError, match="disk full"):
        run_preprocess(PreprocessConfig(), real_clips[0].parent / "raw", clips_dir)
    assert sorted(p.relative_to(clips_dir) for p in clips_dir.rglob("*")) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporaries left"


@pytest.fixture(scope="module")
def two_films(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A corpus of two synthetic films of different frame rates, preprocessed."""
    root = tmp_path_factory.mktemp("corpus")
    a, b = root / "a.mp4", root / "b.mp4"
    render_synthetic_film(a, seed=1, seconds=6, fps=24)
    render_synthetic_film(b, seed=2, seconds=6, fps=30)  # re-timed to 24 on its own terms
    cfg = PreprocessConfig(size=64, clip_frames=9, stride=8, val_fraction=0.3)
    metrics = run_preprocess(cfg, make_raw_dir(root, a, b), root / "clips")
    return root / "clips", metrics


def test_a_corpus_is_preprocessed_file_by_file(two_films: tuple[Path, dict]) -> None:
    clips_dir, metrics = two_films
    manifest = json.loads((clips_dir / "manifest.json").read_text())
    first, second = manifest["files"]
    assert (first["file"], second["file"]) == ("a.mp4", "b.mp4")
    assert first["frames_kept"] == first["frames_decoded"] == 144  # 24 fps: kept as it is
    assert second["frames_decoded"] == 180 and second["frames_kept"] < 180  # 30 → 24 fps
    assert metrics["files"] == 2 and metrics["frames_kept"] == 144 + second["frames_kept"]
    # Scene ids are unique across the corpus, and the file boundary is a cut.
    scenes = manifest["scenes"]
    assert [s["file"] for s in scenes] == ["a.mp4"] * len(first["scenes"]) + ["b.mp4"] * len(
        second["scenes"]
    )
    assert any(s["start"] == 144 for s in scenes)
    # No clip crosses a cut, the file boundary included; frame numbers are the corpus's.
    shards = {split: ClipShards(clips_dir / split) for split in ("train", "val")}
    for split, shard in shards.items():
        for scene, frames in zip(shard.scene, shard.frame_indices, strict=True):
            assert scenes[scene]["start"] <= frames[0] and frames[-1] < scenes[scene]["end"]
            assert scenes[scene]["split"] == split
    # Split by shot over the whole corpus: no shot on both sides.
    shots = {split: {scenes[s]["shot"] for s in shard.scene} for split, shard in shards.items()}
    assert manifest["split_rule"] == "by_scene" and shots["train"].isdisjoint(shots["val"])


def test_the_same_shot_in_two_files_stays_on_one_side(
    shared_clip: Path, shared_clip_with_sound: Path, tmp_path: Path
) -> None:
    # Both files open on the boat; the second goes on to Mickey at the wheel.
    raw = make_raw_dir(tmp_path, shared_clip, shared_clip_with_sound)
    metrics = run_preprocess(PreprocessConfig(size=64), raw, tmp_path / "clips")
    scenes = json.loads((tmp_path / "clips" / "manifest.json").read_text())["scenes"]
    boat_a, boat_b, wheel = scenes
    assert (boat_a["file"], boat_b["file"]) == (shared_clip.name, shared_clip_with_sound.name)
    assert boat_a["shot"] == boat_b["shot"] != wheel["shot"]
    assert boat_a["split"] == boat_b["split"] != wheel["split"]
    assert metrics["scenes"] == 3 and metrics["shots"] == 2
    # The opening is silent, the second file has the film's soundtrack: each clip says which.
    manifest = json.loads((tmp_path / "clips" / "manifest.json").read_text())
    assert [f["has_audio"] for f in manifest["files"]] == [False, True]
    for split in ("train", "val"):
        shards = ClipShards(tmp_path / "clips" / split)
        assert metrics[f"clips_with_audio_{split}"] == shards.has_audio.sum()
        for i, scene in enumerate(shards.scene):
            sound = shards.audio(i)
            if scenes[scene]["file"] == shared_clip.name:
                assert sound is None and not shards.has_audio[i]
            else:  # whistling, toots, the score: sound, not silence
                assert sound is not None and sound.std() > 100  # of 32,767


def test_same_shots_groups_scenes_that_show_the_same_drawing() -> None:
    rng = np.random.default_rng(0)
    look_a, look_b = rng.integers(0, 255, (2, 32, 32)).astype(np.uint8)
    frames = np.stack([look_a] * 10 + [look_b] * 10 + [np.clip(look_a + 10, 0, 255)] * 10)
    assert same_shots(frames, [(0, 10), (10, 20), (20, 30)]) == [0, 1, 0]
