"""The training engine every training stage shares (tokenizer, transformer, super-resolution).

A stage registers its modules, optimizers and EMAs with an `Engine`, resumes, and hands
`Engine.run` the body of one optimizer step. The engine owns the rest:

- device and precision: bf16 autocast on CUDA, fp32 on the CPU (`precision: auto`; `fp32`
  or `bf16` to force either); `torch.compile` on request;
- DDP under `torchrun` (gloo on CPU, nccl on GPU); each rank reads its own slice of every
  global batch; logging and checkpoint writes happen on rank 0 only;
- gradient accumulation, gradient clipping, AdamW with warm-up + cosine decay, EMA;
- deterministic seeding and data order: the batch of step s depends only on (seed, s), so a
  resumed run sees exactly the batches an uninterrupted one would;
- checkpoints every N steps and on SIGTERM (atomic; modules, EMA, optimizers, schedulers,
  RNG states, step) under a directory named for the training config's fingerprint, so a
  changed config starts fresh while an unchanged one resumes;
- a NaN/inf guard: a non-finite gradient norm or metric stops training with a clear error
  before the optimizer step, so the last checkpoint stays good;
- progress with throughput and ETA.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler

from willie.config import Precision, TrainingSection
from willie.errors import StopRequested, WillieError
from willie.training.checkpoint import checkpoint_paths, load_checkpoint, save_checkpoint

Log = Callable[[dict[str, float], int], None]  # (metrics, step): where training reports


@dataclass(frozen=True)
class TrainSettings:
    """What every training stage configures; built from its validated params section."""

    max_steps: int
    batch_size: int  # global: per optimizer step, over all ranks and accumulation steps
    lr: float
    grad_accum: int = 1
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # the cosine decays to lr × this
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Precision = "auto"
    compile: bool = False
    num_workers: int = 0

    @classmethod
    def from_section(cls, section: TrainingSection, **overrides: Any) -> TrainSettings:
        """The engine settings of a stage's validated params section (shared key names)."""
        names = {f.name for f in fields(cls)} & set(type(section).model_fields)
        return cls(**{name: getattr(section, name) for name in names}, **overrides)


# Signals that stop training at the next step boundary, after a checkpoint.
_STOP_SIGNALS = {signal.SIGTERM: "stopped by SIGTERM", signal.SIGINT: "interrupted (Ctrl-C)"}


class NonFiniteError(WillieError):
    """Training produced NaN or inf; the last checkpoint is left as it was."""


def step_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    """Randomness of one micro-step (crops, flips): a pure function of where in training we
    are, so a resumed run draws exactly what an uninterrupted one would."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 131 + micro) * 65_537 + rank)


def fingerprint(config: dict[str, Any]) -> str:
    """A short stable hash of everything that makes two trainings the same training."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cosine_with_warmup(step: int, *, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up from ~0 to 1, then cosine down to `min_ratio`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class EMA:
    """An exponential moving average of a module's weights (buffers are copied as they are).

    The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so a short run's
    average is not dominated by the random initialisation.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, source: nn.Module) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        for ema, live in zip(self.module.parameters(), source.parameters(), strict=True):
            ema.lerp_(live.detach(), 1 - decay)
        for ema, live in zip(self.module.buffers(), source.buffers(), strict=True):
            ema.copy_(live)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


class StepBatchSampler(Sampler[list[int]]):
    """Endless batches of dataset indices for one rank, a pure function of (seed, micro-step).

    Global sample positions run through a fresh seeded permutation each epoch; micro-step m
    covers positions [m·B·W, (m+1)·B·W) and rank r takes its B of them. Starting at any m
    reproduces exactly what an uninterrupted run would have drawn from there.
    """

    def __init__(
        self, size: int, micro_batch: int, *, rank: int, world: int, seed: int, start: int = 0
    ) -> None:
        self.size, self.micro_batch, self.rank, self.world = size, micro_batch, rank, world
        self.seed, self.start = seed, start
        self._perms: dict[int, torch.Tensor] = {}

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.size, generator=generator)}
        return self._perms[epoch]

    def indices(self, micro_step: int) -> list[int]:
        first = (micro_step * self.world + self.rank) * self.micro_batch
        positions = range(first, first + self.micro_batch)
        return [int(self._permutation(p // self.size)[p % self.size]) for p in positions]

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start
        while True:
            yield self.indices(step)
            step += 1


def _distributed_env() -> tuple[int, int, int]:
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def is_main_process() -> bool:
    return _distributed_env()[0] == 0


def resolve_device(requested: str, local_rank: int = 0) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise WillieError(
            "device: cuda was requested but no CUDA GPU is available; set the stage's "
            "`device: auto` (or cpu) in params.yaml"
        )
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def uses_bf16(device: torch.device, precision: Precision = "auto") -> bool:
    """The precision policy: `auto` is bf16 autocast on CUDA and fp32 on the CPU; `fp32` and
    `bf16` force it. bf16 on a CPU with bf16 matrix units (Intel AMX) trains the tokenizer
    ~3×, super-resolution ~1.7× and the transformer ~1.2× faster, but its tokenizer's samples
    scored worse in the one demo run measured (README, Benchmarks), so the CPU keeps fp32
    unless asked; without AMX bf16 is emulated, and slower."""
    if precision == "auto":
        return device.type == "cuda"
    return precision == "bf16"


def autocast(
    device: torch.device, precision: Precision = "auto"
) -> contextlib.AbstractContextManager[Any]:
    """The forward passes' context under the precision policy (`uses_bf16`)."""
    if uses_bf16(device, precision):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Engine:
    """Training infrastructure for one stage. Typical use:

    engine = Engine(settings, "stages/tokenizer/checkpoints", config=fingerprinted_config)
    model = engine.prepare("model", model)
    opt = engine.optimizer("model", model)
    ema = engine.ema("model_ema", model)
    engine.resume()
    batches = engine.batches(dataset)

    def train_step(step):  # one optimizer step
        for _ in engine.micro_steps(model):
            loss = model(next(batches)).mean()
            engine.backward(loss)
        return {"loss": loss.item(), "grad_norm": engine.optimizer_step("model")}

    engine.run(train_step)
    """

    def __init__(
        self,
        settings: TrainSettings,
        checkpoint_root: str | os.PathLike[str],
        *,
        config: dict[str, Any],
        log: Callable[[dict[str, float], int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.rank, self.world, local_rank = _distributed_env()
        self.device = resolve_device(settings.device, local_rank)
        if self.world > 1 and not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        per_step = self.world * settings.grad_accum
        if settings.batch_size % per_step:
            raise WillieError(
                f"batch_size={settings.batch_size} must be divisible by ranks × grad_accum "
                f"= {self.world} × {settings.grad_accum}"
            )
        self.micro_batch = settings.batch_size // per_step
        self.fingerprint = fingerprint(config)
        self.checkpoint_dir = Path(checkpoint_root) / self.fingerprint
        self.config = config
        self._log = log if self.is_main else None
        self._states: dict[str, Any] = {}
        self._optimizers: dict[str, tuple[torch.optim.Optimizer, Any, list[nn.Parameter]]] = {}
        self._emas: list[tuple[EMA, nn.Module]] = []
        self._stop_requested = 0  # the signal that asked the run to stop, 0: none
        self._finished: list[Path] = []  # a finished run's checkpoints, replaced by this run's
        self.step = 0
        self.seed_everything(settings.seed)

    # ---- set-up ---------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.device, self.settings.precision)

    def prepare(self, name: str, module: nn.Module, *, compile: bool = True) -> nn.Module:
        """Move to the device, register for checkpoints, wrap in DDP / compile as configured.

        compile=False keeps this module eager even with `compile: true` (a discriminator whose
        R1 penalty needs double backward, which compiled autograd does not support)."""
        module = module.to(self.device)
        self._states[name] = module
        wrapped: nn.Module = module
        if self.world > 1 and any(p.requires_grad for p in module.parameters()):
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = DistributedDataParallel(module, device_ids=device_ids)
        if self.settings.compile and compile:
            wrapped = torch.compile(wrapped)
        return wrapped

    def optimizer(
        self,
        name: str,
        module: nn.Module,
        *,
        lr: float | None = None,
        betas: tuple[float, float] | None = None,
    ) -> torch.optim.Optimizer:
        """AdamW (no decay on biases and norms) with warm-up + cosine, registered as `name`."""
        s = self.settings
        params = [p for p in module.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": s.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        fused = self.device.type == "cuda"
        opt = torch.optim.AdamW(groups, lr=lr or s.lr, betas=betas or s.betas, fused=fused)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            opt,
            lambda step: cosine_with_warmup(
                step, warmup=s.warmup_steps, total=s.max_steps, min_ratio=s.min_lr_ratio
            ),
        )
        self._optimizers[name] = (opt, schedule, params)
        self._states[f"{name}.optimizer"] = opt
        self._states[f"{name}.schedule"] = schedule
        return opt

    def ema(self, name: str, module: nn.Module) -> EMA:
        average = EMA(unwrap(module), self.settings.ema_decay)
        self._emas.append((average, unwrap(module)))
        self._states[name] = average
        return average

    def track(self, name: str, stateful: Any) -> None:
        """Checkpoint any other object with state_dict / load_state_dict (e.g. LeCAM EMAs)."""
        self._states[name] = stateful

    # ---- data -----------------------------------------------------------------------------
    def batches(self, dataset: Dataset[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Endless micro-batches for this rank, from the current step on, on the device."""
        size = len(dataset)  # type: ignore[arg-type]
        if size == 0:
            raise WillieError("the training set is empty: check the preprocess outputs")
        sampler = StepBatchSampler(
            size,
            self.micro_batch,
            rank=self.rank,
            world=self.world,
            seed=self.settings.seed,
            start=self.step * self.settings.grad_accum,
        )
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=self.settings.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=self.settings.num_workers > 0,
        )
        for batch in loader:
            yield batch.to(self.device, non_blocking=True)

    # ---- one optimizer step -----------------------------------------------------------------
    def micro_steps(self, *modules: nn.Module) -> Iterator[int]:
        """Yield each accumulation micro-step; DDP all-reduces gradients on the last only."""
        last = self.settings.grad_accum - 1
        for micro in range(self.settings.grad_accum):
            with contextlib.ExitStack() as stack:
                if micro < last:
                    for m in modules:
                        if isinstance(m, DistributedDataParallel):
                            stack.enter_context(m.no_sync())
                yield micro

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.settings.grad_accum).backward()

    def optimizer_step(self, name: str) -> float:
        """Clip, check, step optimizer `name` and its schedule; returns the gradient norm."""
        opt, schedule, params = self._optimizers[name]
        max_norm = self.settings.grad_clip or float("inf")
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if not math.isfinite(norm):
            opt.zero_grad(set_to_none=True)
            raise NonFiniteError(self._non_finite_message(f"{name} gradient norm", norm))
        opt.step()
        schedule.step()
        opt.zero_grad(set_to_none=True)
        return norm

    def lr(self, name: str) -> float:
        return self._optimizers[name][0].param_groups[0]["lr"]

    def _non_finite_message(self, what: str, value: float) -> str:
        kept = checkpoint_paths(self.checkpoint_dir)
        where = f"the last good checkpoint {kept[-1]} is kept" if kept else "no checkpoint yet"
        return (
            f"{what} is {value} at step {self.step}: training stopped; {where}. Lower the "
            "learning rate or check the data"
        )

    # ---- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        states = {name: obj.state_dict() for name, obj in self._states.items()}
        return {
            "states": states,
            "rng": _rng_state(),
            "config": json.dumps(self.config, default=str),
        }

    def save(self) -> None:
        if self.is_main:
            for old in self._finished:  # a finished run's checkpoints, once this one has its own
                old.unlink(missing_ok=True)
            self._finished = []
            save_checkpoint(self.checkpoint_dir, self.step, self.state_dict())
        if self.world > 1:
            dist.barrier()

    def resume(self) -> int:
        """Load the latest checkpoint of this config, if any; returns the step to start from.

        Resuming is for a run that was interrupted: a checkpoint at `max_steps` is a finished
        run (its model was published), so a forced re-run (`dvc repro -f`) trains again from
        step 0, and the finished run's checkpoints go when the new run saves its first one.
        """
        paths = checkpoint_paths(self.checkpoint_dir)
        if not paths:
            return 0
        checkpoint = load_checkpoint(paths[-1])
        if int(checkpoint["step"]) >= self.settings.max_steps:
            self._finished = paths
            if self.is_main:
                print(
                    f"{paths[-1]} is a finished run of this config (step {checkpoint['step']}): "
                    "training again from step 0 (resuming is for interrupted runs)",
                    file=sys.stderr,
                )
            return 0
        try:
            for name, obj in self._states.items():
                obj.load_state_dict(checkpoint["states"][name])
            _set_rng_state(checkpoint["rng"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise WillieError(
                f"{paths[-1]}: does not match this model ({type(e).__name__}: {e}). The code "
                f"changed since it was written: delete {self.checkpoint_dir} to train from scratch"
            ) from None
        self.step = int(checkpoint["step"])
        if self.is_main:
            print(f"resuming from {paths[-1]} (step {self.step})", file=sys.stderr)
        return self.step

    # ---- the loop -----------------------------------------------------------------------------
    def run(
        self,
        train_step: Callable[[int], dict[str, float]],
        *,
        evaluate: Callable[[int], dict[str, float]] | None = None,
        eval_every: int = 0,
        samples_per_step: int | None = None,
        rate_name: str = "clips_per_s",
    ) -> None:
        """Run optimizer steps from the resumed step to `max_steps`, checkpointing as it goes.

        Throughput is logged as `rate_name` = `samples_per_step` (default: the batch) per second.
        """
        s = self.settings
        samples_per_step = samples_per_step or s.batch_size
        previous = {sig: signal.signal(sig, self._request_stop) for sig in _STOP_SIGNALS}
        progress = _Progress(self.is_main, s.max_steps, self.step, rate_name)
        try:
            while self.step < s.max_steps:
                started = time.perf_counter()
                metrics = train_step(self.step)
                for key, value in metrics.items():
                    if not math.isfinite(value):
                        raise NonFiniteError(self._non_finite_message(key, value))
                for average, source in self._emas:
                    average.update(source)
                self.step += 1
                elapsed = time.perf_counter() - started
                metrics = {**metrics, rate_name: samples_per_step / elapsed}
                for name in self._optimizers:
                    metrics[f"lr_{name}"] = self.lr(name)
                if evaluate and eval_every and self.step % eval_every == 0:
                    metrics.update(evaluate(self.step))
                if self._log and (self.step % s.log_every == 0 or self.step == s.max_steps):
                    self._log(metrics, self.step)
                progress.update(self.step, metrics)
                if self._stop_requested:
                    self.save()
                    how = _STOP_SIGNALS[self._stop_requested]
                    raise StopRequested(
                        f"{how} at step {self.step} of {s.max_steps}; kept: the checkpoint in "
                        f"{self.checkpoint_dir}, which resumes it (run the stage again); nothing "
                        "was published, the stage's outputs are as before",
                        self._stop_requested,
                    )
                if self.step % s.checkpoint_every == 0 or self.step == s.max_steps:
                    self.save()
        finally:
            progress.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _request_stop(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self._stop_requested:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without a checkpoint
        self._stop_requested = signum
        if signum == signal.SIGINT and self.is_main:
            print(
                "\nCtrl-C: finishing this step and saving a checkpoint (Ctrl-C again: stop now)",
                file=sys.stderr,
            )


def _rng_state() -> dict[str, Any]:
    """Every RNG a step may draw from, as tensors and numbers (loadable with weights_only)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, python_state, python_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {
            "version": version,
            "state": torch.tensor(python_state, dtype=torch.int64),
            "gauss": python_gauss,
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def unwrap(module: nn.Module) -> nn.Module:
    module = getattr(module, "_orig_mod", module)  # torch.compile
    return module.module if isinstance(module, DistributedDataParallel) else module


class _Progress:
    """A rich progress bar on a terminal; a log line every few seconds otherwise (DVC, CI)."""

    def __init__(self, enabled: bool, total: int, start: int, rate_name: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.enabled, self.total, self.rate_name = enabled, total, rate_name
        self.console = Console(stderr=True)
        self.interactive = enabled and self.console.is_terminal
        self._last_line = 0.0
        self._progress = None
        if self.interactive:
            self._progress = Progress(
                TextColumn("step {task.completed}/{task.total}"),
                BarColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._task = self._progress.add_task("train", total=total, completed=start, info="")
            self._progress.start()

    def update(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        keys = [*[k for k in metrics if "loss" in k][:3], self.rate_name]
        info = "  ".join(f"{k} {metrics[k]:.4g}" for k in keys if k in metrics)
        if self._progress is not None:
            self._progress.update(self._task, completed=step, info=info)
        elif time.monotonic() - self._last_line > 10 or step == self.total:
            self._last_line = time.monotonic()
            self.console.print(f"step {step}/{self.total}  {info}")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
