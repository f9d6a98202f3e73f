"""`willie`: one command per pipeline stage (what `dvc.yaml` runs).

Each command is thin: load and validate its `params.yaml` section, open the stage's MLflow
run, call the library function, write `metrics/<stage>.json`. Heavy imports (torch, mlflow,
av) happen inside the commands so that `willie --help` answers at once.
"""

from __future__ import annotations

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
TrackOption = Annotated[bool, typer.Option("--track/--no-track", help="log the run to MLflow")]


def run_stage(
    stage: str,
    section: str,
    params: Path,
    metrics_path: Path | None,
    track: bool,
    work: Callable[[Any], dict[str, Any]],
    artifacts: tuple[Path, ...] = (),
) -> None:
    """Validate the section, run `work(config)` inside the stage's MLflow run, write metrics."""
    from willie.atomic import write_json
    from willie.config import load_section
    from willie.errors import WillieError

    try:
        config = load_section(section, params)
        if track:
            import mlflow

            from willie.tracking import stage_run

            with stage_run(stage, {section: config.model_dump(mode="json")}):
                metrics = work(config)
                mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
                if metrics_path is not None:
                    write_json(metrics_path, metrics)
                    mlflow.log_artifact(str(metrics_path))
                for artifact in artifacts:
                    if artifact.exists():
                        mlflow.log_artifact(str(artifact))
        else:
            metrics = work(config)
            if metrics_path is not None:
                write_json(metrics_path, metrics)
    except WillieError as e:
        typer.secho(f"willie {stage}: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
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

    def work(cfg: Any) -> dict[str, Any]:
        from willie.download import run_download

        manifest = run_download(cfg, out, progress=sys.stderr.isatty())
        keys = ("bytes", "frames", "fps", "duration_s", "width", "height")
        return {k: manifest[k] for k in keys}

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

    def work(cfg: Any) -> dict[str, Any]:
        from willie.preprocess import run_preprocess

        return run_preprocess(cfg, raw, out)

    run_stage("preprocess", "preprocess", params, metrics, track, work, (out / "manifest.json",))


if __name__ == "__main__":
    app()
