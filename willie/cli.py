"""`willie`: one command per pipeline stage (what `dvc.yaml` runs).

Each command is thin: load and validate its `params.yaml` section, open the stage's MLflow
run, call the library function, write `metrics/<stage>.json`. Heavy imports (torch, mlflow,
av) happen inside the commands so that `willie --help` answers at once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="Learn Steamboat Willie (1928) and generate new scenes in its style. "
    "Each command is one stage of the DVC pipeline (see dvc.yaml); run them with `dvc repro`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOption = Annotated[Path, typer.Option("--params", help="the params file to read")]
MetricsOption = Annotated[Path, typer.Option(help="where to write the stage's metrics JSON")]
Log = Callable[[dict[str, float], int], None]
TrackOption = Annotated[bool, typer.Option("--track/--no-track", help="log the run to MLflow")]


def run_stage(
    stage: str,
    section: str,
    params: Path,
    metrics_path: Path | None,
    track: bool,
    work: Callable[[Any, Log | None], dict[str, Any]],
    artifacts: tuple[Path, ...] = (),
    *,
    inputs: dict[str, Path] | None = None,
    model: tuple[str, Path] | None = None,
) -> None:
    """Validate the section, run `work(config, log)` inside the stage's MLflow run, write
    metrics. Under `torchrun` every rank works; only rank 0 tracks and writes metrics.

    inputs: the datasets the stage reads (name → directory with a manifest), logged as the
    run's inputs; model: (kind, directory) of the model it publishes, logged as the run's
    MLflow model."""
    from willie.atomic import write_json
    from willie.config import load_section
    from willie.errors import StopRequested, WillieError

    training = stage.startswith("train")
    main_process = int(os.environ.get("RANK", 0)) == 0
    try:
        config = load_section(section, params)
        if track and main_process:
            import mlflow

            from willie.tracking import stage_run

            def log(values: dict[str, float], step: int) -> None:
                mlflow.log_metrics({k: float(v) for k, v in values.items()}, step=step)

            from willie.tracking import log_datasets

            values = config.model_dump(mode="json")
            with stage_run(stage, {section: values}):
                log_datasets(inputs or {}, "training" if training else stage)
                metrics = work(config, log)
                model_id = None
                if model is not None:
                    from willie.logged_models import log_published_model

                    model_id = log_published_model(*model, {section: values})
                # the run's metrics, and the model's where it published one
                mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, model_id=model_id)
                if metrics_path is not None:
                    write_json(metrics_path, metrics)
                    mlflow.log_artifact(str(metrics_path))
                for artifact in artifacts:
                    if artifact.is_dir():
                        mlflow.log_artifacts(str(artifact), artifact_path=artifact.name)
                    elif artifact.exists():
                        mlflow.log_artifact(str(artifact))
        else:
            metrics = work(config, None)
            if metrics_path is not None and main_process:
                write_json(metrics_path, metrics)
    except StopRequested as e:
        typer.secho(f"willie {stage}: {e}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        typer.secho(
            f"willie {stage}: interrupted (Ctrl-C). Nothing was published: the stage writes its "
            "outputs whole or not at all, so they are as the last complete run left them"
            + (" (training keeps its last checkpoint, and resumes from it)" if training else ""),
            fg=typer.colors.YELLOW,
            err=True,
        )
        raise typer.Exit(130) from None
    except WillieError as e:
        typer.secho(f"willie {stage}: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if main_process:
        _print_metrics(stage, metrics)


def _print_metrics(stage: str, metrics: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"willie {stage}", show_header=False)
    for key, value in metrics.items():
        table.add_row(key, str(value))
    Console(stderr=True).print(table)


@app.command()
def download(
    out: Annotated[Path, typer.Option(help="directory of the raw video")] = Path("data/raw"),
    params: ParamsOption = Path("params.yaml"),
    metrics: MetricsOption = Path("metrics/download.json"),
    track: TrackOption = True,
) -> None:
    """Fetch the film (archive.org, a local file, or the synthetic cartoon) into data/raw/."""

    def work(cfg: Any, log: Log | None) -> dict[str, Any]:
        from willie.data.download import run_download

        manifest = run_download(cfg, out, progress=sys.stderr.isatty())
        return dict(manifest["total"])  # files, bytes, frames, duration_s, with_audio

    run_stage("download", "data", params, metrics, track, work, (out / "manifest.json",))


@app.command()
def preprocess(
    raw: Annotated[Path, typer.Option(help="directory written by `download`")] = Path("data/raw"),
    out: Annotated[Path, typer.Option(help="directory of the clip shards")] = Path("data/clips"),
    params: ParamsOption = Path("params.yaml"),
    metrics: MetricsOption = Path("metrics/preprocess.json"),
    track: TrackOption = True,
) -> None:
    """Decode, crop, re-time, scene-split and cut the film into Arrow clip shards."""

    def work(cfg: Any, log: Log | None) -> dict[str, Any]:
        from willie.data.preprocess import run_preprocess

        return run_preprocess(cfg, raw, out)

    artifacts = (out / "manifest.json",)
    run_stage(
        "preprocess", "preprocess", params, metrics, track, work, artifacts, inputs={"film": raw}
    )


@app.command("train-tokenizer")
def train_tokenizer(
    clips: Annotated[Path, typer.Option(help="clip shards from `preprocess`")] = Path("data/clips"),
    out: Annotated[Path, typer.Option(help="where the trained model goes")] = Path(
        "stages/tokenizer"
    ),
    params: ParamsOption = Path("params.yaml"),
    metrics: MetricsOption = Path("metrics/tokenizer.json"),
    track: TrackOption = True,
) -> None:
    """Train the MAGVIT-v2 video tokenizer (causal 3D CNN + FSQ, GAN) on the clips."""

    def work(cfg: Any, log: Log | None) -> dict[str, Any]:
        from willie.tokenizer.train import train_tokenizer

        return train_tokenizer(cfg, clips, out, log=log)

    artifacts = (out / "recon.gif", out / "MODEL_CARD.md", out / "config.json")
    run_stage(
        "train_tokenizer",
        "tokenizer",
        params,
        metrics,
        track,
        work,
        artifacts,
        inputs={"clips": clips},
        model=("tokenizer", out),
    )


@app.command()
def tokenize(
    clips: Annotated[Path, typer.Option(help="clip shards from `preprocess`")] = Path("data/clips"),
    tokenizer: Annotated[Path, typer.Option(help="the trained tokenizer")] = Path(
        "stages/tokenizer"
    ),
    out: Annotated[Path, typer.Option(help="directory of the token arrays")] = Path("data/tokens"),
    audio_tokenizer: Annotated[
        Path | None,
        typer.Option(help="the trained audio tokenizer (a silent one: no audio tokens)"),
    ] = Path("stages/audio_tokenizer"),
    params: ParamsOption = Path("params.yaml"),
    metrics: MetricsOption = Path("metrics/tokenize.json"),
    track: TrackOption = True,
) -> None:
    """Encode every clip of both splits into token arrays with the trained tokenizers: the
    pictures, and the sound where the audio tokenizer learnt one."""

    def work(cfg: Any, log: Log | None) -> dict[str, Any]:
        from willie.tokenizer.tokenize import run_tokenize

        return run_tokenize(cfg, clips, tokenizer, out, audio_tokenizer)

    artifacts = (out / "manifest.json",)
    run_stage(
        "tokenize", "tokenizer", params, metrics, track, work, artifacts, inputs={"clips": clips}
    )


@app.command("train-transformer")
def train_transformer(
    tokens: Annotated[Path, typer.Option(help="token arrays from `tokenize`")] = Path(
        "data/tokens"
    ),
    clips: Annotated[Path, typer.Option(help="clip shards: the realism probe's prompts")] = Path(
        "data/clips"
    ),
    out: Annotated[Path, typer.Option(help="where the trained model goes")] = Path(
        "stages/transformer"
    ),
    plots: Annotated[Path, typer.Option(help="where the loss curves go")] = Path("metrics/plots"),
    params: ParamsOption = Path("params.yaml"),
    metrics: MetricsOption = Path("metrics/transformer.json"),
    track: TrackOption = True,
) -> None:
    """Train the ALiBi sliding-window transformer on the token streams."""

    def work(cfg: Any, log: Log | None) -> dict[str, Any]:
        from willie.transformer.train import train_transformer

        return train_transformer(cfg, tokens, out, plots, clips_dir=clips, log=log)

    artifacts = (
        out / "MODEL_CARD.md",
        out / "config.json",
        out / "opening",  # the model that draws an unconditional sample's first latent frame
        plots / "transformer_train_loss.csv",
        plots / "transformer_val_loss.csv",
        plots / "transformer_loss.png",
        plots / "transformer_val_realism.csv",
        plots / "transformer_val_realism.png",
    )
    run_stage(
        "train_transformer",
        "transformer",
        params,
        metrics,
        track,
        work,
        artifacts,
        inputs={"tokens": tokens, "clips": clips},
        model=("transformer", out),
    )


@app.command("train-audio-tokenizer")
def train_audio_tokenizer(
    clips: Annotated[Path, typer.Option(help="clip shards from `preprocess`")] = Path("data/clips"),
    out: Annotated[Path, typer.Option(help="where the trained model goes")] = Path(
        "stages/audio_tokenizer"
    ),
    params: ParamsOption = Path("params.yaml"),
    metrics: MetricsOption = Path("metrics/audio_tokenizer.json"),
    track: TrackOption = True,
) -> None:
    """Train the audio tokenizer (causal 1-D CNN + FSQ) on the clips' soundtrack; a corpus
    without sound publishes a silent model and the pipeline makes pictures only."""

    def work(cfg: Any, log: Log | None) -> dict[str, Any]:
        from willie.audio.train import train_audio_tokenizer

        return train_audio_tokenizer(cfg, clips, out, log=log)

    artifacts = (out / "recon.wav", out / "recon.png", out / "MODEL_CARD.md", out / "config.json")
    run_stage(
        "train_audio_tokenizer",
        "audio",
        params,
        metrics,
        track,
        work,
        artifacts,
        inputs={"clips": clips},
        model=("audio_tokenizer", out),
    )


@app.command("train-superres")
def train_superres(
    clips: Annotated[Path, typer.Option(help="clip shards from `preprocess`")] = Path("data/clips"),
    out: Annotated[Path, typer.Option(help="where the trained model goes")] = Path(
        "stages/superres"
    ),
    params: ParamsOption = Path("params.yaml"),
    metrics: MetricsOption = Path("metrics/superres.json"),
    track: TrackOption = True,
) -> None:
    """Train the video super-resolution model on (area-downsampled, original) clip pairs."""

    def work(cfg: Any, log: Log | None) -> dict[str, Any]:
        from willie.superres.train import train_superres

        return train_superres(cfg, clips, out, log=log)

    artifacts = (out / "compare.png", out / "MODEL_CARD.md", out / "config.json")
    run_stage(
        "train_superres",
        "superres",
        params,
        metrics,
        track,
        work,
        artifacts,
        inputs={"clips": clips},
        model=("superres", out),
    )


@app.command()
def sample(
    out: Annotated[Path, typer.Option(help="the gallery directory")] = Path("stages/samples"),
    tokenizer: Annotated[Path, typer.Option(help="the trained tokenizer")] = Path(
        "stages/tokenizer"
    ),
    transformer: Annotated[Path, typer.Option(help="the trained transformer")] = Path(
        "stages/transformer"
    ),
    superres: Annotated[Path, typer.Option(help="the trained super-resolution model")] = Path(
        "stages/superres"
    ),
    clips: Annotated[Path, typer.Option(help="clip shards (prompts)")] = Path("data/clips"),
    audio_tokenizer: Annotated[Path, typer.Option(help="the trained audio tokenizer")] = Path(
        "stages/audio_tokenizer"
    ),
    params: ParamsOption = Path("params.yaml"),
    metrics: MetricsOption = Path("metrics/sample.json"),
    track: TrackOption = True,
) -> None:
    """Generate new clips (MP4 with sound, GIF, contact sheet, index.html) into stages/samples/."""

    def work(cfg: Any, log: Log | None) -> dict[str, Any]:
        from willie.generation.sample import run_sample

        return run_sample(cfg, tokenizer, transformer, superres, clips, out, audio_tokenizer)

    run_stage("sample", "sample", params, metrics, track, work, (out,), inputs={"clips": clips})


@app.command()
def evaluate(
    plots: Annotated[Path, typer.Option(help="where the plot data go")] = Path("metrics/plots"),
    samples: Annotated[Path, typer.Option(help="the gallery from `sample`")] = Path(
        "stages/samples"
    ),
    clips: Annotated[Path, typer.Option(help="clip shards: the real frames")] = Path("data/clips"),
    tokens: Annotated[Path, typer.Option(help="token arrays from `tokenize`")] = Path(
        "data/tokens"
    ),
    audio_tokenizer: Annotated[Path, typer.Option(help="the trained audio tokenizer")] = Path(
        "stages/audio_tokenizer"
    ),
    params: ParamsOption = Path("params.yaml"),
    metrics: MetricsOption = Path("metrics/evaluate.json"),
    track: TrackOption = True,
) -> None:
    """Score every model and the samples (pictures and sound): metrics/evaluate.json, plots."""

    def work(cfg: Any, log: Log | None) -> dict[str, Any]:
        from willie.evaluation.report import run_evaluate

        return run_evaluate(
            cfg,
            clips_dir=clips,
            tokens_dir=tokens,
            samples_dir=samples,
            plots_dir=plots,
            audio_dir=audio_tokenizer,
        )

    artifacts = tuple(
        plots / f"{name}.{kind}"
        for name in ("recon_psnr_by_frame", "realism_by_second", "frame_change")
        for kind in ("csv", "png")
    )
    inputs = {"clips": clips, "tokens": tokens}
    run_stage("evaluate", "evaluate", params, metrics, track, work, artifacts, inputs=inputs)


if __name__ == "__main__":
    app()
