"""Our tokenizer against lucidrains' magvit2-pytorch 0.5.1 on footage neither has seen.

    bash bench/magvit2_venv.sh                                  # once: the peer's venv
    python bench/bench_tokenizer_vs_magvit2.py                  # both ways, 300 + 1200 steps
    python bench/bench_tokenizer_vs_magvit2.py --directions wheel→boat --steps 300
    python bench/bench_tokenizer_vs_magvit2.py --steps          # step times only

Both tokenizers compress 17×64×64 grayscale clips 8× in space and 4× in time to 5×8×8 FSQ
tokens (levels 8,5,5,5). Ours is the `params.yaml` preset's architecture; the peer gets no
attention layers and no perceptual loss (its VGG16 would download weights). Ours runs here in
the project venv; the peer in its own venv (bench/.venv-magvit2, its own torch and
torchvision) as a child process of the same run, with the same thread count. The two
alternate step by step (ours, then the peer's, while the other waits), so load from other
processes falls on both sides; the CPU time others took meanwhile is printed.

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
2. Unseen footage, split by shot (bench/_shots.py): trained on Mickey at the wheel, tested on
   the boat (both files' boat frames), and the reverse. Both train with MSE only (no GAN),
   batch --batch, Adam (0.9, 0.99) at each one's own rate (ours: params.yaml's, the peer:
   3e-4, its trainer's default), on the same clips in the same order. At each --steps
   point both are measured with the project's own metrics (willie.quality, recon clamped)
   on the shot they trained on and on the one they never saw: the difference is what they
   memorized. Then ours trains on alone until it has used the peer's time for
   --equal-time steps, and is measured again: the comparison at equal wall time.
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
import yaml
from _common import REPO, machine
from _shots import shot_clips

from willie.atomic import write_json
from willie.config import TokenizerConfig
from willie.quality import psnr, ssim
from willie.tokenizer.augment import apply_augmentation, draw_augmentation
from willie.tokenizer.discriminator import Discriminator
from willie.tokenizer.fsq import codebook_usage
from willie.tokenizer.losses import (
    LeCAM,
    adaptive_weight,
    hinge_d_loss,
    non_saturating_g_loss,
    r1_penalty,
    reconstruction_loss,
)
from willie.tokenizer.model import TokenizerArch, VideoTokenizer
from willie.tokenizer.train import architecture

PEER_VENV = REPO / "bench" / ".venv-magvit2"
PEER_SCRIPT = REPO / "bench" / "_magvit2_peer.py"
DIRECTIONS = {"wheel→boat": ("wheel", "boat"), "boat→wheel": ("boat", "wheel")}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="*", default=[300, 1200], help="measure points")
    p.add_argument("--directions", nargs="+", choices=list(DIRECTIONS), default=list(DIRECTIONS))
    p.add_argument("--equal-time", type=int, default=300, help="ours at the peer's time of N steps")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        help="train both on the plain clips (default: the stage's mirror + shift, for both)",
    )
    p.add_argument("--lr", type=float, help="ours, Adam (0.9, 0.99); default: params.yaml")
    p.add_argument("--peer-lr", type=float, default=3e-4, help="the peer's, Adam (0.9, 0.99)")
    p.add_argument("--repeats", type=int, default=7, help="timed steps (median); 0: no timing")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    p.add_argument("--params", type=Path, default=REPO / "params.yaml", help="ours: its tokenizer")
    p.add_argument("--discr-channels", type=int, default=32, help="ours: discriminator width")
    p.add_argument("--peer-init-dim", type=int, default=32, help="peer: init_dim")
    p.add_argument("--peer-max-dim", type=int, default=128, help="peer: max_dim")
    p.add_argument("--peer-discr-dim", type=int, default=16, help="peer: discriminator dim")
    p.add_argument("--peer-venv", type=Path, default=PEER_VENV)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write every figure as JSON here")
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


def adam(module: torch.nn.Module, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), lr=lr, betas=(0.9, 0.99))


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def timed(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def scores(real: torch.Tensor, recon: torch.Tensor, codes: torch.Tensor, size: int) -> dict:
    """PSNR/SSIM (mean over clips) and codebook usage: one measure for both tokenizers."""
    recon = recon.clamp(-1, 1)
    return {
        "psnr": float(psnr(recon, real).mean()),
        "ssim": float(ssim(recon, real).mean()),
        "usage": codebook_usage(torch.as_tensor(codes), size).usage,
    }


class OursBench:
    """Our side, the mirror of `PeerBench` in _magvit2_peer.py."""

    def __init__(self, args: argparse.Namespace, x: torch.Tensor) -> None:
        section = yaml.safe_load(args.params.read_text())["tokenizer"]
        self.stage = TokenizerConfig(**section)  # the preset: architecture, rate, loss weights
        self.arch = architecture(self.stage)
        self.lr = args.lr or self.stage.lr
        # The stage's augmentation, given to both sides alike (--no-augment: none).
        self.flip = self.stage.flip and args.augment
        self.shift = self.stage.shift if args.augment else 0
        self.args, self.x = args, x
        # Two generators from the same seed: one only timed, one only trained for quality.
        self.timing_model = self.build()
        self.discriminator = Discriminator(
            channels=args.discr_channels, patch_size=self.arch.patch_size
        )
        self.lecam = LeCAM()
        self.opt_g = adam(self.timing_model, self.lr)
        self.opt_d = adam(self.discriminator, self.lr)

    def build(self) -> VideoTokenizer:
        torch.manual_seed(self.args.seed)
        return VideoTokenizer(self.arch).train()

    def info(self) -> dict:
        return {
            "torch": torch.__version__,
            "g_params": count(self.timing_model),
            "d_params": count(self.discriminator),
            "arch": self.arch.to_dict(),
            "lr": self.lr,
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

    def fresh(self, train: torch.Tensor, order: np.ndarray, aug: torch.Tensor) -> None:
        self.train, self.order, self.aug = train, order, aug
        self.model = self.build()
        self.opt = adam(self.model, self.lr)

    def train_step(self, step: int) -> dict:
        start = time.perf_counter()
        batch = self.train[torch.from_numpy(self.order[step])]
        batch = apply_augmentation(batch, self.aug[step], self.shift)
        self.opt.zero_grad(set_to_none=True)
        recon, _, _ = self.model(batch)
        loss = reconstruction_loss(recon, batch, "l2")
        loss.backward()
        self.opt.step()
        return {"s": time.perf_counter() - start, "loss": loss.item()}

    @torch.no_grad()
    def measure(self, clips: torch.Tensor) -> dict:
        self.model.eval()
        recon, codes = zip(*(self.model(b)[:2] for b in clips.split(8)), strict=True)
        self.model.train()
        return scores(clips, torch.cat(recon), torch.cat(codes), self.model.codebook_size)


class Peer:
    """_magvit2_peer.py in the peer's venv, asked one command at a time (JSON lines)."""

    def __init__(
        self,
        python: Path,
        args: argparse.Namespace,
        data: Path,
        arch: TokenizerArch,
        shift: int,
    ) -> None:
        # The peer compresses as much as ours (same latent grid): the same task.
        command = [
            str(python),
            str(PEER_SCRIPT),
            f"--data={data}",
            f"--init-dim={args.peer_init_dim}",
            f"--max-dim={args.peer_max_dim}",
            f"--discr-dim={args.peer_discr_dim}",
            "--levels",
            *map(str, arch.levels),
            f"--spatial-downsample={arch.spatial_downsample}",
            f"--lr={args.peer_lr}",
            f"--threads={args.threads}",
            f"--seed={args.seed}",
            f"--shift={shift}",
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


def step_times(args: argparse.Namespace, ours: OursBench, peer: Peer) -> dict:
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
    return results


def unseen(
    args: argparse.Namespace, ours: OursBench, peer: Peer, data: Path, direction: str, shots: dict
) -> dict:
    """Train both on one shot in lock-step, measure both on both shots at each --steps point;
    then ours alone up to the peer's time at --equal-time steps."""
    seen_name, unseen_name = DIRECTIONS[direction]
    seen, test = shots[seen_name], shots[unseen_name]
    name = seen_name
    steps = max(args.steps)
    # Enough batches for ours to run on alone to the peer's time (it is several times faster).
    rng = np.random.default_rng(args.seed)
    order = rng.integers(0, len(seen), (steps * 10, args.batch))
    generator = torch.Generator().manual_seed(args.seed)
    aug = torch.stack(
        [
            draw_augmentation(args.batch, flip=ours.flip, shift=ours.shift, generator=generator)
            for _ in range(len(order))
        ]
    )  # [steps, B, 3]: the same augmented clips for both
    np.save(data / f"{name}.train.npy", seen.numpy())
    np.save(data / f"{name}.order.npy", order[:steps])
    np.save(data / f"{name}.aug.npy", aug[:steps].numpy())
    np.save(data / f"{unseen_name}.clips.npy", test.numpy())
    np.save(data / f"{seen_name}.clips.npy", seen.numpy())
    ours.fresh(seen, order, aug)
    peer.ask(f"fresh {name}")
    size = ours.model.codebook_size

    def peer_measure(shot: str, clips: torch.Tensor) -> dict:
        out = data / "peer_recon.npz"
        peer.ask(f"recon {data / f'{shot}.clips.npy'} {out}")
        with np.load(out) as r:
            return scores(clips, torch.from_numpy(r["recon"]), torch.from_numpy(r["codes"]), size)

    rows, time_ours, time_peer, peer_time_at = [], 0.0, 0.0, {}
    load = OtherLoad(os.getpid(), peer.process.pid)
    for step in range(steps):
        mine, theirs = ours.train_step(step), peer.ask(f"train {step}")
        time_ours, time_peer = time_ours + mine["s"], time_peer + theirs["s"]
        peer_time_at[step + 1] = time_peer
        if (step + 1) % 50 == 0:
            print(
                f"{direction}: step {step + 1}/{steps}  MSE ours {mine['loss']:.4f} "
                f"peer {theirs['loss']:.4f}",
                file=sys.stderr,
                flush=True,
            )
        if step + 1 in args.steps:
            rows.append(
                {
                    "steps": step + 1,
                    "ours": {"train": ours.measure(seen), "unseen": ours.measure(test)},
                    "peer": {
                        "train": peer_measure(seen_name, seen),
                        "unseen": peer_measure(unseen_name, test),
                    },
                    "seconds": [time_ours, time_peer],
                }
            )
            # A long run's points as they come: an interrupted run keeps what it measured.
            r = rows[-1]
            print(
                f"{direction}: step {step + 1}  unseen PSNR ours {r['ours']['unseen']['psnr']:.2f}"
                f" (train {r['ours']['train']['psnr']:.2f}) peer {r['peer']['unseen']['psnr']:.2f}"
                f" (train {r['peer']['train']['psnr']:.2f}) dB  {time_ours:.0f}/{time_peer:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    augmentation = (
        f"mirror {'on' if ours.flip else 'off'} and shift ±{ours.shift} px for both"
        if ours.flip or ours.shift
        else "no augmentation"
    )
    result = {
        "augmentation": augmentation,
        "direction": direction,
        "rows": rows,
        "load": load.shares(),
        "clips": [len(seen), len(test)],
    }
    if args.equal_time and args.equal_time in peer_time_at:
        budget, step = peer_time_at[args.equal_time], steps
        while time_ours < budget and step < len(order):
            time_ours += ours.train_step(step)["s"]
            step += 1
        result["equal_time"] = {
            "peer_steps": args.equal_time,
            "seconds": budget,
            "ours_steps": step,
            "ours_seconds": time_ours,
            "ours": {"train": ours.measure(seen), "unseen": ours.measure(test)},
            "peer": next(r["peer"] for r in rows if r["steps"] == args.equal_time)
            if args.equal_time in args.steps
            else None,
        }
    return result


def report(args: argparse.Namespace, info: dict, results: dict, shots: dict) -> None:
    ours, peer = info["ours"], info["peer"]
    venv = args.peer_venv.relative_to(REPO) if args.peer_venv.is_relative_to(REPO) else None
    print(f"machine: {machine()} (project venv)")
    print(
        f"peer: magvit2-pytorch {peer['magvit2_pytorch']}, torch {peer['torch']} "
        f"({venv or args.peer_venv}); {args.threads} torch threads each"
    )
    arch = ours["arch"]
    print(
        f"  ours: G {ours['g_params'] / 1e6:.2f}M params (params.yaml: channels "
        f"{arch['channels']}, mults {arch['channel_mults']}, patch {arch['patch_size']}, norm "
        f"{arch['norm']}), D {ours['d_params'] / 1e6:.2f}M (3D, whole clip); Adam {ours['lr']:g}"
    )
    print(
        f"  peer: G {peer['g_params'] / 1e6:.2f}M params (init_dim {args.peer_init_dim}, "
        f"max_dim {args.peer_max_dim}, residual/compress layers, no attention), "
        f"D {peer['d_params'] / 1e6:.2f}M (2D + linear attention, 1 frame per clip); "
        f"Adam {args.peer_lr:g}"
    )

    def load(shares: list[float]) -> str:
        return f"(meanwhile: other processes {shares[0]:.0%}, steal {shares[1]:.0%} of the CPUs)"

    if "generator" in results:
        print(
            f"\nstep time, batch 2, median of {args.repeats} after {args.warmup} warm-up, "
            "alternating:"
        )
        print(f"  {'':<38} {'ours':>8} {'peer':>8}     ours/peer")
        for key, name in [
            ("generator", "generator step (MSE, fwd+bwd+Adam)"),
            ("gan", "GAN step (G step + D step with GP)"),
        ]:
            mine, theirs = results[key]
            print(
                f"  {name:<38} {mine:8.3f} {theirs:8.3f} s   {mine / theirs:6.2f}×  "
                + load(results[key + "_load"])
            )

    def cells(m: dict) -> str:
        gap = m["train"]["psnr"] - m["unseen"]["psnr"]
        u = m["unseen"]
        fit = m["train"]["psnr"]
        return f"{fit:6.2f} {u['psnr']:6.2f} {gap:5.2f} {u['ssim']:5.3f} {u['usage']:5.1%}"

    for res in results.get("unseen", []):
        seen_name, unseen_name = DIRECTIONS[res["direction"]]
        n_seen, n_test = res["clips"]
        print(
            f"\n{res['direction']}: trained on {n_seen} clips of the {seen_name}, tested on "
            f"{n_test} clips of the {unseen_name} (never seen); MSE only, batch {args.batch}, "
            f"{res['augmentation']}; "
            f"{load(res['load'])}"
        )
        print(
            f"  {'':>13} {'ours: train unseen   gap  SSIM usage':>36}   "
            f"{'peer: train unseen   gap  SSIM usage':>36}   unseen Δ   time ours/peer"
        )
        for r in res["rows"]:
            delta = r["ours"]["unseen"]["psnr"] - r["peer"]["unseen"]["psnr"]
            t_ours, t_peer = r["seconds"]
            print(
                f"  {r['steps']:>5} steps    {cells(r['ours'])}   {cells(r['peer'])}   "
                f"{delta:+6.2f} dB  {t_ours:5.0f}/{t_peer:5.0f} s"
            )
        eq = res.get("equal_time")
        if eq and eq["peer"]:
            delta = eq["ours"]["unseen"]["psnr"] - eq["peer"]["unseen"]["psnr"]
            print(
                f"  equal time: ours {eq['ours_steps']} steps in {eq['ours_seconds']:.0f} s, the "
                f"peer {eq['peer_steps']} steps in {eq['seconds']:.0f} s\n"
                f"  {'':>13} {cells(eq['ours'])}   {cells(eq['peer'])}   {delta:+6.2f} dB"
            )
    print("\n(PSNR in dB on the [0, 1] scale; gap = train − unseen PSNR: what it memorized)")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    python = peer_python(args.peer_venv)
    shots = shot_clips()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        x = shots["wheel"][: args.batch]
        np.save(data / "timing.npy", x.numpy())
        ours = OursBench(args, x)
        peer = Peer(python, args, data, ours.arch, ours.shift)
        try:
            if args.repeats:
                results |= step_times(args, ours, peer)
            for direction in args.directions if args.steps else []:
                results.setdefault("unseen", []).append(
                    unseen(args, ours, peer, data, direction, shots)
                )
                if args.out:  # each direction as soon as it is done
                    write_json(args.out, {"partial": True} | results)
        finally:
            peer.close()
    info = {"ours": ours.info(), "peer": peer.info}
    if args.out:
        write_json(
            args.out, {"args": {k: str(v) for k, v in vars(args).items()}, "info": info} | results
        )
    report(args, info, results, shots)


if __name__ == "__main__":
    main()
