"""Super-resolution throughput on this machine: training step and upscaling a clip.

    python bench/bench_superres.py [--size 128] [--channels 32] [--blocks 4] [--crop 64]
                                   [--no-area-consistent]

The training step is the stage's (L1, batch 8 of `crop`×`crop` crops with 3 input frames,
backward, AdamW). Upscaling runs in inference mode on one 17-frame clip from size/2 to size.
The baseline printed beside it is bicubic up-sampling of the same clip, measured in the same run.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from _common import machine, median_seconds

from willie.superres.model import SuperResArch, VideoSuperRes, bicubic_upsample


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument(
        "--area-consistent",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the preset's area-consistent bicubic base (--no-area-consistent: plain bicubic)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    arch = SuperResArch(
        scale=2,
        frames=3,
        channels=args.channels,
        blocks=args.blocks,
        area_consistent=args.area_consistent,
    )
    model = VideoSuperRes(arch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    low_crop = args.crop // arch.scale
    train_low = torch.rand(8, 1, arch.frames, low_crop, low_crop) * 2 - 1
    train_high = torch.rand(8, 1, 1, args.crop, args.crop) * 2 - 1
    clip = torch.rand(1, 1, 17, args.size // 2, args.size // 2) * 2 - 1

    def train_step() -> None:
        loss = F.l1_loss(model(train_low, [arch.radius]), train_high)
        loss.backward()
        opt.step()
        opt.zero_grad()

    step_s = median_seconds(train_step, repeats=10)
    model.eval()
    with torch.inference_mode():
        upscale_s = median_seconds(lambda: model.upscale(clip), repeats=3)
        bicubic_s = median_seconds(lambda: bicubic_upsample(clip, arch.scale).clamp(-1, 1))
    params = sum(p.numel() for p in model.parameters())
    print(f"machine: {machine()}, {torch.get_num_threads()} torch threads")
    print(f"model: {arch}, {params / 1e3:.0f}k parameters")
    print(
        f"train step (batch 8, {args.crop}² crops): {step_s * 1e3:.1f} ms, {8 / step_s:.0f} crops/s"
    )
    print(
        f"upscale 17×{args.size // 2}² → {args.size}²: {upscale_s * 1e3:.0f} ms "
        f"({17 / upscale_s:.0f} frames/s); bicubic {bicubic_s * 1e3:.1f} ms "
        f"({upscale_s / bicubic_s:.0f}× bicubic's time)"
    )


if __name__ == "__main__":
    main()
