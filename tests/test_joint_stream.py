"""Sound and pictures in one token stream: layout, model heads, generation, baseline."""

from __future__ import annotations

import numpy as np
import torch

from willie.transformer.generate import generate, sampler
from willie.transformer.layout import StreamLayout
from willie.transformer.model import IGNORE, TokenTransformer, TransformerArch

LEVELS = (4, 3)  # 12 video codes, BOS = 12
LAYOUT = StreamLayout(video=4, codebook_size=12, audio=2, audio_symbols=6)  # ids 13..18


def arch(**overrides: object) -> TransformerArch:
    values = dict(
        levels=LEVELS,
        layers=1,
        heads=2,
        width=16,
        window=24,
        context=24,
        frame_tokens=LAYOUT.period,
        video_tokens=4,
        audio_tokens=2,
        audio_symbols=6,
    )
    return TransformerArch(**(values | overrides))  # type: ignore[arg-type]


def test_layout_interleaves_and_splits_back() -> None:
    video = np.arange(12).reshape(3, 4) % 12  # 3 latent frames of 4 codes
    audio = np.array([[5, 5], [0, 1], [2, 3]])  # latent 0: NOSOUND
    ids = LAYOUT.interleave(video, audio)
    assert ids.tolist()[:6] == [0, 1, 2, 3, 18, 18] and len(ids) == 18
    got_video, got_audio = LAYOUT.split(torch.from_numpy(ids)[None])
    assert got_video[0].tolist() == video.tolist() and got_audio[0].tolist() == audio.tolist()
    stream = [LAYOUT.bos, *ids]
    assert [LAYOUT.is_audio(p) for p in range(len(stream))] == [
        p > 0 and stream[p] > LAYOUT.bos for p in range(len(stream))
    ]
    assert LAYOUT.kinds(0, len(stream)).tolist() == [LAYOUT.is_audio(p) for p in range(19)]
    assert StreamLayout(4, 12).interleave(video, audio).tolist() == video.reshape(-1).tolist()


def test_each_kind_of_target_is_scored_by_its_own_head() -> None:
    torch.manual_seed(0)
    model = TokenTransformer(arch())
    video = np.random.default_rng(0).integers(0, 12, (4, 4))
    audio = np.random.default_rng(1).integers(0, 6, (4, 2))
    stream = torch.from_numpy(np.concatenate([[12], LAYOUT.interleave(video, audio)]))[None]
    ids, targets = stream[:, :-1], stream[:, 1:].clone()
    targets[:, -1] = IGNORE
    with torch.no_grad():
        parts = model.losses(ids, targets)
    assert int(parts["video"][1]) == 16 and int(parts["audio"][1]) == 7  # last audio ignored
    sounding = targets[(targets > LAYOUT.bos) & (targets != LAYOUT.audio_offset + LAYOUT.nosound)]
    assert int(parts["sound"][1]) == len(sounding) < 7  # NOSOUND targets left out
    assert float(parts["sound"][0]) < float(parts["audio"][0])
    total = (parts["video"][0] + parts["audio"][0]) / 23
    with torch.no_grad():
        torch.testing.assert_close(model(ids, targets), total)
    # untrained: about uniform over each kind's vocabulary
    assert abs(float(parts["audio"][0]) / 7 - np.log(6)) < 0.5


def test_generation_draws_sound_exactly_where_the_layout_puts_it() -> None:
    torch.manual_seed(0)
    model = TokenTransformer(arch()).eval()
    prompt = torch.full((2, 1), LAYOUT.bos)
    pick = sampler(temperature=1.0, generator=torch.Generator().manual_seed(0))
    tokens = generate(model, prompt, 3 * LAYOUT.period, pick)
    for p in range(1, tokens.shape[1]):
        column = tokens[:, p]
        if LAYOUT.is_audio(p):
            assert ((column > LAYOUT.bos) & (column <= LAYOUT.bos + 6)).all()
        else:
            assert (column < LAYOUT.bos).all()


def test_a_picture_only_model_is_unchanged() -> None:
    model = TokenTransformer(arch(audio_tokens=0, audio_symbols=0, frame_tokens=4))
    assert model.audio_head is None and model.embed.audio is None
    assert set(
        model.losses(torch.zeros(1, 8, dtype=torch.long), torch.zeros(1, 8, dtype=torch.long))
    ) == {"video"}


def test_rows_with_different_prompts_share_one_batch() -> None:
    from willie.transformer.generate import greedy

    torch.manual_seed(1)
    model = TokenTransformer(arch()).eval()
    bos = torch.full((1, 1), LAYOUT.bos)
    prompt = torch.from_numpy(LAYOUT.interleave(np.array([[1, 2, 3, 4]]), np.array([[0, 1]])))[
        None
    ]  # one latent frame of pictures and sound
    alone = generate(model, torch.cat([bos, prompt], 1), 2 * LAYOUT.period, greedy)
    free = generate(model, bos, 3 * LAYOUT.period, greedy)
    forced = torch.cat([torch.full_like(prompt, -1), prompt])  # row 0 free, row 1 prompted
    both = generate(model, bos.repeat(2, 1), 3 * LAYOUT.period, greedy, forced=forced)
    assert torch.equal(both[1], alone[0]) and torch.equal(both[0], free[0])


def test_the_sound_baseline_leaves_nosound_out() -> None:
    from types import SimpleNamespace

    from willie.transformer.baseline import _repeats, copy_previous_baseline

    video = np.zeros((3, 4), int)
    audio = np.array([[5, 5], [1, 2], [1, 3]])  # NOSOUND, then two frames of sound
    stream = np.concatenate([[LAYOUT.bos], LAYOUT.interleave(video, audio)])
    streams = SimpleNamespace(layout=LAYOUT, streams=[stream])
    assert _repeats(streams, "audio") == (1, 4, 6)  # NOSOUND counted as a symbol
    assert _repeats(streams, "sound") == (1, 2, 4)  # only frame 2 has sound before it
    assert _repeats(streams, "video") == (8, 8, 12)
    result = copy_previous_baseline(streams, streams)  # type: ignore[arg-type]
    assert result["sound_uniform_bits_per_token"] == np.log2(5)
    assert result["sound_baseline_repeat_probability"] == 0.5
