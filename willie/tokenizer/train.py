"""The `train_tokenizer` stage: VQGAN-style training of the MAGVIT-v2 tokenizer.

Per optimizer step (the engine handles devices, DDP, accumulation, EMA and checkpoints):
  G: reconstruction loss (+ from `gen_adv_start`: the non-saturating adversarial loss,
     weighted by `adv_weight` × VQGAN's adaptive gradient-norm ratio when `adaptive_weight`);
  D (from `disc_start`): hinge loss on real clips vs detached reconstructions, + LeCAM
     regularization, + lazy R1 penalty on real clips every `r1_every` steps.
With `synthetic` > 0 that share of the batches' clips comes from the synthetic cartoon
(`willie.data.cartoon_prior`); the train measures stay on the real training clips.
The published model is the EMA of the generator's weights.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from willie.atomic import read_json
from willie.checksums import file_checksums
from willie.config import TokenizerConfig
from willie.data.cartoon_prior import Mixture, cartoon_clips
from willie.data.dataset import ClipDataset
from willie.data.video import write_gif
from willie.errors import WillieError
from willie.tokenizer.augment import apply_augmentation, draw_augmentation
from willie.tokenizer.discriminator import Discriminator
from willie.tokenizer.losses import (
    LeCAM,
    adaptive_weight,
    code_change_loss,
    hinge_d_loss,
    non_saturating_g_loss,
    r1_penalty,
    reconstruction_loss,
)
from willie.tokenizer.measures import Evaluation, evaluate
from willie.tokenizer.model import TokenizerArch, VideoTokenizer
from willie.training.checkpoint import render_model_card, save_artifact
from willie.training.engine import Engine, Log, TrainSettings, step_generator


def architecture(cfg: TokenizerConfig) -> TokenizerArch:
    return TokenizerArch(
        channels=cfg.channels,
        channel_mults=tuple(cfg.channel_mults),
        num_res_blocks=cfg.num_res_blocks,
        num_mid_blocks=cfg.num_mid_blocks,
        patch_size=cfg.patch_size,
        spatial_downsample=cfg.spatial_downsample,
        norm=cfg.norm,
        space_down=cfg.space_down,
        time_down=cfg.time_down,
        levels=tuple(cfg.fsq_levels),
    )


def model_card(cfg: TokenizerConfig, arch: TokenizerArch, metrics: dict, data: dict) -> str:
    latent = cfg.size // arch.spatial_downsample
    extra = (
        f" About {cfg.synthetic:.0%} of the training clips came from {cfg.synthetic_seconds:g} s"
        f" of the project's synthetic cartoon (seed {cfg.synthetic_seed})."
        if cfg.synthetic
        else ""
    )
    about = f"""A MAGVIT-v2-style causal 3D-CNN video tokenizer with FSQ
({" × ".join(map(str, arch.levels))} = {int(np.prod(arch.levels))} codes), trained VQGAN-style on
grayscale clips of *Steamboat Willie*. Input: [B, 1, 1 + 4k, {cfg.size}, {cfg.size}] in [-1, 1];
tokens: [B, 1 + k, {latent}, {latent}]. Weights are the EMA of the generator.{extra}"""
    use = """from willie.tokenizer import load_tokenizer
tokenizer = load_tokenizer("stages/tokenizer")
indices = tokenizer.encode(video)      # [B, 1, T, H, W] → [B, t, h, w]
video = tokenizer.decode(indices)"""
    params = cfg.model_dump_json(indent=2)
    note = (
        "`psnr`, `ssim`, `codebook_usage`: val clips (by scene when the footage has several: "
        "shots it never trained on). `train_*`: the same on training clips; "
        "`memorization_gap_db` = train PSNR − val PSNR."
    )
    return render_model_card(
        "willie tokenizer", about, use, params, metrics, data=data, metrics_note=note
    )


def train_tokenizer(
    cfg: TokenizerConfig,
    clips_dir: str | Path = "data/clips",
    out_dir: str | Path = "stages/tokenizer",
    *,
    log: Log | None = None,
) -> dict[str, Any]:
    """Train, then publish the EMA model (+ config, card, recon GIF) into `out_dir`."""
    clips_dir, out_dir = Path(clips_dir), Path(out_dir)
    train_set = ClipDataset(clips_dir, "train", size=cfg.size)
    val_set = ClipDataset(clips_dir, "val", size=cfg.size)
    arch = architecture(cfg)
    model = VideoTokenizer(arch)
    try:
        model.latent_shape(*train_set.clip_shape)
    except ValueError as e:
        raise WillieError(f"the clips do not fit the tokenizer: {e}") from None
    fed: Dataset[torch.Tensor] = train_set
    if cfg.synthetic:
        cartoon = cartoon_clips(
            train_set, clips_dir, seconds=cfg.synthetic_seconds, seed=cfg.synthetic_seed
        )
        fed = Mixture(train_set, cartoon, cfg.synthetic)
    manifest_sha = file_checksums(clips_dir / "manifest.json").sha256
    fingerprinted = cfg.identity()
    engine = Engine(
        TrainSettings.from_section(cfg, betas=(0.5, 0.9)),  # GAN-friendly momentum
        out_dir / "checkpoints",
        config={"tokenizer": fingerprinted, "clips": manifest_sha},
        log=log,
    )
    tokenizer = engine.prepare("tokenizer", model)
    disc_module = Discriminator(channels=cfg.disc_channels, patch_size=cfg.patch_size)
    disc = engine.prepare("discriminator", disc_module, compile=False)  # R1: double backward
    lecam = LeCAM().to(engine.device)
    engine.optimizer("tokenizer", tokenizer)
    engine.optimizer("discriminator", disc, lr=cfg.disc_lr or cfg.lr)
    ema = engine.ema("tokenizer_ema", tokenizer)
    engine.track("lecam", lecam)
    engine.resume()
    batches = engine.batches(fed)  # the real clips, and the cartoon's where synthetic > 0

    def train_step(step: int) -> dict[str, float]:
        tokenizer.train()
        disc_on = step >= cfg.disc_start
        adv_on = step >= cfg.gen_adv_start
        r1_now = disc_on and cfg.r1_weight > 0 and step % cfg.r1_every == 0
        metrics: dict[str, float] = {}
        for micro in engine.micro_steps(tokenizer, disc):
            real = next(batches)
            if cfg.flip or cfg.shift:
                generator = step_generator(cfg.seed, step, micro, engine.rank)
                params = draw_augmentation(
                    len(real), flip=cfg.flip, shift=cfg.shift, generator=generator
                )
                real = apply_augmentation(real, params, cfg.shift)
            with engine.autocast():
                recon, _, codes = tokenizer(real)
                rec = reconstruction_loss(recon.float(), real, cfg.recon_loss)
                loss_g = rec
                if cfg.code_stability:
                    change = code_change_loss(codes.float())
                    loss_g = loss_g + cfg.code_stability * change
                    metrics["code_change"] = change.item()
                if adv_on:
                    disc_module.requires_grad_(False)
                    g_adv = non_saturating_g_loss(disc_module(recon).float())
                    disc_module.requires_grad_(True)
                    weight = torch.tensor(cfg.adv_weight, device=real.device)
                    if cfg.adaptive_weight:
                        weight = weight * adaptive_weight(rec, g_adv, model.last_layer)
                    loss_g = loss_g + weight * g_adv
                    metrics |= {"g_adv": g_adv.item(), "adv_weight": weight.item()}
            engine.backward(loss_g)
            metrics |= {"recon_loss": rec.item(), "g_loss": loss_g.item()}
            if disc_on:
                real_in = real.detach().requires_grad_(r1_now)
                with engine.autocast():
                    # One forward over real and fake: one DDP reduction, no batch statistics
                    # in the discriminator to mix them.
                    both = disc(torch.cat([real_in, recon.detach().to(real_in.dtype)])).float()
                    real_logits, fake_logits = both.chunk(2)
                    hinge = hinge_d_loss(real_logits, fake_logits)
                    loss_d = hinge + cfg.lecam_weight * lecam.penalty(real_logits, fake_logits)
                if r1_now:
                    r1 = r1_penalty(real_logits, real_in)
                    loss_d = loss_d + cfg.r1_weight * cfg.r1_every * r1
                    metrics["r1"] = r1.item()
                lecam.update(real_logits, fake_logits)
                engine.backward(loss_d)
                metrics |= {
                    "d_loss": loss_d.item(),
                    "d_hinge": hinge.item(),
                    "logits_real": real_logits.mean().item(),
                    "logits_fake": fake_logits.mean().item(),
                }
        metrics["grad_norm_g"] = engine.optimizer_step("tokenizer")
        if disc_on:
            metrics["grad_norm_d"] = engine.optimizer_step("discriminator")
        return metrics

    eval_args = {"max_clips": cfg.eval_clips, "batch_size": cfg.batch_size}
    evaluations: dict[int, tuple[Evaluation, Evaluation]] = {}

    def measure(step: int) -> tuple[Evaluation, Evaluation]:
        """(val, train) evaluations of the EMA model at `step`, each made once: the last
        periodic evaluation is also the final one."""
        if step not in evaluations:
            evaluations.clear()
            evaluations[step] = (
                evaluate(ema.module, val_set, engine.device, **eval_args),
                evaluate(ema.module, train_set, engine.device, **eval_args),
            )
        return evaluations[step]

    def validate(step: int) -> dict[str, float]:
        values, fit = (e.metrics for e in measure(step))
        return {f"val_{k}": values[k] for k in ("psnr", "ssim", "codebook_usage")} | {
            "train_psnr": fit["psnr"]
        }

    started = time.perf_counter()
    engine.run(train_step, evaluate=validate, eval_every=cfg.eval_every)
    train_seconds = time.perf_counter() - started

    val_eval, train_eval = measure(engine.step)
    metrics, strip = dict(val_eval.metrics), val_eval.strip
    # The same measures on clips it trained on: the gap to val is what it memorized.
    fit = train_eval.metrics
    metrics |= {
        "train_psnr": fit["psnr"],
        "train_ssim": fit["ssim"],
        "train_codebook_usage": fit["codebook_usage"],
        "memorization_gap_db": fit["psnr"] - metrics["psnr"],
    }
    metrics["train_seconds"] = round(train_seconds, 1)
    metrics["steps"] = engine.step
    if isinstance(fed, Mixture):  # train_* above: the real training clips only
        metrics |= {"cartoon_clips": len(fed.extra_index), "cartoon_share": round(fed.share, 3)}
    if engine.is_main:
        clips_manifest = read_json(clips_dir / "manifest.json")
        config = {
            "arch": arch.to_dict(),
            "size": cfg.size,
            "clip_frames": train_set.clip_shape[0],
            "codebook_size": model.codebook_size,
        }
        card = model_card(cfg, arch, metrics, clips_manifest)
        save_artifact(out_dir, ema.module, config, card)
        write_gif(out_dir / "recon.gif", strip, fps=8)
    return metrics
