"""Causal sliding-window attention with ALiBi biases, behind one function and three backends.

Query i attends to keys j with i - window < j ≤ i, scored softmax(q·k/√d − slope_h·(i − j)).
The backends compute exactly that:

- `flash_attn`: flash-attn 2's `flash_attn_func(causal=True, window_size=(window - 1, 0),
  alibi_slopes=...)`; CUDA, fp16/bf16, layout [B, L, H, D]; the `gpu` extra.
- `flex`: FlexAttention with an ALiBi `score_mod` and a sliding-window `BlockMask` (CUDA for
  training; PyTorch runs its forward on CPU too, slowly).
- `sdpa`: `scaled_dot_product_attention` with an explicit float bias (ALiBi + −inf outside the
  window): any device, the CPU path, and the reference the others are tested against.

Positions are explicit so the same code serves training (queries = keys = 0..L-1) and decoding
from a rolling KV cache, whose slots hold keys in ring order with their own positions.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from willie.errors import WillieError

Backend = Literal["flash_attn", "flex", "sdpa"]
BACKENDS: tuple[Backend, ...] = ("flash_attn", "flex", "sdpa")


def alibi_slopes(heads: int) -> Tensor:
    """The ALiBi paper's per-head slopes: the geometric sequence 2^(-8/n), 2^(-16/n), … for
    n heads a power of 2; otherwise those of the next lower power of 2, then every other slope
    of the next higher one (Press et al. 2022, appendix)."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if heads & (heads - 1) == 0:
        slopes = power_of_2(heads)
    else:
        lower = 2 ** math.floor(math.log2(heads))
        slopes = power_of_2(lower) + power_of_2(2 * lower)[0::2][: heads - lower]
    return torch.tensor(slopes, dtype=torch.float32)


def window_bias(
    q_pos: Tensor, k_pos: Tensor, slopes: Tensor, window: int, dtype: torch.dtype
) -> Tensor:
    """[Lq], [Lk] positions -> additive bias [H, Lq, Lk]: −slope·(i − j) inside the causal
    window, −inf outside it (and for empty cache slots, which carry a negative position)."""
    distance = q_pos[:, None] - k_pos[None, :]  # [Lq, Lk]
    visible = (distance >= 0) & (distance < window) & (k_pos >= 0)[None, :]
    bias = -slopes.to(q_pos.device, torch.float32)[:, None, None] * distance.float()
    return bias.masked_fill(~visible, float("-inf")).to(dtype)


def sdpa_attention(
    q: Tensor, k: Tensor, v: Tensor, slopes: Tensor, window: int, q_pos: Tensor, k_pos: Tensor
) -> Tensor:
    """q [B, H, Lq, D], k/v [B, H, Lk, D] -> [B, H, Lq, D] through SDPA with a float bias."""
    bias = window_bias(q_pos, k_pos, slopes, window, q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


@functools.lru_cache(maxsize=32)
def _block_mask(length: int, window: int, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    def sliding_window(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return (q_idx >= kv_idx) & (q_idx - kv_idx < window)

    return create_block_mask(sliding_window, None, None, length, length, device=device)


@functools.cache
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def flex_attention(q: Tensor, k: Tensor, v: Tensor, slopes: Tensor, window: int) -> Tensor:
    """Self-attention over one sequence (Lq = Lk, positions 0..L-1), [B, H, L, D]."""
    from torch.nn.attention.flex_attention import flex_attention as eager_flex

    slopes = slopes.to(q.device, torch.float32)

    def alibi(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return score - slopes[h] * (q_idx - kv_idx)

    mask = _block_mask(q.shape[2], window, str(q.device))
    run = _compiled_flex() if q.is_cuda else eager_flex  # compiled: the fused kernel
    return run(q, k, v, score_mod=alibi, block_mask=mask)


def flash_attention(q: Tensor, k: Tensor, v: Tensor, slopes: Tensor, window: int) -> Tensor:
    """Self-attention over one sequence through flash-attn 2, [B, H, L, D] in and out."""
    from flash_attn import flash_attn_func

    dtype = q.dtype if q.dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
    q, k, v = (t.transpose(1, 2).to(dtype) for t in (q, k, v))  # [B, L, H, D]
    out = flash_attn_func(
        q,
        k,
        v,
        causal=True,
        window_size=(window - 1, 0),
        alibi_slopes=slopes.to(q.device, torch.float32),
    )
    return out.transpose(1, 2)


def available_backends(device: torch.device) -> list[Backend]:
    """Backends that can run on `device`, fastest first."""
    found: list[Backend] = []
    if device.type == "cuda":
        if importlib.util.find_spec("flash_attn") is not None:
            found.append("flash_attn")
        found.append("flex")
    found.append("sdpa")
    return found


def resolve_backend(requested: str, device: torch.device) -> Backend:
    """`auto` -> the fastest available backend; a named one is checked to be usable."""
    available = available_backends(device)
    if requested == "auto":
        return available[0]
    if requested == "flex" and device.type != "cuda":
        raise WillieError(
            "transformer.attention=flex trains only on CUDA (PyTorch's FlexAttention has no CPU "
            "backward); use `auto` or `sdpa` on CPU"
        )
    if requested not in available:
        why = (
            "it needs a CUDA GPU"
            if device.type != "cuda"
            else "flash-attn is not installed (pip install -e '.[gpu]')"
        )
        raise WillieError(
            f"transformer.attention={requested} is unavailable here: {why}. Available: "
            f"{', '.join(available)} (or `auto`)"
        )
    return requested  # type: ignore[return-value]


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    slopes: Tensor,
    window: int,
    backend: Backend = "sdpa",
    q_pos: Tensor | None = None,
    k_pos: Tensor | None = None,
) -> Tensor:
    """ALiBi causal sliding-window attention: q [B, H, Lq, D], k/v [B, H, Lk, D] -> [B, H, Lq, D].

    Without positions, q and k are the same sequence at 0..L-1 (training, prefill) and any
    backend runs; with positions (decoding from a rolling cache) the SDPA path runs.
    """
    if q_pos is None and k_pos is None and q.shape[2] == k.shape[2]:
        if backend == "flash_attn":
            return flash_attention(q, k, v, slopes, window).to(q.dtype)
        if backend == "flex":
            return flex_attention(q, k, v, slopes, window)
        q_pos = k_pos = torch.arange(q.shape[2], device=q.device)
    if q_pos is None or k_pos is None:
        raise ValueError("q_pos and k_pos are needed when queries and keys differ")
    return sdpa_attention(q, k, v, slopes, window, q_pos, k_pos)
