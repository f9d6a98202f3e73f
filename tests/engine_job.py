"""A tiny training run through the engine, for the engine tests' subprocesses.

    python tests/engine_job.py OUT_DIR --steps 20 [--kill-at 12] [--term-at 7] [--int-at 7 [7]]
        [--accum 2] [--nan-at 7]

Writes OUT_DIR/final.pt (model and EMA weights) on rank 0 when training finishes.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from willie.errors import StopRequested
from willie.training.engine import Engine, TrainSettings


class Points(Dataset[torch.Tensor]):
    """64 fixed points of a noisy linear map: 8 inputs → 4 outputs, packed as [12]."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 8, generator=g)
        y = x @ torch.randn(8, 4, generator=g) + 0.1 * torch.randn(64, 4, generator=g)
        self.data = torch.cat([x, y], dim=1)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.data[i]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--kill-at", type=int, default=-1)
    parser.add_argument("--term-at", type=int, default=-1)
    parser.add_argument("--int-at", type=int, nargs="*", default=[], help="Ctrl-C at these steps")
    parser.add_argument("--nan-at", type=int, default=-1)
    parser.add_argument("--width", type=int, default=16)
    args = parser.parse_args()

    torch.set_num_threads(1)
    settings = TrainSettings(
        max_steps=args.steps,
        batch_size=args.batch,
        lr=1e-2,
        grad_accum=args.accum,
        warmup_steps=3,
        checkpoint_every=5,
        log_every=1,
        ema_decay=0.9,
        device="cpu",
    )
    engine = Engine(
        settings, args.out / "checkpoints", config={"job": "points", "batch": args.batch}
    )
    model = engine.prepare(
        "model", nn.Sequential(nn.Linear(8, args.width), nn.GELU(), nn.Linear(args.width, 4))
    )
    engine.optimizer("model", model)
    ema = engine.ema("model_ema", model)
    engine.resume()
    batches = engine.batches(Points())

    def train_step(step: int) -> dict[str, float]:
        if step == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if step == args.term_at:
            os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(args.int_at.count(step)):
            os.kill(os.getpid(), signal.SIGINT)
        for _ in engine.micro_steps(model):
            batch = next(batches)
            loss = nn.functional.mse_loss(model(batch[:, :8]), batch[:, 8:])
            if step == args.nan_at:
                loss = loss * float("nan")
            engine.backward(loss)
        return {"loss": loss.item(), "grad_norm": engine.optimizer_step("model")}

    try:
        engine.run(train_step)
    except StopRequested as e:
        print(e, file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    if engine.is_main:
        raw = model.module if hasattr(model, "module") else model
        weights = {f"model.{k}": v for k, v in raw.state_dict().items()}
        weights.update({f"ema.{k}": v for k, v in ema.module.state_dict().items()})
        torch.save(weights, args.out / "final.pt")


if __name__ == "__main__":
    main()
