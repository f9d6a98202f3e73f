"""Token generation: a rolling KV cache, temperature / top-k / top-p, and the uncached reference.

With the factorized head each FSQ dimension is sampled in turn from its own softmax; top-k
and top-p then act per dimension (top-k capped at that dimension's levels). Where the stream
has sound, the positions that hold it (`StreamLayout.is_audio`) are drawn from the audio head.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from willie.transformer.model import TokenTransformer

Pick = Callable[[Tensor], Tensor]  # logits [B, V] -> chosen ids [B]
Progress = Callable[[int], None]  # called with the number of new tokens so far


def greedy(logits: Tensor) -> Tensor:
    return logits.argmax(-1)


def sampler(
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Pick:
    """A seeded sampler: logits / temperature, keep the top-k and the top-p nucleus, draw."""

    def pick(logits: Tensor) -> Tensor:
        logits = logits.float() / temperature
        if 0 < top_k < logits.shape[-1]:
            kth = logits.topk(top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            probs = sorted_logits.softmax(-1)
            # drop a token when the tokens ranked above it already hold top_p of the mass
            drop = probs.cumsum(-1) - probs >= top_p
            sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
        probs = logits.softmax(-1)
        return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)

    return pick


@torch.inference_mode()
def generate(
    model: TokenTransformer,
    prompt: Tensor,
    new_tokens: int,
    pick: Pick = greedy,
    progress: Progress | None = None,
    forced: Tensor | None = None,
) -> Tensor:
    """prompt [B, P] (BOS first) -> [B, P + new_tokens], decoding from a rolling KV cache.

    The cache of each layer holds the last `window` keys, so memory and per-token time stay
    flat however far past the training context the sequence runs. `forced` [B, F] (F ≤
    new_tokens; −1 where free) fixes tokens after the prompt: rows with prompts of different
    lengths share one batch, each taking its own prompt's tokens until they run out.
    """
    B, P = prompt.shape
    # Preallocated: thousands of tiny live tensors would pin freed heap memory (RSS creep).
    tokens = torch.empty(B, P + new_tokens, dtype=torch.long, device=prompt.device)
    tokens[:, :P] = prompt
    caches = model.new_caches()
    layout = model.arch.layout
    before = model.frame_before(prompt, layout.anchors(prompt, 0, P), layout.slots(0, P))
    h = model.hidden(prompt, 0, caches, before)[:, -1]  # prefill: [B, C]
    for i in range(new_tokens):
        before = _frame_before(model, tokens, P + i)  # [B, K]: its place in the frames before
        chosen = model.sample_next(h, pick, before, layout.is_audio(P + i))  # [B]
        if forced is not None and i < forced.shape[1]:
            chosen = torch.where(forced[:, i] >= 0, forced[:, i], chosen)
        tokens[:, P + i] = chosen
        if progress is not None:
            progress(i + 1)
        if i + 1 < new_tokens:
            nxt = tokens[:, P + i : P + i + 1]
            before = _frame_before(model, tokens, P + i + 1)[:, None]  # [B, 1, K]
            h = model.hidden(nxt, P + i, caches, before)[:, -1]
    return tokens


@torch.inference_mode()
def draw_openings(
    opener: TokenTransformer,
    judge: TokenTransformer,
    prompt: Tensor,
    new_tokens: int,
    pick: Pick,
    candidates: int = 1,
) -> Tensor:
    """prompt [B, P] -> [B, P + new_tokens]: each row's next tokens (e.g. an unconditional
    sample's first latent frame, the anchor every later frame looks back to) drawn
    `candidates` times by `opener`, keeping the draw `judge` (the model that continues it)
    finds most likely: the fewest nats per picture code. Sample-and-rerank by the model's own
    likelihood; no real frame takes part."""
    drawn = generate(opener, prompt.repeat_interleave(candidates, 0), new_tokens, pick)
    if candidates == 1:
        return drawn
    nats = picture_nats(judge, drawn).reshape(len(prompt), candidates)  # [B, K]
    rows = drawn.reshape(len(prompt), candidates, -1)  # [B, K, P + new]
    return rows[torch.arange(len(prompt)), nats.argmin(1)]


@torch.inference_mode()
def picture_nats(model: TokenTransformer, tokens: Tensor) -> Tensor:
    """tokens [B, L] (BOS first) -> [B]: the mean nats per picture code after the first
    position under `model` (sound positions are not counted)."""
    layout = model.arch.layout
    ids, targets = tokens[:, :-1], tokens[:, 1:]
    L = ids.shape[1]
    slots = layout.slots(0, L, tokens.device)
    nats = []
    for i in range(len(tokens)):  # one row at a time: `losses` sums over its batch
        row = ids[i : i + 1]
        summed, count = model.losses(row, targets[i : i + 1], layout.anchors(row, 0, L), slots)[
            "video"
        ]
        nats.append(summed / count.clamp(min=1))
    return torch.stack(nats)


def _frame_before(model: TokenTransformer, tokens: Tensor, target: int) -> Tensor:
    """[B, K]: `model.frame_before` for the input that predicts position `target` of the
    sequence (BOS first), computed over only the K latent frames before it, the row above and
    the anchor (a fixed cost per token); the tokens from `target` on are not read."""
    arch = model.arch
    span = max(1, arch.frame_history * arch.frame_tokens, arch.row_tokens)
    start = max(0, target - span)
    anchors = arch.layout.anchors(tokens[:, :target], start, target - start)
    slots = arch.layout.slots(start, target - start, tokens.device) if arch.row_tokens else None
    return model.frame_before(tokens[:, start:target], anchors, slots)[:, -1]


@torch.inference_mode()
def generate_uncached(
    model: TokenTransformer, prompt: Tensor, new_tokens: int, pick: Pick = greedy
) -> Tensor:
    """The reference: recompute the whole sequence's forward for every new token."""
    tokens = prompt
    layout = model.arch.layout
    for _ in range(new_tokens):
        n = tokens.shape[1]
        anchors, slots = layout.anchors(tokens, 0, n), layout.slots(0, n)
        h = model.hidden(tokens, before=model.frame_before(tokens, anchors, slots))[:, -1]
        before = _frame_before(model, tokens, tokens.shape[1])
        audio = layout.is_audio(tokens.shape[1])
        tokens = torch.cat([tokens, model.sample_next(h, pick, before, audio)[:, None]], dim=1)
    return tokens
