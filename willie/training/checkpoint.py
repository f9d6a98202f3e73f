"""Checkpoints: training state to resume from, and trained artifacts to ship.

Two kinds, kept apart:
- Training checkpoints (`<stage>/checkpoints/step-00001200.pt`): modules, optimizers,
  schedulers, EMA, RNG states and the step, written atomically every N steps and on SIGTERM,
  the last `KEEP` kept. Loaded with `torch.load(weights_only=True)`: plain tensors and
  containers only, so reading one never executes code.
- Trained artifacts (`model.safetensors` + `config.json` + `MODEL_CARD.md`): what later stages
  and users load. Safetensors holds tensors only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from willie.atomic import atomic_path, read_json, write_bytes, write_json
from willie.errors import WillieError

KEEP = 2
_STEP_FILE = re.compile(r"^step-(\d{8})\.pt$")


def checkpoint_paths(directory: Path) -> list[Path]:
    """Checkpoints in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _STEP_FILE.match(p.name))


def save_checkpoint(directory: Path, step: int, state: dict[str, Any]) -> Path:
    path = directory / f"step-{step:08d}.pt"
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp:
        torch.save({"step": step, **state}, temp)
    for old in checkpoint_paths(directory)[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated zip, a pickle with code, a foreign file
        raise WillieError(
            f"{path}: unreadable training checkpoint ({type(e).__name__}: {e}). Delete it to "
            f"resume from an older one, or delete {path.parent} to train from scratch"
        ) from None


def save_artifact(
    directory: str | os.PathLike[str],
    module: nn.Module,
    config: dict[str, Any],
    card: str,
) -> None:
    """Publish `model.safetensors`, `config.json` and `MODEL_CARD.md` into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "model.safetensors") as temp:
        save_model(module, str(temp), metadata={"format": "pt"})
    write_json(directory / "config.json", config)
    write_bytes(directory / "MODEL_CARD.md", card.encode())


def clips_summary(manifest: dict[str, Any]) -> str:
    """A model card's line on the training data, from `data/clips/manifest.json`."""
    source, clips = manifest.get("source", {}), manifest.get("clips", {})
    return (
        f"`data/clips`: {clips.get('train')} train and {clips.get('val')} val clips of "
        f"{manifest.get('clip_shape')} frames, split {manifest.get('split_rule')}; film from "
        f"{source.get('source')} (sha256 {source.get('sha256')})."
    )


def metrics_table(metrics: dict[str, Any]) -> str:
    """A model card's Markdown table of metrics."""
    rows = "\n".join(
        f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
        for k, v in metrics.items()
    )
    return f"| metric | value |\n|---|---|\n{rows}"


def render_model_card(
    title: str,
    about: str,
    use: str,
    params_json: str,
    metrics: dict[str, Any],
    *,
    data: dict[str, Any] | None = None,
    metrics_note: str = "",
) -> str:
    """`MODEL_CARD.md`: what the model is, its data, how to load it, its params, its metrics."""
    data_part = f"## Data\n{clips_summary(data)}\n\n" if data is not None else ""
    note = f"{metrics_note}\n\n" if metrics_note else ""
    return (
        f"# {title}\n\n{about.strip()}\n\n{data_part}"
        f"## Use\n```python\n{use.strip()}\n```\n\n"
        f"## Training parameters\n```\n{params_json}\n```\n\n"
        f"## Validation metrics\n{note}{metrics_table(metrics)}\n"
    )


def load_artifact_config(directory: str | os.PathLike[str], stage: str) -> dict[str, Any]:
    directory = Path(directory)
    if not (directory / "model.safetensors").is_file() or not (directory / "config.json").is_file():
        raise WillieError(
            f"{directory}: no trained model (model.safetensors + config.json); run "
            f"`dvc repro {stage}` first"
        )
    try:
        return read_json(directory / "config.json")
    except json.JSONDecodeError as e:
        raise WillieError(f"{directory / 'config.json'}: not valid JSON ({e})") from None


def load_artifact_weights(directory: str | os.PathLike[str], module: nn.Module) -> nn.Module:
    path = Path(directory) / "model.safetensors"
    try:
        load_model(module, str(path), strict=True)
    except (RuntimeError, OSError, ValueError) as e:
        raise WillieError(f"{path}: does not match its config.json ({e})") from None
    return module


A = TypeVar("A", bound="ArtifactArch")
M = TypeVar("M", bound=nn.Module)


class ArtifactArch:
    """Base of a model's frozen architecture dataclass: its `config.json` round trip.

    Tuples become JSON lists and back (the dataclass converts them in `__post_init__`);
    unknown keys are refused with the allowed ones named.
    """

    KIND: ClassVar[str] = "model"

    def to_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in asdict(self).items()  # type: ignore[call-overload]
        }

    @classmethod
    def from_dict(cls: type[A], data: dict[str, Any]) -> A:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        if unknown := sorted(set(data) - known):
            raise WillieError(
                f"unknown {cls.KIND} architecture keys {unknown}; allowed: {sorted(known)}"
            )
        return cls(**data)


def load_artifact(
    directory: str | os.PathLike[str],
    stage: str,
    model_type: Callable[[Any], M],
    arch_type: type[ArtifactArch],
    device: str | torch.device = "cpu",
) -> M:
    """A published model: `model_type(arch_type.from_dict(config.json's "arch"))`, then its
    safetensors weights; in eval mode on `device`."""
    model = model_type(arch_type.from_dict(load_artifact_config(directory, stage)["arch"]))
    load_artifact_weights(directory, model)
    return model.eval().to(device)
