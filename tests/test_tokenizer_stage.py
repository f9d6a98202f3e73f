"""The train_tokenizer and tokenize stages on a small synthetic corpus."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from tests.conftest import synthetic_raw_dir
from willie.cli import app
from willie.config import PreprocessConfig, TokenizerConfig
from willie.data.cartoon_prior import Mixture, cartoon_clips
from willie.data.dataset import ClipDataset
from willie.data.preprocess import run_preprocess
from willie.errors import WillieError
from willie.tokenizer import load_tokenizer
from willie.tokenizer.tokenize import run_tokenize
from willie.tokenizer.train import train_tokenizer
from willie.training.engine import autocast

TINY = {
    "size": 32,
    "channels": 8,
    "batch_size": 2,
    "max_steps": 8,
    "warmup_steps": 2,
    "disc_start": 3,
    "gen_adv_start": 5,
    "r1_every": 2,
    "checkpoint_every": 4,
    "eval_clips": 4,
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    raw = synthetic_raw_dir(root, seed=3, seconds=8)
    run_preprocess(PreprocessConfig(size=32, clip_frames=9, stride=8), raw, root / "clips")
    return root / "clips"


@pytest.fixture(scope="module")
def trained(clips: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tokenizer")
    logged: list[int] = []
    metrics = train_tokenizer(
        TokenizerConfig(**TINY), clips, out, log=lambda values, step: logged.append(step)
    )
    assert logged, "per-step metrics reach the logger"
    return out, metrics


def test_training_publishes_ema_model_card_and_recon_gif(trained: tuple[Path, dict]) -> None:
    out, metrics = trained
    for name in ("model.safetensors", "config.json", "MODEL_CARD.md", "recon.gif"):
        assert (out / name).is_file(), name
    assert metrics["codebook_size"] == 1000 and metrics["steps"] == 8
    for key in ("psnr", "ssim", "codebook_usage", "perplexity", "bits_per_pixel"):
        assert np.isfinite(metrics[key]), key
    assert 0 < metrics["codebook_usage"] <= 1
    assert metrics["compression_ratio"] == pytest.approx(8 / metrics["bits_per_pixel"])
    # Train beside val, so memorization shows.
    assert np.isfinite(metrics["train_psnr"]) and np.isfinite(metrics["train_ssim"])
    assert metrics["memorization_gap_db"] == pytest.approx(metrics["train_psnr"] - metrics["psnr"])
    assert "memorization_gap_db" in (out / "MODEL_CARD.md").read_text()
    config = json.loads((out / "config.json").read_text())
    assert config["arch"]["levels"] == [8, 5, 5, 5] and config["size"] == 32


def test_loaded_tokenizer_encodes_and_decodes(trained: tuple[Path, dict], clips: Path) -> None:
    tokenizer = load_tokenizer(trained[0])
    clip = ClipDataset(clips, "val", size=32)[0].unsqueeze(0)  # [1, 1, 9, 32, 32]
    with torch.no_grad():
        indices = tokenizer.encode(clip)
        video = tokenizer.decode(indices)
    assert indices.shape == (1, 3, 4, 4) and indices.max() < 1000
    assert video.shape == clip.shape


def test_tokenize_writes_memory_mappable_tokens(
    trained: tuple[Path, dict], clips: Path, tmp_path: Path
) -> None:
    metrics = run_tokenize(TokenizerConfig(**TINY), clips, trained[0], tmp_path / "tokens")
    manifest = json.loads((tmp_path / "tokens" / "manifest.json").read_text())
    assert manifest["codebook_size"] == 1000 and manifest["latent_shape"] == [3, 4, 4]
    assert manifest["dtype"] == "uint16" and len(manifest["tokenizer_sha256"]) == 64
    for split in ("train", "val"):
        tokens = np.load(tmp_path / "tokens" / split / "tokens.npy", mmap_mode="r")
        scene = np.load(tmp_path / "tokens" / split / "scene.npy")
        start = np.load(tmp_path / "tokens" / split / "start_frame.npy")
        dataset = ClipDataset(clips, split, size=32)
        assert tokens.shape == (len(dataset), 3, 4, 4) and tokens.dtype == np.uint16
        assert len(scene) == len(start) == len(dataset)
        # Order is kept: within a scene, clips advance in time.
        for s in np.unique(scene):
            assert np.all(np.diff(start[scene == s]) > 0)
        assert manifest["clips"][split] == len(dataset) == metrics[f"clips_{split}"]
    # The stored tokens are what the tokenizer gives for the clip.
    first = ClipDataset(clips, "train", size=32)[0].unsqueeze(0)
    with torch.no_grad(), autocast(torch.device("cpu")):  # the stage's precision policy
        expected = load_tokenizer(trained[0]).encode(first)[0].numpy()
    train_tokens = np.load(tmp_path / "tokens" / "train" / "tokens.npy")
    np.testing.assert_array_equal(train_tokens[0], expected)


def test_bf16_trains_the_tokenizer_and_its_gan_on_any_cpu(clips: Path, tmp_path: Path) -> None:
    """precision: bf16 on the CPU (fast with AMX, emulated elsewhere): the generator, the
    discriminator with its R1 penalty's double backward, and the FSQ kept in fp32."""
    cfg = TokenizerConfig(**{**TINY, "max_steps": 6, "log_every": 1, "precision": "bf16"})
    logged: list[dict[str, float]] = []
    metrics = train_tokenizer(cfg, clips, tmp_path, log=lambda values, step: logged.append(values))
    assert any("r1" in values for values in logged) and any("g_adv" in v for v in logged)
    assert all(np.isfinite(v) for values in logged for v in values.values())
    assert np.isfinite(metrics["psnr"]) and metrics["steps"] == 6


def test_integer_levels_set_the_codebook(clips: Path, tmp_path: Path) -> None:
    cfg = TokenizerConfig(**{**TINY, "max_steps": 2, "levels": 3, "fsq_dims": 5})
    metrics = train_tokenizer(cfg, clips, tmp_path)
    assert metrics["codebook_size"] == 3**5


def test_missing_tokenizer_is_a_clear_error(clips: Path, tmp_path: Path) -> None:
    with pytest.raises(WillieError, match="dvc repro train_tokenizer"):
        run_tokenize(TokenizerConfig(**TINY), clips, tmp_path / "none", tmp_path / "tokens")
    assert not (tmp_path / "tokens").exists()


def test_clip_length_not_fitting_the_tokenizer_is_refused(clips: Path, tmp_path: Path) -> None:
    cfg = TokenizerConfig(**{**TINY, "size": 64})
    with pytest.raises(WillieError, match="exceeds the stored"):
        train_tokenizer(cfg, clips, tmp_path)


def test_cli_rejects_generator_adversarial_before_discriminator(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("tokenizer:\n  disc_start: 100\n  gen_adv_start: 50\n")
    result = CliRunner().invoke(app, ["train-tokenizer", "--params", str(params), "--no-track"])
    assert (
        result.exit_code == 1 and "gen_adv_start (50) must be ≥ disc_start (100)" in result.output
    )


def test_gan_training_runs_under_torchrun_with_two_cpu_processes(
    clips: Path, tmp_path: Path
) -> None:
    params = tmp_path / "params.yaml"
    tokenizer = {**TINY, "max_steps": 6, "device": "cpu"}
    # the clips are 32×32, as the tokenizer's input: nothing for super-resolution to upscale
    sections = {"preprocess": {"size": 32}, "tokenizer": tokenizer, "sample": {"upscale": False}}
    params.write_text(yaml.safe_dump(sections))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "willie.cli",
        "train-tokenizer",
        "--no-track",
        "--params",
        str(params),
        "--clips",
        str(clips),
        "--out",
        str(tmp_path / "out"),
        "--metrics",
        str(tmp_path / "tokenizer.json"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "tokenizer.json").read_text())  # rank 0 only
    assert metrics["steps"] == 6 and (tmp_path / "out" / "model.safetensors").is_file()


def test_augmentation_mirrors_about_half_the_clips_reproducibly() -> None:
    from willie.tokenizer.augment import apply_augmentation, draw_augmentation
    from willie.training.engine import step_generator

    clips = torch.arange(64 * 4.0).reshape(64, 1, 1, 1, 4)

    def augmented(step: int) -> torch.Tensor:
        generator = step_generator(0, step, 0, 0)
        params = draw_augmentation(64, flip=True, shift=0, generator=generator)
        return apply_augmentation(clips, params, 0)

    flipped = augmented(3)
    mirrored = (flipped == clips.flip(-1)).all(dim=-1).flatten()
    assert ((flipped == clips).all(dim=-1).flatten() | mirrored).all()
    assert 16 < int(mirrored.sum()) < 48
    assert torch.equal(flipped, augmented(3))
    assert not torch.equal(flipped, augmented(4))


def test_augmentation_shifts_each_clip_by_its_own_offset_with_reflected_borders() -> None:
    from willie.tokenizer.augment import apply_augmentation, draw_augmentation

    clips = torch.rand(3, 1, 2, 16, 16)
    params = torch.tensor([[0, 2, -3], [0, 0, 0], [1, -1, 1]])
    out = apply_augmentation(clips, params, shift=4)
    assert out.shape == clips.shape
    assert torch.equal(out[0, ..., 2:, :-3], clips[0, ..., :-2, 3:])  # down 2, left 3
    assert torch.equal(out[0, ..., 1, :-3], clips[0, ..., 1, 3:])  # reflected: row 1 again
    assert torch.equal(out[1], clips[1])
    assert torch.equal(out[2, ..., :-1, 1:], clips[2].flip(-1)[..., 1:, :-1])
    drawn = draw_augmentation(1000, flip=False, shift=4, generator=torch.Generator())
    assert (drawn[:, 0] == 0).all() and drawn[:, 1:].abs().max() == 4


def test_shift_must_stay_inside_the_frame() -> None:
    with pytest.raises(ValueError, match=r"tokenizer\.shift"):
        TokenizerConfig(size=16, shift=8)


def test_a_mixture_keeps_its_share_and_every_extra_clip() -> None:
    real = [torch.full((1,), float(i)) for i in range(10)]
    extra = torch.arange(100, 130, dtype=torch.float32)[:, None]  # 30 extra clips
    mix = Mixture(real, extra, 0.25)
    items = torch.cat([mix[i] for i in range(len(mix))])
    drawn = items[items >= 100]
    assert mix.share == pytest.approx(0.25, abs=0.01)
    assert set(drawn.tolist()) == set(range(100, 130)), "every extra clip is drawn"
    assert set(items[items < 100].tolist()) == set(range(10))
    # A large real set repeats the extra clips instead.
    many = Mixture([torch.zeros(1)] * 1000, extra, 0.25)
    assert many.share == pytest.approx(0.25, abs=0.01) and len(many) == 1333
    with pytest.raises(ValueError, match="share"):
        Mixture(real, extra, 1.0)


def test_the_cartoon_is_cut_and_framed_like_the_real_clips(clips: Path) -> None:
    like = ClipDataset(clips, "train", size=16)
    cartoon = cartoon_clips(like, clips, seconds=2, seed=11)
    assert cartoon.shape[1:] == (1, 9, 16, 16) and len(cartoon) >= 2
    assert -1 <= float(cartoon.min()) < 0 < float(cartoon.max()) <= 1


def test_the_cartoon_may_not_be_the_synthetic_corpus_itself(clips: Path, tmp_path: Path) -> None:
    copied = tmp_path / "clips"
    shutil.copytree(clips, copied)
    manifest = json.loads((copied / "manifest.json").read_text())
    manifest["source"] |= {"source": "synthetic", "seed": 11}
    (copied / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WillieError, match="synthetic_seed"):
        cartoon_clips(ClipDataset(copied, "train"), copied, seconds=2, seed=11)


def test_training_with_the_cartoon_reports_its_share(clips: Path, tmp_path: Path) -> None:
    cfg = TokenizerConfig(**TINY, synthetic=0.5, synthetic_seconds=2, synthetic_seed=11)
    metrics = train_tokenizer(cfg, clips, tmp_path / "tokenizer")
    assert metrics["cartoon_clips"] >= 2 and 0.3 < metrics["cartoon_share"] < 0.7
    assert "synthetic cartoon (seed 11)" in (tmp_path / "tokenizer" / "MODEL_CARD.md").read_text()
