"""The super-resolution model and the train_superres stage on a tiny set of drawn clips."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from willie.atomic import write_json
from willie.config import SuperresConfig
from willie.data.dataset import ClipDataset, area_resize
from willie.data.shards import ClipRow, ClipShardWriter
from willie.errors import WillieError
from willie.superres import SuperResArch, VideoSuperRes, load_superres
from willie.superres.model import bicubic_upsample, temporal_neighbourhoods
from willie.superres.train import dihedral_view, train_superres, training_pairs
from willie.training.checkpoint import checkpoint_paths
from willie.training.engine import StopRequested, step_generator

CLIP = (5, 48, 48)  # [T, H, W] stored clips
TINY = {
    "scale": 2,
    "frames": 3,
    "channels": 16,
    "blocks": 2,
    "crop": 32,
    "batch_size": 4,
    "max_steps": 300,
    "lr": 4e-3,
    "warmup_steps": 5,
    "ema_decay": 0.9,
    "checkpoint_every": 100,
    "eval_clips": 3,
    "device": "cpu",
}


def moving_shapes(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """[T, H, W] uint8: ink-outlined boxes and discs drifting over a flat background."""
    T, H, W = shape
    y, x = np.mgrid[0:H, 0:W]
    frames = np.full(shape, rng.integers(150, 230), np.float32)
    for _ in range(3):
        cy, cx = rng.uniform(8, H - 8), rng.uniform(8, W - 8)
        vy, vx = rng.uniform(-2, 2, size=2)
        r, tone = rng.uniform(4, 10), rng.integers(20, 255)
        disc = rng.random() < 0.5
        for t in range(T):
            dy, dx = y - (cy + vy * t), x - (cx + vx * t)
            dist = np.hypot(dy, dx) if disc else np.maximum(np.abs(dy), np.abs(dx))
            frames[t][dist <= r + 1.5] = 0  # the ink outline
            frames[t][dist <= r] = tone
    return frames.astype(np.uint8)


def write_clips(root: Path, shape: tuple[int, int, int], counts: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for split, count in counts.items():
        with ClipShardWriter(root / split, shape) as writer:
            for i in range(count):
                frames = moving_shapes(rng, shape)
                writer.add(ClipRow(frames, i, 0.0, np.arange(shape[0])))
    write_json(root / "manifest.json", {"clip_shape": list(shape), "clips": counts})
    return root


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """These models are tiny: a second intra-op thread only adds synchronisation, and on a
    busy 2-core machine a spinning OpenMP thread makes each step ~50× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clips(tmp_path_factory.mktemp("clips"), CLIP, {"train": 16, "val": 3})


@pytest.fixture(scope="module")
def trained(clips: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("superres")
    logged: list[int] = []
    metrics = train_superres(
        SuperresConfig(**TINY), clips, out, log=lambda values, step: logged.append(step)
    )
    assert logged, "per-step metrics reach the logger"
    return out, metrics


def random_video(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0)) * 2 - 1


# ---- the model ------------------------------------------------------------------------------


def test_untrained_model_is_bicubic_of_the_centre_frame() -> None:
    model = VideoSuperRes(SuperResArch(scale=2, frames=3, channels=8, blocks=1))
    video = random_video(2, 1, 4, 8, 12)
    out = model(video)
    assert out.shape == (2, 1, 4, 16, 24)
    torch.testing.assert_close(out, bicubic_upsample(video, 2))


def test_area_consistent_output_downsamples_to_its_input_and_is_nearer_the_original() -> None:
    arch = SuperResArch(scale=2, frames=3, channels=8, blocks=1, area_consistent=True)
    model = VideoSuperRes(arch)
    original = random_video(2, 1, 4, 16, 24)
    low = area_resize(original, (8, 12))
    with torch.no_grad():
        untrained = model(low)
        # The projection onto the frames that area-downsample to `low`, which the original is
        # one of: it can only come nearer the original than bicubic.
        bicubic = bicubic_upsample(low, 2)
        assert (untrained - original).square().sum() < (bicubic - original).square().sum()
        torch.nn.init.normal_(model.conv_out.weight, std=0.1)  # a non-trivial residual
        for out in (untrained, model(low)):
            torch.testing.assert_close(area_resize(out, (8, 12)), low)
    assert not torch.allclose(model(low), untrained)


def test_neighbourhoods_replicate_the_clip_edges() -> None:
    video = torch.arange(5.0)[None, None, :, None, None].expand(1, 1, 5, 2, 2)  # frame t = t
    stacks = temporal_neighbourhoods(video, 3)
    assert stacks.shape == (1, 5, 3, 2, 2)
    expected = [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 4]]
    assert stacks[0, :, :, 0, 0].tolist() == expected
    assert temporal_neighbourhoods(video, 5, [0])[0, :, :, 0, 0].tolist() == [[0, 0, 0, 1, 2]]
    # A one-frame clip is its own neighbourhood.
    assert temporal_neighbourhoods(video[:, :, :1], 3)[0, 0, :, 0, 0].tolist() == [0, 0, 0]


def test_each_output_frame_sees_exactly_its_neighbours() -> None:
    torch.manual_seed(0)
    model = VideoSuperRes(SuperResArch(scale=2, frames=3, channels=8, blocks=1))
    torch.nn.init.normal_(model.conv_out.weight, std=0.1)  # a non-trivial residual
    video = random_video(1, 1, 6, 8, 8)
    changed = video.clone()
    changed[:, :, 3] += 0.5
    with torch.no_grad():
        moved = (model(changed) - model(video)).abs().amax(dim=(0, 1, 3, 4))
    assert moved[[2, 3, 4]].min() > 0, "frames 2..4 have frame 3 in their neighbourhood"
    assert moved[[0, 1, 5]].max() == 0, "the others do not"


def test_upscale_in_chunks_matches_one_pass_and_clamps() -> None:
    torch.manual_seed(0)
    model = VideoSuperRes(SuperResArch(scale=3, frames=5, channels=8, blocks=1)).eval()
    torch.nn.init.normal_(model.conv_out.weight, std=0.5)
    video = random_video(2, 1, 7, 6, 5)
    whole = model.upscale(video, chunk=100)
    assert whole.shape == (2, 1, 7, 18, 15)
    assert whole.min() >= -1 and whole.max() <= 1
    torch.testing.assert_close(model.upscale(video, chunk=3), whole)
    torch.testing.assert_close(whole, model(video).clamp(-1, 1))


def test_architecture_is_validated_and_round_trips() -> None:
    arch = SuperResArch(scale=4, frames=5, channels=16, blocks=3)
    assert SuperResArch.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch
    with pytest.raises(WillieError, match="must be odd"):
        SuperResArch(frames=4)
    with pytest.raises(WillieError, match="unknown super-resolution architecture keys"):
        SuperResArch.from_dict({"scale": 2, "depth": 3})


def test_training_crops_are_aligned_pairs_drawn_per_step() -> None:
    arch = SuperResArch(scale=2, frames=3)
    clips = random_video(3, 1, 5, 16, 16)
    low, high = training_pairs(clips, arch, (8, 8), step_generator(0, 7, 0, 0))
    assert low.shape == (3, 1, 3, 4, 4) and high.shape == (3, 1, 1, 8, 8)
    torch.testing.assert_close(area_resize(high, (4, 4)), low[:, :, 1:2])  # centre = target
    again, _ = training_pairs(clips, arch, (8, 8), step_generator(0, 7, 0, 0))
    other, _ = training_pairs(clips, arch, (8, 8), step_generator(0, 8, 0, 0))
    torch.testing.assert_close(again, low)
    assert not torch.equal(other, low)


def test_dihedral_views_are_the_eight_symmetries_of_the_square() -> None:
    x = torch.arange(9.0).view(1, 3, 3)
    views = [dihedral_view(x, v) for v in range(8)]
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
    torch.testing.assert_close(views[0], x)
    torch.testing.assert_close(views[1], x.flip(-1))


def test_dihedral_crops_stay_aligned_pairs() -> None:
    arch = SuperResArch(scale=2, frames=3)
    clips = random_video(4, 1, 5, 16, 16)
    generator = step_generator(0, 3, 0, 0)
    low, high = training_pairs(clips, arch, (8, 8), generator, dihedral=True)
    torch.testing.assert_close(area_resize(high, (4, 4)), low[:, :, 1:2])
    plain, _ = training_pairs(clips, arch, (8, 8), step_generator(0, 3, 0, 0))
    assert not torch.equal(plain, low)  # some crops were turned or mirrored


def test_zoomed_crops_show_a_wider_region_and_stay_aligned_pairs() -> None:
    arch = SuperResArch(scale=2, frames=3)
    # A left-to-right ramp: a crop's first-to-last column step says how wide a region it shows.
    clips = torch.linspace(-1, 1, 16).expand(6, 1, 5, 16, 16).clone()
    span = lambda high: (high[..., -1] - high[..., 0]).mean(-1).flatten()  # noqa: E731
    _, plain = training_pairs(clips, arch, (8, 8), step_generator(0, 1, 0, 0))
    torch.testing.assert_close(span(plain), torch.full((6,), 14 / 15))  # 8 of 16 columns
    low, high = training_pairs(clips, arch, (8, 8), step_generator(0, 1, 0, 0), zoom=2.0)
    assert low.shape == (6, 1, 3, 4, 4) and high.shape == (6, 1, 1, 8, 8)
    torch.testing.assert_close(area_resize(high, (4, 4)), low[:, :, 1:2])
    assert (span(high) >= 14 / 15 - 1e-6).all() and (span(high) > 1.1).any()  # up to 16 wide
    again, _ = training_pairs(clips, arch, (8, 8), step_generator(0, 1, 0, 0), zoom=2.0)
    torch.testing.assert_close(again, low)


# ---- the stage ------------------------------------------------------------------------------


def test_trained_model_beats_bicubic(trained: tuple[Path, dict]) -> None:
    _, metrics = trained
    assert metrics["steps"] == TINY["max_steps"]
    assert metrics["psnr"] > metrics["psnr_bicubic"] + 0.5, metrics  # ≈ +2.8 dB here
    assert metrics["gain_db"] == pytest.approx(metrics["psnr"] - metrics["psnr_bicubic"])
    assert metrics["ssim"] > metrics["ssim_bicubic"], metrics
    assert metrics["train_seconds"] >= 0


def test_training_publishes_model_config_card_and_comparison(
    trained: tuple[Path, dict],
) -> None:
    out, _ = trained
    for name in ("model.safetensors", "config.json", "MODEL_CARD.md", "compare.png"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["scale"] == 2 and config["input_size"] == [24, 24]
    assert config["output_size"] == [48, 48] and config["arch"]["channels"] == 16
    with Image.open(out / "compare.png") as picture:
        assert picture.mode == "L" and picture.size == (3 * 48, 48)
    assert "psnr_bicubic" in (out / "MODEL_CARD.md").read_text()


def test_loaded_model_reproduces_the_validation_psnr(
    trained: tuple[Path, dict], clips: Path
) -> None:
    from willie.quality import psnr

    out, metrics = trained
    model = load_superres(out)
    assert not model.training
    val = ClipDataset(clips, "val")
    real = torch.stack([val[i] for i in range(len(val))])
    upscaled = model.upscale(area_resize(real, (24, 24)))
    assert psnr(upscaled, real).mean().item() == pytest.approx(metrics["psnr"], abs=1e-4)


def test_a_forced_rerun_of_a_finished_config_trains_again(
    trained: tuple[Path, dict], clips: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`dvc repro -f`: a finished run is not resumed (that is for interrupted runs)."""
    out, first = trained
    copy = tmp_path / "superres"
    shutil.copytree(out, copy)
    (fingerprint_dir,) = (copy / "checkpoints").iterdir()
    finished_at = max(p.stat().st_mtime_ns for p in checkpoint_paths(fingerprint_dir))
    again = train_superres(SuperresConfig(**{**TINY, "log_every": 5}), clips, copy)
    err = capfd.readouterr().err
    assert "training again from step 0" in err and "resuming from" not in err
    assert again["steps"] == TINY["max_steps"] and again["train_seconds"] > 0
    assert again["psnr"] == pytest.approx(first["psnr"])  # the same seed: the same model
    now = checkpoint_paths(fingerprint_dir)
    assert now and all(p.stat().st_mtime_ns > finished_at for p in now)  # the old ones gone


def test_run_stopped_by_sigterm_resumes_to_the_same_model(clips: Path, tmp_path: Path) -> None:
    def stop_midway(values: dict[str, float], step: int) -> None:
        if step == 10:
            os.kill(os.getpid(), signal.SIGTERM)

    cfg = SuperresConfig(**{**TINY, "max_steps": 20, "log_every": 5})
    uninterrupted = train_superres(cfg, clips, tmp_path / "whole")
    with pytest.raises(StopRequested, match="at step 10"):
        train_superres(cfg, clips, tmp_path / "split", log=stop_midway)
    assert not (tmp_path / "split" / "model.safetensors").exists()
    resumed = train_superres(cfg, clips, tmp_path / "split")
    assert resumed["steps"] == 20 and resumed["psnr"] == uninterrupted["psnr"]
    # The same crops in the same order: the very same weights.
    whole, split = (load_superres(tmp_path / name).state_dict() for name in ("whole", "split"))
    for name, weights in whole.items():
        torch.testing.assert_close(split[name], weights, rtol=0, atol=0, msg=name)


def test_gan_training_runs(clips: Path, tmp_path: Path) -> None:
    cfg = SuperresConfig(**{**TINY, "max_steps": 3, "adv_weight": 0.1, "eval_clips": 1})
    metrics = train_superres(cfg, clips, tmp_path)
    assert metrics["steps"] == 3 and np.isfinite(metrics["psnr"])


def test_scale_not_dividing_the_clips_is_refused_before_training(
    clips: Path, tmp_path: Path
) -> None:
    with pytest.raises(WillieError, match=r"superres.scale=5 does not divide .* 48×48"):
        train_superres(SuperresConfig(**{**TINY, "scale": 5}), clips, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_learned_correction_never_moves_a_blocks_average() -> None:
    torch.manual_seed(0)
    model = VideoSuperRes(SuperResArch(scale=2, frames=3, channels=8, blocks=1))
    torch.nn.init.normal_(model.conv_out.weight, std=0.5)
    torch.nn.init.normal_(model.conv_out.bias, std=0.5)  # a bias would shift brightness
    correction = model.residual(random_video(2, 3, 8, 8))  # [N, frames, h, w] → [2, 1, 16, 16]
    assert correction.abs().amax() > 1e-2
    block_means = torch.nn.functional.avg_pool2d(correction, 2)
    torch.testing.assert_close(block_means, torch.zeros_like(block_means), atol=1e-6, rtol=0)
