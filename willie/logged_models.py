"""The trained models as MLflow models of the runs that trained them.

DVC keeps the published files (`stages/<model>/`); MLflow gets the same weights as a
`mlflow.pyfunc` model with its params, metrics and the `willie` code beside it, so the runs
page's Models column and `mlflow.search_logged_models` find it, and

    model = mlflow.pyfunc.load_model(f"models:/{model_id}")
    codes = model.predict(clips)                        # tokenizer: [B, 1, T, H, W] in [-1, 1]
    video = model.predict(codes, params={"decode": True})
    ids = model.predict(prompt, params={"new_tokens": 64, "temperature": 0.6})  # transformer
    big = model.predict(small)                          # superres: [B, 1, T, h, w] → 2× size
    tokens = model.predict(audio)                       # audio_tokenizer: [B, 1, S] in [-1, 1]

runs it. The model is logged as code (this file, with the `willie` package beside it), not
as a pickle. Imported only when a stage tracks (it imports mlflow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np

import willie
from willie.tracking import flatten

FILES = ("model.safetensors", "config.json", "MODEL_CARD.md")
REQUIREMENTS = ["torch>=2.4", "einops>=0.8", "safetensors>=0.4", "numpy>=1.26", "pydantic>=2.6"]


class PublishedModel(mlflow.pyfunc.PythonModel):
    """One of the pipeline's models (`model_config["kind"]`), loaded from its published files."""

    def load_context(self, context: Any) -> None:
        from willie.audio.model import load_audio_tokenizer
        from willie.superres.model import load_superres
        from willie.tokenizer.model import load_tokenizer
        from willie.transformer.model import load_transformer

        self.kind = context.model_config["kind"]  # tokenizer | transformer | superres | audio_…
        loaders = {
            "tokenizer": load_tokenizer,
            "transformer": load_transformer,
            "audio_tokenizer": load_audio_tokenizer,
        }
        directory = Path(context.artifacts["config.json"]).parent  # all files side by side
        self.model = loaders.get(self.kind, load_superres)(directory)

    # model_input has no annotation on purpose: MLflow reads one as a schema to enforce, and
    # the three models take arrays of different shapes.
    def predict(self, context: Any, model_input, params: dict | None = None) -> np.ndarray:
        import torch

        params = params or {}
        x = torch.as_tensor(np.asarray(model_input))
        with torch.inference_mode():
            if self.kind in ("tokenizer", "audio_tokenizer"):
                if params.get("decode"):
                    return self.model.decode(x.long()).clamp(-1, 1).numpy()
                return self.model.encode(x.float()).numpy()
            if self.kind == "superres":
                return self.model.upscale(x.float()).numpy()
            from willie.transformer.generate import generate, sampler

            generator = torch.Generator().manual_seed(int(params.get("seed", 0)))
            pick = sampler(temperature=float(params.get("temperature", 1.0)), generator=generator)
            return generate(self.model, x.long(), int(params.get("new_tokens", 1)), pick).numpy()


def log_published_model(kind: str, directory: Path, config: dict[str, Any]) -> str | None:
    """Log `directory`'s published model to the active run, with the stage's params; returns
    its model id (log the stage's metrics with it: `mlflow.log_metrics(..., model_id=…)`), or
    None where the stage published no weights (a silent corpus's audio tokenizer)."""
    from willie.atomic import read_json

    if read_json(directory / "config.json").get("silent"):
        return None
    info = mlflow.pyfunc.log_model(
        name=kind,
        python_model=__file__,  # MLflow's "models from code": this file, no pickle
        model_config={"kind": kind},
        artifacts={name: str(directory / name) for name in FILES},
        code_paths=[str(Path(willie.__file__).parent)],
        pip_requirements=REQUIREMENTS,
        params={k: str(v) for k, v in flatten(config).items()},
        model_type=kind,
    )
    return info.model_id


mlflow.models.set_model(PublishedModel())  # what MLflow serves when it loads this file
