"""Realism and copy measures: exact SSIM, a prefilter that finds the exhaustive best, replays."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from willie.evaluation.realism import (
    FrameStats,
    RealFrames,
    copied_windows,
    flat_floor,
    match_frames,
    pair_ssim,
    per_second,
)
from willie.evaluation.report import GeneratedVideo, realism_metrics
from willie.quality import ssim


def smooth_frames(n: int, seed: int, size: int = 32) -> torch.Tensor:
    """[n, size, size] in [-1, 1]: random blobs, as different from each other as drawings."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 6, 6, generator=g)
    return (F.interpolate(coarse, size=size, mode="bicubic")[:, 0] * 2 - 1).clamp(-1, 1)


def test_pair_ssim_is_the_ssim_of_willie_quality():
    a, b = smooth_frames(6, 0), smooth_frames(6, 1)
    rows = torch.arange(6)
    expected = ssim(a[:, None, None], b[:, None, None])  # [6, 1, 1, H, W]: one frame per clip
    torch.testing.assert_close(pair_ssim(FrameStats.of(a), rows, FrameStats.of(b), rows), expected)


def test_prefilter_finds_the_exhaustive_best_match():
    reference = smooth_frames(60, 2)
    g = torch.Generator().manual_seed(3)
    sources = torch.randint(0, 60, (20,), generator=g)
    queries = (reference[sources] + 0.15 * torch.randn(20, 32, 32, generator=g)).clamp(-1, 1)
    ref, q = FrameStats.of(reference), FrameStats.of(queries)
    matches = match_frames(q, ref, candidates=8)
    exhaustive = torch.stack(
        [pair_ssim(q, torch.full((60,), i), ref, torch.arange(60)).max() for i in range(20)]
    )
    assert torch.equal(matches.index[:, 0], sources)
    torch.testing.assert_close(matches.best, exhaustive)
    assert bool((matches.score[:, :-1] >= matches.score[:, 1:]).all())  # best first


def test_excluded_pairs_never_match():
    frames = FrameStats.of(smooth_frames(10, 4))
    itself = torch.eye(10, dtype=torch.bool)
    matches = match_frames(frames, frames, candidates=3, exclude=itself)
    assert not bool((matches.index[:, 0] == torch.arange(10)).any())
    assert float(match_frames(frames, frames, candidates=3).best.min()) > 0.999


def test_per_second_averages_each_second():
    scores = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.5])
    torch.testing.assert_close(per_second(scores, fps=2), torch.tensor([1.0, 0.0, 0.5]))


def test_a_replayed_sequence_counts_and_a_shuffled_one_does_not():
    train = smooth_frames(40, 5)  # two continuous sequences of 20 frames
    sequence_id = torch.arange(40) // 20
    reference = FrameStats.of(train)
    window = 5

    def share(generated: torch.Tensor) -> tuple[int, int]:
        frames = FrameStats.of(generated)
        return copied_windows(frames, reference, sequence_id, window=window, stride=window - 1)

    replay = train[3:12]  # 9 frames: windows at 0 and 4, both replays
    assert share(replay) == (2, 2)
    shuffled = train[torch.tensor([3, 4, 30, 6, 7, 8, 1, 10, 11])]
    assert share(shuffled) == (0, 2)
    across = train[17:22]  # the end of one sequence, then the start of the other
    assert share(across) == (0, 1)
    faint = (replay + 0.6 * smooth_frames(9, 6)).clamp(-1, 1)  # the same motion, other pictures
    assert share(faint) == (0, 2)


def test_concatenated_stats_are_the_stats_of_the_concatenated_frames():
    a, b = smooth_frames(3, 7), smooth_frames(4, 8)
    joined = FrameStats.concat([FrameStats.of(a), FrameStats.of(b)])
    whole = FrameStats.of(torch.cat([a, b]))
    for name in ("frames", "mu", "var", "thumbs"):
        torch.testing.assert_close(getattr(joined, name), getattr(whole, name))


def test_the_reconstructions_realism_is_the_ceiling_a_sample_can_reach():
    """realism_recon scores the tokenizer's reconstructions of val against the corpus: an
    exact reconstruction matches its own frame (1.0); a blurred one, less; so do samples."""
    train, val = smooth_frames(24, 5), smooth_frames(12, 6)
    corpus = {
        "train": RealFrames(train, torch.zeros(24, dtype=torch.long), torch.arange(24)),
        "val": RealFrames(val, torch.ones(12, dtype=torch.long), torch.arange(100, 112)),
    }
    sample = [GeneratedVideo(smooth_frames(8, 7), None)]
    blurred = F.avg_pool2d(val[:, None], 5, stride=1, padding=2)[:, 0]
    exact, _ = realism_metrics(sample, corpus, fps=4, every=1, copies=None, recon=val)
    soft, _ = realism_metrics(sample, corpus, fps=4, every=1, copies=None, recon=blurred)
    assert exact["realism_recon"] > 0.999
    assert soft["realism_recon"] < exact["realism_recon"] - 0.01
    assert exact["realism"] == soft["realism"] < exact["realism_recon"]
    none, _ = realism_metrics(sample, corpus, fps=4, every=1, copies=None)
    assert "realism_recon" not in none


def test_a_blank_frame_of_the_right_gray_sets_the_floor():
    """Against a film of flat frames, a flat frame of their gray matches perfectly; against
    drawings, the best blank frame scores less, and a drawing itself more."""
    grays = torch.tensor([-0.5, 0.5])[:, None, None].expand(2, 32, 32)
    assert flat_floor(FrameStats.of(grays)) > 0.99
    drawings = FrameStats.of(smooth_frames(20, 8))
    floor = flat_floor(drawings)
    assert 0 < floor < 0.9
    itself = match_frames(drawings, drawings, candidates=4).best.mean()
    assert float(itself) > floor + 0.05


def test_continuations_and_unconditional_samples_are_scored_apart():
    train, val = smooth_frames(24, 5), smooth_frames(12, 6)
    corpus = {
        "train": RealFrames(train, torch.zeros(24, dtype=torch.long), torch.arange(24)),
        "val": RealFrames(val, torch.ones(12, dtype=torch.long), torch.arange(100, 112)),
    }
    copy = GeneratedVideo(val[:8], None, prompted=True)  # a continuation that stays real
    noise = GeneratedVideo(torch.rand(8, 32, 32) * 2 - 1, None)  # an unconditional one
    metrics, _ = realism_metrics([copy, noise], corpus, fps=4, every=1, copies=None)
    assert metrics["realism_cont"] > 0.999 > 0.5 > metrics["realism_uncond"]
    mean = (metrics["realism_cont"] + metrics["realism_uncond"]) / 2
    assert abs(metrics["realism"] - mean) < 1e-6
    only, _ = realism_metrics([noise], corpus, fps=4, every=1, copies=None)
    assert "realism_cont" not in only and "realism_uncond" in only
