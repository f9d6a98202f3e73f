"""Does generated video look like the film, and does it copy it? Measured against real frames.

realism  each generated frame's best SSIM (`willie.quality.ssim`'s definition, gray) against
         any real frame of the corpus. No trained model is involved, so none can flatter it:
         a frame of the film scores ≈ 0.8 against its other moments, another shot of the film
         ≈ 0.3, gray mush ≈ 0.2. Read per second of generated video, it shows drift. Its
         floor is `flat_floor`: a blank frame of the best gray scores 0.3–0.37 on the film
         (SSIM rewards flat against flat: sky, hull, water), so a sample must beat that to
         show anything.
copies   the share of generated windows that replay a training sequence frame by frame (SSIM ≥
         `threshold` at every frame, consecutive frames on both sides): memorization as a number.

Search: N generated frames against M real ones is N×M SSIMs. A cheap prefilter (cosine of the
frames' zero-mean 16×16 thumbnails, one matrix product) keeps each frame's `candidates` nearest
real frames, and only those get an exact SSIM; `tests/test_realism.py` checks the prefilter
finds the exhaustive best. Per-frame statistics (local means and variances) are computed once,
so a pair costs one separable blur of the product.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from willie.data.dataset import ClipDataset
from willie.quality import SSIM_C1, SSIM_C2, SSIM_WINDOW, gaussian_1d

THUMB = 16  # prefilter thumbnail side


def _blur(x: Tensor) -> Tensor:
    """[N, H, W] → [N, H-10, W-10]: the separable Gaussian, valid (no padding artefacts), as
    two matrix products (G_h · x · G_wᵀ), far faster on CPU than a one-channel convolution."""
    return _band(x.shape[-2]).to(x) @ x @ _band(x.shape[-1]).to(x).T


@functools.cache
def _band(n: int) -> Tensor:
    """[n - 10, n]: row i holds the 1-D Gaussian at columns i .. i + 10 (built once per n;
    never written to)."""
    g = gaussian_1d()
    band = torch.zeros(n - SSIM_WINDOW + 1, n)
    for i in range(n - SSIM_WINDOW + 1):
        band[i, i : i + SSIM_WINDOW] = g
    return band


@dataclass(frozen=True)
class FrameStats:
    """Frames in [0, 1] [N, H, W] with their local means and variances, for pairwise SSIM."""

    frames: Tensor
    mu: Tensor
    var: Tensor
    thumbs: Tensor  # [N, THUMB²] zero-mean, unit-norm: the prefilter's vectors

    @classmethod
    def of(cls, frames: Tensor) -> FrameStats:
        """frames [N, H, W] in [-1, 1] (the pipeline's range)."""
        x = ((frames.float() + 1) / 2).clamp(0, 1)
        mu = _blur(x)
        thumbs = F.adaptive_avg_pool2d(x[:, None], THUMB).flatten(1)
        thumbs = thumbs - thumbs.mean(1, keepdim=True)
        thumbs = thumbs / thumbs.norm(dim=1, keepdim=True).clamp(min=1e-6)
        return cls(x, mu, _blur(x * x) - mu**2, thumbs)

    def __len__(self) -> int:
        return len(self.frames)

    @classmethod
    def concat(cls, parts: list[FrameStats]) -> FrameStats:
        """The frames of every part, one after another (statistics are per frame)."""
        fields = ("frames", "mu", "var", "thumbs")
        return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in fields))


def pair_ssim(a: FrameStats, ia: Tensor, b: FrameStats, ib: Tensor) -> Tensor:
    """SSIM of frame a[ia[n]] with b[ib[n]] for each n: [n]."""
    mu_a, mu_b = a.mu[ia], b.mu[ib]
    cov = _blur(a.frames[ia] * b.frames[ib]) - mu_a * mu_b
    score = ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_a**2 + mu_b**2 + SSIM_C1) * (a.var[ia] + b.var[ib] + SSIM_C2)
    )
    return score.flatten(1).mean(1)


@dataclass(frozen=True)
class Matches:
    """Each query frame's nearest real frames by exact SSIM, best first."""

    index: Tensor  # [N, k] reference frame indices (−1 where fewer than k were allowed)
    score: Tensor  # [N, k] their SSIM (−inf where index is −1)

    @property
    def best(self) -> Tensor:
        """[N] each frame's best SSIM: its realism."""
        return self.score[:, 0]


@torch.no_grad()
def match_frames(
    queries: FrameStats,
    reference: FrameStats,
    *,
    candidates: int = 16,
    exclude: Tensor | None = None,
    chunk: int = 512,
) -> Matches:
    """The `candidates` prefiltered reference frames of each query, scored by exact SSIM.

    exclude [N, M] bool: pairs that may not match (e.g. a real frame and its own neighbours).
    """
    k = min(candidates, len(reference))
    indices, scores = [], []
    for start in range(0, len(queries), chunk):
        rows = torch.arange(start, min(start + chunk, len(queries)))
        sim = queries.thumbs[rows] @ reference.thumbs.T  # [n, M]
        if exclude is not None:
            sim = sim.masked_fill(exclude[rows], -torch.inf)
        near, top = sim.topk(k, dim=1)  # [n, k]
        exact = pair_ssim(queries, rows.repeat_interleave(k), reference, top.flatten())
        exact = exact.view(len(rows), k).masked_fill(near == -torch.inf, -torch.inf)
        order = exact.argsort(dim=1, descending=True)
        top = top.gather(1, order).masked_fill(exact.gather(1, order) == -torch.inf, -1)
        indices.append(top)
        scores.append(exact.gather(1, order))
    return Matches(torch.cat(indices), torch.cat(scores))


@torch.no_grad()
def flat_floor(reference: FrameStats, levels: int = 33, chunk: int = 256) -> float:
    """The realism of the best blank frame: max over `levels` gray levels in [-1, 1] of a flat
    frame's best SSIM against every reference frame (exhaustive: a flat frame's thumbnail is
    zero, so the prefilter cannot rank). Samples at or below it show nothing of the film."""
    H, W = reference.frames.shape[-2:]
    flats = FrameStats.of(torch.linspace(-1, 1, levels)[:, None, None].expand(levels, H, W))
    best = -torch.inf
    for g in range(levels):
        for start in range(0, len(reference), chunk):
            rows = torch.arange(start, min(start + chunk, len(reference)))
            score = pair_ssim(flats, torch.full_like(rows, g), reference, rows).max()
            best = max(best, float(score))
    return best


def per_second(scores: Tensor, fps: float) -> Tensor:
    """[T] per-frame scores → [ceil(T / fps)] the mean of each second."""
    second = (torch.arange(len(scores)) / fps).floor().long()
    sums = torch.zeros(int(second[-1]) + 1).index_add_(0, second, scores.float())
    return sums / torch.bincount(second).float()


@torch.no_grad()
def copied_windows(
    generated: FrameStats,
    sequences: FrameStats,
    sequence_id: Tensor,
    *,
    window: int,
    stride: int,
    threshold: float = 0.95,
    candidates: int = 16,
) -> tuple[int, int]:
    """(replayed, total) windows of `window` generated frames (one every `stride`).

    `sequences` holds the training footage as consecutive frames, `sequence_id` [M] naming the
    continuous sequence each belongs to. A window is a replay when its first frame matches some
    reference frame j (SSIM ≥ threshold, among its candidates) and every later frame t matches
    j + t of the same sequence.
    """
    starts = range(0, len(generated) - window + 1, stride)
    matches = match_frames(generated, sequences, candidates=candidates)
    replayed = 0
    for i in starts:
        for j, score in zip(matches.index[i].tolist(), matches.score[i].tolist(), strict=True):
            if score < threshold:
                break  # best first: no later candidate passes either
            last = j + window - 1
            if last >= len(sequences) or sequence_id[last] != sequence_id[j]:
                continue
            offsets = torch.arange(1, window)
            later = pair_ssim(generated, i + offsets, sequences, j + offsets)
            if bool((later >= threshold).all()):
                replayed += 1
                break
    return replayed, len(starts)


@dataclass(frozen=True)
class RealFrames:
    """The distinct real frames of a split, in time order, at one size."""

    frames: Tensor  # [M, H, W] in [-1, 1]
    scene: Tensor  # [M] scene id
    index: Tensor  # [M] frame number in the 24 fps sequence

    def far_from(self, other: RealFrames, frames: int) -> Tensor:
        """[len(other), M] True where a pair is < `frames` apart in the same footage."""
        return (other.index[:, None] - self.index[None, :]).abs() < frames

    @classmethod
    def concat(cls, parts: list[RealFrames]) -> RealFrames:
        fields = ("frames", "scene", "index")
        return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in fields))


def real_frames(clips_dir: str | os.PathLike[str], split: str, size: int) -> RealFrames:
    """Every distinct frame of a split's clips (clips overlap), area-downsampled to `size`."""
    dataset = ClipDataset(clips_dir, split, size=size)
    shards = dataset.shards
    seen: dict[int, tuple[int, Tensor]] = {}
    for row in range(len(dataset)):
        numbers = [int(f) for f in shards.frame_indices[row]]
        if any(n not in seen for n in numbers):
            clip = dataset[row][0]  # [T, H, W]
            for t, n in enumerate(numbers):
                seen.setdefault(n, (int(shards.scene[row]), clip[t]))
    order = sorted(seen)
    return RealFrames(
        torch.stack([seen[i][1] for i in order]),
        torch.tensor([seen[i][0] for i in order]),
        torch.tensor(order),
    )
