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
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from willie.atomic import read_json
from willie.audio.losses import log_mel, resolutions
from willie.audio.measures import evaluate as evaluate_codec
from willie.audio.model import load_audio_tokenizer
from willie.data.dataset import AudioClips, pcm_to_unit
from willie.data.shards import ClipShards
from willie.data.video import decode_audio
from willie.evaluation.distribution import frechet_distance

MELS = 32


def mel_statistics(windows: torch.Tensor, rate: int) -> np.ndarray:
    """[N, S] sound windows → [N, 2 · MELS]: each log-mel band's mean and std over time."""
    n_fft = resolutions(rate)[1]
    mel = log_mel(windows[:, None].float(), rate, n_fft, MELS)  # [N, MELS, frames]
    return torch.cat([mel.mean(-1), mel.std(-1)], dim=1).numpy()


SYNC_LAGS = (6, 7, 8, 9, 10, 11, 12)  # frames: far enough apart to be chance


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    scale = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / scale) if scale > 0 else 0.0


def onset_sync(frames: np.ndarray, sound: np.ndarray) -> float:
    """frames [T, H, W], sound [T · spf] → correlation of sound onsets and picture change at
    lag 0 minus the mean at SYNC_LAGS (both directions); NaN when too short to tell."""
    T = len(frames)
    if 2 * max(SYNC_LAGS) >= T or len(sound) < T:
        return math.nan
    per_frame = sound[: len(sound) // T * T].reshape(T, -1)
    loud = np.log(np.sqrt((per_frame.astype(np.float64) ** 2).mean(1)) + 1e-4)
    onsets = np.maximum(np.diff(loud, prepend=loud[0]), 0)
    change = np.abs(np.diff(frames.astype(np.float64), axis=0)).mean((1, 2))
    change = np.concatenate([[0.0], change])
    at = _correlation(onsets[1:], change[1:])
    chance = [_correlation(onsets[1 + lag :], change[1 : T - lag]) for lag in SYNC_LAGS] + [
        _correlation(onsets[1 : T - lag], change[1 + lag :]) for lag in SYNC_LAGS
    ]
    return at - float(np.mean(chance))


def real_sync(clips_dir: Path, stride: int) -> float:
    """`onset_sync` of the real val footage with sound, each scene's clips laid end to end
    (the first `stride` frames of each: consecutive clips start `stride` frames apart)."""
    shards = ClipShards(clips_dir / "val")
    per_frame = shards.audio_per_frame
    scores = []
    for scene in np.unique(shards.scene):
        rows = [i for i in np.flatnonzero(shards.scene == scene) if shards.has_audio[i]]
        rows.sort(key=lambda i: int(shards.frame_indices[i][0]))
        if not rows:
            continue
        frames = np.concatenate([shards[i][:stride] for i in rows])
        sound = np.concatenate([shards.audio(i)[: stride * per_frame] for i in rows])
        scores.append(onset_sync(frames, pcm_to_unit(sound).numpy()))
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
    sync = [onset_sync(frames[i], sound) for i, sound in sounds]
    sync = [x for x in sync if not math.isnan(x)]
    if sync:
        metrics["av_sync"] = float(np.mean(sync))
    stride = int(read_json(clips_dir / "manifest.json").get("stride", 8))
    real_score = real_sync(clips_dir, stride)
    if not math.isnan(real_score):  # too little real footage with sound to tell: left out
        metrics["av_sync_real"] = real_score
    if reference is val and len(train) >= 2:
        others = torch.stack([train[i][0] for i in range(len(train))])
        metrics["audio_frechet_train_val"] = frechet_distance(
            mel_statistics(others, rate), real_stats
        )
    return metrics
