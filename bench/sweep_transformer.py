"""Which transformer settings make samples that look like the film? One line per variant.

    python bench/sweep_transformer.py --run ../runs/real base "dropout=0.3" "input_noise=0.1"

`--run` is a pipeline workspace where `tokenize` has run (data/clips, data/tokens,
stages/tokenizer: e.g. the shared 0-18 s clip through the default preset, whose by-scene split
trains on the wheel shots and validates on the boat). Each variant is the `transformer` section
of params.yaml with comma-separated `key=value` overrides, trained by the stage's own code, then:

- train and val bits/token beside the copy-previous baseline and uniform (val = another shot);
- `--samples` unconditional samples and as many continuations of val prompts, `--frames` long,
  generated in one batch each, decoded by the run's tokenizer, and scored by realism (each
  frame's best SSIM against every real frame of the corpus, no trained model involved): the
  mean, the first and the last second, and frame-to-frame change against real footage's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
import yaml

from willie.config import TransformerConfig
from willie.evaluation.distribution import frame_change_curve
from willie.evaluation.realism import FrameStats, RealFrames, match_frames, per_second, real_frames
from willie.generation.sample import load_generator
from willie.transformer.baseline import copy_previous_baseline
from willie.transformer.data import TokenStreams
from willie.transformer.generate import draw_openings, generate, sampler
from willie.transformer.selection import val_prompts
from willie.transformer.train import train_transformer

REPO = Path(__file__).resolve().parents[1]
SAMPLING = ("temperature", "top_k", "top_p")  # sample-section keys a variant may override
OPENING = ("opening_temperature", "opening_top_p", "opening_candidates")  # … for the first frame


def parse(text: str) -> dict[str, object]:
    if text == "base":
        return {}
    return {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in text.split(","))}


def real_change(real: RealFrames) -> float:
    """Mean absolute change between consecutive real frames of the same footage, on [0, 1]."""
    step = (real.frames[1:] - real.frames[:-1]).abs().mean((1, 2)) / 2
    return float(step[real.index[1:] - real.index[:-1] == 1].mean())


def score_samples(
    run: Path, model_dir: Path, corpus: RealFrames, args: argparse.Namespace, sample_kw: dict
) -> dict[str, float]:
    models = load_generator(run / "stages/tokenizer", model_dir, None, torch.device("cpu"))
    layout = models.layout  # with sound, each latent frame's audio tokens follow its pictures'
    latent = models.latent_frames(args.frames)
    bos = models.transformer.arch.bos
    prompts = [torch.full((args.samples, 1), bos)]
    if args.prompt_frames:
        from willie.data.dataset import ClipDataset

        val = ClipDataset(run / "data/clips", "val", size=models.size)
        picks = torch.linspace(0, len(val) - 1, args.samples).round().long().tolist()
        clips = torch.stack([val[i] for i in picks])
        tokens_dir = run / "data/tokens"
        prompt = val_prompts(models.tokenizer, clips, picks, tokens_dir, layout, args.prompt_frames)
        prompts.append(torch.cat([prompts[0], prompt], 1))
    reference = FrameStats.of(corpus.frames)
    result: dict[str, float] = {}
    opening = {k: sample_kw.pop(k) for k in OPENING}
    for kind, prompt in zip(("uncond", "cont"), prompts, strict=False):
        generator = torch.Generator().manual_seed(0)
        pick = sampler(generator=generator, **sample_kw)
        started = time.perf_counter()
        if kind == "uncond":  # its first latent frame, as `sample` draws it
            first = sampler(
                generator=generator,
                top_k=sample_kw["top_k"],
                temperature=opening["opening_temperature"] or sample_kw["temperature"],
                top_p=opening["opening_top_p"] or sample_kw["top_p"],
            )
            opener = models.opener or models.transformer
            prompt = draw_openings(
                opener, models.transformer, prompt, layout.period, first,
                opening["opening_candidates"],
            )  # fmt: skip
        new = latent * layout.period - prompt.shape[1] + 1
        tokens = generate(models.transformer, prompt, new, pick)
        result[f"{kind}_tokens_per_s"] = tokens[:, prompt.shape[1] :].numel() / (
            time.perf_counter() - started
        )
        skip = args.prompt_frames if kind == "cont" else 0
        video, _ = layout.split(tokens[:, 1:])  # [S, t, h·w]: the pictures are judged
        codes = video.reshape(len(tokens), latent, *models.latent_hw)
        with torch.inference_mode():
            videos = list(models.tokenizer.decode(codes).clamp(-1, 1)[:, 0, skip:])
            scores = [match_frames(FrameStats.of(v[:: args.every]), reference).best for v in videos]
        curve = torch.stack([per_second(s, 24 / args.every) for s in scores]).mean(0)
        result |= {
            f"{kind}_realism": float(torch.cat(scores).mean()),
            f"{kind}_realism_first_s": float(curve[0]),
            f"{kind}_realism_last_s": float(curve[-1]),
            f"{kind}_change": float(frame_change_curve(torch.stack(videos)).mean()),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variants", nargs="*", default=["base"])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=None, help="default: params.yaml")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--frames", type=int, default=97)
    parser.add_argument("--prompt-frames", type=int, default=5)
    parser.add_argument(
        "--temperatures", type=float, nargs="*", help="score samples at each (default: params)"
    )
    parser.add_argument("--every", type=int, default=2, help="score every n-th frame")
    parser.add_argument("--out", type=Path, default=REPO / "bench/.runs/transformer")
    args = parser.parse_args()
    torch.manual_seed(0)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    size = int(json.loads((args.run / "stages/tokenizer/config.json").read_text())["size"])
    train, val = (real_frames(args.run / "data/clips", s, size) for s in ("train", "val"))
    with torch.inference_mode():
        held_out = match_frames(FrameStats.of(val.frames), FrameStats.of(train.frames)).best
        distant = match_frames(
            FrameStats.of(train.frames),
            FrameStats.of(train.frames),
            exclude=train.far_from(train, 48),
        ).best
    corpus = RealFrames.concat([train, val])
    print(
        f"realism of real frames: val shot vs train shots {float(held_out.mean()):.3f}, "
        f"train vs train ≥ 2 s apart {float(distant.mean()):.3f}; frame change of real "
        f"footage {real_change(train):.4f} (train), {real_change(val):.4f} (val)"
    )
    tokens = args.run / "data/tokens"
    baseline = copy_previous_baseline(TokenStreams(tokens, "train"), TokenStreams(tokens, "val"))
    print(json.dumps({k: round(v, 3) for k, v in baseline.items()}))
    for variant in args.variants:
        overrides = parse(variant)
        sample_kw = {k: overrides.pop(k, params["sample"][k]) for k in SAMPLING + OPENING}
        section = params["transformer"] | overrides | {"device": "cpu"}
        if args.steps:
            section["max_steps"] = args.steps
        cfg = TransformerConfig(**section)
        out = args.out / variant.replace("=", "-").replace(",", "_")
        shutil.rmtree(out, ignore_errors=True)  # a fresh run, never a resume
        started = time.perf_counter()
        metrics = train_transformer(
            cfg,
            tokens,
            out,
            out / "plots",
            tokenizer_dir=args.run / "stages/tokenizer",
            clips_dir=args.run / "data/clips",
        )
        seconds = time.perf_counter() - started
        result = {
            "variant": variant,
            "train_bits": metrics["train_bits_per_token"],
            "val_bits": metrics["val_bits_per_token"],
            "best_step": metrics["best_step"],
            "probe_realism": metrics.get("val_realism", float("nan")),
            "probe_uncond": metrics.get("val_realism_unconditional", float("nan")),
            "probe_cont": metrics.get("val_realism_continuation", float("nan")),
            "train_s": seconds,
        }
        for temperature in args.temperatures or [sample_kw["temperature"]]:
            scored = score_samples(
                args.run, out, corpus, args, sample_kw | {"temperature": temperature}
            )
            suffix = "" if not args.temperatures else f"@T{temperature}"
            result |= {f"{k}{suffix}": v for k, v in scored.items()}
        rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
        print(json.dumps(rounded), flush=True)
        curve = out / "plots/transformer_val_realism.csv"
        if curve.is_file():
            print("  realism by step:", " ".join(curve.read_text().split()[1:]), flush=True)


if __name__ == "__main__":
    main()
