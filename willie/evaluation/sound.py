"""The sound of the samples and of the audio tokenizer, by measures that use none of our models
to judge: the generated sound against the film's, and the codec's reconstruction of val clips.

- `audio_frechet`: Fréchet distance between Gaussians fitted to log-mel statistics (each band's
  mean and standard deviation over a clip-long window) of the samples' sound and of the real val
  clips' sound; `audio_frechet_train_val` is the same between real train and val clips: the
  scale of "as far as another shot of the film".
- `audio_*`: the audio tokenizer on val clips with sound (willie.audio.measures): SI-SNR and
  STFT distance beside the μ-law codec at the same bit rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from willie.atomic import read_json
from willie.audio.losses import log_mel, resolutions
from willie.audio.measures import evaluate as evaluate_codec
from willie.audio.model import load_audio_tokenizer
from willie.data.dataset import AudioClips
from willie.data.video import decode_audio
from willie.evaluation.distribution import frechet_distance

MELS = 32


def mel_statistics(windows: torch.Tensor, rate: int) -> np.ndarray:
    """[N, S] sound windows → [N, 2 · MELS]: each log-mel band's mean and std over time."""
    n_fft = resolutions(rate)[1]
    mel = log_mel(windows[:, None].float(), rate, n_fft, MELS)  # [N, MELS, frames]
    return torch.cat([mel.mean(-1), mel.std(-1)], dim=1).numpy()


def sample_windows(samples_dir: Path, rate: int, window: int) -> torch.Tensor:
    """The samples' generated sound (prompt frames left out), cut into windows: [N, window]."""
    index = read_json(samples_dir / "samples.json")
    pieces = []
    for sample in index["samples"]:
        if not sample.get("sound"):
            continue
        sound = decode_audio(samples_dir / sample["files"]["mp4"], rate)
        if sound is None:
            continue
        skip = round(sample["prompt_frames"] * rate / index["fps"])
        sound = sound[skip : round(sample["frames"] * rate / index["fps"])]  # AAC pads the end
        whole = len(sound) // window * window
        pieces.append(torch.from_numpy(sound[:whole].copy()).reshape(-1, window))
    return torch.cat(pieces) if pieces else torch.zeros(0, window)


def sound_metrics(
    clips_dir: Path, samples_dir: Path, audio_dir: Path, device: torch.device, max_clips: int
) -> dict[str, Any]:
    """The measures above; {} where the corpus or the samples have no sound."""
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
    generated = sample_windows(samples_dir, rate, real.shape[-1])
    if len(generated) >= 2:
        metrics["audio_frechet"] = frechet_distance(mel_statistics(generated, rate), real_stats)
        metrics["audio_windows"] = len(generated)
    if reference is val and len(train) >= 2:
        others = torch.stack([train[i][0] for i in range(len(train))])
        metrics["audio_frechet_train_val"] = frechet_distance(
            mel_statistics(others, rate), real_stats
        )
    return metrics
