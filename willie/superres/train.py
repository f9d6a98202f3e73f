"""The `train_superres` stage: learn to undo area down-sampling of the clips.

Training pairs come from the stored clips themselves: the original frames are the target, the
same frames area-downsampled by `scale` the input. Each clip of a batch gives one random
high-res `crop`×`crop` window (aligned to the scale, so down-sampling the crop is cropping the
down-sampled frame) around one random centre frame with its `frames` neighbours, clamped at
the clip's ends exactly as at inference. The draws come from a generator seeded by
(seed, step, micro-step, rank): a resumed run trains on the very crops an uninterrupted one
would have.

Per optimizer step (the engine handles devices, DDP, accumulation, EMA and checkpoints):
  G: L1 to the original (+ `adv_weight` × the non-saturating adversarial loss when > 0);
  D (only when adv_weight > 0): hinge loss on original vs upscaled crops.
The published model is the EMA of the generator's weights; bicubic is the baseline it must beat.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from willie.atomic import atomic_path, read_json
from willie.checksums import file_checksums
from willie.config import SuperresConfig
from willie.data.dataset import ClipDataset, area_resize
from willie.errors import WillieError
from willie.superres.measures import evaluate
from willie.superres.model import SuperResArch, VideoSuperRes, low_res_size
from willie.tokenizer.discriminator import Discriminator
from willie.tokenizer.losses import hinge_d_loss, non_saturating_g_loss
from willie.training.checkpoint import render_model_card, save_artifact
from willie.training.engine import Engine, Log, TrainSettings, step_generator

# Keys that change how a run is observed, not what it computes: a new value resumes.


def architecture(cfg: SuperresConfig) -> SuperResArch:
    return SuperResArch(
        scale=cfg.scale,
        frames=cfg.frames,
        channels=cfg.channels,
        blocks=cfg.blocks,
        area_consistent=cfg.area_consistent,
    )


def crop_size(crop: int, size: tuple[int, int], scale: int) -> tuple[int, int]:
    """The training crop: `crop` capped at the frame and rounded down to a multiple of scale."""
    return tuple(min(crop, side) // scale * scale for side in size)  # type: ignore[return-value]


def training_pairs(
    clips: torch.Tensor,
    arch: SuperResArch,
    crop: tuple[int, int],
    generator: torch.Generator,
    dihedral: bool = False,
    zoom: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (low-res neighbourhood, high-res centre frame) crops, one per clip; with
    `dihedral`, each square crop turned by a random multiple of 90° and/or mirrored; with
    `zoom` > 1, each crop taken from a region up to `zoom`× wider, area-downsampled to the crop
    (a wider shot: thinner lines, smaller shapes than the clips show at their own scale).

    clips [B, 1, T, H, W] → inputs [B, 1, frames, ch/s, cw/s], targets [B, 1, 1, ch, cw].
    """
    B, _, T, H, W = clips.shape
    s, (ch, cw) = arch.scale, crop
    centres = torch.randint(0, T, (B,), generator=generator)
    if zoom > 1:  # region sides: the crop's × a factor in [1, zoom], capped at the frame
        factors = 1 + (zoom - 1) * torch.rand(B, generator=generator)
        sides = [(min(H, round(ch * f)), min(W, round(cw * f))) for f in factors.tolist()]
        tops = [int(torch.randint(0, H - h + 1, (1,), generator=generator)) for h, _ in sides]
        lefts = [int(torch.randint(0, W - w + 1, (1,), generator=generator)) for _, w in sides]
    else:  # aligned to the scale: down-sampling the crop is cropping the down-sampled frame
        sides = [(ch, cw)] * B
        tops = (torch.randint(0, (H - ch) // s + 1, (B,), generator=generator) * s).tolist()
        lefts = (torch.randint(0, (W - cw) // s + 1, (B,), generator=generator) * s).tolist()
    offsets = torch.arange(-arch.radius, arch.radius + 1)
    windows = []
    for b, ((h, w), y, x) in enumerate(zip(sides, tops, lefts, strict=True)):
        index = (centres[b] + offsets).clamp(0, T - 1).tolist()
        windows.append(area_resize(clips[b, :, index, y : y + h, x : x + w], (ch, cw)))
    high = torch.stack(windows)  # [B, 1, frames, ch, cw]
    if dihedral and ch == cw:  # ink lines look alike turned and mirrored: 8 views of a crop
        views = torch.randint(0, 8, (B,), generator=generator).tolist()
        high = torch.stack([dihedral_view(crop_, v) for crop_, v in zip(high, views, strict=True)])
    targets = high[:, :, arch.radius : arch.radius + 1]
    return area_resize(high, (ch // s, cw // s)), targets


def dihedral_view(x: torch.Tensor, view: int) -> torch.Tensor:
    """One of the 8 symmetries of the square on the last two dims: `view` // 2 quarter turns,
    mirrored when odd."""
    x = torch.rot90(x, view // 2, dims=(-2, -1))
    return x.flip(-1) if view % 2 else x


def write_png(path: Path, picture: np.ndarray) -> None:
    """An 8-bit grayscale PNG, atomically."""
    with atomic_path(path) as temp:
        Image.fromarray(picture, mode="L").save(temp, format="PNG")


def model_card(
    cfg: SuperresConfig,
    arch: SuperResArch,
    sizes: tuple[tuple[int, int], tuple[int, int]],
    metrics: dict,
    data: dict,
) -> str:
    (h, w), (H, W) = sizes
    losses = f"L1 + {cfg.adv_weight} × GAN (hinge D)" if cfg.adv_weight > 0 else "L1"
    base = (
        "bicubic up-sampling, each block moved to average to its input pixel,"
        if arch.area_consistent
        else "bicubic up-sampling"
    )
    about = f"""A ×{arch.scale} video super-resolution network. Each output frame is predicted from
{arch.frames} neighbouring low-resolution frames (the end frame repeated at a clip's ends) by a
residual CNN ({arch.blocks} blocks, width {arch.channels}) with pixel-shuffle up-sampling, as a
correction added to the {base} of the centre frame. Input: [B, 1, T, {h}, {w}] in
[-1, 1]; output: [B, 1, T, {H}, {W}]. Trained with {losses} on (area-downsampled, original)
pairs of grayscale *Steamboat Willie* clips, {cfg.crop}-pixel crops (capped at the frame,
rounded down to a multiple of {arch.scale}). Weights are the EMA of the trained weights."""
    use = f"""from willie.superres import load_superres
model = load_superres("stages/superres")
video = model.upscale(low_res)      # [B, 1, T, {h}, {w}] → [B, 1, T, {H}, {W}], in [-1, 1]"""
    note = """Whole val clips at full frame size; `*_bicubic` is the baseline (bicubic, clamped).
`compare.png`: bicubic | model | original."""
    params = cfg.model_dump_json(indent=2)
    return render_model_card(
        "willie super-resolution", about, use, params, metrics, data=data, metrics_note=note
    )


def train_superres(
    cfg: SuperresConfig,
    clips_dir: str | Path = "data/clips",
    out_dir: str | Path = "stages/superres",
    *,
    log: Log | None = None,
) -> dict[str, Any]:
    """Train, then publish the EMA model (+ config, card, compare.png) into `out_dir`."""
    clips_dir, out_dir = Path(clips_dir), Path(out_dir)
    train_set = ClipDataset(clips_dir, "train")
    val_set = ClipDataset(clips_dir, "val")
    high_size = train_set.clip_shape[1:]
    low_size = low_res_size(high_size, cfg.scale)
    if val_set.clip_shape[1:] != high_size:
        raise WillieError(
            f"{clips_dir}: train clips are {high_size} but val clips {val_set.clip_shape[1:]}; "
            "re-run preprocess"
        )
    manifest_path = clips_dir / "manifest.json"
    if not manifest_path.is_file():
        raise WillieError(f"{manifest_path} not found: run `willie preprocess` first")
    crop = crop_size(cfg.crop, high_size, cfg.scale)
    arch = architecture(cfg)
    fingerprinted = cfg.identity()
    engine = Engine(
        TrainSettings.from_section(cfg),
        out_dir / "checkpoints",
        config={"superres": fingerprinted, "clips": file_checksums(manifest_path).sha256},
        log=log,
    )
    model = engine.prepare("superres", VideoSuperRes(arch))
    engine.optimizer("superres", model)
    disc_module = Discriminator(channels=cfg.channels)
    disc = engine.prepare("discriminator", disc_module) if cfg.adv_weight > 0 else None
    if disc is not None:
        engine.optimizer("discriminator", disc, betas=(0.5, 0.9))  # GAN-friendly momentum
    modules = [model] if disc is None else [model, disc]
    ema = engine.ema("superres_ema", model)
    engine.resume()
    batches = engine.batches(train_set)

    def train_step(step: int) -> dict[str, float]:
        model.train()
        metrics: dict[str, float] = {}
        for micro in engine.micro_steps(*modules):
            generator = step_generator(cfg.seed, step, micro, engine.rank)
            low, high = training_pairs(next(batches), arch, crop, generator, cfg.dihedral, cfg.zoom)
            with engine.autocast():
                upscaled = model(low, [arch.radius])  # [B, 1, 1, ch, cw]
                l1 = F.l1_loss(upscaled.float(), high)
                loss_g = l1
                if disc is not None:
                    # The unwrapped D: its DDP wrapper reduces gradients once, in D's own pass.
                    disc_module.requires_grad_(False)
                    g_adv = non_saturating_g_loss(disc_module(upscaled).float())
                    disc_module.requires_grad_(True)
                    loss_g = l1 + cfg.adv_weight * g_adv
                    metrics["g_adv"] = g_adv.item()
            engine.backward(loss_g)
            metrics |= {"l1_loss": l1.item(), "g_loss": loss_g.item()}
            if disc is not None:
                with engine.autocast():
                    # One forward over real and fake: one DDP reduction.
                    both = disc(torch.cat([high, upscaled.detach().to(high.dtype)])).float()
                    real_logits, fake_logits = both.chunk(2)
                    loss_d = hinge_d_loss(real_logits, fake_logits)
                engine.backward(loss_d)
                metrics |= {
                    "d_loss": loss_d.item(),
                    "logits_real": real_logits.mean().item(),
                    "logits_fake": fake_logits.mean().item(),
                }
        metrics["grad_norm"] = engine.optimizer_step("superres")
        if disc is not None:
            metrics["grad_norm_d"] = engine.optimizer_step("discriminator")
        return metrics

    def validate(step: int) -> dict[str, float]:
        values, _ = evaluate(ema.module, val_set, engine.device, max_clips=cfg.eval_clips)
        return {f"val_{k}": values[k] for k in ("psnr", "ssim", "gain_db")}

    started = time.perf_counter()
    engine.run(train_step, evaluate=validate, eval_every=cfg.eval_every)
    train_seconds = time.perf_counter() - started

    metrics, compare = evaluate(ema.module, val_set, engine.device, max_clips=cfg.eval_clips)
    metrics["train_seconds"] = round(train_seconds, 1)
    metrics["steps"] = engine.step
    if engine.is_main:
        config = {
            "arch": arch.to_dict(),
            "scale": cfg.scale,
            "input_size": list(low_size),
            "output_size": list(high_size),
        }
        card = model_card(cfg, arch, (low_size, high_size), metrics, read_json(manifest_path))
        save_artifact(out_dir, ema.module, config, card)
        write_png(out_dir / "compare.png", compare)
    return metrics
