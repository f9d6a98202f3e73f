"""Tokenizer throughput on this machine: training step, encode (the tokenize stage), decode.

    python bench/bench_tokenizer.py [--size 64] [--channels 32] [--patch 2]

The training step is the stage's: generator forward/backward with the adversarial term,
then discriminator with hinge + R1, batch 2 of 17×size×size. Encoding and decoding run in
inference mode, batch 8. The baseline printed beside each is the bare generator forward of
the same batch (what any tokenizer must at least do), measured in the same run.
"""

from __future__ import annotations

import argparse

import torch
from _common import machine, median_seconds

from willie.tokenizer.discriminator import Discriminator
from willie.tokenizer.losses import hinge_d_loss, non_saturating_g_loss, r1_penalty
from willie.tokenizer.model import TokenizerArch, VideoTokenizer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--patch", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = VideoTokenizer(TokenizerArch(channels=args.channels, patch_size=args.patch))
    disc = Discriminator(channels=32, patch_size=args.patch)
    opt_g = torch.optim.AdamW(tokenizer.parameters(), lr=1e-4)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=1e-4)
    train_batch = torch.rand(2, 1, 17, args.size, args.size) * 2 - 1
    infer_batch = torch.rand(8, 1, 17, args.size, args.size) * 2 - 1

    def train_step() -> None:
        recon, _, _ = tokenizer(train_batch)
        disc.requires_grad_(False)
        loss_g = (recon - train_batch).abs().mean() + 0.1 * non_saturating_g_loss(disc(recon))
        disc.requires_grad_(True)
        loss_g.backward()
        opt_g.step()
        opt_g.zero_grad()
        real = train_batch.requires_grad_(True)
        real_logits = disc(real)
        loss_d = hinge_d_loss(real_logits, disc(recon.detach())) + r1_penalty(real_logits, real)
        loss_d.backward()
        opt_d.step()
        opt_d.zero_grad()
        train_batch.requires_grad_(False)

    def forward() -> None:
        with torch.no_grad():
            tokenizer(train_batch)

    with torch.inference_mode():
        tokens = tokenizer.encode(infer_batch)
        encode_s = median_seconds(lambda: tokenizer.encode(infer_batch), repeats=3)
        decode_s = median_seconds(lambda: tokenizer.decode(tokens), repeats=3)
    step_s = median_seconds(train_step, repeats=5)
    forward_s = median_seconds(forward, repeats=5)
    params = sum(p.numel() for p in tokenizer.parameters()) / 1e6
    print(f"machine: {machine()}")
    print(
        f"tokenizer: channels {args.channels}, patch {args.patch}, {params:.2f}M params; "
        f"discriminator {sum(p.numel() for p in disc.parameters()) / 1e6:.2f}M; "
        f"clips 17×{args.size}×{args.size}"
    )
    print(f"  generator forward, batch 2          {forward_s * 1e3:8.0f} ms   1×")
    print(
        f"  training step G+D, batch 2          {step_s * 1e3:8.0f} ms   {step_s / forward_s:.1f}×"
    )
    print(f"  encode (tokenize), batch 8          {8 / encode_s:8.1f} clips/s")
    print(f"  decode, batch 8                     {8 / decode_s:8.1f} clips/s")


if __name__ == "__main__":
    main()
