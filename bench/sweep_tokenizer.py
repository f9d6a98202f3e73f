"""Tokenizer quality per setting: train the stage's code with overrides, print val and train PSNR.

    python bench/sweep_tokenizer.py --clips data/clips --steps 600 \
        base "lr=1e-3" "lr=1e-3,recon_loss=l2" "channels=64"

Each variant is `params.yaml`'s `tokenizer` section with comma-separated `key=value`
overrides (values parsed as YAML), trained by `willie.tokenizer.train.train_tokenizer` for
`--steps` steps with the GAN off (reconstruction only, unless a variant sets `disc_start`),
into a temporary directory. Printed per variant: val PSNR/SSIM/codebook usage (the stage's
metrics), the same on the train clips (how well it fits what it saw, against how well it
generalizes), parameters and training seconds. The first variant is the baseline of the
PSNR differences. Run it alone on the machine: the seconds are wall-clock.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import yaml
from _common import machine

from willie.config import TokenizerConfig
from willie.data.dataset import ClipDataset
from willie.tokenizer import load_tokenizer
from willie.tokenizer.measures import evaluate
from willie.tokenizer.train import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def parse_variant(text: str) -> dict:
    """'lr=1e-3,recon_loss=l2' -> {'lr': 0.001, 'recon_loss': 'l2'}; 'base' -> {}."""
    if text == "base":
        return {}
    pairs = [item.split("=", 1) for item in text.split(",")]
    if any(len(pair) != 2 for pair in pairs):
        raise SystemExit(f"variant {text!r}: expected key=value[,key=value...] or 'base'")
    return {key.strip(): yaml.safe_load(value) for key, value in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="'base' or key=value[,key=value...]")
    parser.add_argument("--clips", type=Path, default=ROOT / "data" / "clips")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args()
    section = yaml.safe_load(args.params.read_text())["tokenizer"]
    off = 10**9  # the GAN's delays past the end: reconstruction only
    base = {"max_steps": args.steps, "disc_start": off, "gen_adv_start": off}
    configs = [TokenizerConfig(**(section | base | parse_variant(v))) for v in args.variants]
    train_clips = ClipDataset(args.clips, "train", size=configs[0].size)
    print(f"machine: {machine()}, {torch.get_num_threads()} torch threads")
    print(f"clips: {args.clips} ({len(train_clips)} train); {args.steps} steps each, GAN off")
    print(
        f"{'variant':<32} {'val PSNR':>9} {'Δ':>6} {'SSIM':>6} {'usage':>6} "
        f"{'train PSNR':>10} {'usage':>6} {'params':>7} {'time':>7}"
    )
    first = None
    for text, cfg in zip(args.variants, configs, strict=True):
        with tempfile.TemporaryDirectory() as out:
            val = train_tokenizer(cfg, args.clips, out)
            tokenizer = load_tokenizer(out)
        train = evaluate(
            tokenizer, train_clips, torch.device("cpu"), max_clips=len(train_clips), batch_size=4
        ).metrics
        first = val["psnr"] if first is None else first
        params = sum(p.numel() for p in tokenizer.parameters()) / 1e6
        usage_val, usage_train = val["codebook_usage"], train["codebook_usage"]
        print(
            f"{text:<32} {val['psnr']:>6.2f} dB {val['psnr'] - first:>+6.2f} {val['ssim']:>6.3f} "
            f"{usage_val:>6.1%} {train['psnr']:>7.2f} dB {usage_train:>6.1%} "
            f"{params:>6.2f}M {val['train_seconds']:>6.0f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
