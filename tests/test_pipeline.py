"""End to end: `dvc repro` of the pipeline in a temporary copy of this repository."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.conftest import REPO
from willie.config import load_section
from willie.data import ClipDataset
from willie.data.video import probe

pytestmark = pytest.mark.slow

TINY = {
    "data": {"source": "synthetic", "seed": 1, "synthetic_seconds": 10},
    "preprocess": {"size": 64, "clip_frames": 9, "stride": 8},
    "tokenizer": {
        "size": 32,
        "channels": 8,
        "batch_size": 2,
        "max_steps": 4,
        "warmup_steps": 1,
        "disc_start": 2,
        "gen_adv_start": 3,
        "eval_clips": 2,
        "checkpoint_every": 2,
    },
    "transformer": {
        "context": 32,
        "window": 16,
        "layers": 1,
        "heads": 2,
        "width": 32,
        "batch_size": 4,
        "max_steps": 4,
        "warmup_steps": 1,
        "eval_every": 2,
        "log_every": 1,
        "eval_windows": 4,
    },
    "superres": {
        "channels": 8,
        "blocks": 1,
        "crop": 32,
        "batch_size": 2,
        "max_steps": 4,
        "warmup_steps": 1,
        "eval_clips": 2,
    },
    "audio": {
        "channels": 4,
        "dilations": [1],
        "batch_size": 2,
        "max_steps": 4,
        "warmup_steps": 1,
        "eval_clips": 2,
    },
    "sample": {"num_clips": 2, "frames": 17, "prompt_frames": 5},
    "evaluate": {"max_clips": 8},
}
STAGES = {
    "download",
    "preprocess",
    "train_tokenizer",
    "tokenize",
    "train_transformer",
    "train_superres",
    "train_audio_tokenizer",
    "sample",
    "evaluate",
}


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A git + DVC repository holding this project's files, with the tiny synthetic params."""
    root = tmp_path_factory.mktemp("project") / "willie"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(
        GIT_AUTHOR_NAME="ci",
        GIT_AUTHOR_EMAIL="ci@example.com",
        GIT_COMMITTER_NAME="ci",
        GIT_COMMITTER_EMAIL="ci@example.com",
    )
    run(["git", "init", "-q"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "copy"], root, env)
    return root, env


def client_for(root: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def runs_by_stage(root: Path) -> dict[str, list[mlflow.entities.Run]]:
    client = client_for(root)
    experiment = client.get_experiment_by_name("willie")
    by_stage: dict[str, list[mlflow.entities.Run]] = {}
    for run_ in client.search_runs([experiment.experiment_id], order_by=["attributes.start_time"]):
        by_stage.setdefault(run_.data.tags["stage"], []).append(run_)
    return by_stage


def test_dvc_repro_runs_every_stage(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    assert "train_tokenizer" in run(["dvc", "dag"], root, env)
    run(["dvc", "repro"], root, env)

    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == STAGES
    assert (root / "data/raw/manifest.json").is_file()
    manifest = json.loads((root / "data/clips/manifest.json").read_text())
    assert manifest["clip_shape"] == [9, 64, 64] and manifest["split_rule"] == "by_scene"
    assert list((root / "data/clips/train").glob("shard-*.arrow"))
    assert list((root / "data/clips/val").glob("shard-*.arrow"))
    metrics = json.loads((root / "metrics/preprocess.json").read_text())
    assert metrics["scenes"] >= 2 and metrics["clips_val"] > 0
    # Outputs are DVC's, not git's.
    ignored = (root / "data/.gitignore").read_text()
    assert "/raw" in ignored and "/clips" in ignored
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], root, env))
    assert "metrics/preprocess.json" in json.dumps(shown)

    tokenizer = json.loads((root / "metrics/tokenizer.json").read_text())
    levels = load_section("tokenizer", root / "params.yaml").fsq_levels
    assert tokenizer["codebook_size"] == math.prod(levels) and "psnr" in tokenizer
    assert (root / "stages/tokenizer/model.safetensors").is_file()
    tokens = json.loads((root / "data/tokens/manifest.json").read_text())
    assert tokens["latent_shape"] == [3, 4, 4]
    assert tokens["audio"]["group"] == 8  # the synthetic film's sound: 8 tokens a latent frame

    transformer = json.loads((root / "metrics/transformer.json").read_text())
    assert {"val_bits_per_token", "val_bits_per_token_2x"} <= set(transformer)
    assert {"val_audio_bits_per_token", "audio_baseline_val_bits_per_token"} <= set(transformer)
    assert {"val_sound_bits_per_token", "sound_baseline_val_bits_per_token"} <= set(transformer)
    # the preset's opening model: the step whose first frames drew best, which `sample` used
    opening = json.loads((root / "stages/transformer/opening/config.json").read_text())
    assert opening["step"] == transformer["opening_step"] and transformer["opening_step"] > 0
    index = json.loads((root / "stages/samples/samples.json").read_text())
    drawn = [s["settings"] for s in index["samples"] if s["settings"]["prompt"] == "none"]
    assert [d["opening_step"] for d in drawn] == [transformer["opening_step"]] * 2
    audio = json.loads((root / "metrics/audio_tokenizer.json").read_text())
    assert {"si_snr", "baseline_si_snr", "stft_distance_db"} <= set(audio)  # the film has sound
    assert (root / "stages/audio_tokenizer/recon.wav").stat().st_size > 1000
    superres = json.loads((root / "metrics/superres.json").read_text())
    assert {"psnr", "psnr_bicubic"} <= set(superres)
    samples = root / "stages/samples"
    assert len(list(samples.glob("*.mp4"))) == 4  # 2 unconditional + 2 continuations
    for mp4 in samples.glob("*.mp4"):  # with the sound the transformer generated
        assert probe(mp4).audio is not None, mp4
    assert len(list(samples.glob("*.gif"))) >= 4
    assert (samples / "contact_sheet.png").is_file() and (samples / "index.html").is_file()
    evaluation = json.loads((root / "metrics/evaluate.json").read_text())
    keys = {"recon_psnr", "val_bits_per_token", "sr_gain_db", "latent_frechet", "novelty"}
    keys |= {"audio_frechet", "audio_frechet_train_val", "audio_si_snr", "audio_baseline_si_snr"}
    assert keys <= set(evaluation)
    plots = run(["dvc", "plots", "show", "--json"], root, env)
    assert "recon_psnr_by_frame" in plots and "transformer_loss" in plots
    for name in ("transformer_loss", "recon_psnr_by_frame", "realism_by_second"):
        assert (root / f"metrics/plots/{name}.png").is_file(), name

    runs = runs_by_stage(root)
    assert set(runs) == STAGES
    assert all(r[-1].info.status == "FINISHED" for r in runs.values())
    sample_run = runs["sample"][-1]
    logged = {a.path for a in client_for(root).list_artifacts(sample_run.info.run_id, "samples")}
    assert "samples/index.html" in logged and "samples/contact_sheet.png" in logged
    preprocess_run = runs["preprocess"][-1]
    assert preprocess_run.info.status == "FINISHED"
    assert preprocess_run.data.params["preprocess.size"] == "[64, 64]"
    assert preprocess_run.data.metrics["clips_val"] == metrics["clips_val"]
    assert runs["download"][-1].data.params["data.source"] == "synthetic"
    tokenizer_run = runs["train_tokenizer"][-1]
    assert "recon_loss" in tokenizer_run.data.metrics  # step metrics, logged as it trains
    logged = {a.path for a in client_for(root).list_artifacts(tokenizer_run.info.run_id)}
    assert {"recon.gif", "MODEL_CARD.md", "tokenizer.json"} <= logged
    evaluate_run = runs["evaluate"][-1]
    logged = {a.path for a in client_for(root).list_artifacts(evaluate_run.info.run_id)}
    assert {"realism_by_second.png", "frame_change.png", "recon_psnr_by_frame.png"} <= logged

    # Nothing changed: nothing re-runs, so no new MLflow run either.
    run(["dvc", "repro"], root, env)
    assert len(runs_by_stage(root)["preprocess"]) == 1
    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD", "--json"], root, env))
    assert "latent_frechet" in diff["metrics/evaluate.json"]
    run(["git", "add", "-A"], root, env)  # as a user records a reproduced pipeline
    run(["git", "commit", "-qm", "repro"], root, env)


def test_runs_record_their_datasets_and_models(project: tuple[Path, dict[str, str]]) -> None:
    root, _ = project
    runs = {stage: found[0] for stage, found in runs_by_stage(root).items()}
    read = {
        stage: {d.dataset.name: d for d in run_.inputs.dataset_inputs}
        for stage, run_ in runs.items()
    }
    assert set(read["preprocess"]) == {"film"}
    assert set(read["train_tokenizer"]) == set(read["tokenize"]) == {"clips"}
    assert set(read["train_transformer"]) == set(read["evaluate"]) == {"clips", "tokens"}
    clips = read["train_tokenizer"]["clips"]
    assert json.loads(clips.dataset.source)["uri"] == str(root / "data/clips")
    assert "frames" in clips.dataset.schema and len(clips.dataset.digest) == 16
    assert read["sample"]["clips"].dataset.digest == clips.dataset.digest  # the same data
    assert {t.key: t.value for t in clips.tags}["mlflow.data.context"] == "training"

    client = client_for(root)
    experiment = client.get_experiment_by_name("willie").experiment_id
    models = {m.name: m for m in client.search_logged_models([experiment])}
    kinds = ("tokenizer", "transformer", "superres", "audio_tokenizer")
    assert set(models) == set(kinds)
    stages = ("train_tokenizer", "train_transformer", "train_superres", "train_audio_tokenizer")
    for name, stage in zip(kinds, stages, strict=True):
        assert models[name].source_run_id == runs[stage].info.run_id
    tokenizer = models["tokenizer"]
    assert tokenizer.params["tokenizer.size"] == "32"  # the stage's params, flattened
    assert {m.key for m in tokenizer.metrics} >= {"psnr", "ssim"}
    # The logged model runs: encode a val clip to the tokens the published files give.
    before = mlflow.get_tracking_uri()  # earlier tests may have set it process-wide
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    try:
        loaded = mlflow.pyfunc.load_model(f"models:/{tokenizer.model_id}")
    finally:
        mlflow.set_tracking_uri(before)
    clip = ClipDataset(root / "data/clips", "val", size=32)[0].unsqueeze(0)
    latent = json.loads((root / "data/tokens/manifest.json").read_text())["latent_shape"]
    assert loaded.predict(clip.numpy()).shape == (1, *latent)


def test_levels_experiment_reruns_exactly_the_stages_downstream_of_the_tokenizer(
    project: tuple[Path, dict[str, str]],
) -> None:
    root, env = project
    command = ["dvc", "exp", "run", "--temp", "-n", "levels4", "-S", "tokenizer.levels=4"]
    output = run(command, root, env)
    for stage in ("train_tokenizer", "tokenize", "train_transformer", "sample", "evaluate"):
        assert f"Running stage '{stage}'" in output
    for stage in ("download", "preprocess", "train_superres", "train_audio_tokenizer"):
        assert f"Running stage '{stage}'" not in output
    latest = runs_by_stage(root)["train_tokenizer"][-1]  # logged to the real workspace
    assert latest.data.tags["dvc_exp_name"] == "levels4"
    codebook = 4 ** load_section("tokenizer", root / "params.yaml").fsq_dims  # an int: × fsq_dims
    assert latest.data.metrics["codebook_size"] == codebook
    shown = json.dumps(json.loads(run(["dvc", "exp", "show", "--json"], root, env)))
    assert f'"codebook_size": {codebook}' in shown and "latent_frechet" in shown
