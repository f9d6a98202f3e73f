"""The token stream's layout: where the pictures' and the sound's tokens sit.

A stream is BOS, then per latent frame its `video` tokens (raster order) and then its `audio`
tokens (the sound of the same frames), so sound follows pictures and pictures follow sound:

    BOS | v v … v a … a | v v … v a … a | …      one period = video + audio tokens

Ids share one vocabulary: video codes 0..V−1, BOS = V, audio symbols V+1 .. V+A (the audio
codes, then NOSOUND, which marks a frame without sound). Without sound (`audio` = 0) the stream
is BOS then the video tokens, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class StreamLayout:
    video: int  # tokens per latent frame: h × w
    codebook_size: int  # V: video codes
    audio: int = 0  # audio tokens per latent frame (0: pictures only)
    audio_symbols: int = 0  # A: audio codes + NOSOUND

    @property
    def period(self) -> int:
        return self.video + self.audio

    @property
    def bos(self) -> int:
        return self.codebook_size

    @property
    def audio_offset(self) -> int:
        """Id of audio symbol 0."""
        return self.codebook_size + 1

    @property
    def nosound(self) -> int:
        """Audio symbol of a frame without sound (the last one)."""
        return self.audio_symbols - 1

    def is_audio(self, position: int) -> bool:
        """Whether the token at `position` of a stream (BOS at 0) is a sound token."""
        return self.audio > 0 and position > 0 and (position - 1) % self.period >= self.video

    def interleave(self, video: np.ndarray, audio: np.ndarray | None) -> np.ndarray:
        """video [t, h·w] codes, audio [t, G] symbols → [t · period] ids (no BOS)."""
        if self.audio == 0 or audio is None:
            return video.reshape(-1).astype(np.int64)
        frames = np.concatenate(
            [
                video.reshape(len(video), -1).astype(np.int64),
                audio.astype(np.int64) + self.audio_offset,
            ],
            axis=1,
        )
        return frames.reshape(-1)

    def split(self, ids: Tensor) -> tuple[Tensor, Tensor | None]:
        """[B, t · period] ids (no BOS) → (video codes [B, t, h·w], audio symbols [B, t, G])."""
        frames = ids.reshape(ids.shape[0], -1, self.period)
        video = frames[..., : self.video]
        if self.audio == 0:
            return video, None
        return video, frames[..., self.video :] - self.audio_offset

    def anchor_source(self, start: int, length: int) -> Tensor:
        """[length] for the inputs at positions start.. of a stream (BOS at 0): the position of
        the token at their target's place in the stream's first latent frame (the scene's
        first frame, or the prompt's), −1 where the target lies in that frame itself."""
        target = torch.arange(start + 1, start + length + 1)
        if self.period == 0:  # no layout given (a bare model): no first frame is known
            return torch.full((length,), -1)
        source = 1 + (target - 1) % self.period
        return torch.where(target > self.period, source, -1)

    def slots(self, start: int, length: int, device: torch.device | None = None) -> Tensor:
        """[length] for the inputs at positions start.. of a stream (BOS at 0): their target's
        place in its period (0..video−1 a picture's token in raster order, then the sound's)."""
        target = torch.arange(start + 1, start + length + 1, device=device)
        return (target - 1) % max(1, self.period)

    def anchors(self, stream: Tensor, start: int, length: int) -> Tensor:
        """stream [..., N] (BOS at 0) → [..., length]: the ids `anchor_source` points to for the
        inputs at positions start.. (BOS where none)."""
        source = self.anchor_source(start, length).to(stream.device)
        known = (source >= 0) & (source < stream.shape[-1])
        picked = stream[..., source.clamp(0, stream.shape[-1] - 1)]
        return torch.where(known, picked, self.bos)

    def kinds(self, start: int, length: int, device: torch.device | None = None) -> Tensor:
        """[length] bool: which positions start.. are sound tokens."""
        positions = torch.arange(start, start + length, device=device)
        if self.audio == 0:
            return torch.zeros(length, dtype=torch.bool, device=device)
        return (positions > 0) & ((positions - 1) % self.period >= self.video)
