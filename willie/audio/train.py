"""The `train_audio_tokenizer` stage: the audio tokenizer, trained on the clips' soundtrack.

Per optimizer step (the engine handles devices, DDP, accumulation, EMA and checkpoints):
  G: multi-resolution STFT loss + `mel_weight` × log-mel L1 + `wave_weight` × waveform L1
     (+ from `disc_start`: the hinge adversarial loss of each STFT discriminator and
     `feature_weight` × feature matching);
  D (from `disc_start`): hinge loss, real clips vs detached reconstructions.
Training sees only the clips that have sound. A corpus with none publishes a "silent" model
(config.json `"silent": true`, the card says why, no weights) so a silent film's pipeline
runs on, pictures only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from willie.atomic import atomic_path, read_json, write_bytes, write_json
from willie.audio.augment import speed_and_gain
from willie.audio.discriminator import MultiScaleSTFTDiscriminator
from willie.audio.losses import (
    feature_matching_loss,
    mel_loss,
    multi_resolution_stft_loss,
    resolutions,
)
from willie.audio.measures import AudioEvaluation, evaluate
from willie.audio.model import AudioTokenizer, AudioTokenizerArch
from willie.checksums import file_checksums
from willie.config import AudioConfig
from willie.data.dataset import AudioClips
from willie.data.video import write_wav
from willie.errors import WillieError
from willie.plots import write_spectrograms
from willie.tokenizer.losses import hinge_d_loss
from willie.training.checkpoint import render_model_card, save_artifact
from willie.training.engine import Engine, Log, TrainSettings, step_generator


def architecture(cfg: AudioConfig) -> AudioTokenizerArch:
    return AudioTokenizerArch(
        channels=cfg.channels,
        strides=tuple(cfg.strides),
        dilations=tuple(cfg.dilations),
        levels=tuple(cfg.levels),
        codebooks=cfg.codebooks,
    )


def model_card(
    cfg: AudioConfig, arch: AudioTokenizerArch, rate: int, metrics: dict, data: dict
) -> str:
    bps = metrics.get("bits_per_second", 0.0)
    about = f"""A causal 1-D convolutional audio tokenizer with FSQ, trained on the soundtrack of
*Steamboat Willie*'s clips. Input: mono [B, 1, S] in [-1, 1] at {rate} Hz, S a multiple of
{arch.hop}; tokens: [B, S / {arch.hop}, {arch.codebooks}] ({rate / arch.hop:g} steps per second,
{arch.codebooks} × {" × ".join(map(str, arch.levels))} codes each: {bps:.0f} bits/s).
Weights are the EMA of the generator's."""
    use = """from willie.audio.model import load_audio_tokenizer
codec = load_audio_tokenizer("stages/audio_tokenizer")
tokens = codec.encode(audio)          # [B, 1, S] → [B, S / hop, codebooks]
audio = codec.decode(tokens)"""
    note = (
        "val clips with sound (by shot: sound it never trained on). `baseline_*`: a μ-law codec "
        "at the same bits per second (`baseline_bits` bits per sample). `train_*`: training clips."
    )
    return render_model_card(
        "willie audio tokenizer",
        about,
        use,
        cfg.model_dump_json(indent=2),
        metrics,
        data=data,
        metrics_note=note,
    )


def publish_silent(out_dir: Path, cfg: AudioConfig, reason: str) -> None:
    """The stage's outputs for a corpus without sound: a config and card that say so, a weight
    file with no tensors and an empty recon.wav, so the pipeline's later stages stay silent."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "model.safetensors") as temp:
        save_file({}, str(temp), metadata={"silent": reason})
    write_json(out_dir / "config.json", {"silent": True, "reason": reason})
    card = (
        f"# willie audio tokenizer (silent)\n\nNo model was trained: {reason}. The pipeline's "
        "later stages make pictures without sound. Add a file with a soundtrack to the corpus "
        "(`data.path`) to train one.\n\n## Training parameters\n```\n"
        f"{cfg.model_dump_json(indent=2)}\n```\n"
    )
    write_bytes(out_dir / "MODEL_CARD.md", card.encode())
    write_wav(out_dir / "recon.wav", np.zeros(0, np.float32), 8000)  # nothing to hear
    write_spectrograms(out_dir / "recon.png", f"No sound to learn: {reason}", {}, 8000)


def train_audio_tokenizer(
    cfg: AudioConfig,
    clips_dir: str | Path = "data/clips",
    out_dir: str | Path = "stages/audio_tokenizer",
    *,
    log: Log | None = None,
) -> dict[str, Any]:
    """Train, then publish the EMA model (+ config, card, recon.wav) into `out_dir`."""
    clips_dir, out_dir = Path(clips_dir), Path(out_dir)
    train_set, val_set = AudioClips(clips_dir, "train"), AudioClips(clips_dir, "val")
    if len(train_set) == 0:
        manifest = read_json(clips_dir / "manifest.json")
        silent = [f["file"] for f in manifest.get("files", []) if not f.get("has_audio")]
        reason = (
            f"no training clip has sound (silent files: {', '.join(silent) or 'none'}; "
            f"{len(val_set)} val clips with sound)"
        )
        publish_silent(out_dir, cfg, reason)
        return {"silent": 1, "clips_train": 0, "clips_val": len(val_set)}
    rate = train_set.rate
    arch = architecture(cfg)
    model = AudioTokenizer(arch)
    samples = train_set[0].shape[-1]
    if samples % arch.hop:
        raise WillieError(
            f"the clips' sound ({samples} samples at {rate} Hz) is not a whole number of "
            f"audio.strides hops ({arch.hop}); re-run preprocess or change audio.strides"
        )
    n_ffts = resolutions(rate)
    engine = Engine(
        TrainSettings.from_section(cfg, betas=(0.8, 0.99)),
        out_dir / "checkpoints",
        config={
            "audio": cfg.identity(),
            "clips": file_checksums(clips_dir / "manifest.json").sha256,
        },
        log=log,
    )
    codec = engine.prepare("audio_tokenizer", model)
    gan = cfg.disc_start < cfg.max_steps
    disc_module = MultiScaleSTFTDiscriminator(n_ffts[:3], cfg.disc_channels)
    disc = engine.prepare("discriminator", disc_module, compile=False)
    engine.optimizer("audio_tokenizer", codec)
    if gan:
        engine.optimizer("discriminator", disc, lr=cfg.disc_lr or cfg.lr)
    ema = engine.ema("audio_tokenizer_ema", codec)
    engine.resume()
    batches = engine.batches(train_set)

    def train_step(step: int) -> dict[str, float]:
        codec.train()
        adversarial = gan and step >= cfg.disc_start
        metrics: dict[str, float] = {}
        for micro in engine.micro_steps(codec, disc):
            real = next(batches)
            if cfg.speed or cfg.gain_db:
                generator = step_generator(cfg.seed, step, micro, engine.rank)
                real = speed_and_gain(real, generator, cfg.speed, cfg.gain_db)
            with engine.autocast():
                recon, _ = codec(real)
                recon = recon.float()
                spectral = multi_resolution_stft_loss(recon, real, n_ffts)
                mel = mel_loss(recon, real, rate)
                wave = (recon - real).abs().mean()
                loss_g = cfg.stft_weight * spectral + cfg.mel_weight * mel + cfg.wave_weight * wave
                if adversarial:
                    disc_module.requires_grad_(False)
                    fake_logits, fake_features = disc_module(recon)
                    _, real_features = disc_module(real)
                    disc_module.requires_grad_(True)
                    g_adv = sum(torch.relu(1 - x).mean() for x in fake_logits) / len(fake_logits)
                    matching = feature_matching_loss(fake_features, real_features)
                    loss_g = loss_g + cfg.adv_weight * g_adv + cfg.feature_weight * matching
                    metrics |= {"g_adv": float(g_adv.detach()), "feature_matching": matching.item()}
            engine.backward(loss_g)
            metrics |= {
                "stft_loss": spectral.item(),
                "mel_loss": mel.item(),
                "g_loss": loss_g.item(),
            }
            if adversarial:
                with engine.autocast():
                    real_logits, _ = disc(real)
                    fake_logits, _ = disc(recon.detach())
                    loss_d = sum(
                        hinge_d_loss(r.float(), f.float())
                        for r, f in zip(real_logits, fake_logits, strict=True)
                    ) / len(real_logits)
                engine.backward(loss_d)
                metrics["d_loss"] = float(loss_d.detach())
        metrics["grad_norm_g"] = engine.optimizer_step("audio_tokenizer")
        if adversarial:
            metrics["grad_norm_d"] = engine.optimizer_step("discriminator")
        return metrics

    evaluations: dict[int, tuple[AudioEvaluation, AudioEvaluation | None]] = {}

    def measure(step: int) -> tuple[AudioEvaluation, AudioEvaluation | None]:
        """(val, train) evaluations of the EMA model at `step`, each made once."""
        if step not in evaluations:
            evaluations.clear()
            args = {"max_clips": cfg.eval_clips, "batch_size": cfg.batch_size}
            val = (
                evaluate(ema.module, val_set, rate, engine.device, **args) if len(val_set) else None
            )
            fit = evaluate(ema.module, train_set, rate, engine.device, **args)
            evaluations[step] = (fit, val)
        return evaluations[step]

    def validate(step: int) -> dict[str, float]:
        fit, val = measure(step)
        shown = {"train_si_snr": fit.metrics["si_snr"]}
        if val is not None:
            shown |= {f"val_{k}": val.metrics[k] for k in ("si_snr", "stft_distance_db")}
        return shown

    started = time.perf_counter()
    engine.run(train_step, evaluate=validate, eval_every=cfg.eval_every)
    train_seconds = time.perf_counter() - started

    fit, val = measure(engine.step)
    shown = val if val is not None else fit  # no val clip with sound: say so, report train
    metrics: dict[str, Any] = dict(shown.metrics)
    metrics |= {
        f"train_{k}": fit.metrics[k] for k in ("si_snr", "stft_distance_db", "mel_distance")
    }
    metrics["measured_on_val"] = int(val is not None)  # 0: no val clip has sound
    metrics |= {
        "clips_train": len(train_set),
        "clips_val": len(val_set),
        "rate": rate,
        "hop": arch.hop,
        "train_seconds": round(train_seconds, 1),
        "steps": engine.step,
    }
    if engine.is_main:
        config = {
            "arch": arch.to_dict(),
            "rate": rate,
            "hop": arch.hop,
            "codebook_size": model.codebook_size,
        }
        card = model_card(cfg, arch, rate, metrics, read_json(clips_dir / "manifest.json"))
        save_artifact(out_dir, ema.module, config, card)
        # listen: the clips, then their reconstruction; and see them
        write_wav(out_dir / "recon.wav", np.concatenate([shown.original, shown.recon]), rate)
        split = "val" if val is not None else "train"
        write_spectrograms(
            out_dir / "recon.png",
            f"Audio tokenizer: {split} clips and their reconstruction ({arch.hop}-sample hop)",
            {f"{split} clips": shown.original, "reconstruction": shown.recon},
            rate,
        )
    return metrics
