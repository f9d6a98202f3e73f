"""The soundtrack: the synthetic film's procedural sound, and each clip's sound being the sound
of its own frames after `preprocess`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import synthetic_raw_dir
from willie.config import PreprocessConfig
from willie.data.preprocess import run_preprocess
from willie.data.shards import ClipShards
from willie.data.soundtrack import TOOT_SECONDS, SceneSound, render_soundtrack
from willie.data.synthetic import plan_scenes, scene_sounds
from willie.data.video import decode_audio, probe, write_mp4

RATE = 12_000


def best_lag(clip: np.ndarray, reference: np.ndarray, at: int, span: int) -> int:
    """The shift of `clip` against `reference[at:]` (in samples, within ±span) that correlates
    best (normalized: a louder stretch of the reference does not win by loudness)."""

    def score(piece: np.ndarray) -> float:
        return float(np.dot(clip, piece) / (np.linalg.norm(piece) + 1e-9))

    scores = {
        lag: score(reference[at + lag : at + lag + len(clip)])
        for lag in range(-span, span + 1)
        if at + lag >= 0 and at + lag + len(clip) <= len(reference)
    }
    return max(scores, key=scores.__getitem__)


def test_whistle_toots_as_each_puff_leaves_the_stack() -> None:
    puffs = (0.4, 1.1, 1.7)
    audio = render_soundtrack([SceneSound(2.5, puffs, None, seed=3)], RATE, seed=0)
    energy = lambda lo, hi: float(np.mean(audio[round(lo * RATE) : round(hi * RATE)] ** 2))  # noqa: E731
    for at in puffs:  # loud while it toots, the band alone just before
        assert energy(at, at + TOOT_SECONDS / 2) > 4 * energy(at - 0.1, at)


def test_the_mouse_whistles_only_at_the_helm() -> None:
    scenes = plan_scenes(seed=0, seconds=24)
    sounds = scene_sounds(scenes, fps=24)
    for scene, sound in zip(scenes, sounds, strict=True):
        assert (sound.beat is not None) == (scene.kind == "helm")
        assert bool(sound.puffs) == (scene.kind != "helm")  # every other scene has a stack
        assert all(0 <= t < scene.frames / 24 for t in sound.puffs)


def test_mp4_audio_round_trip_keeps_time(tmp_path: Path) -> None:
    fps, frames = 24, 36
    t = np.arange(frames * RATE // fps) / RATE
    audio = (0.3 * np.sin(2 * np.pi * 700 * t) * (np.sin(2 * np.pi * 1.3 * t) > 0)).astype(
        np.float32
    )
    pictures = np.zeros((frames, 32, 32), np.uint8)
    write_mp4(tmp_path / "a.mp4", pictures, fps, audio=audio, audio_rate=RATE)
    info = probe(tmp_path / "a.mp4")
    assert info.audio is not None and (info.audio.codec, info.audio.channels) == ("aac", 1)
    decoded = decode_audio(tmp_path / "a.mp4", RATE)
    assert decoded is not None and len(decoded) >= len(audio)
    assert best_lag(audio[1000:-1000], decoded, 1000, 200) == 0  # AAC's priming is undone
    assert decode_audio(write_silent(tmp_path), RATE) is None


def write_silent(root: Path) -> Path:
    write_mp4(root / "silent.mp4", np.zeros((3, 16, 16), np.uint8), 24)
    return root / "silent.mp4"


def test_synthetic_film_carries_its_soundtrack(tmp_path: Path) -> None:
    raw = synthetic_raw_dir(tmp_path, seed=0, seconds=3)
    info = probe(raw / "film.mp4")
    assert info.audio is not None and info.audio.codec == "aac" and info.audio.channels == 1


@pytest.mark.parametrize("fps", [24, 30])  # 30: re-timed to 24 by dropping frames
def test_each_clips_sound_is_the_sound_of_its_frames(tmp_path: Path, fps: int) -> None:
    from willie.atomic import write_json
    from willie.data.download import manifest_of
    from willie.data.synthetic import render_synthetic_film

    raw = tmp_path / "raw"
    raw.mkdir()
    render_synthetic_film(raw / "film.mp4", seed=4, seconds=8, fps=fps)
    write_json(raw / "manifest.json", manifest_of(raw, ["film.mp4"], "synthetic"))
    cfg = PreprocessConfig(size=32, clip_frames=9, stride=8, audio_rate=RATE)
    run_preprocess(cfg, raw, tmp_path / "clips")
    track = decode_audio(raw / "film.mp4", RATE)
    scenes = plan_scenes(seed=4, seconds=8, fps=fps)
    puffs = [  # when a whistle toot starts, on the film's clock
        scene.start / fps + t
        for scene, sound in zip(scenes, scene_sounds(scenes, fps), strict=True)
        for t in sound.puffs
    ]
    frame = RATE // 24
    toots = 0
    for split in ("train", "val"):
        shards = ClipShards(tmp_path / "clips" / split)
        assert shards.has_audio.all() and shards.audio_rate == RATE
        for i in range(len(shards)):
            sound = shards.audio(i).astype(np.float32) / 32767
            assert len(sound) == 9 * frame  # exactly the clip's 9 frames
            start = shards.start_time_s[i]  # the clip's first frame, on the film's clock
            at = round(start * RATE)
            np.testing.assert_allclose(sound, track[at : at + len(sound)], atol=1 / 32767)
            # and what sounds in it is what its frames show: a toot begins as a puff is born,
            # within one frame
            for puff in puffs:
                lo = round((puff - start) * RATE)
                if frame <= lo <= len(sound) - frame:
                    before = np.mean(sound[lo - frame : lo] ** 2)
                    assert np.mean(sound[lo : lo + frame] ** 2) > 3 * before
                    toots += 1
    assert toots >= 5


def close_up(seed: int, seconds: float) -> tuple[np.ndarray, np.ndarray, float]:
    """The film's paddle close-up for `seconds`, as the models see it (the middle 240 columns,
    aged, area-downsampled to 64×64), its sound at 12 kHz, and its puff interval in frames."""
    import torch
    from PIL import Image

    from willie.data.synthetic import AUDIO_RATE, OldFilm, Scene, _painter

    scene = Scene("paddle_closeup", start=0, frames=round(seconds * 24), mirrored=False, seed=seed)
    painter, film = _painter(scene, 24), OldFilm(seed, 240, 320)
    frames = []
    for i in range(scene.frames):
        image = Image.new("L", (320, 240))
        painter.paint(image, i / 24)
        frames.append(film.age(np.asarray(image))[:, 40:280])
    x = torch.from_numpy(np.stack(frames)).float()[:, None]
    small = torch.nn.functional.interpolate(x, size=(64, 64), mode="area")[:, 0].numpy()
    sound = render_soundtrack(scene_sounds([scene], 24), AUDIO_RATE, seed)[:: AUDIO_RATE // RATE]
    return small, sound, painter.smoke.interval * 24


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_toot_sync_hears_the_films_whistle_with_its_puffs(seed: int) -> None:
    """`evaluate`'s toot_sync on the film itself, where its puffs are big enough to see at the
    models' 64×64 (the paddle close-up): positive with its own sound (measured 0.12–0.21 over
    seeds 1–5), about chance with the sound half a puff interval late (−0.06–0.03)."""
    from willie.evaluation.sound import toot_sync

    frames, sound, interval = close_up(seed, 20.0)
    late = np.roll(sound, round(interval / 2) * (RATE // 24))
    together, apart = toot_sync(frames, sound, RATE), toot_sync(frames, late, RATE)
    assert together > 0.1 and apart < 0.05, (together, apart)
