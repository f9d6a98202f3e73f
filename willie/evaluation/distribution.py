"""Distribution metrics for generated clips: are they like real footage, new, and steady?

- `frechet_distance`: how far apart two sets of features are, as Gaussians (FID/FVD's formula).
- `novelty`: are samples as far from the training clips as unseen real clips are (≈1), or
  copies of them (≪1)?
- `temporal_consistency`: how much frames change from one to the next (`frame_change_curve`:
  per frame step); flicker raises it, frozen clips lower it, so it is read against real
  footage's value.
- `tokenizer_features`: the features the first two are computed on, from the trained tokenizer.

Features are `[N, C]` arrays, one row per clip; everything is computed in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from willie.data.dataset import to_unit_range


def _check_features(name: str, x: np.ndarray, min_rows: int = 1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected features [N, C], got shape {x.shape}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name}: need at least {min_rows} rows (clips), got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: features contain NaN or infinity")
    return x


def _check_same_channels(**arrays: np.ndarray) -> None:
    channels = {name: x.shape[1] for name, x in arrays.items()}
    if len(set(channels.values())) > 1:
        raise ValueError(f"feature sets have different channel counts C: {channels}")


def _covariance_factor(centred: np.ndarray) -> np.ndarray:
    """F [C, r] with F·Fᵀ = cov of the centred rows [N, C], r = min(N, C).

    With fewer rows than channels the (scaled) rows themselves are the factor, so a
    rank-deficient covariance is never square-rooted; otherwise the covariance's eigenvectors
    scaled by the square roots of its eigenvalues (round-off negatives clipped to 0).
    """
    n, c = centred.shape
    if n <= c:
        return centred.T / np.sqrt(n - 1)
    cov = centred.T @ centred / (n - 1)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    return eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to features a [N, C] and b [M, C].

        d² = ‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^½)

    Tr((Σa Σb)^½) is the sum of the singular values of Faᵀ·Fb for any factors Σ = F·Fᵀ (the
    eigenvalues of Σa Σb are the squared singular values of Faᵀ Fb). Taking the centred rows as
    the factor when a set has fewer rows than channels keeps N < C exact, where the usual
    sqrtm(Σa Σb) would square-root round-off noise in hundreds of zero eigenvalues.
    Sample covariances (N − 1 denominators); the result is clipped at 0 against round-off.
    """
    a = _check_features("a", a, min_rows=2)
    b = _check_features("b", b, min_rows=2)
    _check_same_channels(a=a, b=b)
    mean_a, mean_b = a.mean(0), b.mean(0)
    centred_a, centred_b = a - mean_a, b - mean_b
    trace_a = np.square(centred_a).sum() / (len(a) - 1)
    trace_b = np.square(centred_b).sum() / (len(b) - 1)
    cross = _covariance_factor(centred_a).T @ _covariance_factor(centred_b)  # [ra, rb]
    trace_sqrt = np.linalg.svd(cross, compute_uv=False).sum()
    distance = np.square(mean_a - mean_b).sum() + trace_a + trace_b - 2 * trace_sqrt
    return float(max(distance, 0.0))


@dataclass(frozen=True, eq=False)
class Novelty:
    """Nearest-training-clip distances of samples, relative to those of real val clips."""

    score: float  # mean(sample_nn) / mean(val_nn): ≈1 as new as unseen footage, ≪1 copying
    sample_nn: np.ndarray  # [S] each sample's distance to its nearest training clip
    val_nn: np.ndarray  # [V] each real val clip's distance to its nearest training clip

    def __float__(self) -> float:
        return self.score


def _nearest_distances(queries: Tensor, reference: Tensor, max_elements: int = 2**24) -> Tensor:
    """[Q, C], [N, C] -> [Q]: Euclidean distance of each query to its nearest reference row."""
    rows = max(1, max_elements // len(reference))  # bounds the [rows, N] distance block
    return torch.cat(
        [torch.cdist(chunk, reference).min(dim=1).values for chunk in queries.split(rows)]
    )


def novelty(samples: np.ndarray, train: np.ndarray, real_val: np.ndarray) -> Novelty:
    """How far samples [S, C] are from the training clips [N, C], in units of how far unseen
    real clips real_val [V, C] are: mean nearest-neighbour distance of the samples divided by
    the same mean for the val clips.

    All three sets are first standardized with the training set's per-channel mean and standard
    deviation (channels with no spread are only centred), so that no channel dominates the
    Euclidean distances. A score ≈ 1 means samples are as new as real footage the model never
    saw; ≪ 1 means they sit on top of training clips (memorized). The val clips must not
    overlap the training clips, or the denominator is ≈ 0.
    """
    samples = _check_features("samples", samples)
    train = _check_features("train", train)
    real_val = _check_features("real_val", real_val)
    _check_same_channels(samples=samples, train=train, real_val=real_val)
    mean, std = train.mean(0), train.std(0)
    scale = np.where(std > 1e-12 * max(float(np.abs(train).max()), 1.0), std, 1.0)

    def standardized(x: np.ndarray) -> Tensor:
        return torch.from_numpy((x - mean) / scale)

    reference = standardized(train)
    sample_nn = _nearest_distances(standardized(samples), reference).numpy()
    val_nn = _nearest_distances(standardized(real_val), reference).numpy()
    if val_nn.mean() <= 0:
        raise ValueError(
            "every real val clip equals a training clip (nearest distance 0): the val split "
            "overlaps the training split, so novelty has no reference scale"
        )
    return Novelty(float(sample_nn.mean() / val_nn.mean()), sample_nn, val_nn)


def frame_change_curve(
    videos: np.ndarray | Tensor, value_range: tuple[float, float] = (-1.0, 1.0)
) -> np.ndarray:
    """Mean absolute change from frame t−1 to frame t, per t ≥ 1, on a 0..1 intensity scale:
    [N, T, H, W] (or [N, C, T, H, W]) -> [T − 1] float64.

    uint8 is read as 0..255, floating point as `value_range` (default [-1, 1], the models'
    range). A constant clip gives 0 everywhere, a clip alternating black and white 1.
    """
    if isinstance(videos, Tensor):
        videos = videos.detach().cpu().numpy()
    videos = np.asarray(videos)  # read-only views (memory-mapped shards) are fine
    if videos.ndim not in (4, 5):
        raise ValueError(f"expected videos [N, T, H, W] or [N, C, T, H, W], got {videos.shape}")
    if videos.ndim == 4:
        videos = videos[:, None]  # [N, 1, T, H, W]
    if videos.shape[0] < 1 or videos.shape[2] < 2:
        raise ValueError(f"need at least 1 clip of at least 2 frames, got {videos.shape}")
    low, high = (0.0, 255.0) if videos.dtype == np.uint8 else value_range
    if high <= low:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
    total = np.zeros(videos.shape[2] - 1)
    for start in range(0, len(videos), 64):  # bounds the float64 copy
        frames = videos[start : start + 64].astype(np.float64)
        total += np.abs(np.diff(frames, axis=2)).sum(axis=(0, 1, 3, 4))
    pixels_per_step = videos.shape[0] * videos.shape[1] * videos.shape[3] * videos.shape[4]
    return total / pixels_per_step / (high - low)


def temporal_consistency(
    videos: np.ndarray | Tensor, value_range: tuple[float, float] = (-1.0, 1.0)
) -> float:
    """Mean absolute change between consecutive frames, on a 0..1 intensity scale: the mean
    of `frame_change_curve` (every step averages as many pixels).

    A constant clip gives 0, a clip alternating black and white gives 1. Compare with real
    footage's value: see `temporal_consistency_ratio`.
    """
    return float(frame_change_curve(videos, value_range).mean())


def temporal_consistency_ratio(
    samples: np.ndarray | Tensor,
    real: np.ndarray | Tensor,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> float:
    """Samples' temporal consistency over real clips': ≈1 good, ≫1 flicker, ≪1 frozen."""
    reference = temporal_consistency(real, value_range)
    if reference <= 0:
        raise ValueError("the real clips never change from frame to frame; no reference scale")
    return temporal_consistency(samples, value_range) / reference


def batched_features(
    model: nn.Module,
    videos: Tensor,
    features: Callable[[Tensor], Tensor],
    batch_size: int,
    device: str | torch.device,
) -> np.ndarray:
    """Run `features` over `videos` [N, C, T, H, W] `batch_size` at a time, in inference mode
    with `model` in eval mode (its previous mode restored) -> [N, F] float64.

    uint8 videos are mapped to [-1, 1] on the device; float ones are taken as they are.
    """
    if videos.ndim != 5 or videos.shape[0] < 1:
        raise ValueError(f"expected videos [N ≥ 1, C, T, H, W], got {tuple(videos.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    was_training = model.training
    model.eval()
    rows = []
    try:
        with torch.inference_mode():
            for batch in videos.split(batch_size):
                batch = batch.to(device)
                batch = to_unit_range(batch) if batch.dtype == torch.uint8 else batch.float()
                rows.append(features(batch).double().cpu())
    finally:
        model.train(was_training)
    return torch.cat(rows).numpy()


def tokenizer_features(
    tokenizer: nn.Module,
    clips: Tensor,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Clips [N, 1, T, H, W] (float in [-1, 1], or uint8) -> features [N, C] float64.

    C is the tokenizer encoder's last width (`VideoTokenizer.encoder_features`: the encoder
    trunk's output averaged over time and space).
    """
    if clips.ndim != 5 or clips.shape[1] != 1:
        raise ValueError(f"expected clips [N ≥ 1, 1, T, H, W], got {tuple(clips.shape)}")
    return batched_features(tokenizer, clips, tokenizer.encoder_features, batch_size, device)
