"""The `train_transformer` stage: next-token training on the token streams with the shared engine.

Training windows of `context` tokens are cut from `data/tokens/train` streams (a new window
every context/4 tokens); validation reports bits per token on `val` at 1× and at 2× the
training context, the second measuring ALiBi's length extrapolation. The published model is
the EMA of the weights at the best val evaluation (early stopping: small data sets overfit);
its loss curves go to MLflow and to DVC plots.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from willie.checksums import file_checksums
from willie.config import TransformerConfig
from willie.plots import write_csv, write_plot, write_png
from willie.training.checkpoint import render_model_card, save_artifact
from willie.training.engine import Engine, Log, TrainSettings, unwrap
from willie.transformer.attention import resolve_backend
from willie.transformer.baseline import copy_previous_baseline
from willie.transformer.data import TokenManifest, TokenStreams, TokenWindows
from willie.transformer.measures import bits_per_token
from willie.transformer.model import IGNORE, TokenTransformer, TransformerArch
from willie.transformer.selection import RealismProbe


def architecture(cfg: TransformerConfig, manifest: TokenManifest) -> TransformerArch:
    layout = manifest.layout(cfg.sound)
    return TransformerArch(
        levels=manifest.levels,
        layers=cfg.layers,
        heads=cfg.heads,
        width=cfg.width,
        mlp_ratio=cfg.mlp_ratio,
        window=cfg.window,
        context=cfg.context,
        head=cfg.head,
        positions=cfg.positions,
        dropout=cfg.dropout,
        frame_tokens=layout.period if cfg.previous_frames else 0,
        frame_history=max(1, cfg.previous_frames),
        anchor=cfg.anchor,
        frame_positions=cfg.frame_positions,
        row_tokens=manifest.latent_shape[2] if cfg.row_above else 0,
        video_tokens=layout.video,
        audio_tokens=layout.audio,
        audio_symbols=layout.audio_symbols,
    )


def corrupt(ids: torch.Tensor, share: float, codebook_size: int) -> torch.Tensor:
    """ids [B, L] with `share` of the codes (never BOS) replaced by uniformly random ones: the
    model learns to predict from a history with errors in it, as its own samples will be."""
    noisy = (torch.rand(ids.shape, device=ids.device) < share) & (ids < codebook_size)
    return torch.where(noisy, torch.randint_like(ids, codebook_size), ids)


@torch.no_grad()
def own_draws(
    model: TokenTransformer,
    ids: torch.Tensor,
    targets: torch.Tensor,
    anchors: torch.Tensor,
    slots: torch.Tensor,
    share: float,
) -> torch.Tensor:
    """ids [B, L] with `share` of the video codes after the first replaced by the model's own
    draw of them (T 1, given the real history; parallel scheduled sampling): the history the
    model then learns from holds the mistakes its samples make, not only uniform noise, and
    the targets stay real, so it learns to pull a drifting picture back to the film."""
    before = model.frame_before(ids, anchors, slots)
    h = model.hidden(ids, before=before, slots=slots)  # [B, L, C]
    video = (targets != IGNORE) & (targets < model.arch.bos)  # the position predicts a code
    replace = video[:, :-1] & (torch.rand(video[:, :-1].shape, device=ids.device) < share)

    def pick(logits: torch.Tensor) -> torch.Tensor:
        return torch.multinomial(logits.float().softmax(-1), 1).squeeze(-1)

    draws = model.head.sample(h[:, :-1][replace], pick, before[:, :-1][replace])
    mixed = ids.clone()
    mixed[:, 1:][replace] = draws  # the draw at i is of the token at i + 1
    return mixed


class BestWeights:
    """The EMA weights of the best evaluation so far by the selection criterion (a cost: lower
    is better): the model a small data set overfits is published as it was at its best.
    Checkpointed with the run."""

    def __init__(self) -> None:
        self.cost = math.inf
        self.step = -1
        self.weights: dict[str, torch.Tensor] = {}

    def offer(self, cost: float, step: int, module: torch.nn.Module) -> None:
        if cost < self.cost:
            self.cost, self.step = cost, step
            self.weights = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"cost": self.cost, "step": self.step, "weights": self.weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cost, self.step, self.weights = state["cost"], state["step"], state["weights"]


class Curves:
    """Train and val loss (and val realism: all probe samples, the unconditional ones, the
    continuations, first frames drawn alone) per logged step; checkpointed with the run, so a
    resume keeps them."""

    REALISM = ("realism", "unconditional", "continuation", "opening")

    def __init__(self) -> None:
        self.rows: dict[str, list[list[float]]] = {"train": [], "val": [], "realism": []}

    def add(self, curve: str, step: int, *values: float) -> None:
        self.rows.setdefault(curve, []).append([float(step), *values])

    def write(self, plots_dir: Path) -> None:
        """The loss curves (CSV each, one PNG of both) and the probe's realism (CSV + PNG)."""
        series = {}
        for split in ("train", "val"):
            rows = [[int(step), round(value, 5)] for step, value in self.rows[split]]
            write_csv(plots_dir / f"transformer_{split}_loss.csv", ["step", "bits_per_token"], rows)
            series[split] = ([r[0] for r in rows], [r[1] for r in rows])
        title = "Transformer loss (bits per token)"
        write_png(plots_dir / "transformer_loss.png", title, "step", "bits per token", series)
        write_plot(  # empty when no probe ran (select: val_bits)
            plots_dir,
            "transformer_val_realism",
            "Realism of the probe samples at each evaluation (the published step: the best)",
            ["step", *self.REALISM],
            [[int(row[0]), *(round(v, 5) for v in row[1:])] for row in self.rows["realism"]],
        )

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = state["rows"]
        width = 1 + len(self.REALISM)  # a checkpoint from before the kinds: NaN for them
        self.rows["realism"] = [r + [math.nan] * (width - len(r)) for r in self.rows["realism"]]


def model_card(cfg: TransformerConfig, arch: TransformerArch, metrics: dict, backend: str) -> str:
    about = f"""A decoder-only transformer over the tokenizer's FSQ codes
({" × ".join(map(str, arch.levels))} = {arch.codebook_size}): {arch.layers} layers, width
{arch.width}, {arch.heads} heads, ALiBi positions and causal sliding-window attention over
{arch.window} tokens, trained on windows of {arch.context} tokens; `{arch.head}` output head.
Attention backend in training: `{backend}`. Weights are the EMA of the training weights."""
    use = """from willie.transformer import load_transformer
from willie.transformer.generate import generate, sampler
model = load_transformer("stages/transformer")
tokens = generate(model, prompt, new_tokens, sampler(temperature=1.0, top_k=0, top_p=0.95))"""
    params = cfg.model_dump_json(indent=2)
    return render_model_card("willie token transformer", about, use, params, metrics)


def train_transformer(
    cfg: TransformerConfig,
    tokens_dir: str | Path = "data/tokens",
    out_dir: str | Path = "stages/transformer",
    plots_dir: str | Path = "metrics/plots",
    *,
    tokenizer_dir: str | Path = "stages/tokenizer",
    clips_dir: str | Path = "data/clips",
    log: Log | None = None,
) -> dict[str, Any]:
    """Train, then publish the EMA model (+ config and card) into `out_dir`, and the model
    that draws an unconditional sample's first latent frame into `out_dir/opening`: with
    `cfg.opening` the EMA of the step whose first frames looked most like the film, without
    it the published model again.

    With `select: realism_motion` or `realism` the tokenizer (`tokenizer_dir`) and the clips
    (`clips_dir`) score samples at each evaluation (willie.transformer.selection)."""
    tokens_dir, out_dir, plots_dir = Path(tokens_dir), Path(out_dir), Path(plots_dir)
    manifest = TokenManifest.read(tokens_dir)
    train_streams = TokenStreams(tokens_dir, "train", sound=cfg.sound)
    val_streams = TokenStreams(tokens_dir, "val", sound=cfg.sound)
    arch = architecture(cfg, manifest)
    fingerprinted = cfg.identity()
    tokens_sha = file_checksums(tokens_dir / "manifest.json").sha256
    curves = Curves()

    def record(values: dict[str, float], step: int) -> None:
        curves.add("train", step, values["loss_bits"])
        if "val_all_bits_per_token" in values:  # the same tokens as the training loss
            curves.add("val", step, values["val_all_bits_per_token"])
        if "val_realism" in values:
            kinds = ["val_realism", *(f"val_realism_{kind}" for kind in curves.REALISM[1:])]
            curves.add("realism", step, *(values[k] for k in kinds))
        if log is not None:
            log(values, step)

    engine = Engine(
        TrainSettings.from_section(cfg),
        out_dir / "checkpoints",
        config={"transformer": fingerprinted, "tokens": tokens_sha},
        log=record,
    )
    backend = resolve_backend(cfg.attention, engine.device)
    model = TokenTransformer(arch)
    model.set_backend(backend)
    net = engine.prepare("transformer", model)
    engine.optimizer("transformer", net)
    ema = engine.ema("transformer_ema", net)
    best = BestWeights()
    opening = BestWeights()  # the step that draws a first frame best (`cfg.opening`)
    probe = None
    if cfg.select != "val_bits":
        probe = RealismProbe(
            Path(tokenizer_dir),
            Path(clips_dir),
            tokens_dir,
            sound=cfg.sound,
            samples=cfg.select_samples,
            frames=cfg.select_frames,
            temperature=cfg.select_temperature,
            device=engine.device,
        )
    engine.track("curves", curves)
    engine.track("best", best)
    engine.track("opening", opening)
    engine.resume()
    trained_on = (
        TokenStreams(tokens_dir, "train", restarts=True, sound=cfg.sound)
        if cfg.restarts
        else train_streams
    )
    batches = engine.batches(TokenWindows(trained_on, cfg.context, max(1, cfg.context // 4)))

    def train_step(step: int) -> dict[str, float]:
        net.train()
        total = 0.0
        for _ in engine.micro_steps(net):
            ids, targets, anchors, slots = next(batches).unbind(1)
            if cfg.own_draws:
                ids = own_draws(unwrap(net), ids, targets, anchors, slots, cfg.own_draws)
            if cfg.input_noise:
                ids = corrupt(ids, cfg.input_noise, arch.codebook_size)  # pictures' codes
            with engine.autocast():
                loss = net(ids, targets, anchors, slots)
            engine.backward(loss)
            total += loss.item() / cfg.grad_accum
        grad_norm = engine.optimizer_step("transformer")
        return {"loss_bits": total / math.log(2), "grad_norm": grad_norm}

    evaluations: dict[int, dict[str, float]] = {}  # this process's val results, by step

    def evaluate(step: int) -> dict[str, float]:
        """Val bits/token of the EMA weights at 1× and 2× the context (the pictures' tokens;
        the sound's and all of them where the stream has sound), and the realism of its
        samples; remembers the best by `cfg.select`."""
        common = {
            "max_windows": cfg.eval_windows,
            "batch_size": cfg.batch_size,
            "precision": cfg.precision,
        }
        at_1x = bits_per_token(ema.module, val_streams, cfg.context, device=engine.device, **common)
        at_2x = bits_per_token(
            ema.module, val_streams, 2 * cfg.context, device=engine.device, **common
        )
        bits_1x, count_1x = at_1x["video"]
        bits_2x, count_2x = at_2x["video"]
        evaluations[step] = {
            "val_bits_per_token": bits_1x,
            "val_bits_per_token_2x": bits_2x,
            "extrapolation_ratio": bits_2x / bits_1x,
            "val_tokens": count_1x,
            "val_tokens_2x": count_2x,
            "val_all_bits_per_token": at_1x["all"][0],  # what the training loss measures
        }
        if "audio" in at_1x:
            evaluations[step] |= {
                "val_audio_bits_per_token": at_1x["audio"][0],
                "val_audio_tokens": at_1x["audio"][1],
                # where the clip has sound: NOSOUND of a silent file is nearly free to predict
                "val_sound_bits_per_token": at_1x["sound"][0],
                "val_sound_tokens": at_1x["sound"][1],
            }
        if probe is not None:
            score = probe.score(ema.module)
            evaluations[step] |= {
                "val_realism": score.realism,
                "val_realism_unconditional": score.unconditional,
                "val_realism_continuation": score.continuation,
                "val_realism_opening": score.opening,
                "val_motion": score.motion,
                "val_realism_in_motion": score.realism_in_motion,
            }
            best.offer(-score.criterion(cfg.select), step, ema.module)
            if cfg.opening:  # else no copy of the weights (nor in every checkpoint)
                opening.offer(-score.opening, step, ema.module)
        else:
            best.offer(at_1x["all"][0], step, ema.module)
        return evaluations[step]

    started = time.perf_counter()
    engine.run(
        train_step,
        evaluate=evaluate,
        eval_every=cfg.eval_every,
        samples_per_step=cfg.batch_size * cfg.context,
        rate_name="tokens_per_s",
    )
    seconds = time.perf_counter() - started
    if engine.step not in evaluations:
        evaluate(engine.step)  # the last step competes with the evaluated ones
    ema.module.load_state_dict(best.weights)
    metrics: dict[str, Any] = {
        # Measured again only when the best step was evaluated before a resume.
        **(evaluations.get(best.step) or evaluate(best.step)),
        "best_step": best.step,
        **copy_previous_baseline(train_streams, val_streams),
        "train_bits_per_token": curves.rows["train"][-1][1] if curves.rows["train"] else math.nan,
        "params": model.num_params(),
        "train_tokens": train_streams.num_tokens,
        "steps": engine.step,
        "train_seconds": round(seconds, 1),
    }
    if cfg.opening:
        metrics |= {"opening_step": opening.step, "opening_realism": -opening.cost}
    if engine.is_main:
        config = {
            "arch": arch.to_dict(),
            "latent_shape": list(manifest.latent_shape),
            "clip_shape": list(manifest.clip_shape),
            "attention_backend": backend,
        }
        card = model_card(cfg, arch, metrics, backend)
        save_artifact(out_dir, ema.module, config, card)
        opener = ema.module
        if cfg.opening:
            opener = TokenTransformer(arch)
            opener.load_state_dict(opening.weights)
        step = metrics.get("opening_step", best.step)
        about = (
            f"**The opening model**: the weights of step {step}, which draw the first latent "
            "frame of unconditional samples (`transformer.opening`); the run below publishes "
            f"step {best.step} beside it.\n\n"
        )
        save_artifact(out_dir / "opening", opener, config | {"step": step}, about + card)
        curves.write(plots_dir)
    return metrics
