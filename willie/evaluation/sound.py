"""The sound of the samples and of the audio tokenizer, by measures that use none of our models
to judge: the generated sound against the film's, and the codec's reconstruction of val clips.

- `audio_frechet`: Fréchet distance between Gaussians fitted to log-mel statistics (each band's
  mean and standard deviation over a clip-long window) of the samples' sound and of the real val
  clips' sound; `audio_frechet_train_val` is the same between real train and val clips: the
  scale of "as far as another shot of the film".
- `audio_*`: the audio tokenizer on val clips with sound (willie.audio.measures): SI-SNR and
  STFT distance beside the μ-law codec at the same bit rate.
- `av_sync`: onset agreement of sound and picture — the correlation, frame by frame, between
  the sound's onsets (rises of its log loudness) and the picture's change (mean |frame −
  previous|) at lag 0, minus its mean at lags of 6–12 frames (what chance gives). Where a toot
  starts as a puff appears, or a cut changes both, it is positive; `av_sync_real` is the same
  on the real val footage: the scale.
- `toot_sync`: does the whistle toot where something in the picture happens — on the synthetic
  film, where a stack puffs? The onsets of the sound's energy in the whistle band
  (`WHISTLE_HZ`) against the picture's local events (each 8×8-pixel cell's change above its
  running median, ±1 frame): the best cell's correlation at lag 0 minus its mean over every
  circular shift of the sound by ≥ 3 frames (what a random phase gives; puffs and toots are
  periodic, so fixed chance lags would fall on the period). Its scale is the synthetic film's
  own: 20 s of its paddle close-up score 0.12–0.21 with their sound, −0.06–0.03 with the sound
  half a puff interval late (a test); its river and pier puffs are ~1 px at 64×64, too small
  to see, and its 3-s scenes too short to tell, so no `_real` figure is computed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from willie.atomic import read_json
from willie.audio.losses import log_mel, resolutions
from willie.audio.measures import evaluate as evaluate_codec
from willie.audio.model import load_audio_tokenizer
from willie.data.dataset import AudioClips, pcm_to_unit, split_shards
from willie.data.video import decode_audio
from willie.evaluation.distribution import frechet_distance

MELS = 32


def mel_statistics(windows: torch.Tensor, rate: int) -> np.ndarray:
    """[N, S] sound windows → [N, 2 · MELS]: each log-mel band's mean and std over time."""
    n_fft = resolutions(rate)[1]
    mel = log_mel(windows[:, None].float(), rate, n_fft, MELS)  # [N, MELS, frames]
    return torch.cat([mel.mean(-1), mel.std(-1)], dim=1).numpy()


SYNC_LAGS = (6, 7, 8, 9, 10, 11, 12)  # frames: far enough apart to be chance
# Hz: the synthetic film's whistle toots at 560–820 Hz with a partial 1.26× above
WHISTLE_HZ = (500.0, 1100.0)
CELL = 8  # px of the tokenizer-size picture: a picture token's footprint
EVENT_MEDIAN = 7  # frames: a cell's steady motion, which an event rises above


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    scale = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / scale) if scale > 0 else 0.0


def _sound_by_frame(sound: np.ndarray, T: int) -> np.ndarray:
    """[T · spf (+ rest)] → [T, spf] float64: each frame's stretch of sound."""
    return sound[: len(sound) // T * T].reshape(T, -1).astype(np.float64)


def _rises(level: np.ndarray) -> np.ndarray:
    """[T] log level → [T] its rises from the frame before (onsets), 0 where it falls."""
    return np.maximum(np.diff(level, prepend=level[0]), 0)


def onset_sync(frames: np.ndarray, sound: np.ndarray) -> float:
    """frames [T, H, W], sound [T · spf] → correlation of sound onsets and picture change at
    lag 0 minus the mean at SYNC_LAGS (both directions); NaN when too short to tell."""
    T = len(frames)
    if 2 * max(SYNC_LAGS) >= T or len(sound) < T:
        return math.nan
    per_frame = _sound_by_frame(sound, T)
    onsets = _rises(np.log(np.sqrt((per_frame**2).mean(1)) + 1e-4))
    change = np.abs(np.diff(frames.astype(np.float64), axis=0)).mean((1, 2))
    change = np.concatenate([[0.0], change])
    at = _correlation(onsets[1:], change[1:])
    chance = [_correlation(onsets[1 + lag :], change[1 : T - lag]) for lag in SYNC_LAGS] + [
        _correlation(onsets[1 : T - lag], change[1 + lag :]) for lag in SYNC_LAGS
    ]
    return at - float(np.mean(chance))


def band_onsets(sound: np.ndarray, T: int, rate: int, band: tuple[float, float]) -> np.ndarray:
    """[T · spf] sound → [T] onsets of its energy in `band` (Hz), frame by frame."""
    per_frame = _sound_by_frame(sound, T)
    spectrum = np.abs(np.fft.rfft(per_frame * np.hanning(per_frame.shape[1]), axis=1)) ** 2
    hz = np.fft.rfftfreq(per_frame.shape[1], 1 / rate)
    inside = (hz >= band[0]) & (hz < band[1])
    return _rises(np.log(spectrum[:, inside].sum(1) + 1e-6))


def local_events(frames: np.ndarray, cell: int = CELL) -> np.ndarray:
    """frames [T, H, W] → [T, cells]: each cell's mean |change| from the frame before, above
    its running median over EVENT_MEDIAN frames (steady motion is not an event), then the
    largest within ±1 frame (a toot and its puff may fall a frame apart)."""
    T, H, W = frames.shape
    change = np.abs(np.diff(frames.astype(np.float64), axis=0, prepend=frames[:1]))
    cells = change[:, : H // cell * cell, : W // cell * cell]
    cells = cells.reshape(T, H // cell, cell, W // cell, cell).mean((2, 4)).reshape(T, -1)
    half = EVENT_MEDIAN // 2
    padded = np.pad(cells, ((half, half), (0, 0)), mode="edge")
    steady = np.median(np.lib.stride_tricks.sliding_window_view(padded, EVENT_MEDIAN, 0), -1)
    events = np.maximum(cells - steady, 0)
    padded = np.pad(events, ((1, 1), (0, 0)))
    return np.maximum(np.maximum(padded[:-2], padded[1:-1]), padded[2:])


def toot_sync(frames: np.ndarray, sound: np.ndarray, rate: int, min_shift: int = 3) -> float:
    """frames [T, H, W] at the tokenizer's size, sound [T · spf] at `rate` → the best cell's
    correlation of whistle onsets and local events at lag 0, minus its mean over the circular
    shifts of the sound by min_shift … T − min_shift frames; NaN when too short to tell."""
    T = len(frames)
    if 2 * EVENT_MEDIAN + 2 * min_shift > T or len(sound) < T:
        return math.nan
    onsets = band_onsets(sound, T, rate, WHISTLE_HZ)
    events = local_events(frames)
    a = onsets - onsets.mean()
    b = events - events.mean(0)
    scale = np.sqrt((a * a).sum() * (b * b).sum(0))
    if not (scale > 0).any():
        return math.nan
    # every circular shift at once: r[s, cell] = Σ_t a[t − s] · b[t, cell] / scale
    r = np.fft.irfft(np.conj(np.fft.rfft(a))[:, None] * np.fft.rfft(b, axis=0), n=T, axis=0)
    best = (r / np.where(scale > 0, scale, np.inf)).max(1)  # [T] over the shifts
    return float(best[0] - best[min_shift : T - min_shift + 1].mean())


def real_scenes(
    clips_dir: Path, split: str, stride: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frames [T, H, W] uint8, sound [T · spf] in [-1, 1]) of each real scene with sound in
    `split`, its clips laid end to end (the first `stride` frames of each: consecutive clips
    start `stride` frames apart)."""
    shards = split_shards(clips_dir, split)
    per_frame = shards.audio_per_frame
    for scene in np.unique(shards.scene):
        rows = [i for i in np.flatnonzero(shards.scene == scene) if shards.has_audio[i]]
        rows.sort(key=lambda i: int(shards.frame_indices[i][0]))
        if not rows:
            continue
        frames = np.concatenate([shards[i][:stride] for i in rows])
        sound = np.concatenate([shards.audio(i)[: stride * per_frame] for i in rows])
        yield frames, pcm_to_unit(sound).numpy()


def _mean(scores: list[float]) -> float:
    valid = [x for x in scores if not math.isnan(x)]
    return float(np.mean(valid)) if valid else math.nan


def generated_sounds(samples_dir: Path, rate: int) -> list[tuple[int, np.ndarray]]:
    """(index in samples.json, its generated sound with the prompt frames left out) of every
    sample with sound, decoded once from its MP4."""
    index = read_json(samples_dir / "samples.json")
    sounds = []
    for i, sample in enumerate(index["samples"]):
        if not sample.get("sound"):
            continue
        sound = decode_audio(samples_dir / sample["files"]["mp4"], rate)
        if sound is None:
            continue
        skip = round(sample["prompt_frames"] * rate / index["fps"])
        sounds.append((i, sound[skip : round(sample["frames"] * rate / index["fps"])]))  # AAC pads
    return sounds


def windows_of(sounds: list[np.ndarray], window: int) -> torch.Tensor:
    """The sounds cut into whole windows: [N, window]."""
    pieces = [
        torch.from_numpy(x[: len(x) // window * window].copy()).reshape(-1, window) for x in sounds
    ]
    return torch.cat(pieces) if pieces else torch.zeros(0, window)


def sound_metrics(
    clips_dir: Path,
    samples_dir: Path,
    audio_dir: Path,
    device: torch.device,
    max_clips: int,
    frames: list[np.ndarray],
) -> dict[str, Any]:
    """The measures above; {} where the corpus or the samples have no sound. `frames`: each
    sample's generated frames [T, H, W] (prompt frames left out), in samples.json's order, as
    `evaluate` already read them."""
    codec = load_audio_tokenizer(audio_dir, device)
    if codec is None:
        return {}
    train, val = AudioClips(clips_dir, "train"), AudioClips(clips_dir, "val")
    reference = val if len(val) >= 2 else train  # without val sound, train's is the film's
    rate = reference.rate
    metrics: dict[str, Any] = {}
    recon = evaluate_codec(codec, reference, rate, device, max_clips=max_clips).metrics
    for key in ("si_snr", "stft_distance_db", "baseline_si_snr", "baseline_stft_distance_db"):
        metrics[f"audio_{key}"] = recon[key]
    real = torch.stack([reference[i][0] for i in range(len(reference))])  # [N, S]
    real_stats = mel_statistics(real, rate)
    sounds = generated_sounds(samples_dir, rate)
    generated = windows_of([sound for _, sound in sounds], real.shape[-1])
    if len(generated) >= 2:
        metrics["audio_frechet"] = frechet_distance(mel_statistics(generated, rate), real_stats)
        metrics["audio_windows"] = len(generated)
    sync = {
        "av_sync": _mean([onset_sync(frames[i], sound) for i, sound in sounds]),
        "toot_sync": _mean([toot_sync(frames[i], sound, rate) for i, sound in sounds]),
    }
    stride = int(read_json(clips_dir / "manifest.json").get("stride", 8))
    real_val = [onset_sync(f, x) for f, x in real_scenes(clips_dir, "val", stride)]
    sync["av_sync_real"] = _mean(real_val)
    # too little sound (or footage with sound) to tell: left out
    metrics |= {key: value for key, value in sync.items() if not math.isnan(value)}
    if reference is val and len(train) >= 2:
        others = torch.stack([train[i][0] for i in range(len(train))])
        metrics["audio_frechet_train_val"] = frechet_distance(
            mel_statistics(others, rate), real_stats
        )
    return metrics
