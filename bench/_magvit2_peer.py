"""The peer's side of bench_tokenizer_vs_magvit2.py; runs inside bench/.venv-magvit2.

Imports only magvit2_pytorch, torch and numpy (not willie: the peer has its own torch). Reads
the clips the driver wrote to --data (float32 in [-1, 1]: `timing.npy` the timed batch [B, 1,
T, H, W]; per training set NAME, `NAME.train.npy` clips [N, 1, T, H, W] and `NAME.order.npy`
[steps, B] the clip indices of each training step, `NAME.aug.npy` [steps, B, 3] each clip's
augmentation (mirror, dy, dx), the driver's draw), then answers the driver one command per
stdin line with one JSON line on stdout, so the driver can alternate our steps with the peer's:

    (start)          → {"torch", "magvit2_pytorch", "g_params", "d_params"}
    generator        → {"s"}: one timed generator step (MSE) of the timing model
    gan              → {"s"}: one timed G + D step of the timing model
    fresh NAME       → {}: a new quality model (same seed), to be trained on set NAME
    train STEP       → {"s", "loss"}: one MSE step of the quality model on batch STEP of the order
    recon IN OUT     → {}: reconstruct clips IN.npy with the quality model; write OUT.npz with
                       `recon` [N, 1, T, H, W] (clamped) and `codes` [N, t, h, w] (FSQ indices),
                       which the driver measures with the project's own metrics
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore", category=FutureWarning)  # torch.cuda.amp.autocast in 0.5.1
from magvit2_pytorch import VideoTokenizer  # noqa: E402


def layers(spatial_downsample: int) -> tuple[str, ...]:
    """log2(spatial_downsample) space stages (8: 3), then 2 time stages (4×), a residual unit
    around each: no attention, no gateloop. Widths double at every compression, capped at
    max_dim."""
    stages = ["compress_space"] * int(math.log2(spatial_downsample)) + ["compress_time"] * 2
    return ("residual", *(name for stage in stages for name in (stage, "residual")))


GRAD_PENALTY_WEIGHT = 10.0  # the peer's default


def augment(clips: torch.Tensor, params: torch.Tensor, shift: int) -> torch.Tensor:
    """willie.tokenizer.augment.apply_augmentation, restated (this venv has no willie): mirror,
    then translate each clip by its (dy, dx) with reflected borders."""
    out = []
    for clip, (mirror, dy, dx) in zip(clips, params.tolist(), strict=True):
        if mirror:
            clip = clip.flip(-1)
        if dy or dx:
            H, W = clip.shape[-2:]
            padded = torch.nn.functional.pad(clip, (shift,) * 4, mode="reflect")
            clip = padded[..., shift - dy : shift - dy + H, shift - dx : shift - dx + W]
        out.append(clip)
    return torch.stack(out)


def adam(params, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99))


def count(params) -> int:
    return sum(p.numel() for p in params)


def timed(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


class PeerBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.data = Path(args.data)
        self.args = args
        self.x = torch.from_numpy(np.load(self.data / "timing.npy"))
        # Two models from the same seed: one only timed, one only trained for quality.
        self.timing_model = self.build()
        # The peer's VideoTokenizer.parameters() already leaves out the discriminator.
        self.opt_g = adam(self.timing_model.parameters(), args.lr)
        self.opt_d = adam(self.timing_model.discr_parameters(), args.lr)

    def build(self) -> VideoTokenizer:
        torch.manual_seed(self.args.seed)
        size = self.x.shape[-1]
        return VideoTokenizer(
            image_size=size,
            channels=1,
            init_dim=self.args.init_dim,
            max_dim=self.args.max_dim,
            layers=layers(self.args.spatial_downsample),
            use_fsq=True,
            fsq_levels=self.args.levels,
            perceptual_loss_weight=0.0,  # else it builds torchvision's VGG16 and downloads it
            grad_penalty_loss_weight=GRAD_PENALTY_WEIGHT,
            discr_kwargs={
                "dim": self.args.discr_dim,
                "image_size": size,
                "channels": 1,
                "max_dim": 256,
            },
            flash_attn=False,
        ).train()

    def fresh(self, name: str) -> None:
        self.train = torch.from_numpy(np.load(self.data / f"{name}.train.npy"))
        self.order = torch.from_numpy(np.load(self.data / f"{name}.order.npy"))
        self.aug = torch.from_numpy(np.load(self.data / f"{name}.aug.npy"))
        self.model = self.build()
        self.opt = adam(self.model.parameters(), self.args.lr)

    def info(self) -> dict:
        return {
            "torch": torch.__version__,
            "magvit2_pytorch": importlib.metadata.version("magvit2-pytorch"),
            "g_params": count(self.timing_model.parameters()),
            "d_params": count(self.timing_model.discr_parameters()),
        }

    def generator_step(self) -> None:
        self.opt_g.zero_grad(set_to_none=True)
        loss, _ = self.timing_model(self.x, return_recon_loss_only=True)
        loss.backward()
        self.opt_g.step()

    def gan_step(self) -> None:
        # As its VideoTokenizerTrainer does: G (MSE + adversarial), then D on a second forward
        # of the tokenizer (hinge + gradient penalty on real and fake frames).
        model = self.timing_model
        self.opt_g.zero_grad(set_to_none=True)
        loss, _ = model(self.x, return_loss=True)
        loss.backward()
        self.opt_g.step()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss, _ = model(self.x, return_discr_loss=True, apply_gradient_penalty=True)
        d_loss.backward()
        self.opt_d.step()

    def train_step(self, step: int) -> dict:
        start = time.perf_counter()
        batch = augment(self.train[self.order[step]], self.aug[step], self.args.shift)
        self.opt.zero_grad(set_to_none=True)
        loss, _ = self.model(batch, return_recon_loss_only=True)
        loss.backward()
        self.opt.step()
        return {"s": time.perf_counter() - start, "loss": loss.item()}

    @torch.no_grad()
    def recon(self, clips_path: str, out_path: str) -> None:
        self.model.eval()
        clips = torch.from_numpy(np.load(clips_path))
        recons, codes = [], []
        for batch in clips.split(8):
            idx, recon = self.model(batch, return_codes=True, return_recon=True)
            recons.append(recon.clamp(-1, 1))
            codes.append(idx)
        self.model.train()
        np.savez(out_path, recon=torch.cat(recons).numpy(), codes=torch.cat(codes).numpy())

    def answer(self, line: str) -> dict:
        command, *rest = line.split()
        if command == "generator":
            return {"s": timed(self.generator_step)}
        if command == "gan":
            return {"s": timed(self.gan_step)}
        if command == "fresh":
            self.fresh(rest[0])
            return {}
        if command == "train":
            return self.train_step(int(rest[0]))
        if command == "recon":
            self.recon(*rest)
            return {}
        raise ValueError(f"unknown command {line!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--init-dim", type=int, required=True)
    parser.add_argument("--max-dim", type=int, required=True)
    parser.add_argument("--discr-dim", type=int, required=True)
    parser.add_argument("--levels", type=int, nargs="+", required=True)
    parser.add_argument("--spatial-downsample", type=int, default=8)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--shift", type=int, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bench = PeerBench(args)
    print(json.dumps(bench.info()), flush=True)
    for line in sys.stdin:  # until the driver closes our stdin
        print(json.dumps(bench.answer(line)), flush=True)


if __name__ == "__main__":
    main()
