"""The audio tokenizer: a causal 1-D convolutional encoder/decoder with FSQ (SEANet-like, small).

Waveform [B, 1, S] (mono, [-1, 1]) → tokens [B, S / hop, codebooks] → waveform [B, 1, S].
`hop` = the product of `strides`; it divides a video frame's samples, so each video frame (and
each latent frame of 4) owns a whole number of audio tokens. Every convolution is causal: the
token of step j depends only on samples before (j + 1)·hop, and the decoded sample t only on
tokens up to ⌊t / hop⌋, so sound can be generated as it streams, beside the pictures.

Encoder: conv in → per stride s: residual units (dilated causal convs) → causal conv of kernel
2s, stride s, doubling the width → conv to codebooks × len(levels) channels → FSQ, one token per
codebook per step. The decoder mirrors it, up-sampling with non-overlapping transposed convs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from willie.errors import WillieError
from willie.tokenizer.fsq import FSQ
from willie.training.checkpoint import ArtifactArch, load_artifact, load_artifact_config


@dataclass(frozen=True)
class AudioTokenizerArch(ArtifactArch):
    """Architecture of the audio tokenizer; saved as `config.json`'s "arch"."""

    KIND: ClassVar[str] = "audio tokenizer"

    channels: int = 8  # width at the full sample rate; doubled after each stride
    strides: tuple[int, ...] = (2, 5, 5, 5)  # hop = product
    dilations: tuple[int, ...] = (1, 3)  # of the residual units at each level
    levels: tuple[int, ...] = (8, 5, 5, 5)  # FSQ levels of one codebook
    codebooks: int = 1  # tokens per step

    def __post_init__(self) -> None:
        for name in ("strides", "dilations", "levels"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.channels < 1 or not self.strides or min(self.strides) < 1:
            raise WillieError(
                f"audio tokenizer: channels ≥ 1 and strides ≥ 1 needed, got {self.channels}, "
                f"{self.strides}"
            )
        if min(self.levels, default=0) < 2 or self.codebooks < 1:
            raise WillieError(
                f"audio tokenizer: FSQ levels ≥ 2 and codebooks ≥ 1, got {self.levels}, "
                f"{self.codebooks}"
            )

    @property
    def hop(self) -> int:
        return math.prod(self.strides)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.channels * 2**i for i in range(len(self.strides) + 1))


class CausalConv1d(nn.Conv1d):
    """A Conv1d padded on the left only: output t sees inputs ≤ t·stride + stride − 1."""

    def forward(self, x: Tensor) -> Tensor:
        pad = self.dilation[0] * (self.kernel_size[0] - 1) - (self.stride[0] - 1)
        return super().forward(F.pad(x, (max(pad, 0), 0)))


class ResidualUnit(nn.Module):
    """x + conv1×1(ELU(causal conv k7, dilation d)(ELU(x)))."""

    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.conv = CausalConv1d(width, width, 7, dilation=dilation)
        self.mix = nn.Conv1d(width, width, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mix(F.elu(self.conv(F.elu(x))))


class Encoder(nn.Module):
    """[B, 1, S] → [B, codebooks · D, S / hop]."""

    def __init__(self, arch: AudioTokenizerArch) -> None:
        super().__init__()
        widths = arch.widths
        layers: list[nn.Module] = [CausalConv1d(1, widths[0], 7)]
        for i, stride in enumerate(arch.strides):
            layers += [ResidualUnit(widths[i], d) for d in arch.dilations]
            layers += [nn.ELU(), CausalConv1d(widths[i], widths[i + 1], 2 * stride, stride)]
        layers += [nn.ELU(), CausalConv1d(widths[-1], arch.codebooks * len(arch.levels), 3)]
        self.layers = nn.Sequential(*layers)

    def forward(self, audio: Tensor) -> Tensor:
        return self.layers(audio)


class Decoder(nn.Module):
    """[B, codebooks · D, n] codes → [B, 1, n · hop]."""

    def __init__(self, arch: AudioTokenizerArch) -> None:
        super().__init__()
        widths = arch.widths
        layers: list[nn.Module] = [CausalConv1d(arch.codebooks * len(arch.levels), widths[-1], 7)]
        for i, stride in reversed(list(enumerate(arch.strides))):
            layers += [nn.ELU(), nn.ConvTranspose1d(widths[i + 1], widths[i], stride, stride)]
            layers += [ResidualUnit(widths[i], d) for d in arch.dilations]
        layers += [nn.ELU()]
        self.layers = nn.Sequential(*layers)
        self.conv_out = CausalConv1d(widths[0], 1, 7)

    def forward(self, codes: Tensor) -> Tensor:
        return self.conv_out(self.layers(codes))


class AudioTokenizer(nn.Module):
    """Causal audio tokenizer: mono [B, 1, S] in [-1, 1] ↔ FSQ tokens [B, S / hop, codebooks]."""

    def __init__(self, arch: AudioTokenizerArch | None = None) -> None:
        super().__init__()
        self.arch = arch or AudioTokenizerArch()
        self.encoder = Encoder(self.arch)
        self.fsq = FSQ(levels=self.arch.levels)
        self.decoder = Decoder(self.arch)

    @property
    def codebook_size(self) -> int:
        return self.fsq.codebook_size

    @property
    def last_layer(self) -> nn.Parameter:
        return self.decoder.conv_out.weight

    def steps(self, samples: int) -> int:
        """Token steps of `samples` audio; refuses a length that is not whole hops."""
        if samples % self.arch.hop:
            raise ValueError(
                f"audio of {samples} samples is not a whole number of hops of {self.arch.hop}"
            )
        return samples // self.arch.hop

    def _quantize(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """[B, 1, S] → (codes [B, codebooks · D, n], indices [B, n, codebooks])."""
        if audio.ndim != 3 or audio.shape[1] != 1:
            raise ValueError(f"expected audio [B, 1, S], got {tuple(audio.shape)}")
        self.steps(audio.shape[-1])
        z = rearrange(self.encoder(audio), "b (k d) n -> (b k) d n", k=self.arch.codebooks)
        codes, indices = self.fsq(z)  # [(B K), D, n], [(B K), n]
        codes = rearrange(codes, "(b k) d n -> b (k d) n", k=self.arch.codebooks)
        return codes, rearrange(indices, "(b k) n -> b n k", k=self.arch.codebooks)

    def encode(self, audio: Tensor) -> Tensor:
        """[B, 1, S] → token indices [B, S / hop, codebooks] int64."""
        return self._quantize(audio)[1]

    def decode(self, indices: Tensor) -> Tensor:
        """[B, n, codebooks] indices → [B, 1, n · hop] audio (not clamped)."""
        codes = self.fsq.indices_to_codes(indices)  # [B, n, K, D]
        return self.decoder(rearrange(codes, "b n k d -> b (k d) n"))

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """audio [B, 1, S] → (recon [B, 1, S], indices [B, S / hop, codebooks])."""
        codes, indices = self._quantize(audio)
        return self.decoder(codes), indices


def load_audio_tokenizer(
    directory: str | os.PathLike[str] = "stages/audio_tokenizer",
    device: str | torch.device = "cpu",
) -> AudioTokenizer | None:
    """The trained audio tokenizer published by `willie train-audio-tokenizer`, in eval mode;
    None where the corpus had no soundtrack (its config.json says `"silent": true`)."""
    if load_artifact_config(directory, "train_audio_tokenizer").get("silent"):
        return None
    return load_artifact(
        directory, "train_audio_tokenizer", AudioTokenizer, AudioTokenizerArch, device
    )
