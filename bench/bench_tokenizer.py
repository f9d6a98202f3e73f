"""Tokenizer throughput on this machine: training step, encode (the tokenize stage), decode.

    python bench/bench_tokenizer.py [--size 64] [--channels 32] [--patch 2]   # params.yaml's
    python bench/bench_tokenizer.py --device cuda --size 128 --batch 8   # bf16, as training

The training step is the stage's: generator forward/backward with the adversarial term,
then discriminator with hinge + R1, batch `--batch` (2) of 17×size×size, under the engine's
precision policy (bf16 autocast on CUDA, fp32 on CPU); on the CPU the training step is
also timed in bf16 (`precision: bf16`; not with `--compile`), the ratio printed beside it.
Encoding and decoding run in inference mode, batch 8. The baseline printed beside each is
the bare generator forward of the same batch (what any tokenizer must at least do),
measured in the same run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import yaml
from _common import REPO, machine, median_seconds

from willie.config import Precision, TokenizerConfig
from willie.tokenizer.discriminator import Discriminator
from willie.tokenizer.losses import hinge_d_loss, non_saturating_g_loss, r1_penalty
from willie.tokenizer.model import VideoTokenizer
from willie.tokenizer.train import architecture
from willie.training.engine import autocast


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, help="default: params.yaml's")
    parser.add_argument("--patch", type=int, help="default: params.yaml's")
    parser.add_argument("--batch", type=int, default=2, help="training batch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the tokenizer")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    section = yaml.safe_load((REPO / "params.yaml").read_text())["tokenizer"]
    overrides = {"channels": args.channels, "patch_size": args.patch}
    cfg = TokenizerConfig(**section | {k: v for k, v in overrides.items() if v is not None})
    arch = architecture(cfg)  # the preset's network
    tokenizer = VideoTokenizer(arch)
    disc = Discriminator(channels=cfg.disc_channels, patch_size=arch.patch_size)
    tokenizer, disc = tokenizer.to(device), disc.to(device)
    if args.compile:  # as the stage does with `compile: true` (its discriminator stays eager:
        tokenizer = torch.compile(tokenizer)  # R1 needs double backward, which compile lacks)
    opt_g = torch.optim.AdamW(tokenizer.parameters(), lr=1e-4)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=1e-4)
    shape = (1, 17, args.size, args.size)
    train_batch = torch.rand(args.batch, *shape, device=device) * 2 - 1
    infer_batch = torch.rand(8, *shape, device=device) * 2 - 1

    def synced(fn: Callable[[], object], precision: Precision = "auto") -> Callable[[], None]:
        def run() -> None:
            with autocast(device, precision):
                fn()
            if device.type == "cuda":
                torch.cuda.synchronize()

        return run

    def train_step() -> None:
        recon, _, _ = tokenizer(train_batch)
        disc.requires_grad_(False)
        rec = (recon.float() - train_batch).abs().mean()
        loss_g = rec + 0.1 * non_saturating_g_loss(disc(recon).float())
        disc.requires_grad_(True)
        loss_g.backward()
        opt_g.step()
        opt_g.zero_grad()
        real = train_batch.requires_grad_(True)
        real_logits = disc(real).float()
        fake_logits = disc(recon.detach()).float()
        loss_d = hinge_d_loss(real_logits, fake_logits) + r1_penalty(real_logits, real)
        loss_d.backward()
        opt_d.step()
        opt_d.zero_grad()
        train_batch.requires_grad_(False)

    def forward() -> None:
        with torch.no_grad():
            tokenizer(train_batch)

    with torch.inference_mode(), autocast(device):
        tokens = tokenizer.encode(infer_batch)
    with torch.inference_mode():
        encode_s = median_seconds(synced(lambda: tokenizer.encode(infer_batch)), repeats=3)
        decode_s = median_seconds(synced(lambda: tokenizer.decode(tokens)), repeats=3)
    step_s = median_seconds(synced(train_step), repeats=5)
    # `precision: bf16` on the CPU, after fp32 in the same run (fast with AMX); not compiled:
    # autocast would make torch.compile build the graph again
    also_bf16 = device.type == "cpu" and not args.compile
    bf16_s = median_seconds(synced(train_step, "bf16"), repeats=5) if also_bf16 else 0
    forward_s = median_seconds(synced(forward), repeats=5)
    params = sum(p.numel() for p in tokenizer.parameters()) / 1e6
    where = torch.cuda.get_device_name(device) + ", bf16" if device.type == "cuda" else "fp32"
    where += ", torch.compile" if args.compile else ""
    print(f"machine: {machine()}; on {where}")
    print(
        f"tokenizer (params.yaml): channels {arch.channels}, patch {arch.patch_size}, norm "
        f"{arch.norm}, down-sampling {arch.space_down}/{arch.time_down}, {params:.2f}M params; "
        f"discriminator {sum(p.numel() for p in disc.parameters()) / 1e6:.2f}M; "
        f"clips 17×{args.size}×{args.size}"
    )
    b = args.batch
    print(f"  generator forward, batch {b:<2}         {forward_s * 1e3:8.1f} ms   1×")
    print(
        f"  training step G+D, batch {b:<2}         {step_s * 1e3:8.1f} ms   "
        f"{step_s / forward_s:.1f}×   ({b / step_s:.1f} clips/s trained)"
    )
    if bf16_s:
        print(
            f"  … the same step in bf16 (`precision: bf16`) {bf16_s * 1e3:8.1f} ms   "
            f"{step_s / bf16_s:.2f}× faster than fp32"
        )
    print(f"  encode (tokenize), batch 8          {8 / encode_s:8.1f} clips/s")
    print(f"  decode, batch 8                     {8 / decode_s:8.1f} clips/s")


if __name__ == "__main__":
    main()
