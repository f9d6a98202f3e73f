"""How well the audio tokenizer reconstructs sound, beside a baseline at the same bit rate.

- SI-SNR (dB, scale-invariant signal-to-noise ratio; higher is better);
- multi-resolution STFT distance (dB: mean |20 log10 |R| − 20 log10 |T|| over the STFT sizes,
  magnitudes floored at −80 dB; lower is better) and log-mel L1;
- the μ-law baseline: the same clips sent through a μ-law codec of the same bits per second
  (b bits at bps / b Hz, linear interpolation back; the best of b = 8, 4, 2), so the figures
  say what the learned codec buys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from willie.audio.losses import log_mel, resolutions, stft_magnitude
from willie.audio.model import AudioTokenizer
from willie.tokenizer.fsq import codebook_usage

FLOOR = 1e-4  # −80 dB


def si_snr(recon: Tensor, target: Tensor) -> Tensor:
    """[B, 1, S] → [B] scale-invariant SNR in dB (zero-mean signals)."""
    r = recon.flatten(1).double()
    t = target.flatten(1).double()
    r, t = r - r.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    scale = (r * t).sum(1, keepdim=True) / (t.square().sum(1, keepdim=True) + 1e-12)
    signal = scale * t
    noise = r - signal
    ratio = signal.square().sum(1) / (noise.square().sum(1) + 1e-12)
    return (10 * torch.log10(ratio + 1e-12)).float()


def stft_distance_db(recon: Tensor, target: Tensor, rate: int) -> Tensor:
    """[B, 1, S] → [B] multi-resolution log-spectral distance in dB."""
    sizes = resolutions(rate)
    total = torch.zeros(len(recon))
    for n_fft in sizes:
        r = 20 * stft_magnitude(recon, n_fft).clamp(min=FLOOR).log10()
        t = 20 * stft_magnitude(target, n_fft).clamp(min=FLOOR).log10()
        total += (r - t).abs().mean((1, 2)).cpu()
    return total / len(sizes)


def mel_distance(recon: Tensor, target: Tensor, rate: int) -> Tensor:
    """[B, 1, S] → [B] L1 between log-mel spectrograms (512-point FFT at 12 kHz scale)."""
    n_fft = resolutions(rate)[1]
    return (
        (log_mel(recon, rate, n_fft, n_fft // 8) - log_mel(target, rate, n_fft, n_fft // 8))
        .abs()
        .mean((1, 2))
        .cpu()
    )


def mulaw(audio: Tensor, bits: int, mu: float = 255.0) -> Tensor:
    """μ-law companding quantized to `bits` bits, and back."""
    levels = 2**bits
    companded = audio.sign() * torch.log1p(mu * audio.abs()) / math.log1p(mu)
    digits = ((companded + 1) / 2 * (levels - 1)).round()
    decoded = digits / (levels - 1) * 2 - 1
    return decoded.sign() * ((1 + mu) ** decoded.abs() - 1) / mu


def mulaw_codec(audio: Tensor, rate: int, bits_per_second: float, bits: int) -> Tensor:
    """[B, 1, S] through a `bits`-bit μ-law codec at bits_per_second / bits Hz."""
    samples = audio.shape[-1]
    low = max(2, round(samples * bits_per_second / bits / rate))
    down = F.interpolate(audio, size=low, mode="area")
    return F.interpolate(mulaw(down.clamp(-1, 1), bits), size=samples, mode="linear")


@dataclass
class AudioEvaluation:
    metrics: dict[str, float]
    original: np.ndarray  # [S'] float: a few val clips end to end
    recon: np.ndarray  # [S'] their reconstruction


@torch.no_grad()
def evaluate(
    model: AudioTokenizer,
    dataset: Dataset[Tensor],
    rate: int,
    device: torch.device,
    *,
    max_clips: int = 64,
    batch_size: int = 8,
    listen_clips: int = 4,
) -> AudioEvaluation:
    """The measures above over up to `max_clips` clips of `dataset` (evenly spread)."""
    model.eval()
    count = min(len(dataset), max_clips)
    picks = np.linspace(0, len(dataset) - 1, count).round().astype(int).tolist()
    bits_per_second = rate / model.arch.hop * model.arch.codebooks * math.log2(model.codebook_size)
    sums: dict[str, list[Tensor]] = {}
    indices, originals, recons = [], [], []
    for audio in DataLoader(Subset(dataset, picks), batch_size=batch_size):
        audio = audio.to(device)
        recon, idx = model(audio)
        recon = recon.clamp(-1, 1)
        indices.append(idx.cpu())
        measured = {
            "si_snr": si_snr(recon, audio).cpu(),
            "stft_distance_db": stft_distance_db(recon, audio, rate),
            "mel_distance": mel_distance(recon, audio, rate),
        }
        for bits in (8, 4, 2):
            base = mulaw_codec(audio, rate, bits_per_second, bits)
            measured[f"mulaw{bits}_si_snr"] = si_snr(base, audio).cpu()
            measured[f"mulaw{bits}_stft_distance_db"] = stft_distance_db(base, audio, rate)
        for key, value in measured.items():
            sums.setdefault(key, []).append(value)
        if len(originals) < listen_clips:
            originals += list(audio[:, 0].cpu().numpy())
            recons += list(recon[:, 0].cpu().numpy())
    means = {k: float(torch.cat(v).mean()) for k, v in sums.items()}
    best = max((8, 4, 2), key=lambda b: means[f"mulaw{b}_si_snr"])
    usage = codebook_usage(torch.cat(indices), model.codebook_size)
    metrics = {
        "si_snr": means["si_snr"],
        "stft_distance_db": means["stft_distance_db"],
        "mel_distance": means["mel_distance"],
        "baseline_si_snr": means[f"mulaw{best}_si_snr"],
        "baseline_stft_distance_db": means[f"mulaw{best}_stft_distance_db"],
        "baseline_bits": best,
        "bits_per_second": bits_per_second,
        "codebook_usage": usage.usage,
        "codebook_perplexity": usage.perplexity,
        "clips": count,
    }
    listen = slice(0, listen_clips)
    return AudioEvaluation(
        metrics, np.concatenate(originals[listen]), np.concatenate(recons[listen])
    )
