"""The offline demo's pipeline must not fall back to noise: a tiny run of the real stages on
the synthetic cartoon (tokenizer, tokens, transformer; about 15 s) must make samples that look
more like the film than the same tokenizer decoding random codes does.

Realism is each generated frame's best SSIM against every real frame (no trained model takes
part in it). Measured with these seeds on the CPU: samples 0.24, random codes (an untrained
transformer, whose logits are near-uniform) 0.13; the floors below leave room for numerics.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import synthetic_raw_dir
from willie.config import PreprocessConfig, TokenizerConfig, TransformerConfig
from willie.data.preprocess import run_preprocess
from willie.tokenizer.tokenize import run_tokenize
from willie.tokenizer.train import train_tokenizer
from willie.transformer.model import TokenTransformer, load_transformer
from willie.transformer.selection import RealismProbe
from willie.transformer.train import train_transformer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    raw = synthetic_raw_dir(root, seed=3, seconds=10)
    run_preprocess(PreprocessConfig(size=32, clip_frames=9, stride=4), raw, root / "clips")
    torch.manual_seed(0)
    tokenizer = TokenizerConfig(
        size=32, channels=16, batch_size=4, max_steps=200, lr=2e-3, warmup_steps=10,
        disc_start=1000, gen_adv_start=1000, eval_clips=4, eval_every=1000,
        checkpoint_every=1000, device="cpu",
    )  # fmt: skip
    train_tokenizer(tokenizer, root / "clips", root / "tokenizer")
    tokens = TokenizerConfig(batch_size=8, device="cpu", token_copies=0)
    run_tokenize(tokens, root / "clips", root / "tokenizer", root / "tokens")
    transformer = TransformerConfig(
        context=64, window=48, layers=2, heads=2, width=64, batch_size=8, max_steps=200,
        lr=3e-3, warmup_steps=10, eval_every=0, select="val_bits", checkpoint_every=1000,
        device="cpu",
    )  # fmt: skip
    train_transformer(
        transformer,
        root / "tokens",
        root / "transformer",
        root / "plots",
        tokenizer_dir=root / "tokenizer",
        clips_dir=root / "clips",
    )
    return root


def test_samples_look_more_like_the_film_than_decoded_noise(tiny_demo: Path) -> None:
    probe = RealismProbe(
        tiny_demo / "tokenizer",
        tiny_demo / "clips",
        tiny_demo / "tokens",
        samples=4,
        frames=17,
        temperature=1.0,
        device=torch.device("cpu"),
    )
    trained = load_transformer(tiny_demo / "transformer")
    torch.manual_seed(0)
    noise = probe.score(TokenTransformer(trained.arch)).realism  # near-uniform codes, decoded
    samples = probe.score(trained).realism
    assert samples > 0.2, f"samples scored {samples:.3f}: the pipeline makes noise"
    assert samples > noise + 0.05, f"samples {samples:.3f} vs decoded random codes {noise:.3f}"


def test_the_opening_model_is_the_step_that_draws_first_frames_best(
    tiny_demo: Path, tmp_path: Path
) -> None:
    """transformer.opening: beside the model published by `select`, the run publishes the EMA
    of the evaluated step whose first frames drawn from nothing scored best; its realism per
    evaluation is a column of the realism curve."""
    import csv
    import json

    cfg = TransformerConfig(
        context=64, window=48, layers=2, heads=2, width=64, batch_size=8, max_steps=90,
        lr=3e-3, warmup_steps=10, eval_every=30, frame_positions=True, opening=True,
        select="continuation_motion", select_samples=2, select_frames=9,
        checkpoint_every=1000, device="cpu",
    )  # fmt: skip
    out = tmp_path / "transformer"
    metrics = train_transformer(
        cfg, tiny_demo / "tokens", out, tmp_path / "plots",
        tokenizer_dir=tiny_demo / "tokenizer", clips_dir=tiny_demo / "clips",
    )  # fmt: skip
    with open(tmp_path / "plots/transformer_val_realism.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [30, 60, 90]
    best = max(rows, key=lambda r: float(r["opening"]))
    assert metrics["opening_step"] == int(best["step"])
    assert metrics["opening_realism"] == pytest.approx(float(best["opening"]), abs=1e-4)
    assert metrics["best_step"] in {int(r["step"]) for r in rows}
    assert json.loads((out / "opening/config.json").read_text())["step"] == int(best["step"])

    def same(a: Path, b: Path) -> bool:
        models = load_transformer(a).state_dict(), load_transformer(b).state_dict()
        pairs = zip(models[0].values(), models[1].values(), strict=True)
        return all(torch.equal(x, y) for x, y in pairs)

    assert same(out / "opening", out) == (metrics["opening_step"] == metrics["best_step"])
    # without `opening` the published model draws its own first frames
    assert same(tiny_demo / "transformer/opening", tiny_demo / "transformer")


def test_probe_motion_penalizes_frozen_and_flickering_samples() -> None:
    """The realism_motion criterion: realism counts in full only while the samples move
    0.5–2× as much as the tokenizer's reconstructions of real footage."""
    from willie.transformer.selection import ProbeScore

    assert ProbeScore(0.4, 1.0).realism_in_motion == 0.4
    assert ProbeScore(0.4, 0.1).realism_in_motion == pytest.approx(0.08)  # nearly frozen
    assert ProbeScore(0.4, 8.0).realism_in_motion == pytest.approx(0.1)  # flicker
    assert ProbeScore(0.4, 0.0).realism_in_motion == 0.0
    # a frozen step loses to one that moves, though it scores higher on realism alone
    assert ProbeScore(0.30, 0.14).realism_in_motion < ProbeScore(0.28, 0.5).realism_in_motion


def test_worst_kind_prefers_a_step_that_draws_both_kinds() -> None:
    """worst_kind_motion: a step that continues a prompt well but draws texture from nothing
    loses to one whose two kinds both look like the film, though their means are equal —
    the two steps realism_motion cannot tell apart (README: the scene's first frame)."""
    from willie.transformer.selection import ProbeScore

    early = ProbeScore(0.35, 1.0, unconditional=0.20, continuation=0.50)
    late = ProbeScore(0.35, 1.0, unconditional=0.32, continuation=0.38)
    assert early.criterion("realism_motion") == late.criterion("realism_motion")
    assert late.criterion("worst_kind_motion") > early.criterion("worst_kind_motion")
    assert late.criterion("worst_kind_motion") == pytest.approx(0.32)
    frozen = ProbeScore(0.40, 0.1, unconditional=0.40, continuation=0.40)  # motion still counts
    assert frozen.criterion("worst_kind_motion") == pytest.approx(0.08)
    assert early.criterion("realism") == 0.35
