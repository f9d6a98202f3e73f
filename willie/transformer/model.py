"""The decoder-only token transformer over FSQ codes.

    ids [B, L] (codes 0..V-1, BOS = V: the scene-start token, and with sound the audio symbols
    V+1..V+A: willie.transformer.layout)
      → TokenEmbedding: the sum of one small table per FSQ dimension (11^5 codes: 5×11 rows);
        one table row per audio symbol; with `frame_positions`, plus a learned vector for the
        place in its latent frame that the input predicts (row and column, or sound slot)
      → layers × Block: pre-RMSNorm, ALiBi causal sliding-window attention, SwiGLU MLP
      → RMSNorm → head:
          joint       one softmax over the V codes (small codebooks)
          factorized  one softmax per FSQ dimension d, conditioned on the digits of the
                      dimensions before it: p(code) = Π_d p(digit_d | h, digit_<d), exact, so
                      its bits/token compare with the joint head's
          audio       one softmax over the A audio symbols, for the positions that hold sound
    loss in nats per predicted token (bits = nats / ln 2)

No learned absolute positions: ALiBi biases make attention depend on distance only, and the
window bounds it, so the model runs on sequences longer than it was trained on and decodes
from a rolling KV cache of `window` entries (memory and per-token time stay flat). The place
in the latent frame (`frame_positions`) repeats every period, so it bounds nothing: it tells
a token of the scene's first frame, which has no frames before to look at, where it is drawn.
`positions="learned"` exists as the baseline that shows why (bench/bench_transformer.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from willie.errors import WillieError
from willie.training.checkpoint import ArtifactArch, load_artifact
from willie.transformer.attention import Backend, alibi_slopes, attention
from willie.transformer.layout import StreamLayout

IGNORE = -1  # target of a position that has no next token (padding)


@dataclass(frozen=True)
class TransformerArch(ArtifactArch):
    """The model's shape; saved as `config.json` beside `model.safetensors`."""

    KIND: ClassVar[str] = "transformer"

    levels: tuple[int, ...]  # the tokenizer's FSQ levels: codebook = Π levels
    layers: int = 4
    heads: int = 4
    width: int = 256
    mlp_ratio: float = 4.0
    window: int = 256  # attention span in tokens (the query included)
    context: int = 512  # training length; learned positions cover 2× of it
    head: Literal["joint", "factorized"] = "factorized"
    positions: Literal["alibi", "learned"] = "alibi"
    dropout: float = 0.0
    # Tokens per latent frame (h·w); > 0 feeds every prediction the tokens at its own place in
    # the `frame_history` latent frames before (input embeddings, and learned digit-transition
    # biases in the factorized head): what a still background makes likely, in any scene; more
    # than one frame lets the digits return to where they were (jitter, not a random walk).
    frame_tokens: int = 0
    frame_history: int = 1
    # Each prediction also sees the token at its place in the stream's first latent frame (the
    # scene's first frame, or the prompt's), however far back: an anchor that a still
    # background can return to after the attention window and the frames before have passed.
    anchor: bool = False
    # A learned vector per place in the stream's period (video_tokens in raster order, then the
    # sound's), added to each input for the place its target takes: ALiBi tells distances only,
    # so without it the scene's first latent frame (no frames before, no anchor yet) does not
    # know which row and column it draws, and comes out as texture.
    frame_positions: bool = False
    # Tokens per row of the latent frame (w); > 0 feeds every prediction the token above its
    # place in the same latent frame (drawn already: raster order), which attention alone
    # reaches only w tokens back: the digits of a line or an edge continue down the frame.
    row_tokens: int = 0
    # The stream's layout (willie.transformer.layout): video and audio tokens per latent frame
    # and the audio symbols (codes + NOSOUND); audio_symbols 0: pictures only.
    video_tokens: int = 0
    audio_tokens: int = 0
    audio_symbols: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(int(v) for v in self.levels))
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise WillieError(
                f"transformer.heads ({self.heads}) must divide transformer.width ({self.width}) "
                "into an even head size"
            )
        if not 1 <= self.window <= self.context:
            raise WillieError(
                f"transformer.window ({self.window}) must be in 1..context ({self.context})"
            )
        if self.frame_tokens < 0 or self.frame_history < 1:
            raise WillieError(
                f"frame_tokens must be ≥ 0 and frame_history ≥ 1, got {self.frame_tokens} and "
                f"{self.frame_history}"
            )
        if self.anchor and self.video_tokens <= 0:
            raise WillieError("an anchor needs the stream's layout (video_tokens > 0)")
        if self.frame_positions and self.video_tokens <= 0:
            raise WillieError("frame positions need the stream's layout (video_tokens > 0)")
        rows = self.row_tokens and (self.video_tokens <= 0 or self.video_tokens % self.row_tokens)
        if self.row_tokens < 0 or rows:
            raise WillieError(
                f"row_tokens ({self.row_tokens}) must divide video_tokens ({self.video_tokens}), "
                "the stream's layout"
            )
        if not self.levels or min(self.levels) < 2:
            raise WillieError(f"FSQ levels must be integers ≥ 2, got {self.levels}")

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    @property
    def history(self) -> int:
        """Columns of `TokenTransformer.frame_before`: the latent frames before (where
        frame_tokens > 0), the token above (where row_tokens > 0), then the anchor."""
        frames = self.frame_history if self.frame_tokens else 0
        return frames + int(self.row_tokens > 0) + int(self.anchor)

    @property
    def bos(self) -> int:
        """The scene-start token's id: one past the last code."""
        return self.codebook_size

    @property
    def layout(self) -> StreamLayout:
        return StreamLayout(
            self.video_tokens, self.codebook_size, self.audio_tokens, self.audio_symbols
        )


class Digits(nn.Module):
    """Codes <-> their FSQ digits (mixed radix, the tokenizer's `FSQ.codes_to_indices` order)."""

    def __init__(self, levels: Sequence[int]) -> None:
        super().__init__()
        basis = torch.cumprod(torch.tensor((1, *levels[:-1])), dim=0)
        self.register_buffer("levels", torch.tensor(levels), persistent=False)
        self.register_buffer("basis", basis, persistent=False)

    def split(self, codes: Tensor) -> Tensor:
        """[...] codes -> [..., D] digits."""
        return (codes[..., None] // self.basis) % self.levels

    def join(self, digits: Tensor) -> Tensor:
        """[..., D] digits -> [...] codes."""
        return (digits * self.basis).sum(-1)


class TokenEmbedding(nn.Module):
    """ids [B, L] -> [B, L, C]: Σ_d table_d[digit_d] for codes; a learned vector for BOS; a row
    of its own per audio symbol (ids past BOS)."""

    def __init__(self, levels: Sequence[int], width: int, audio_symbols: int = 0) -> None:
        super().__init__()
        self.digits = Digits(levels)
        self.bos = math.prod(levels)
        offsets = torch.cumsum(torch.tensor((0, *levels[:-1])), dim=0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.table = nn.Embedding(sum(levels), width)
        self.bos_vector = nn.Parameter(torch.zeros(width))
        self.audio = nn.Embedding(audio_symbols, width) if audio_symbols else None

    def forward(self, ids: Tensor) -> Tensor:
        is_bos = ids == self.bos
        rows = self.digits.split(ids.clamp(max=self.bos - 1)) + self.offsets  # [B, L, D]
        x = self.table(rows).sum(-2)  # [B, L, C]
        x = torch.where(is_bos[..., None], self.bos_vector.to(x.dtype), x)
        if self.audio is not None:
            symbol = (ids - self.bos - 1).clamp(0, self.audio.num_embeddings - 1)
            x = torch.where((ids > self.bos)[..., None], self.audio(symbol).to(x.dtype), x)
        return x


class KVCache:
    """A rolling buffer of the last `size` keys and values of one layer, for decoding.

    Slot p mod size holds position p; attention masks by the stored positions (−1 = empty), so
    the ring order never matters and memory stays [B, H, size, D] however long the sequence.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.k: Tensor | None = None
        self.v: Tensor | None = None
        self.pos: Tensor | None = None

    @property
    def empty(self) -> bool:
        return self.pos is None

    def append(self, k: Tensor, v: Tensor, pos: Tensor) -> None:
        """k, v [B, H, n, D] at positions pos [n] (ascending); keeps the last `size`."""
        k, v, pos = k[:, :, -self.size :], v[:, :, -self.size :], pos[-self.size :]
        if self.k is None or self.v is None or self.pos is None:
            B, H, _, D = k.shape
            self.k = k.new_zeros(B, H, self.size, D)
            self.v = v.new_zeros(B, H, self.size, D)
            self.pos = torch.full((self.size,), -1, dtype=torch.long, device=k.device)
        slots = pos % self.size
        self.k[:, :, slots] = k
        self.v[:, :, slots] = v
        self.pos[slots] = pos


class Attention(nn.Module):
    def __init__(self, arch: TransformerArch) -> None:
        super().__init__()
        self.heads, self.window = arch.heads, arch.window
        self.qkv = nn.Linear(arch.width, 3 * arch.width, bias=False)
        self.proj = nn.Linear(arch.width, arch.width, bias=False)
        slopes = alibi_slopes(arch.heads) if arch.positions == "alibi" else torch.zeros(arch.heads)
        self.register_buffer("slopes", slopes, persistent=False)
        self.backend: Backend = "sdpa"

    def forward(self, x: Tensor, pos: Tensor, cache: KVCache | None = None) -> Tensor:
        """x [B, L, C] at positions pos [L] -> [B, L, C]."""
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        common = {"slopes": self.slopes, "window": self.window}
        if cache is None or cache.empty:  # training, or the prompt (prefill)
            out = attention(q, k, v, backend=self.backend, **common)
            if cache is not None:
                cache.append(k, v, pos)
        else:  # one new token against the rolling cache
            if x.shape[1] != 1:
                raise ValueError("decode one token at a time once the cache holds a prefix")
            cache.append(k, v, pos)
            out = attention(q, cache.k, cache.v, q_pos=pos, k_pos=cache.pos, **common)
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))


class SwiGLU(nn.Module):
    def __init__(self, width: int, ratio: float) -> None:
        super().__init__()
        hidden = 8 * round(ratio * width * 2 / 3 / 8)  # SwiGLU's 2/3 keeps the parameter count
        self.gate_up = nn.Linear(width, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, arch: TransformerArch) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(arch.width)
        self.attn = Attention(arch)
        self.norm2 = nn.RMSNorm(arch.width)
        self.mlp = SwiGLU(arch.width, arch.mlp_ratio)
        self.dropout = nn.Dropout(arch.dropout)

    def forward(self, x: Tensor, pos: Tensor, cache: KVCache | None = None) -> Tensor:
        x = x + self.dropout(self.attn(self.norm1(x), pos, cache))
        return x + self.dropout(self.mlp(self.norm2(x)))


class JointHead(nn.Module):
    """One softmax over all codes."""

    def __init__(self, levels: Sequence[int], width: int) -> None:
        super().__init__()
        self.out = nn.Linear(width, math.prod(levels), bias=False)

    def loss(self, h: Tensor, targets: Tensor, before: Tensor | None = None) -> Tensor:
        """h [B, L, C], targets [B, L] -> mean nats per valid target (`before`: unused)."""
        logits = self.out(h).float()
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)

    def sample(self, h: Tensor, pick: Any, before: Tensor | None = None) -> Tensor:
        """h [B, C] -> codes [B], `pick(logits [B, V]) -> [B]` choosing among the logits."""
        return pick(self.out(h).float())


class FactorizedHead(nn.Module):
    """One softmax per FSQ dimension, each conditioned on the digits of the ones before it.

    Dimension d reads h + Σ_{e<d} cond_e[digit_e]: teacher-forced with the true digits in
    training, the sampled ones in generation. Cost: Σ levels outputs instead of Π levels.

    With `history` = K > 0, dimension d's logits also get Σ_k T_kd[u_k, v] for digit v when the
    target's place held digit u_k k latent frames before (`before` [..., K], BOS where unknown):
    K·levels_d² shared weights that learn how a digit moves from frame to frame, in any scene.
    """

    def __init__(self, levels: Sequence[int], width: int, history: int = 0) -> None:
        super().__init__()
        self.levels = tuple(levels)
        self.bos = math.prod(levels)
        self.digits = Digits(levels)
        self.outs = nn.ModuleList(nn.Linear(width, n, bias=False) for n in levels)
        self.conds = nn.ModuleList(nn.Embedding(n, width) for n in levels[:-1])
        tables = (nn.Parameter(torch.zeros(history, n, n)) for n in levels)
        self.transitions = nn.ParameterList(tables) if history else None

    def _logits(self, d: int, h: Tensor, before: Tensor | None) -> Tensor:
        """Dimension d's logits [..., levels_d] from h [..., C] and the codes before [..., K]."""
        logits = self.outs[d](h).float()
        if self.transitions is not None and before is not None:
            known = (before != self.bos)[..., None]  # [..., K, 1]
            digit = self.digits.split(before.clamp(max=self.bos - 1))[..., d]  # [..., K]
            k = torch.arange(before.shape[-1], device=before.device)
            bias = self.transitions[d][k, digit]  # [..., K, levels_d]
            logits = logits + torch.where(known, bias, 0.0).sum(-2)
        return logits

    def dimension_losses(self, h: Tensor, targets: Tensor, before: Tensor | None = None) -> Tensor:
        """h [B, L, C], targets [B, L] -> [D] mean nats per valid target, one per dimension."""
        valid = targets != IGNORE
        digits = self.digits.split(targets.clamp(min=0))  # [B, L, D]
        losses = []
        for d in range(len(self.outs)):
            logits = self._logits(d, h, before)  # [B, L, levels[d]]
            nats = F.cross_entropy(logits.flatten(0, 1), digits[..., d].flatten(), reduction="none")
            losses.append((nats * valid.flatten()).sum() / valid.sum().clamp(min=1))
            if d < len(self.conds):
                h = h + self.conds[d](digits[..., d])
        return torch.stack(losses)

    def loss(self, h: Tensor, targets: Tensor, before: Tensor | None = None) -> Tensor:
        return self.dimension_losses(h, targets, before).sum()

    def sample(self, h: Tensor, pick: Any, before: Tensor | None = None) -> Tensor:
        digits = []
        for d in range(len(self.outs)):
            digit = pick(self._logits(d, h, before))  # [B]
            digits.append(digit)
            if d < len(self.conds):
                h = h + self.conds[d](digit)
        return self.digits.join(torch.stack(digits, dim=-1))


class TokenTransformer(nn.Module):
    """ids [B, L] -> hidden states [B, L, C]; `loss` and `sample` through the head."""

    def __init__(self, arch: TransformerArch) -> None:
        super().__init__()
        self.arch = arch
        self.embed = TokenEmbedding(arch.levels, arch.width, arch.audio_symbols)
        history = arch.history
        self.embed_before = nn.ModuleList(
            TokenEmbedding(arch.levels, arch.width, arch.audio_symbols) for _ in range(history)
        )
        self.positions = (
            nn.Embedding(2 * arch.context, arch.width) if arch.positions == "learned" else None
        )
        self.frame_positions = (
            nn.Embedding(arch.layout.period, arch.width) if arch.frame_positions else None
        )
        self.blocks = nn.ModuleList(Block(arch) for _ in range(arch.layers))
        self.norm = nn.RMSNorm(arch.width)
        if arch.head == "factorized":
            self.head: FactorizedHead | JointHead = FactorizedHead(
                arch.levels, arch.width, history=history
            )
        else:
            self.head = JointHead(arch.levels, arch.width)
        self.audio_head = (
            nn.Linear(arch.width, arch.audio_symbols, bias=False) if arch.audio_symbols else None
        )
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale the residual projections
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * arch.layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def set_backend(self, backend: Backend) -> None:
        for block in self.blocks:
            block.attn.backend = backend

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def frame_before(
        self, ids: Tensor, anchors: Tensor | None = None, slots: Tensor | None = None
    ) -> Tensor:
        """ids [B, L] (a sequence from BOS, or a training window) -> [B, L, K]: for each input,
        the tokens k = 1..K latent frames before its target, the one the input predicts (BOS
        where that lies before the first id); with `arch.row_tokens` the token above the target
        in its latent frame, which needs `slots` [B, L] or [L] (`StreamLayout.slots`: each
        target's place in its period; BOS where None, in the frame's first row, or before the
        first id); with `arch.anchor` a last column, `anchors` [B, L] (`StreamLayout.anchors`:
        they lie outside a window; BOS where None)."""
        L, n = ids.shape[1], self.arch.frame_tokens
        before = torch.full((*ids.shape, self.arch.history), self.arch.bos).to(ids)
        frames = self.arch.frame_history if n else 0
        for k in range(1, frames + 1):
            if k * n <= L:
                before[:, k * n - 1 :, k - 1] = ids[:, : L - k * n + 1]
        w = self.arch.row_tokens
        if w and slots is not None and w <= L:
            # the input at i predicts i + 1; the token above that is the input at i + 1 - w
            slots = slots.expand(ids.shape)[:, w - 1 :]
            below = (slots >= w) & (slots < self.arch.video_tokens)
            above = torch.where(below, ids[:, : L - w + 1], self.arch.bos)
            before[:, w - 1 :, frames] = above
        if self.arch.anchor and anchors is not None:
            before[..., -1] = anchors
        return before

    def hidden(
        self,
        ids: Tensor,
        start: int = 0,
        caches: list[KVCache] | None = None,
        before: Tensor | None = None,
        slots: Tensor | None = None,
    ) -> Tensor:
        """ids [B, L] at positions start.. -> final hidden states [B, L, C].

        before [B, L, K]: `frame_before` of the ids; computed from them when None, which is
        right where they start the sequence or a training window (not for one decoded token).
        slots [B, L] or [L]: each target's place in its period (`StreamLayout.slots`), for
        `frame_positions`; when None, those of a stream whose BOS is at position 0.
        """
        pos = torch.arange(start, start + ids.shape[1], device=ids.device)
        x = self.embed(ids)
        if self.frame_positions is not None:
            if slots is None:
                slots = self.arch.layout.slots(start, ids.shape[1], ids.device)
            x = x + self.frame_positions(slots)  # [B or 1, L, C]
        if len(self.embed_before):
            before = self.frame_before(ids) if before is None else before
            for k, embed in enumerate(self.embed_before):
                x = x + embed(before[..., k])
        if self.positions is not None:
            if pos[-1] >= self.positions.num_embeddings:
                raise WillieError(
                    f"learned positions end at {self.positions.num_embeddings}; position "
                    f"{int(pos[-1])} needs ALiBi (transformer.positions: alibi)"
                )
            x = x + self.positions(pos)
        for i, block in enumerate(self.blocks):
            x = block(x, pos, caches[i] if caches is not None else None)
        return self.norm(x)

    def losses(
        self,
        ids: Tensor,
        targets: Tensor,
        anchors: Tensor | None = None,
        slots: Tensor | None = None,
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """ids, targets [B, L] (targets = ids shifted left, IGNORE where none), anchors and
        slots [B, L] (`frame_before`) -> per kind of target ("video", and with sound "audio"
        and its subset "sound": the audio targets that are not NOSOUND): (summed nats, count)."""
        before = self.frame_before(ids, anchors, slots)
        h = self.hidden(ids, before=before, slots=slots)
        audio = targets > self.arch.bos
        video_targets = targets.masked_fill(audio, IGNORE)
        count = (video_targets != IGNORE).sum()
        parts = {"video": (self.head.loss(h, video_targets, before) * count, count)}
        if self.audio_head is not None:
            logits = self.audio_head(h[audio]).float()  # [N, A]
            symbols = targets[audio] - self.arch.bos - 1
            nats = F.cross_entropy(logits, symbols, reduction="none")
            parts["audio"] = (nats.sum(), audio.sum())
            sounding = symbols != self.arch.audio_symbols - 1  # not NOSOUND
            parts["sound"] = (nats[sounding].sum(), sounding.sum())  # a subset of "audio"
        return parts

    def forward(
        self,
        ids: Tensor,
        targets: Tensor,
        anchors: Tensor | None = None,
        slots: Tensor | None = None,
    ) -> Tensor:
        """ids, targets [B, L] -> mean nats per predicted token, video and audio alike."""
        parts = self.losses(ids, targets, anchors, slots)
        kinds = [parts[k] for k in ("video", "audio") if k in parts]
        return sum(n for n, _ in kinds) / sum(c for _, c in kinds).clamp(min=1)

    def sample_next(self, h: Tensor, pick: Any, before: Tensor | None, audio: bool) -> Tensor:
        """h [B, C] -> the next ids [B]: a video code, or (`audio`) an audio symbol's id."""
        if not audio:
            return self.head.sample(h, pick, before)
        if self.audio_head is None:
            raise WillieError("this transformer was trained without sound: no audio head")
        return pick(self.audio_head(h).float()) + self.arch.bos + 1

    def new_caches(self) -> list[KVCache]:
        return [KVCache(self.arch.window) for _ in self.blocks]


def load_transformer(
    directory: str | os.PathLike[str] = "stages/transformer", device: str | torch.device = "cpu"
) -> TokenTransformer:
    """The trained transformer published by `willie train-transformer`, in eval mode."""
    return load_artifact(directory, "train_transformer", TokenTransformer, TransformerArch, device)
