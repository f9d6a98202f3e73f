"""Tokenizer generalization per setting: train on one shot of the film, test on the other.

    python bench/sweep_unseen.py base "norm=channel" "channels=48,lr=2e-3" --steps 300 1200
    python bench/sweep_unseen.py base "norm=none" --device cuda --jobs 12   # on a GPU

Each variant is our tokenizer (`TokenizerArch` defaults as the stage builds them from
`params.yaml`) with comma-separated `key=value` overrides, of the architecture (any
`TokenizerArch` field) or of training (`TRAINING` below). Each is trained with MSE and Adam
on one shot of the shared real footage (bench/_shots.py) — wheel → boat and boat → wheel —
fed the same clips in the same order, and measured at every `--steps` point: PSNR on the
shot it trained on (fit), on the shot it never saw (generalization), the gap between them
(memorization), SSIM and codebook usage on the unseen shot. Variants run in parallel
processes (`--jobs`); with `--jobs 1` the printed seconds are this machine's step times.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import fields
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
import yaml

from willie.quality import psnr, ssim
from willie.tokenizer.fsq import codebook_usage
from willie.tokenizer.model import TokenizerArch, VideoTokenizer

DIRECTIONS = {"wheel→boat": ("wheel", "boat"), "boat→wheel": ("boat", "wheel")}
# Training settings a variant may override, with the sweep's defaults.
TRAINING = {
    "lr": 1e-3,
    "beta1": 0.9,
    "beta2": 0.99,
    "wd": 0.0,  # AdamW weight decay
    "warmup": 0,  # linear warm-up steps
    "cosine": False,  # cosine decay to 0.1× over the last --steps point
    "loss": "l2",
    "flip": False,  # mirror half the clips left-right
    "reverse": 0.0,  # probability of playing a clip backwards
    "jitter": 0.0,  # brightness/contrast jitter amplitude (gain 1±j, offset ±j)
    "crop": 1.0,  # smallest random crop side (fraction of the frame), resized back
    "shift": 0,  # random translation by up to this many pixels (reflected borders)
    "ema": 0.0,  # EMA decay of the evaluated weights; 0: the live weights
    "batch": 2,
    "seed": None,  # another seed for this variant (noise level); default: the job's
    "synthetic": 0.0,  # share of training clips drawn from the synthetic cartoon instead
    "bf16": False,  # train under bf16 autocast (measured in fp32), as `precision: bf16` does
    "init": "none",  # none | out | latent | ends: rescale weights on the first batch (rescale_init)
    "zstd": 1.0,  # init=latent|ends: the latents' std it aims for
}
INITS = ("none", "out", "latent", "ends")
ARCH_BASE = {"channels": 32, "channel_mults": (1, 2, 2, 4), "patch_size": 2, "levels": (8, 5, 5, 5)}


def parse_variant(text: str) -> tuple[dict, dict]:
    """'norm=channel,lr=2e-3' -> (arch overrides, training overrides); 'base' -> ({}, {})."""
    if text == "base":
        return {}, {}
    arch_names = {f.name for f in fields(TokenizerArch)}
    arch, train = {}, {}
    for item in re.split(r",(?![^\[]*\])", text):  # commas outside [lists]
        key, sep, value = item.partition("=")
        if not sep or (key not in arch_names and key not in TRAINING):
            raise SystemExit(f"variant {text!r}: {item!r} is not key=value of a known key")
        parsed = yaml.safe_load(value)
        if isinstance(TRAINING.get(key), float):
            parsed = float(parsed)  # YAML reads 3e-4 (no dot) as a string
        (arch if key in arch_names else train)[key] = parsed
    if train.get("init", "none") not in INITS:
        raise SystemExit(f"variant {text!r}: init must be one of {', '.join(INITS)}")
    return arch, train


def augment(clips: torch.Tensor, opts: dict, gen: torch.Generator) -> torch.Tensor:
    """Random flips, time reversal, zoomed crops, shifts, brightness/contrast of [B, 1, T, H, W]."""
    B, _, _, H, W = clips.shape
    rand = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    if opts["flip"]:
        clips = torch.where((rand(B) < 0.5)[:, None, None, None, None], clips.flip(-1), clips)
    if opts["reverse"]:
        back = (rand(B) < opts["reverse"])[:, None, None, None, None]
        clips = torch.where(back, clips.flip(2), clips)
    if opts["crop"] < 1.0:
        out = []
        for clip in clips:
            side = opts["crop"] + (1 - opts["crop"]) * float(rand(1))
            h, w = max(8, round(H * side)), max(8, round(W * side))
            y, x = int(rand(1) * (H - h + 1)), int(rand(1) * (W - w + 1))
            crop = clip[:, :, y : y + h, x : x + w]
            out.append(torch.nn.functional.interpolate(crop, (H, W), mode="bilinear"))
        clips = torch.stack(out)
    if opts["shift"]:
        pad = opts["shift"]
        padded = torch.nn.functional.pad(clips.flatten(1, 2), (pad,) * 4, mode="reflect")
        dy, dx = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=gen))
        clips = padded[..., dy : dy + H, dx : dx + W].reshape(clips.shape)
    if opts["jitter"]:
        j = opts["jitter"]
        gain = 1 + j * (2 * rand(B, 1, 1, 1, 1) - 1)
        offset = j * (2 * rand(B, 1, 1, 1, 1) - 1)
        clips = (clips * gain + offset).clamp(-1, 1)
    return clips


@torch.no_grad()
def rescale_init(model: VideoTokenizer, batch: torch.Tensor, how: str, zstd: float) -> None:
    """Data-driven scales at init. PyTorch's default init shrinks the signal about 3× in
    variance per conv, and without norms nothing restores it: on the preset the latents
    start at std 0.07, so FSQ rounds every one to the same code, and the reconstruction
    starts at std 0.015 against the clips' 0.35. `latent` scales the projection to FSQ so
    the latents start at std `zstd`; `out` scales the decoder's last conv so the
    reconstruction starts at the batch's std; `ends` both (the latents first)."""
    last = model.decoder.conv_out.conv
    convs = {"out": [last], "latent": [model.to_latent], "ends": [model.to_latent, last]}[how]
    seen: dict[str, float] = {}
    for conv in convs:
        hook = conv.register_forward_hook(lambda m, i, o: seen.update(std=float(o.std())))
        model(batch)
        hook.remove()
        goal = float(batch.std()) if conv is last else zstd
        gain = goal / max(seen["std"], 1e-8)
        conv.weight.mul_(gain)
        if conv.bias is not None:
            conv.bias.mul_(gain)


@torch.no_grad()
def measure(model: VideoTokenizer, clips: torch.Tensor, device: torch.device) -> dict:
    model.eval()
    p, s, idx = [], [], []
    for batch in clips.split(8):
        batch = batch.to(device)
        recon, indices, _ = model(batch)
        recon = recon.clamp(-1, 1)
        p += psnr(recon, batch).tolist()
        s += ssim(recon, batch).tolist()
        idx.append(indices.cpu())
    model.train()
    usage = codebook_usage(torch.cat(idx), model.codebook_size).usage
    return {"psnr": float(np.mean(p)), "ssim": float(np.mean(s)), "usage": usage}


def run_one(job: dict) -> dict:
    """Train one variant in one direction; measure at each of job['steps']."""
    torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    shots = np.load(job["shots"])
    train = torch.from_numpy(shots[job["train"]])
    unseen = torch.from_numpy(shots[job["test"]])
    arch_kw, train_kw = parse_variant(job["variant"])
    opts = TRAINING | train_kw
    cartoon = torch.from_numpy(np.load(job["synthetic"])["clips"]) if opts["synthetic"] else None
    if opts["seed"] is not None:
        job = job | {"seed": opts["seed"]}
    torch.manual_seed(job["seed"])
    model = VideoTokenizer(TokenizerArch(**(ARCH_BASE | arch_kw))).to(device).train()
    evaluated = model
    if opts["ema"]:
        evaluated = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(opts["ema"])
        )
    decay = {p for p in model.parameters() if p.ndim >= 2}
    groups = [
        {"params": [p for p in model.parameters() if p in decay], "weight_decay": opts["wd"]},
        {"params": [p for p in model.parameters() if p not in decay], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=opts["lr"], betas=(opts["beta1"], opts["beta2"]))
    total = max(job["steps"])

    def lr_at(step: int) -> float:
        scale = min(1.0, (step + 1) / opts["warmup"]) if opts["warmup"] else 1.0
        if opts["cosine"]:
            scale *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / total))
        return opts["lr"] * scale

    order = np.random.default_rng(job["seed"]).integers(0, len(train), (total, opts["batch"]))
    if opts["init"] != "none":
        first = train[torch.from_numpy(order[0])].to(device)
        rescale_init(model, first, opts["init"], opts["zstd"])
    gen = torch.Generator().manual_seed(job["seed"])
    # the synthetic draws come from their own generator: the real clips' order stays the same
    mix = np.random.default_rng(job["seed"] + 1)
    rows, seconds = [], 0.0
    for step in range(total):
        start = time.perf_counter()
        batch = train[torch.from_numpy(order[step])]
        if cartoon is not None:
            swap = torch.from_numpy(mix.random(len(batch)) < opts["synthetic"])
            drawn = cartoon[torch.from_numpy(mix.integers(0, len(cartoon), len(batch)))]
            batch = torch.where(swap[:, None, None, None, None], drawn, batch)
        batch = augment(batch, opts, gen).to(device)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts["bf16"]):
            recon, _, _ = model(batch)
        recon = recon.float()
        if opts["loss"] == "l1":
            loss = (recon - batch).abs().mean()
        else:
            loss = (recon - batch).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if evaluated is not model:
            evaluated.update_parameters(model)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        if step + 1 in job["steps"]:
            net = evaluated.module if evaluated is not model else model
            fit, gen_ = measure(net, train, device), measure(net, unseen, device)
            rows.append(
                {
                    "variant": job["variant"],
                    "direction": job["direction"],
                    "steps": step + 1,
                    "train_psnr": fit["psnr"],
                    "unseen_psnr": gen_["psnr"],
                    "unseen_ssim": gen_["ssim"],
                    "unseen_usage": gen_["usage"],
                    "seconds": seconds,
                    "params": sum(p.numel() for p in model.parameters()),
                }
            )
    return {"rows": rows}


def run_safely(job: dict) -> dict:
    """`run_one`, with a failure reported as a row rather than ending the sweep."""
    try:
        return run_one(job)
    except Exception as e:  # any failure of one variant
        return {"error": f"{type(e).__name__}: {e}"}


def load_shots(path: Path) -> Path:
    """The shots as an .npz (made once from the shared footage through preprocess)."""
    if not path.is_file():
        from _shots import shot_clips

        path.parent.mkdir(parents=True, exist_ok=True)
        shots = {k: v.numpy() for k, v in shot_clips().items()}
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **shots)
        tmp.replace(path)
    return path


def load_synthetic(path: Path, seconds: float = 60.0, seed: int = 1) -> Path:
    """Clips of the synthetic cartoon (willie.data.synthetic, `seconds` long, its own `seed`),
    through the preprocess stage's code, as an .npz (made once)."""
    if not path.is_file():
        from willie.config import PreprocessConfig
        from willie.data.cartoon_prior import render_clips

        settings = PreprocessConfig(size=64, stride=8)  # as bench/_shots.py cuts the film
        clips = render_clips(settings, (64, 64), seconds=seconds, seed=seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = path.with_suffix(".tmp.npz")
        np.savez(tmp_path, clips=clips.numpy())
        tmp_path.replace(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--steps", type=int, nargs="+", default=[300, 1200])
    parser.add_argument("--direction", choices=[*DIRECTIONS, "both"], default="both")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch threads per run (default: CPUs / jobs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--shots", type=Path, default=Path(__file__).parent / ".runs/shots64.npz")
    parser.add_argument(
        "--synthetic",
        type=Path,
        default=Path(__file__).parent / ".runs/synthetic64.npz",
        help="the synthetic cartoon's clips, for variants with synthetic=<share>",
    )
    parser.add_argument("--out", type=Path, help="JSON lines of every row")
    args = parser.parse_args()
    for v in args.variants:
        parse_variant(v)
    shots = load_shots(args.shots)
    if any(parse_variant(v)[1].get("synthetic") for v in args.variants):
        load_synthetic(args.synthetic)
    directions = list(DIRECTIONS) if args.direction == "both" else [args.direction]
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    jobs = [
        {
            "variant": v,
            "direction": d,
            "train": DIRECTIONS[d][0],
            "test": DIRECTIONS[d][1],
            "steps": sorted(args.steps),
            "device": args.device,
            "threads": threads,
            "shots": str(shots),
            "synthetic": str(args.synthetic),
            "seed": seed,
        }
        for v in args.variants
        for d in directions
        for seed in args.seeds
    ]
    print(
        f"{len(jobs)} runs on {args.device}, {args.jobs} at a time, {threads} threads each",
        flush=True,
    )
    header = (
        f"{'variant':<40} {'direction':<11} {'steps':>5} {'train':>6} {'unseen':>6} "
        f"{'gap':>5} {'SSIM':>5} {'usage':>5} {'s':>6} {'params':>6}"
    )
    rows = []
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_safely, job): job for job in jobs}
        for future in as_completed(futures):
            job, result = futures[future], future.result()
            if "error" in result:
                print(f"{job['variant']} {job['direction']}: FAILED {result['error']}", flush=True)
            for r in result.get("rows", []):
                rows.append(r)
                print(
                    f"{r['variant']:<40} {r['direction']:<11} {r['steps']:>5} "
                    f"{r['train_psnr']:>6.2f} {r['unseen_psnr']:>6.2f} "
                    f"{r['train_psnr'] - r['unseen_psnr']:>5.2f} {r['unseen_ssim']:>5.3f} "
                    f"{r['unseen_usage']:>5.1%} {r['seconds']:>6.1f} {r['params'] / 1e6:>5.2f}M",
                    flush=True,
                )
                if args.out:
                    with args.out.open("a") as f:
                        f.write(json.dumps(r) + "\n")
    print("\n" + header)
    for r in sorted(rows, key=lambda r: (r["direction"], r["steps"], -r["unseen_psnr"])):
        print(
            f"{r['variant']:<40} {r['direction']:<11} {r['steps']:>5} {r['train_psnr']:>6.2f} "
            f"{r['unseen_psnr']:>6.2f} {r['train_psnr'] - r['unseen_psnr']:>5.2f} "
            f"{r['unseen_ssim']:>5.3f} {r['unseen_usage']:>5.1%} {r['seconds']:>6.1f} "
            f"{r['params'] / 1e6:>5.2f}M"
        )


if __name__ == "__main__":
    main()
