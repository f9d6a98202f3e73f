"""Audio reconstruction losses: multi-resolution STFT (spectral convergence + log magnitude) and
log-mel L1, as in Parallel WaveGAN / HiFi-GAN / DAC; and the GAN's feature matching."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

EPS = 1e-5


def stft_magnitude(audio: Tensor, n_fft: int) -> Tensor:
    """[B, 1, S] → |STFT| [B, n_fft / 2 + 1, frames] with a Hann window and hop n_fft / 4."""
    window = torch.hann_window(n_fft, device=audio.device, dtype=torch.float32)
    spec = torch.stft(
        rearrange(audio.float(), "b 1 s -> b s"),
        n_fft,
        hop_length=n_fft // 4,
        window=window,
        return_complex=True,
    )
    return spec.abs()


def resolutions(rate: int) -> tuple[int, ...]:
    """FFT sizes from ~5 ms to ~85 ms at `rate` (powers of two): 64 … 1024 at 12 kHz."""
    top = 2 ** round(math.log2(rate * 0.085))
    return tuple(top >> i for i in range(5))


def multi_resolution_stft_loss(recon: Tensor, target: Tensor, n_ffts: tuple[int, ...]) -> Tensor:
    """Mean over resolutions of spectral convergence + L1 of log magnitudes."""
    total = recon.new_zeros((), dtype=torch.float32)
    for n_fft in n_ffts:
        r, t = stft_magnitude(recon, n_fft), stft_magnitude(target, n_fft)
        convergence = (t - r).norm() / t.norm().clamp(min=EPS)
        log_mag = F.l1_loss((r + EPS).log(), (t + EPS).log())
        total = total + convergence + log_mag
    return total / len(n_ffts)


@functools.cache
def mel_filterbank(rate: int, n_fft: int, mels: int) -> Tensor:
    """[mels, n_fft / 2 + 1] triangular filters, equally spaced on the HTK mel scale."""

    def mel(hz: Tensor) -> Tensor:
        return 2595 * torch.log10(1 + hz / 700)

    def hz(m: Tensor) -> Tensor:
        return 700 * (10 ** (m / 2595) - 1)

    bins = torch.linspace(0, rate / 2, n_fft // 2 + 1)
    edges = hz(torch.linspace(0, float(mel(torch.tensor(rate / 2.0))), mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (bins - lo) / (mid - lo)
    down = (hi - bins) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0)


def log_mel(audio: Tensor, rate: int, n_fft: int = 512, mels: int = 64) -> Tensor:
    """[B, 1, S] → log-mel spectrogram [B, mels, frames]."""
    bank = mel_filterbank(rate, n_fft, mels).to(audio.device)
    return (bank @ stft_magnitude(audio, n_fft) + EPS).log()


def mel_loss(recon: Tensor, target: Tensor, rate: int) -> Tensor:
    """L1 between log-mel spectrograms at two resolutions."""
    sizes = resolutions(rate)[1:3]  # ~40 ms and ~20 ms windows
    return sum(
        F.l1_loss(log_mel(recon, rate, n, n // 8), log_mel(target, rate, n, n // 8)) for n in sizes
    ) / len(sizes)


def feature_matching_loss(fake: list[list[Tensor]], real: list[list[Tensor]]) -> Tensor:
    """Mean L1 between the discriminators' features of fake and (detached) real audio."""
    pairs = [
        (f, r.detach())
        for fs, rs in zip(fake, real, strict=True)
        for f, r in zip(fs, rs, strict=True)
    ]
    return sum(F.l1_loss(f, r) for f, r in pairs) / len(pairs)
