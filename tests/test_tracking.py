import os
import socket
import subprocess
from pathlib import Path

import mlflow
import pytest

from willie.errors import StopRequested
from willie.tracking import EXPERIMENT, flatten, stage_run, tracking_uri, workspace_root


def test_workspace_seen_through_dvc_temp_experiment_copies(tmp_path: Path) -> None:
    temp_copy = tmp_path / "proj" / ".dvc" / "tmp" / "exps" / "tmpk2x9" / "sub"
    temp_copy.mkdir(parents=True)
    assert workspace_root(temp_copy) == tmp_path / "proj"
    assert workspace_root(tmp_path / "proj") == tmp_path / "proj"


def test_default_store_is_sqlite_at_absolute_workspace_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_flatten_nested_params() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {
        "a.b": 1,
        "a.c.d": [1, 2],
        "e": None,
    }


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository as the working directory, with the store inside it."""
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.chdir(ws)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "init",
        ],
        check=True,
    )
    return ws


def read_runs(ws: Path) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(f"sqlite:///{ws / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.artifact_location == (ws / "mlartifacts").as_uri()
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time"])


def test_stage_run_logs_tags_params_metrics_artifacts(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DVC_EXP_NAME", "tidy-yarn")
    (workspace / "metrics.json").write_text('{"psnr": 31.5}')
    with stage_run("preprocess", {"preprocess": {"size": [64, 64], "stride": 8}}):
        mlflow.log_metric("psnr", 31.5, step=3)
        mlflow.log_artifact(str(workspace / "metrics.json"))

    (run,) = read_runs(workspace)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    assert run.info.status == "FINISHED" and run.info.run_name == "preprocess (tidy-yarn)"
    assert run.data.tags["stage"] == "preprocess"
    assert run.data.tags["git_commit"] == commit.stdout.strip()
    assert run.data.tags["dvc_exp_name"] == "tidy-yarn"
    assert run.data.params == {"preprocess.size": "[64, 64]", "preprocess.stride": "8"}
    assert run.data.metrics == {"psnr": 31.5}
    client = mlflow.MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["metrics.json"]


def test_failed_stage_marks_its_run_failed(workspace: Path) -> None:
    with pytest.raises(RuntimeError), stage_run("download", {"data": {}}):
        raise RuntimeError("network down")
    with stage_run("download", {"data": {}}):
        pass
    assert [r.info.status for r in read_runs(workspace)] == ["FAILED", "FINISHED"]


def test_interrupted_stage_marks_its_run_killed(workspace: Path) -> None:
    with pytest.raises(KeyboardInterrupt), stage_run("preprocess", {}):
        raise KeyboardInterrupt
    with pytest.raises(StopRequested), stage_run("train_tokenizer", {}):
        raise StopRequested("stopped by SIGTERM at step 3", 15)
    assert [r.info.status for r in read_runs(workspace)] == ["KILLED", "KILLED"]


def test_runs_left_running_by_a_dead_process_are_marked_killed(workspace: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    client = mlflow.MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    with stage_run("sample", {}) as finished:
        pass
    experiment_id = finished.info.experiment_id
    host = socket.gethostname()
    orphan, alive, other_stage = (
        client.create_run(experiment_id, tags={"stage": stage, "host": host, "pid": str(pid)})
        for stage, pid in (("sample", dead.pid), ("sample", os.getpid()), ("evaluate", dead.pid))
    )
    with stage_run("sample", {}):  # the stage starts again
        pass
    status = {r.info.run_id: r.info.status for r in read_runs(workspace)}
    assert status[orphan.info.run_id] == "KILLED"  # its process is gone: SIGKILL, power cut
    assert status[alive.info.run_id] == "RUNNING"  # a live process may still be working
    assert status[other_stage.info.run_id] == "RUNNING"  # another stage's business
    assert status[finished.info.run_id] == "FINISHED"
