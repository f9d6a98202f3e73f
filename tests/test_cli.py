import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from tests.test_preprocess import make_raw_dir
from willie.cli import app

runner = CliRunner()


def test_help_lists_one_command_per_implemented_stage() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("download", "preprocess"):
        assert command in result.output


def test_cli_import_stays_light() -> None:
    # `willie --help` must answer at once: heavy libraries load inside the commands only.
    heavy = "{'torch', 'mlflow', 'av', 'pyarrow'}"
    code = f"import sys, willie.cli; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_invalid_params_exit_nonzero_before_any_work(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("preprocess:\n  clip_frames: 16\n")
    result = runner.invoke(
        app,
        [
            "preprocess",
            "--params",
            str(params),
            "--out",
            str(tmp_path / "clips"),
            "--metrics",
            str(tmp_path / "m.json"),
        ],
    )
    assert result.exit_code == 1
    assert "preprocess.clip_frames = 16" in result.output and "1 + 4k" in result.output
    assert not (tmp_path / "clips").exists() and not (tmp_path / "m.json").exists()


def test_preprocess_command_writes_metrics_and_tracks_the_run(
    shared_clip: Path, tmp_path: Path
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("preprocess:\n  size: 64\ntokenizer:\n  size: 32\n")
    metrics = tmp_path / "metrics" / "preprocess.json"
    result = runner.invoke(
        app,
        [
            "preprocess",
            "--params",
            str(params),
            "--raw",
            str(make_raw_dir(tmp_path, shared_clip)),
            "--out",
            str(tmp_path / "clips"),
            "--metrics",
            str(metrics),
        ],
    )
    assert result.exit_code == 0, result.output
    values = json.loads(metrics.read_text())
    assert values["frames_kept"] == 168 and values["clips_train"] > 0
    (run,) = mlflow.search_runs(experiment_names=["willie"], output_format="list")
    assert run.data.tags["stage"] == "preprocess"
    assert run.data.params["preprocess.size"] == "[64, 64]"
    assert run.data.metrics["frames_kept"] == 168


def test_ctrl_c_says_it_was_interrupted_and_what_was_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import willie.data.preprocess

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(willie.data.preprocess, "run_preprocess", interrupted)
    params = tmp_path / "params.yaml"
    params.write_text("preprocess:\n  size: 64\ntokenizer:\n  size: 32\n")
    out = ["--out", str(tmp_path / "clips"), "--metrics", str(tmp_path / "m.json")]
    result = runner.invoke(app, ["preprocess", "--params", str(params), "--no-track", *out])
    assert result.exit_code == 130
    assert "interrupted (Ctrl-C). Nothing was published" in result.output
    assert not (tmp_path / "m.json").exists()
