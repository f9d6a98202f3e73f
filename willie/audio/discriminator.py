"""Multi-scale STFT discriminator (EnCodec's MS-STFTD, small): one 2-D conv net per STFT
resolution over the complex spectrogram's real and imaginary parts, judging time-frequency
patches; it returns each net's logits and its intermediate features (for feature matching)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class STFTDiscriminator(nn.Module):
    """[B, 1, S] → (logits [B, 1, frames', bins'], features) at one STFT resolution."""

    def __init__(self, n_fft: int, channels: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        c = channels
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(2, c, (3, 9), padding=(1, 4)),
                nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4)),
                nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(2, 4), dilation=(2, 1)),
                nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(4, 4), dilation=(4, 1)),
                nn.Conv2d(c, c, (3, 3), padding=(1, 1)),
            ]
        )
        self.out = nn.Conv2d(c, 1, (3, 3), padding=(1, 1))

    def forward(self, audio: Tensor) -> tuple[Tensor, list[Tensor]]:
        window = torch.hann_window(self.n_fft, device=audio.device)
        spec = torch.stft(
            rearrange(audio.float(), "b 1 s -> b s"),
            self.n_fft,
            hop_length=self.n_fft // 4,
            window=window,
            return_complex=True,
        )
        x = rearrange(torch.view_as_real(spec), "b f t c -> b c t f")  # time × frequency
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            features.append(x)
        return self.out(x), features


class MultiScaleSTFTDiscriminator(nn.Module):
    """One STFTDiscriminator per FFT size."""

    def __init__(self, n_ffts: tuple[int, ...], channels: int = 16) -> None:
        super().__init__()
        self.nets = nn.ModuleList(STFTDiscriminator(n, channels) for n in n_ffts)

    def forward(self, audio: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        """audio → ([logits per scale], [features per scale])."""
        results = [net(audio) for net in self.nets]
        return [r[0] for r in results], [r[1] for r in results]
