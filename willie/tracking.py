"""MLflow tracking shared by every stage: one run per stage execution.

The store is `MLFLOW_TRACKING_URI` when set, else `sqlite:///<workspace>/mlflow.db`, where the
workspace is the real project directory — also when DVC runs an experiment in a temporary copy
under `<workspace>/.dvc/tmp/exps/` (`dvc exp run --temp` / `--queue`), so every run lands in the
one store that `mlflow ui` reads. Artifacts go to `<workspace>/mlartifacts/`, an absolute path
fixed when the experiment is created (MLflow's default is relative to the working directory).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from willie.errors import StopRequested

if TYPE_CHECKING:
    from mlflow import ActiveRun

EXPERIMENT = "willie"
_TEMP_EXPERIMENT_DIR = os.sep + os.path.join(".dvc", "tmp", "exps") + os.sep


def workspace_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The real project directory, seen through DVC's temporary experiment copies."""
    here = Path(start or os.environ.get("DVC_ROOT") or os.getcwd()).resolve()
    text = str(here) + os.sep
    if _TEMP_EXPERIMENT_DIR in text:
        return Path(text.split(_TEMP_EXPERIMENT_DIR, 1)[0])
    return here


def tracking_uri(workspace: Path | None = None) -> str:
    if uri := os.environ.get("MLFLOW_TRACKING_URI"):
        return uri
    return f"sqlite:///{(workspace or workspace_root()) / 'mlflow.db'}"


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}, 'c': [1, 2]} → {'a.b': 1, 'c': '[1, 2]'}: MLflow params are flat strings."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def git_commit(cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def _experiment_id(client: Any, workspace: Path) -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    import mlflow.exceptions

    try:
        return client.create_experiment(
            EXPERIMENT, artifact_location=(workspace / "mlartifacts").as_uri()
        )
    except mlflow.exceptions.MlflowException:
        # Another stage created it between our lookup and our create.
        return client.get_experiment_by_name(EXPERIMENT).experiment_id


@contextmanager
def stage_run(stage: str, params: Mapping[str, Any]) -> Iterator[ActiveRun]:
    """Open the MLflow run of one stage execution, tagged and with its params logged.

    Inside the block use `mlflow.log_metric(s)` / `mlflow.log_artifact` as usual. The run ends
    FINISHED; KILLED when Ctrl-C or SIGTERM stops it; FAILED when the block raises. Earlier runs
    of the stage whose process died without a word (SIGKILL) are marked KILLED first.
    """
    import mlflow

    workspace = workspace_root()
    mlflow.set_tracking_uri(tracking_uri(workspace))
    client = mlflow.MlflowClient()
    experiment_id = _experiment_id(client, workspace)
    tags = {"stage": stage, "mlflow.source.name": f"willie {stage}"}
    if commit := git_commit(Path.cwd()):
        tags["git_commit"] = tags["mlflow.source.git.commit"] = commit
    if exp_name := os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = exp_name
    tags |= {"host": socket.gethostname(), "pid": str(os.getpid())}
    run_name = f"{stage} ({exp_name})" if exp_name else stage
    mark_dead_runs_killed(client, experiment_id, stage)
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
    try:
        mlflow.log_params({k: str(v) for k, v in flatten(params).items()})
        yield run
    except (KeyboardInterrupt, StopRequested):
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def mark_dead_runs_killed(client: Any, experiment_id: str, stage: str) -> list[str]:
    """End as KILLED the stage's runs left RUNNING by a process of this host that is gone
    (SIGKILL, a power cut): MLflow never heard they ended. Returns their run ids."""
    runs = client.search_runs(
        [experiment_id], f"tags.stage = '{stage}' and attributes.status = 'RUNNING'"
    )
    host, killed = socket.gethostname(), []
    for run in runs:
        tags = run.data.tags
        pid = tags.get("pid", "")
        if tags.get("host") == host and pid.isdigit() and not _alive(int(pid)):
            client.set_terminated(run.info.run_id, "KILLED")
            killed.append(run.info.run_id)
    if killed:
        print(
            f"MLflow: {len(killed)} earlier `{stage}` run(s) whose process is gone marked KILLED",
            file=sys.stderr,
        )
    return killed


def _schema(name: str, manifest: dict[str, Any]) -> Any:
    """The columns of a dataset the stages read, from its manifest (None: files, no columns)."""
    import numpy as np
    from mlflow.types import Schema, TensorSpec

    if name == "clips":
        T, H, W = manifest["clip_shape"]
        columns = [("frames", "uint8", (-1, T, H, W)), ("scene", "int32", (-1,))]
        columns += [("start_time_s", "float64", (-1,)), ("frame_indices", "int32", (-1, T))]
        if manifest.get("audio_samples"):  # null where the clip's file is silent
            columns += [("audio", "int16", (-1, manifest["audio_samples"]))]
    elif name == "tokens":
        t, h, w = manifest["latent_shape"]
        columns = [("tokens", manifest["dtype"], (-1, t * h * w)), ("scene", "int32", (-1,))]
        columns += [("start_frame", "int32", (-1,))]
    else:
        return None
    return Schema([TensorSpec(np.dtype(dtype), shape, col) for col, dtype, shape in columns])


def log_datasets(inputs: Mapping[str, Path], context: str) -> None:
    """`mlflow.log_input` for each dataset directory the stage reads (name → directory with a
    `manifest.json`): its name, a digest of the manifest (which records the data's checksums
    and the settings that made it), its path and its columns, for the runs page's Datasets."""
    import hashlib
    import json
    import warnings

    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    for name, directory in inputs.items():
        manifest_path = directory / "manifest.json"
        if not manifest_path.is_file():
            continue
        text = manifest_path.read_bytes()
        with warnings.catch_warnings():  # "file: and '' both mean a local path": they do
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(str(directory.resolve()))
        dataset = MetaDataset(
            source,
            name=name,
            digest=hashlib.sha256(text).hexdigest()[:16],
            schema=_schema(name, json.loads(text)),
        )
        mlflow.log_input(dataset, context=context)
