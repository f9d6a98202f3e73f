"""Finite Scalar Quantization (Mentzer et al. 2023, https://arxiv.org/abs/2309.15505).

Each of the D latent channels is squashed into a bounded range and rounded to one of
`levels[d]` values; the code is the tuple of D integers and its index a mixed-radix number,
so the implicit codebook has `prod(levels)` entries and nothing to learn or collapse.

Structure follows lucidrains' `finite_scalar_quantization.py`: `bound` → `quantize` (codes
in [-1, 1]) → `_scale_and_shift` (codes to digits 0..L-1) → `codes_to_indices`, and the exact
inverse `indices_to_codes`. Quantization runs in fp32 even under bf16 autocast: in bf16 the
rounding boundaries blur and codebook usage drops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import pack, rearrange, unpack
from torch import Tensor, nn


def round_ste(z: Tensor) -> Tensor:
    """Round in the forward pass, identity in the backward pass (straight-through)."""
    return z + (z.round() - z).detach()


class FSQ(nn.Module):
    """Quantize `[B, D, ...]` latents (D = len(levels)) to codes in [-1, 1] and integer indices."""

    def __init__(self, *, levels: list[int] | tuple[int, ...]) -> None:
        super().__init__()
        if len(levels) == 0 or any(int(level) < 2 for level in levels):
            raise ValueError(f"FSQ levels must be a non-empty list of integers ≥ 2, got {levels}")
        self.levels = tuple(int(level) for level in levels)
        self.dim = len(self.levels)
        self.codebook_size = math.prod(self.levels)
        # Mixed radix: index = Σ digit[d] · Π_{e<d} levels[e]
        basis = torch.cumprod(torch.tensor((1, *self.levels[:-1])), dim=0)
        self.register_buffer("_levels", torch.tensor(self.levels), persistent=False)
        self.register_buffer("_basis", basis, persistent=False)

    def bound(self, z: Tensor, eps: float = 1e-3) -> Tensor:
        """Squash `z` [..., D] so that rounding yields exactly `levels[d]` distinct values.

        Even levels have no zero-centred grid; their range is shifted down by half a step,
        so L = 8 rounds to -4..3 and L = 5 to -2..2.
        """
        half_l = (self._levels - 1) * (1 + eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = (offset / half_l).atanh()
        return (z + shift).tanh() * half_l - offset

    def quantize(self, z: Tensor) -> Tensor:
        """[..., D] latents -> [..., D] codes k / (L // 2) in [-1, 1]; straight-through grads."""
        half_width = self._levels // 2
        return round_ste(self.bound(z)) / half_width

    def _scale_and_shift(self, codes: Tensor) -> Tensor:
        """Codes in [-1, 1] -> digits in 0..L-1."""
        half_width = self._levels // 2
        return codes * half_width + half_width

    def _scale_and_shift_inverse(self, digits: Tensor) -> Tensor:
        """Digits in 0..L-1 -> codes in [-1, 1]."""
        half_width = self._levels // 2
        return (digits - half_width) / half_width

    def codes_to_indices(self, codes: Tensor) -> Tensor:
        """[..., D] codes -> [...] int64 indices in [0, codebook_size)."""
        if codes.shape[-1] != self.dim:
            raise ValueError(f"expected codes [..., {self.dim}], got {tuple(codes.shape)}")
        digits = self._scale_and_shift(codes.float()).round().long()
        return (digits * self._basis).sum(dim=-1)

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """[...] integer indices -> [..., D] fp32 codes; the exact inverse of `codes_to_indices`."""
        digits = (rearrange(indices.long(), "... -> ... 1") // self._basis) % self._levels
        return self._scale_and_shift_inverse(digits.float())

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z [B, D, ...] -> (codes [B, D, ...] fp32, indices [B, ...] int64)."""
        if z.shape[1] != self.dim:
            raise ValueError(f"expected z [B, {self.dim}, ...], got {tuple(z.shape)}")
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = rearrange(z.float(), "b d ... -> b ... d")
            z, packed_shape = pack([z], "b * d")
            codes = self.quantize(z)  # [B, N, D]
            indices = self.codes_to_indices(codes)  # [B, N]
            [codes] = unpack(codes, packed_shape, "b * d")
            [indices] = unpack(indices, packed_shape, "b *")
        return rearrange(codes, "b ... d -> b d ..."), indices


@dataclass(frozen=True)
class CodebookUsage:
    used: int  # distinct codes seen
    usage: float  # used / codebook_size
    perplexity: float  # exp(entropy) of the empirical code distribution, ≤ used


def codebook_usage(indices: Tensor, codebook_size: int) -> CodebookUsage:
    """How much of the codebook a tensor of indices (any shape) uses, and how evenly."""
    counts = torch.bincount(indices.flatten().long().cpu(), minlength=codebook_size)
    if counts.numel() > codebook_size:
        raise ValueError(
            f"indices reach {counts.numel() - 1}, beyond codebook_size {codebook_size}"
        )
    probs = counts.double() / counts.sum().clamp(min=1)
    nonzero = probs[probs > 0]
    entropy = -(nonzero * nonzero.log()).sum().item()
    used = int((counts > 0).sum().item())
    return CodebookUsage(used=used, usage=used / codebook_size, perplexity=math.exp(entropy))
