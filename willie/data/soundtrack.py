"""The synthetic cartoon's soundtrack, drawn from the same seed as its pictures.

Three layers, each tied to what the picture shows, so a model can learn sound with pictures and
a test can check that a clip's sound is the sound of its frames:
- a **steam whistle** toots each time a stack puffs (`SceneSound.puffs`, the moments a smoke
  puff is born): two detuned partials and a breathy attack, 0.15 s;
- a **tune** in the manner of *Turkey in the Straw*: where the mouse is at the helm he whistles
  it (a pure tone with vibrato) on the beat of his bobbing head; elsewhere a band plays it
  quietly (a reedy tone);
- the **hiss and crackle** of an old optical track.
Every scene starts its tune afresh and the sound cuts hard at each scene cut, as the picture does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TOOT_SECONDS = 0.15
TOOT_LEVEL = 0.45
WHISTLED_LEVEL = 0.30  # the mouse whistling
BAND_LEVEL = 0.12  # the band under the whistle toots
HISS_LEVEL = 0.01
# (semitones above the key, beats): the opening phrase of a fiddle tune, played over and over
TUNE: tuple[tuple[int, float], ...] = (
    (7, 0.5), (9, 0.5), (11, 1), (11, 1), (11, 0.5), (9, 0.5), (7, 0.5), (4, 0.5),
    (2, 1), (4, 0.5), (7, 0.5), (9, 1), (7, 1),
    (7, 0.5), (9, 0.5), (11, 1), (11, 0.5), (12, 0.5), (14, 1), (11, 1), (7, 2),
)  # fmt: skip


@dataclass(frozen=True)
class SceneSound:
    """What one scene of the film sounds like (times in s, from the scene's first frame)."""

    seconds: float
    puffs: tuple[float, ...]  # when a stack puffs: the whistle toots
    beat: float | None  # the mouse's head bobs per second at the helm: he whistles on it
    seed: int


def _toot(rate: int, pitch: float) -> np.ndarray:
    """One steam-whistle toot: [TOOT_SECONDS × rate] float."""
    t = np.arange(round(TOOT_SECONDS * rate)) / rate
    envelope = np.minimum(1, t / 0.012) * np.exp(-3 * t / TOOT_SECONDS)
    partials = np.sin(2 * np.pi * pitch * t) + 0.6 * np.sin(2 * np.pi * pitch * 1.26 * t)
    breath = np.random.default_rng(round(pitch)).normal(0, 0.25, len(t)) * np.exp(-t / 0.03)
    return TOOT_LEVEL * envelope * (partials / 1.6 + breath)


def _tune(rate: int, seconds: float, key_hz: float, beat_s: float, whistled: bool) -> np.ndarray:
    """The tune from its first note for `seconds`: whistled (vibrato sine) or by the band."""
    out = np.zeros(round(seconds * rate))
    start, n = 0.0, 0
    while start < seconds:
        semitones, beats = TUNE[n % len(TUNE)]
        hz = key_hz * 2 ** (semitones / 12)
        lo, hi = round(start * rate), min(len(out), round((start + beats * beat_s) * rate))
        t = np.arange(hi - lo) / rate
        envelope = np.minimum(1, t / 0.02) * np.minimum(1, ((hi - lo) / rate - t) / 0.03)
        if whistled:
            phase = 2 * np.pi * hz * t + 0.8 * np.sin(2 * np.pi * 5.5 * t)  # vibrato
            out[lo:hi] = WHISTLED_LEVEL * envelope * np.sin(phase)
        else:
            reed = sum(np.sin(2 * np.pi * k * hz * t) / k for k in (1, 3, 5))
            out[lo:hi] = BAND_LEVEL * envelope * reed / 1.5
        start += beats * beat_s
        n += 1
    return out


def render_soundtrack(scenes: Sequence[SceneSound], rate: int, seed: int) -> np.ndarray:
    """The film's mono sound at `rate` Hz, float in [-1, 1]: sample i sounds at i / rate s
    from the first frame; scenes follow each other as in the picture."""
    parts = []
    for scene in scenes:
        rng = np.random.default_rng(scene.seed)
        key_hz = 440 * 2 ** (int(rng.integers(-5, 3)) / 12)
        if scene.beat is not None:  # the mouse whistles, one note per bob of his head
            sound = _tune(rate, scene.seconds, 2 * key_hz, 0.5 / scene.beat, whistled=True)
        else:
            beat_s = 60 / float(rng.uniform(100, 140))
            sound = _tune(rate, scene.seconds, key_hz / 2, beat_s, whistled=False)
        pitch = float(rng.uniform(560, 820))
        toot = _toot(rate, pitch)
        for at in scene.puffs:
            lo = round(at * rate)
            piece = toot[: len(sound) - lo]
            sound[lo : lo + len(piece)] += piece
        parts.append(sound)
    audio = np.concatenate(parts) if parts else np.zeros(0)
    rng = np.random.default_rng(seed)
    audio += rng.normal(0, HISS_LEVEL, len(audio))
    clicks = rng.integers(0, max(1, len(audio)), size=len(audio) // rate)  # ~1 crackle a second
    audio[clicks] += rng.choice([-0.3, 0.3], size=len(clicks))
    return np.clip(audio, -1, 1).astype(np.float32)
