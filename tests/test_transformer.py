"""The token transformer: attention backends, ALiBi, windows, heads, KV cache, data, stage."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from willie.atomic import write_json
from willie.config import TransformerConfig, parse_section
from willie.errors import WillieError
from willie.training.engine import StopRequested
from willie.transformer.attention import (
    alibi_slopes,
    attention,
    available_backends,
    resolve_backend,
)
from willie.transformer.baseline import copy_previous_baseline
from willie.transformer.data import ScoringWindows, TokenStreams, TokenWindows, chain_clips
from willie.transformer.generate import (
    Pick,
    draw_openings,
    generate,
    generate_uncached,
    picture_nats,
    sampler,
)
from willie.transformer.model import IGNORE, TokenTransformer, TransformerArch, load_transformer
from willie.transformer.train import corrupt, own_draws, train_transformer

LEVELS = (4, 3, 2)  # 24 codes: small enough to enumerate


def naive_attention(q, k, v, slopes, window):
    """softmax(QKᵀ/√d + bias)V written out, positions 0..L-1."""
    L, d = q.shape[2], q.shape[3]
    i = torch.arange(L)[:, None]
    j = torch.arange(L)[None, :]
    bias = -slopes[:, None, None] * (i - j)
    bias = bias.masked_fill((j > i) | (i - j >= window), float("-inf"))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d) + bias
    return scores.softmax(-1) @ v


def test_alibi_slopes_follow_the_paper():
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0**-i for i in range(1, 9)]))
    assert torch.allclose(alibi_slopes(4), torch.tensor([2.0**-i for i in (2, 4, 6, 8)]))
    # 6 heads: the 4-head slopes, then every other slope of the 8-head sequence
    expected = [2.0**-i for i in (2, 4, 6, 8, 1, 3)]
    assert torch.allclose(alibi_slopes(6), torch.tensor(expected))


@pytest.mark.parametrize("length", [5, 8, 13])  # below, equal to and above the window
@pytest.mark.parametrize("backend", available_backends(torch.device("cpu")))
def test_backend_matches_naive_reference_forward_and_backward(backend, length):
    window, slopes = 8, alibi_slopes(4)
    torch.manual_seed(length)
    inputs = [torch.randn(2, 4, length, 16, dtype=torch.float64, requires_grad=True)]
    inputs += [torch.randn(2, 4, length, 16, dtype=torch.float64, requires_grad=True)]
    inputs += [torch.randn(2, 4, length, 16, dtype=torch.float64, requires_grad=True)]
    out = attention(*inputs, slopes=slopes, window=window, backend=backend)
    ref = naive_attention(*inputs, slopes.double(), window)
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(ref)
    got = torch.autograd.grad(out, inputs, grad)
    want = torch.autograd.grad(ref, inputs, grad)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("length", [5, 8, 13])
def test_flex_forward_matches_naive_reference_on_cpu(length):
    """FlexAttention trains only on CUDA, but its CPU forward checks the score_mod and mask."""
    window, slopes = 8, alibi_slopes(4)
    torch.manual_seed(length)
    q, k, v = torch.randn(3, 1, 4, length, 16).unbind(0)
    out = attention(q, k, v, slopes=slopes, window=window, backend="flex")
    torch.testing.assert_close(out, naive_attention(q, k, v, slopes, window), atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU backends need CUDA")
@pytest.mark.parametrize("backend", ["flex", "flash_attn"])
def test_gpu_backends_match_sdpa(backend):
    if backend not in available_backends(torch.device("cuda")):
        pytest.skip(f"{backend} is not installed")
    window, slopes = 64, alibi_slopes(8)
    q, k, v = (
        torch.randn(2, 8, 200, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        for _ in range(3)
    )
    out = attention(q, k, v, slopes=slopes, window=window, backend=backend)
    ref = attention(q, k, v, slopes=slopes, window=window, backend="sdpa")
    torch.testing.assert_close(out.float(), ref.float(), atol=2e-2, rtol=2e-2)


def test_a_token_never_sees_the_future_or_beyond_the_window():
    window, L = 4, 12
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 1, 2, L, 8).unbind(0)
    base = attention(q, k, v, slopes=alibi_slopes(2), window=window)
    for j in range(L):
        k2, v2 = k.clone(), v.clone()
        k2[:, :, j] += 5
        v2[:, :, j] += 5
        out = attention(q, k2, v2, slopes=alibi_slopes(2), window=window)
        changed = (out - base).abs().amax(dim=(0, 1, 3)) > 1e-6  # [L]
        sees_j = [(0 <= i - j < window) for i in range(L)]
        assert changed.tolist() == sees_j, f"perturbing key {j}"


def test_model_is_causal():
    model = TokenTransformer(tiny_arch()).eval()
    ids = torch.randint(0, 24, (1, 20))
    h = model.hidden(ids)
    ids2 = ids.clone()
    ids2[0, 12] = (ids[0, 12] + 1) % 24
    h2 = model.hidden(ids2)
    torch.testing.assert_close(h[:, :12], h2[:, :12])
    assert not torch.allclose(h[:, 12:], h2[:, 12:])


def tiny_arch(**overrides) -> TransformerArch:
    values = dict(levels=LEVELS, layers=2, heads=2, width=32, window=6, context=12)
    return TransformerArch(**{**values, **overrides})


@pytest.mark.parametrize(
    "frame_tokens,frame_history,anchor,row_tokens,frame_positions",
    [
        (0, 1, False, 0, False),
        (4, 1, False, 0, False),
        (2, 3, False, 0, False),
        (2, 1, True, 0, False),
        (4, 1, True, 2, False),
        (0, 1, False, 0, True),
        (4, 1, True, 2, True),
    ],
)
@pytest.mark.parametrize("head", ["joint", "factorized"])
def test_kv_cached_generation_equals_recomputation_beyond_the_window(
    head, frame_tokens, frame_history, anchor, row_tokens, frame_positions
):
    torch.manual_seed(1)
    placed = anchor or frame_positions
    arch = tiny_arch(
        head=head,
        frame_tokens=frame_tokens,
        frame_history=frame_history,
        anchor=anchor,
        frame_positions=frame_positions,
        row_tokens=row_tokens,
        video_tokens=frame_tokens if row_tokens else 3 if placed else 0,
    )
    model = TokenTransformer(arch).eval()
    if frame_positions:  # vectors far from init, so that a wrong place changes the samples
        torch.nn.init.normal_(model.frame_positions.weight, std=3.0)
    if frame_tokens:  # nonzero transitions, so that a wrong `before` changes the samples
        for table in getattr(model.head, "transitions", None) or []:
            torch.nn.init.normal_(table, std=3.0)
    prompt = torch.tensor([[24, 3, 7, 1], [24, 0, 0, 5]])
    cached = generate(model, prompt, 30)  # 34 tokens ≫ window 6, > 2× context
    assert torch.equal(cached, generate_uncached(model, prompt, 30))
    caches = model.new_caches()
    model.hidden(cached, 0, caches)
    assert all(c.k.shape[2] == model.arch.window for c in caches)  # the rolling buffer


def test_factorized_loss_is_the_sum_of_per_dimension_cross_entropies():
    torch.manual_seed(2)
    model = TokenTransformer(tiny_arch(head="factorized"))
    ids = torch.randint(0, 24, (2, 10))
    targets = torch.randint(0, 24, (2, 10))
    targets[1, 7:] = IGNORE
    h = model.hidden(ids)
    per_dim = model.head.dimension_losses(h, targets)
    digits = model.head.digits.split(targets.clamp(min=0))
    valid = targets != IGNORE
    hd, expected = h, []
    for d, out in enumerate(model.head.outs):
        expected.append(torch.nn.functional.cross_entropy(out(hd)[valid], digits[..., d][valid]))
        if d < 2:
            hd = hd + model.head.conds[d](digits[..., d])
    torch.testing.assert_close(per_dim, torch.stack(expected))
    torch.testing.assert_close(model(ids, targets), torch.stack(expected).sum())


def test_the_anchor_reaches_past_the_window_and_the_frames_before():
    """With an anchor, the first latent frame (tokens 1..2) still shapes the prediction 30
    tokens later, past the window (6) and the one frame before; without, nothing does."""
    torch.manual_seed(4)
    ids = torch.randint(0, 24, (1, 32))
    ids[0, 0] = 24  # BOS
    for anchor in (False, True):
        model = TokenTransformer(
            tiny_arch(frame_tokens=2, anchor=anchor, video_tokens=2 if anchor else 0)
        ).eval()
        changed = ids.clone()
        changed[0, 1:3] = (ids[0, 1:3] + 5) % 24  # the first latent frame
        layout = model.arch.layout
        hs = [
            model.hidden(x, before=model.frame_before(x, layout.anchors(x, 0, 32)))[0, -1]
            for x in (ids, changed)
        ]
        assert torch.allclose(hs[0], hs[1]) != anchor


def test_frame_positions_tell_a_window_without_cues_which_place_it_predicts():
    """Latent frames of 8 tokens: code 0 at place 0, random codes elsewhere. One layer that
    attends 6 tokens back, in windows cut anywhere in a long stream, never sees the place-0
    token before (8 back) nor BOS, so without frame positions no model can tell when place 0
    comes: seeing no 0 in its span, it knows only that place 0, 6 or 7 is next (p ≤ 1/3); with
    them a tiny model learns it in 150 steps."""
    period, length = 8, 12
    generator = torch.Generator().manual_seed(0)

    def windows(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        stream = torch.randint(1, 24, (n, 4 * period), generator=generator)
        stream[:, ::period] = 0
        starts = torch.randint(period, 3 * period - length, (n,), generator=generator)
        cut = torch.stack([stream[i, s : s + length + 1] for i, s in enumerate(starts.tolist())])
        # index j of a stream holds place j % period; input i predicts index start + i + 1
        slots = (starts[:, None] + 1 + torch.arange(length)) % period
        return cut, slots

    ids, slots = windows(512)
    found = {}
    for frame_positions in (False, True):
        torch.manual_seed(0)
        arch = tiny_arch(
            head="joint", layers=1, frame_positions=frame_positions, video_tokens=period
        )
        model = TokenTransformer(arch)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for step in range(150):
            batch = slice(32 * (step % 16), 32 * (step % 16 + 1))
            x, y = ids[batch, :-1], ids[batch, 1:]
            loss = model(x, y, None, slots[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        test_ids, test_slots = windows(256)
        with torch.no_grad():
            h = model.hidden(test_ids[:, :-1], slots=test_slots)
            probs = model.head.out(h).softmax(-1)[..., 0]  # p(code 0) [B, L]
        found[frame_positions] = float(probs[test_slots == 0].mean())
    assert found[False] < 0.34
    assert found[True] > 0.8


def test_frame_positions_need_the_streams_layout():
    with pytest.raises(WillieError, match="frame positions"):
        tiny_arch(frame_positions=True)


def test_frame_before_points_one_latent_frame_behind_each_target():
    model = TokenTransformer(tiny_arch(frame_tokens=3, frame_history=2))
    ids = torch.tensor([[24, 10, 11, 12, 13, 14, 15, 16, 17]])  # BOS, then frames of 3 tokens
    before = model.frame_before(ids)  # [1, 9, 2]
    # input i predicts ids[i + 1]; one frame before it is ids[i + 1 - 3], two ids[i + 1 - 6]
    assert before[0, :, 0].tolist() == [24, 24, 24, 10, 11, 12, 13, 14, 15]
    assert before[0, :, 1].tolist() == [24, 24, 24, 24, 24, 24, 10, 11, 12]


def test_row_above_is_the_token_above_each_target_in_its_latent_frame():
    """Latent frames of 2 rows × 3 tokens, then 2 sound tokens: only a target in the second
    row has a token above it (3 back); the first row and the sound have none (BOS)."""
    arch = tiny_arch(row_tokens=3, video_tokens=6, audio_tokens=2, audio_symbols=4)
    model = TokenTransformer(arch)
    ids = torch.cat([torch.tensor([24]), torch.arange(16) % 20])[None]  # BOS + 2 periods of 8
    for start in (0, 5):  # a sequence from BOS, and a window cut mid-frame
        window = ids[:, start:]
        slots = arch.layout.slots(start, window.shape[1])
        above = model.frame_before(window, None, slots)[0, :, 0].tolist()
        for i, got in enumerate(above):
            target = start + i + 1
            slot = (target - 1) % 8
            inside = i + 1 - 3 >= 0
            expected = int(ids[0, target - 3]) if 3 <= slot < 6 and inside else 24
            assert got == expected, (start, i)


@pytest.mark.parametrize("row_tokens,video_tokens", [(4, 6), (3, 0), (-1, 6)])
def test_row_tokens_must_divide_the_latent_frame(row_tokens, video_tokens):
    with pytest.raises(WillieError, match="row_tokens"):
        tiny_arch(row_tokens=row_tokens, video_tokens=video_tokens)


def test_transitions_shift_the_digit_that_the_frame_before_held():
    torch.manual_seed(4)
    model = TokenTransformer(tiny_arch(head="factorized", frame_tokens=3, frame_history=2))
    head = model.head
    assert head.transitions is not None
    with torch.no_grad():
        head.transitions[0][0, 1, 2] = 50.0  # digit 1 one frame before -> digit 2 now
        head.transitions[0][1, 3, 3] = 80.0  # digit 3 two frames before -> digit 3 now
    h = torch.zeros(1, 32)
    argmax = lambda logits: logits.argmax(-1)  # noqa: E731
    one, three = (int(head.digits.join(torch.tensor([d, 0, 0]))) for d in (1, 3))
    picked = head.sample(h, argmax, torch.tensor([[one, 24]]))  # nothing two frames back
    assert int(head.digits.split(picked)[0, 0]) == 2
    picked = head.sample(h, argmax, torch.tensor([[one, three]]))  # the stronger pull wins
    assert int(head.digits.split(picked)[0, 0]) == 3
    unknown = head.sample(h, argmax, torch.tensor([[24, 24]]))  # BOS: nothing came before
    assert int(head.digits.split(unknown)[0, 0]) == 0


def test_factorized_head_is_a_normalized_distribution_over_codes():
    """Σ over all 24 codes of Π_d p(digit_d | digit_<d) = 1: bits/token are comparable."""
    torch.manual_seed(3)
    model = TokenTransformer(tiny_arch(head="factorized"))
    h = model.hidden(torch.randint(0, 24, (1, 5)))[:, -1:].expand(1, 24, -1)  # [1, 24, C]
    codes = torch.arange(24)[None]
    nats_each = torch.stack(
        [model.head.loss(h[:, i : i + 1], codes[:, i : i + 1]) for i in range(24)]
    ).detach()
    assert math.isclose(float(torch.exp(-nats_each).sum()), 1.0, rel_tol=1e-5)


def test_sampler_respects_top_k_and_top_p():
    logits = torch.tensor([[5.0, 4.0, 1.0, 0.0, -1.0]]).repeat(400, 1)
    g = torch.Generator().manual_seed(0)
    assert set(sampler(top_k=2, generator=g)(logits).tolist()) == {0, 1}
    # p(0) ≈ 0.71, p(1) ≈ 0.26: top_p 0.5 keeps only the first
    assert set(sampler(top_p=0.5, generator=g)(logits).tolist()) == {0}
    seeded = [sampler(generator=torch.Generator().manual_seed(7))(logits) for _ in range(2)]
    assert torch.equal(*seeded)


def test_openings_keep_the_draw_the_judge_finds_most_likely():
    """draw_openings: each row's first tokens drawn K times by the opener; kept, the draw with
    the fewest nats per picture code under the judge (one candidate: a plain draw)."""
    torch.manual_seed(1)
    opener, judge = TokenTransformer(tiny_arch()).eval(), TokenTransformer(tiny_arch()).eval()
    prompt = torch.tensor([[24], [24]])

    def hot() -> Pick:
        return sampler(temperature=3.0, generator=torch.Generator().manual_seed(3))

    plain = draw_openings(opener, judge, prompt, 8, hot())
    assert torch.equal(plain, generate(opener, prompt, 8, hot()))
    kept = draw_openings(opener, judge, prompt, 8, hot(), candidates=5)
    drawn = generate(opener, prompt.repeat_interleave(5, 0), 8, hot()).reshape(2, 5, -1)
    nats = picture_nats(judge, drawn.flatten(0, 1)).reshape(2, 5)
    for row in range(2):
        assert torch.equal(kept[row], drawn[row, nats[row].argmin()])
        assert nats[row].min() < nats[row].mean()  # the candidates differ: a real choice
    # picture_nats is the model's own loss on the row
    ids, targets = drawn[0, :1, :-1], drawn[0, :1, 1:]
    layout = judge.arch.layout
    loss = judge(ids, targets, layout.anchors(ids, 0, 8), layout.slots(0, 8))
    assert picture_nats(judge, drawn[0, :1])[0] == pytest.approx(float(loss), rel=1e-5)


def test_clips_chain_where_one_ends_and_the_next_begins():
    scene = np.array([0, 0, 0, 0, 0, 1, 1])
    start = np.array([0, 8, 16, 24, 32, 100, 116])
    assert chain_clips(scene, start, 17) == [[0, 2, 4], [1, 3], [5, 6]]


def write_tokens(
    directory: Path, clips: dict[str, np.ndarray], levels=LEVELS, spacing: int = 8
) -> Path:
    """A token directory as `willie tokenize` writes it; clips [N, t, h, w] per split, starting
    `spacing` frames apart in one scene (8 chains 9-frame clips; more keeps them apart)."""
    for split, tokens in clips.items():
        (directory / split).mkdir(parents=True)
        np.save(directory / split / "tokens.npy", tokens.astype(np.uint16))
        np.save(directory / split / "scene.npy", np.zeros(len(tokens), np.int32))
        np.save(
            directory / split / "start_frame.npy", np.arange(len(tokens), dtype=np.int32) * spacing
        )
    t, h, w = next(iter(clips.values())).shape[1:]
    write_json(
        directory / "manifest.json",
        {
            "codebook_size": int(np.prod(levels)),
            "levels": list(levels),
            "latent_shape": [t, h, w],
            "clip_shape": [1 + 4 * (t - 1), 8 * h, 8 * w],
        },
    )
    return directory


def patterned_clips(n: int, seed: int) -> np.ndarray:
    """Clips of one flat tone held still: one random code repeated over [t=3, h=2, w=2]."""
    rng = np.random.default_rng(seed)
    return np.broadcast_to(rng.integers(0, 24, size=(n, 1, 1, 1)), (n, 3, 2, 2)).copy()


def test_scoring_windows_score_every_target_once_with_history(tmp_path):
    rng = np.random.default_rng(5)
    clips = rng.integers(0, 24, size=(6, 3, 2, 2))  # one chain: 1 + 12 + 5 · 8 = 53 tokens
    streams = TokenStreams(write_tokens(tmp_path / "tokens", {"val": clips}), "val")
    windows = ScoringWindows(streams, 16)
    scored = []
    for item in range(len(windows)):
        targets = windows[item][1]
        start = windows.windows.index[item][1]
        positions = (targets != IGNORE).nonzero().flatten()
        if item:  # later windows score only their second part: ≥ 8 tokens of history
            assert int(positions.min()) >= 8
        scored += (start + 1 + positions).tolist()  # stream index of each scored target
    assert sorted(scored) == list(range(1, 53))


def test_copy_previous_baseline_is_fitted_on_train_and_scored_on_val(tmp_path):
    still = np.full((4, 3, 2, 2), 5)  # every token repeats the frame before
    rng = np.random.default_rng(6)
    noise = rng.integers(0, 24, size=(4, 3, 2, 2))
    directory = write_tokens(tmp_path / "tokens", {"train": still, "val": noise})
    train, val = TokenStreams(directory, "train"), TokenStreams(directory, "val")
    result = copy_previous_baseline(train, val)
    assert result["baseline_repeat_probability"] > 0.99
    # train: only the first latent frame (4 of 36 tokens) costs log2(24) bits
    assert result["baseline_train_bits_per_token"] == pytest.approx(4 / 36 * math.log2(24), 1e-3)
    assert result["baseline_val_bits_per_token"] > result["uniform_bits_per_token"]
    assert result["uniform_bits_per_token"] == pytest.approx(math.log2(24))


def test_corrupt_replaces_about_the_share_asked_and_never_bos():
    torch.manual_seed(0)
    ids = torch.randint(0, 24, (8, 1000))
    ids[:, 0] = 24  # BOS
    noisy = corrupt(ids, 0.2, 24)
    changed = (noisy != ids).float().mean()
    assert 0.17 < float(changed) < 0.2  # 1/24 of the draws land on the same code
    assert bool((noisy[:, 0] == 24).all()) and int(noisy[:, 1:].max()) < 24


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_own_draws_replace_the_share_asked_with_the_models_draw_of_that_token(share):
    """The draw made at position i (the model's guess of the token at i + 1) lands at i + 1;
    BOS, and positions whose token is not a predicted code, stay real."""
    torch.manual_seed(0)
    model = TokenTransformer(TransformerArch(LEVELS, layers=1, heads=2, width=16, window=8))
    ids = torch.randint(0, 4, (4, 300))  # real codes 0..3 only
    ids[:, 0] = ids[:, 150] = 24  # BOS: a new stream starts mid-window
    targets = torch.cat([ids[:, 1:], torch.full((4, 1), IGNORE)], 1)
    targets[:, 149] = IGNORE  # nothing predicts the second BOS
    model.head.sample = lambda h, pick, before: torch.full(h.shape[:1], 7)  # a code not in ids
    mixed = own_draws(model, ids, targets, torch.full_like(ids, 24), torch.zeros_like(ids), share)
    replaced = mixed != ids
    assert bool((mixed[replaced] == 7).all()) and not replaced[:, [0, 150]].any()
    eligible = replaced.numel() - 2 * 4
    assert abs(float(replaced.sum()) / eligible - share) < 0.05


def test_own_draws_are_codes_the_head_can_emit():
    torch.manual_seed(0)
    model = TokenTransformer(TransformerArch(LEVELS, layers=1, heads=2, width=16, window=8))
    ids = torch.randint(0, 24, (2, 64))
    ids[:, 0] = 24
    targets = torch.cat([ids[:, 1:], torch.full((2, 1), IGNORE)], 1)
    mixed = own_draws(model, ids, targets, torch.full_like(ids, 24), torch.zeros_like(ids), 1.0)
    assert int(mixed[:, 1:].max()) < 24 and bool((mixed[:, 0] == 24).all())
    assert float((mixed != ids).float().mean()) > 0.8  # an untrained head: ~1/24 coincide


def test_restarts_add_every_later_clip_as_its_own_stream(tmp_path):
    clips = patterned_clips(4, 0)  # one chain of 4 clips
    directory = write_tokens(tmp_path / "tokens", {"train": clips})
    streams = TokenStreams(directory, "train", restarts=True).streams
    assert len(streams) == 1 + 3  # the chain, then clips 1..3 from BOS
    for row, stream in zip((1, 2, 3), streams[1:], strict=True):
        assert stream[0] == 24 and np.array_equal(stream[1:], clips[row].reshape(-1))


def test_token_streams_chain_clips_and_drop_the_shared_latent_frame(tmp_path):
    clips = patterned_clips(4, 0)  # starts 0, 8, 16, 24 with 9-frame clips (t = 3)
    streams = TokenStreams(write_tokens(tmp_path / "tokens", {"train": clips}), "train")
    assert len(streams.streams) == 1  # every clip starts where the previous ended (8 = 9 − 1)
    [stream] = streams.streams
    assert stream[0] == 24  # BOS
    assert len(stream) == 1 + 12 + 3 * 8  # clip 0 whole, then 2 latent frames per clip
    np.testing.assert_array_equal(stream[13:21], clips[1, 1:].reshape(-1))
    assert len(set(stream[1:].tolist())) == 4  # one tone per clip


def test_windows_pad_short_streams_with_ignored_targets(tmp_path):
    streams = TokenStreams(write_tokens(tmp_path / "t", {"train": patterned_clips(1, 0)}), "train")
    [item] = TokenWindows(streams, 20)
    ids, targets, _, _ = item
    assert ids[0] == 24 and (targets[12:] == IGNORE).all() and (targets[:12] >= 0).all()
    torch.testing.assert_close(ids[1:12], targets[:11])


def test_windows_carry_each_target_s_place_in_the_stream_s_first_latent_frame(tmp_path):
    rng = np.random.default_rng(3)
    clips = rng.integers(0, 24, size=(6, 3, 2, 2))  # one chain of 53 tokens, 4 per latent frame
    streams = TokenStreams(write_tokens(tmp_path / "tokens", {"train": clips}), "train")
    [stream] = streams.streams
    windows = TokenWindows(streams, 16, stride=7)
    for item in range(len(windows)):
        start = windows.index[item][1]
        ids, _, anchors, slots = windows[item]
        for i in range(16):
            target = start + i + 1  # the stream position input i predicts
            expected = stream[1 + (target - 1) % 4] if target > 4 else 24  # BOS: none yet
            assert int(anchors[i]) == int(expected), (start, i)
            assert int(slots[i]) == (target - 1) % 4
        assert start > 0 or int(ids[0]) == 24


def test_tokens_beyond_the_manifest_codebook_are_refused(tmp_path):
    clips = patterned_clips(2, 0)
    clips[0, 0, 0, 0] = 99
    directory = write_tokens(tmp_path / "tokens", {"train": clips})
    with pytest.raises(WillieError, match="codebook_size 24"):
        TokenStreams(directory, "train")


def test_bad_shapes_are_clear_errors():
    with pytest.raises(WillieError, match=r"window \(64\) must be ≤ transformer.context \(32\)"):
        parse_section("transformer", {"window": 64, "context": 32}, TransformerConfig)
    with pytest.raises(WillieError, match=r"heads \(3\) must divide transformer.width \(64\)"):
        parse_section("transformer", {"heads": 3, "width": 64}, TransformerConfig)
    with pytest.raises(WillieError, match="attention=flash_attn is unavailable"):
        resolve_backend("flash_attn", torch.device("cpu"))


def stage_config(**overrides) -> TransformerConfig:
    values = dict(
        context=12,
        window=6,
        layers=2,
        heads=2,
        width=32,
        batch_size=8,
        max_steps=100,
        lr=1e-2,
        warmup_steps=5,
        eval_every=50,
        log_every=10,
        checkpoint_every=50,
        eval_windows=16,
        device="cpu",
        select="val_bits",
    )  # fmt: skip  (realism selection needs a tokenizer: tests/test_pipeline.py runs it)
    return TransformerConfig(**{**values, **overrides})


@pytest.fixture
def token_dir(tmp_path) -> Path:
    clips = {"train": patterned_clips(60, 0), "val": patterned_clips(16, 1)}
    return write_tokens(tmp_path / "tokens", clips, spacing=100)


def test_stage_learns_the_pattern_and_publishes_a_loadable_model(token_dir, tmp_path):
    out, plots = tmp_path / "transformer", tmp_path / "plots"
    metrics = train_transformer(stage_config(), token_dir, out, plots)
    # a random code costs log2(24) = 4.58 bits; 11 of each clip's 12 tokens are copies
    assert metrics["val_bits_per_token"] < 3.5
    assert metrics["val_bits_per_token_2x"] < 1.05 * metrics["val_bits_per_token"]
    assert metrics["best_step"] in (50, 100)  # the published weights: the best val evaluation
    model = load_transformer(out)
    assert model.arch.levels == LEVELS and model.arch.head == "factorized"
    curve = (plots / "transformer_train_loss.csv").read_text().splitlines()
    assert curve[0] == "step,bits_per_token" and len(curve) == 1 + 10
    val_curve = (plots / "transformer_val_loss.csv").read_text().splitlines()
    assert len(val_curve) == 1 + 2
    with Image.open(plots / "transformer_loss.png") as png:  # both curves, readable offline
        assert png.format == "PNG" and png.size == (800, 450)
    # The published figure is the best evaluation's, as the val curve recorded it.
    at_best = dict(line.split(",") for line in val_curve[1:])[str(metrics["best_step"])]
    assert float(at_best) == pytest.approx(metrics["val_bits_per_token"], rel=1e-4)
    assert "## Validation metrics" in (out / "MODEL_CARD.md").read_text()


def test_stage_stopped_by_sigterm_resumes_to_the_same_weights(token_dir, tmp_path):
    cfg = stage_config(max_steps=20, eval_every=0)
    train_transformer(cfg, token_dir, tmp_path / "straight", tmp_path / "p1")

    def stop_at_step_10(values, step):
        if step == 10:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(StopRequested):
        train_transformer(
            cfg, token_dir, tmp_path / "resumed", tmp_path / "p2", log=stop_at_step_10
        )
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    train_transformer(cfg, token_dir, tmp_path / "resumed", tmp_path / "p2")
    a = load_transformer(tmp_path / "straight").state_dict()
    b = load_transformer(tmp_path / "resumed").state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)
    curve = (tmp_path / "p2" / "transformer_train_loss.csv").read_text().splitlines()
    assert curve == (tmp_path / "p1" / "transformer_train_loss.csv").read_text().splitlines()


def test_early_stopping_keeps_the_weights_of_the_best_evaluation():
    from willie.transformer.train import BestWeights

    model, best = torch.nn.Linear(2, 2), BestWeights()
    for step, bits in [(10, 5.0), (20, 3.0), (30, 4.0)]:
        torch.nn.init.constant_(model.weight, step)
        best.offer(bits, step, model)
    assert best.step == 20 and best.cost == 3.0
    assert (best.weights["weight"] == 20).all()
