"""Our tokenizer against lucidrains' magvit2-pytorch 0.5.1: training step time and val PSNR.

    bash bench/magvit2_venv.sh                                # once: the peer's venv
    python bench/bench_tokenizer_vs_magvit2.py                # --steps 300 by default
    python bench/bench_tokenizer_vs_magvit2.py --steps 0      # step times only

Both tokenizers compress 17×64×64 grayscale clips 8× in space and 4× in time to 5×8×8 FSQ
tokens (levels 8,5,5,5) with generators of about the same parameter count; the peer gets no
attention layers and no perceptual loss (its VGG16 would download weights). Ours runs here in
the project venv; the peer runs in its own venv (bench/.venv-magvit2, with its own torch
and torchvision) as a child process of the same run, on the same clips of the real footage,
with the same thread count. The two alternate step by step (ours, then the peer's, while the
other waits), so load from other processes falls on both sides rather than on one; the CPU
time other processes and the hypervisor took meanwhile is printed with the results.

1. Step time, median of --repeats steps after --warmup, on one fixed batch:
   - generator step: encode → FSQ → decode, MSE, backward, Adam;
   - GAN step: each library's own G step, then its D step, with the gradient penalty applied
     every step in both (both trainers default to every 4th step, so their average step
     is cheaper). Ours, as the train_tokenizer stage does it (MSE in place of its L1): MSE +
     non-saturating adversarial loss × VQGAN's adaptive weight; a 3D discriminator on whole
     clips, real and reconstructed in one forward that reuses the G forward, hinge + LeCAM +
     R1 on real clips. Peer, as its VideoTokenizerTrainer does it: MSE + hinge adversarial
     loss (weight 1, no adaptive weight without a perceptual loss); a 2D discriminator with
     linear attention on one random frame per clip, fed by a second tokenizer forward,
     hinge + gradient penalty (weight 10) on real and fake frames.
2. Reconstruction: --steps steps of MSE only (no GAN, for either), batch --batch, Adam
   --lr, both fed the same clips in the same order; then PSNR on every val clip (dB on the
   [0, 1] scale, recon clamped, mean over clips).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _common import REPO, machine, shared_clip

from willie.atomic import write_json
from willie.config import PreprocessConfig, TokenizerConfig
from willie.data import ClipDataset
from willie.preprocess import run_preprocess
from willie.quality import psnr
from willie.tokenizer.discriminator import Discriminator
from willie.tokenizer.losses import (
    LeCAM,
    adaptive_weight,
    hinge_d_loss,
    non_saturating_g_loss,
    r1_penalty,
    reconstruction_loss,
)
from willie.tokenizer.model import TokenizerArch, VideoTokenizer

PEER_VENV = REPO / "bench" / ".venv-magvit2"
PEER_SCRIPT = REPO / "bench" / "_magvit2_peer.py"
LEVELS = (8, 5, 5, 5)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="training steps for PSNR; 0: skip")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-4, help="Adam, betas (0.9, 0.99), both")
    p.add_argument("--repeats", type=int, default=7, help="timed steps (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    p.add_argument("--channels", type=int, default=64, help="ours: width of the first level")
    p.add_argument("--patch", type=int, default=2, help="ours: space-to-depth of the input")
    p.add_argument("--discr-channels", type=int, default=32, help="ours: discriminator width")
    p.add_argument("--peer-init-dim", type=int, default=32, help="peer: init_dim")
    p.add_argument("--peer-max-dim", type=int, default=192, help="peer: max_dim")
    p.add_argument("--peer-discr-dim", type=int, default=16, help="peer: discriminator dim")
    p.add_argument("--peer-venv", type=Path, default=PEER_VENV)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def peer_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import importlib.metadata as m; m.version('magvit2-pytorch')"]
    if not python.is_file() or subprocess.run(check, capture_output=True).returncode:
        sys.exit(
            f"the peer's venv {venv} is missing or has no magvit2-pytorch; create it with\n"
            f"    bash bench/magvit2_venv.sh {venv}"
        )
    return python


def real_clips(workdir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and val clips of the real footage at 64×64: [N, 1, 17, 64, 64] in [-1, 1]."""
    clip = shared_clip()
    raw = workdir / "raw"
    raw.mkdir()
    (raw / clip.name).symlink_to(clip)
    write_json(raw / "manifest.json", {"source": "file", "file": clip.name})
    run_preprocess(PreprocessConfig(size=64), raw, workdir / "clips")
    splits = []
    for split in ("train", "val"):
        dataset = ClipDataset(workdir / "clips", split)
        splits.append(torch.stack([dataset[i] for i in range(len(dataset))]))
    return splits[0], splits[1]


def adam(module: torch.nn.Module, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), lr=lr, betas=(0.9, 0.99))


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def timed(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


class OursBench:
    """Our side, the mirror of `PeerBench` in _magvit2_peer.py."""

    def __init__(self, args: argparse.Namespace, x, train, val, order) -> None:
        self.args, self.x, self.train, self.val, self.order = args, x, train, val, order
        self.arch = TokenizerArch(channels=args.channels, patch_size=args.patch, levels=LEVELS)
        self.stage = TokenizerConfig()  # the train_tokenizer stage's loss weights
        # Two generators from the same seed: one only timed, one only trained for PSNR.
        self.timing_model = self.build()
        self.discriminator = Discriminator(channels=args.discr_channels, patch_size=args.patch)
        self.lecam = LeCAM()
        self.opt_g = adam(self.timing_model, args.lr)
        self.opt_d = adam(self.discriminator, args.lr)
        self.model = self.build()
        self.opt = adam(self.model, args.lr)

    def build(self) -> VideoTokenizer:
        torch.manual_seed(self.args.seed)
        return VideoTokenizer(self.arch).train()

    def info(self) -> dict:
        return {
            "torch": torch.__version__,
            "g_params": count(self.timing_model),
            "d_params": count(self.discriminator),
        }

    def generator_step(self) -> None:
        self.opt_g.zero_grad(set_to_none=True)
        recon, _, _ = self.timing_model(self.x)
        reconstruction_loss(recon, self.x, "l2").backward()
        self.opt_g.step()

    def gan_step(self) -> None:
        # As the train_tokenizer stage does once both GAN delays have passed, except that R1
        # runs every step here (the stage's default is every 4th).
        G, D, x, cfg = self.timing_model, self.discriminator, self.x, self.stage
        self.opt_g.zero_grad(set_to_none=True)
        recon, _, _ = G(x)
        rec = reconstruction_loss(recon, x, "l2")
        D.requires_grad_(False)  # G's step needs no gradients of D's weights
        g_adv = non_saturating_g_loss(D(recon))
        D.requires_grad_(True)
        weight = cfg.adv_weight * adaptive_weight(rec, g_adv, G.last_layer)
        (rec + weight * g_adv).backward()
        self.opt_g.step()
        self.opt_d.zero_grad(set_to_none=True)
        real = x.detach().requires_grad_()
        real_logits, fake_logits = D(torch.cat([real, recon.detach()])).chunk(2)
        d_loss = (
            hinge_d_loss(real_logits, fake_logits)
            + cfg.lecam_weight * self.lecam.penalty(real_logits, fake_logits)
            + cfg.r1_weight * r1_penalty(real_logits, real)
        )
        self.lecam.update(real_logits, fake_logits)
        d_loss.backward()
        self.opt_d.step()

    def train_step(self, step: int) -> dict:
        start = time.perf_counter()
        batch = self.train[torch.from_numpy(self.order[step])]
        self.opt.zero_grad(set_to_none=True)
        recon, _, _ = self.model(batch)
        loss = reconstruction_loss(recon, batch, "l2")
        loss.backward()
        self.opt.step()
        return {"s": time.perf_counter() - start, "loss": loss.item()}

    def psnr(self) -> float:
        """Mean over clips of PSNR in dB on the [0, 1] scale (recon clamped to [-1, 1])."""
        self.model.eval()
        psnrs = []
        with torch.no_grad():
            for clips in self.val.split(self.args.batch):
                recon = self.model(clips)[0].clamp(-1, 1)
                psnrs += psnr(recon, clips).tolist()  # the stage's own measure
        self.model.train()
        return float(np.mean(psnrs))


class Peer:
    """_magvit2_peer.py in the peer's venv, asked one command at a time (JSON lines)."""

    def __init__(self, python: Path, args: argparse.Namespace, data: Path) -> None:
        command = [
            str(python),
            str(PEER_SCRIPT),
            f"--data={data}",
            f"--init-dim={args.peer_init_dim}",
            f"--max-dim={args.peer_max_dim}",
            f"--discr-dim={args.peer_discr_dim}",
            "--levels",
            *map(str, LEVELS),
            f"--lr={args.lr}",
            f"--threads={args.threads}",
            f"--seed={args.seed}",
        ]
        # The other venv's interpreter, with nothing of ours on its path.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.info = self._reply()

    def ask(self, command: str) -> dict:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._reply()

    def _reply(self) -> dict:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            sys.exit(f"the peer's process died (exit {self.process.wait()}); see its stderr above")
        return json.loads(line)

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait()


class OtherLoad:
    """CPU time taken from us by everything else while measuring: other processes' busy time
    and the hypervisor's steal time, as fractions of all CPUs' wall time."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.start = self._sample()

    @staticmethod
    def _system() -> tuple[int, int]:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
        )
        return user + nice + system + irq + softirq, steal

    def _sample(self) -> tuple[float, int, int, int]:
        busy, steal = self._system()
        ours = 0
        for pid in self.pids:  # utime + stime of all its threads; the name may hold spaces
            ours += sum(
                map(int, Path(f"/proc/{pid}/stat").read_text().rsplit(")")[1].split()[11:13])
            )
        return time.monotonic(), busy, steal, ours

    def shares(self) -> tuple[float, float]:
        """(other processes, steal) since construction, each in [0, 1]."""
        (t0, busy0, steal0, ours0), (t1, busy1, steal1, ours1) = self.start, self._sample()
        capacity = (t1 - t0) * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1)
        others = max(0, (busy1 - busy0) - (ours1 - ours0))
        return others / capacity, (steal1 - steal0) / capacity


def measure(args: argparse.Namespace, ours: OursBench, peer: Peer) -> dict:
    """Alternate our steps with the peer's; per figure, (ours, peer) and the load meanwhile."""
    results: dict = {}
    for name, step in [("generator", ours.generator_step), ("gan", ours.gan_step)]:
        print(f"timing: {name} steps", file=sys.stderr, flush=True)
        for _ in range(args.warmup):
            step()
            peer.ask(name)
        load = OtherLoad(os.getpid(), peer.process.pid)
        times = [(timed(step), peer.ask(name)["s"]) for _ in range(args.repeats)]
        results[name] = [statistics.median(side) for side in zip(*times, strict=True)]
        results[f"{name}_load"] = load.shares()
    if args.steps:
        load = OtherLoad(os.getpid(), peer.process.pid)
        times = []
        for step in range(args.steps):
            mine, theirs = ours.train_step(step), peer.ask(f"train {step}")
            times.append((mine["s"], theirs["s"]))
            if (step + 1) % 25 == 0 or step + 1 == args.steps:
                print(
                    f"training: step {step + 1}/{args.steps}  MSE ours {mine['loss']:.4f} "
                    f"peer {theirs['loss']:.4f}",
                    file=sys.stderr,
                    flush=True,
                )
        results["train_s"] = [sum(side) for side in zip(*times, strict=True)]
        results["train_load"] = load.shares()
        results["val_psnr"] = [ours.psnr(), peer.ask("psnr")["val_psnr"]]
    return results


def report(args: argparse.Namespace, info: dict, results: dict, train, val) -> None:
    def row(name: str, key: str, unit: str, extra: str = "") -> str:
        mine, theirs = results[key]
        return f"  {name:<38} {mine:8.3f} {theirs:8.3f} {unit:<3} {mine / theirs:6.2f}×{extra}"

    def load(key: str) -> str:
        others, steal = results[key]
        return f"  (meanwhile: other processes {others:.0%}, steal {steal:.0%} of the CPUs)"

    ours, peer = info["ours"], info["peer"]
    venv = args.peer_venv.relative_to(REPO) if args.peer_venv.is_relative_to(REPO) else None
    T, H, W = train.shape[2:]
    print(f"machine: {machine()} (project venv)")
    print(
        f"peer: magvit2-pytorch {peer['magvit2_pytorch']}, torch {peer['torch']} "
        f"({venv or args.peer_venv}); {args.threads} torch threads each"
    )
    print(
        f"data: {shared_clip().name} → {len(train)} train / {len(val)} val clips of "
        f"{T}×{H}×{W} grayscale; batch {args.batch}; 8× space, 4× time → 5×8×8 tokens, "
        f"FSQ {list(LEVELS)} ({int(np.prod(LEVELS))} codes)"
    )
    print(
        f"  ours: G {ours['g_params'] / 1e6:.2f}M params (channels {args.channels}, patch "
        f"{args.patch}, mults "
        f"{TokenizerArch().channel_mults}), D {ours['d_params'] / 1e6:.2f}M (3D, whole clip)"
    )
    print(
        f"  peer: G {peer['g_params'] / 1e6:.2f}M params (init_dim {args.peer_init_dim}, "
        f"max_dim {args.peer_max_dim}, residual/compress layers, no attention), "
        f"D {peer['d_params'] / 1e6:.2f}M (2D + linear attention, 1 frame per clip)"
    )
    print(f"\nstep time, median of {args.repeats} after {args.warmup} warm-up, alternating:")
    print(f"  {'':<38} {'ours':>8} {'peer':>8} {'':<3} ours/peer")
    print(row("generator step (MSE, fwd+bwd+Adam)", "generator", "s", load("generator_load")))
    print(row("GAN step (G step + D step with GP)", "gan", "s", load("gan_load")))
    if args.steps:
        print(
            f"\nreconstruction: {args.steps} steps of MSE only (no GAN), batch {args.batch}, "
            f"Adam lr {args.lr}, same clips in the same order; PSNR on all {len(val)} val clips:"
        )
        mine, theirs = results["val_psnr"]
        print(row("val PSNR ([0, 1] scale)", "val_psnr", "dB", f"  ({mine - theirs:+.2f} dB)"))
        print(row(f"training time ({args.steps} steps)", "train_s", "s", load("train_load")))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    python = peer_python(args.peer_venv)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        train, val = real_clips(data)
        x = train[: args.batch]
        rng = np.random.default_rng(args.seed)
        picks = [rng.choice(len(train), args.batch, replace=False) for _ in range(args.steps)]
        order = np.array(picks, dtype=np.int64).reshape(args.steps, args.batch)
        for name, array in [("timing", x.numpy()), ("train", train.numpy()), ("val", val.numpy())]:
            np.save(data / f"{name}.npy", array)
        np.save(data / "order.npy", order)
        ours = OursBench(args, x, train, val, order)
        peer = Peer(python, args, data)
        try:
            results = measure(args, ours, peer)
        finally:
            peer.close()
    report(args, {"ours": ours.info(), "peer": peer.info}, results, train, val)


if __name__ == "__main__":
    main()
