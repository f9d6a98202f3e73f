import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from willie.training.checkpoint import checkpoint_paths
from willie.training.engine import (
    Engine,
    StepBatchSampler,
    TrainSettings,
    autocast,
    cosine_with_warmup,
    uses_bf16,
)

JOB = Path(__file__).with_name("engine_job.py")


def train(out: Path, *args: str, torchrun: int = 0) -> subprocess.CompletedProcess[str]:
    launcher = [sys.executable]
    if torchrun:
        launcher += [
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={torchrun}",
            "--standalone",
        ]
    command = [*launcher, str(JOB), str(out), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def final(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "final.pt", weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("uninterrupted")
    assert train(out).returncode == 0
    return final(out)


def test_warmup_then_cosine_to_floor() -> None:
    lrs = [cosine_with_warmup(s, warmup=4, total=20, min_ratio=0.1) for s in range(21)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in itertools.pairwise(lrs[4:]))
    assert lrs[20] == pytest.approx(0.1)


def test_batches_are_a_function_of_seed_and_step() -> None:
    full = StepBatchSampler(10, 3, rank=0, world=1, seed=4)
    it = iter(full)
    first = [next(it) for _ in range(8)]
    resumed = iter(StepBatchSampler(10, 3, rank=0, world=1, seed=4, start=5))
    assert [next(resumed) for _ in range(3)] == first[5:]
    epoch = [i for batch in first[:3] for i in batch] + first[3][:1]  # 10 positions
    assert sorted(epoch) == list(range(10)), "each epoch is a permutation"


def test_ranks_split_each_global_batch() -> None:
    ranks = [StepBatchSampler(16, 2, rank=r, world=2, seed=0).indices(3) for r in (0, 1)]
    single = StepBatchSampler(16, 4, rank=0, world=1, seed=0).indices(3)
    assert ranks[0] + ranks[1] == single


def test_resume_after_kill_matches_uninterrupted(
    tmp_path: Path, uninterrupted: dict[str, torch.Tensor]
) -> None:
    killed = train(tmp_path, "--kill-at", "12")
    assert killed.returncode == -9
    (fingerprint_dir,) = (tmp_path / "checkpoints").iterdir()
    kept = [p.name for p in checkpoint_paths(fingerprint_dir)]
    assert kept == ["step-00000005.pt", "step-00000010.pt"]  # the last two
    resumed = train(tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "step 10" in resumed.stderr
    result = final(tmp_path)
    assert result.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        assert torch.equal(result[key], value), key


def test_sigterm_checkpoints_then_resumes(
    tmp_path: Path, uninterrupted: dict[str, torch.Tensor]
) -> None:
    stopped = train(tmp_path, "--term-at", "7")
    assert stopped.returncode != 0 and "stopped by SIGTERM at step 8" in stopped.stderr
    (fingerprint_dir,) = (tmp_path / "checkpoints").iterdir()
    assert checkpoint_paths(fingerprint_dir)[-1].name == "step-00000008.pt"
    assert train(tmp_path).returncode == 0
    for key, value in uninterrupted.items():
        assert torch.equal(final(tmp_path)[key], value), key


def test_ctrl_c_checkpoints_says_what_was_kept_then_resumes(
    tmp_path: Path, uninterrupted: dict[str, torch.Tensor]
) -> None:
    stopped = train(tmp_path, "--int-at", "7")
    assert stopped.returncode == 130
    assert "Ctrl-C: finishing this step" in stopped.stderr
    assert "interrupted (Ctrl-C) at step 8 of 20; kept: the checkpoint in" in stopped.stderr
    (fingerprint_dir,) = (tmp_path / "checkpoints").iterdir()
    assert checkpoint_paths(fingerprint_dir)[-1].name == "step-00000008.pt"
    assert train(tmp_path).returncode == 0
    for key, value in uninterrupted.items():
        assert torch.equal(final(tmp_path)[key], value), key


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    stopped = train(tmp_path, "--int-at", "7", "7")  # twice within step 7
    assert stopped.returncode != 0 and "KeyboardInterrupt" in stopped.stderr
    (fingerprint_dir,) = (tmp_path / "checkpoints").iterdir()
    assert checkpoint_paths(fingerprint_dir)[-1].name == "step-00000005.pt"  # the periodic one


def test_nan_stops_with_clear_error_keeping_last_good_checkpoint(tmp_path: Path) -> None:
    result = train(tmp_path, "--nan-at", "7")
    assert result.returncode != 0
    assert "is nan at step 7" in result.stderr and "step-00000005.pt is kept" in result.stderr
    (fingerprint_dir,) = (tmp_path / "checkpoints").iterdir()
    assert [p.name for p in checkpoint_paths(fingerprint_dir)] == ["step-00000005.pt"]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    assert train(tmp_path, "--steps", "5").returncode == 0
    (fingerprint_dir,) = (tmp_path / "checkpoints").iterdir()
    checkpoint = checkpoint_paths(fingerprint_dir)[-1]
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    result = train(tmp_path, "--steps", "10")
    assert result.returncode != 0
    assert "unreadable training checkpoint" in result.stderr and "Delete it" in result.stderr


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path: Path) -> None:
    assert train(tmp_path, "--steps", "5").returncode == 0
    result = train(tmp_path, "--steps", "10", "--width", "32")  # same config, changed code
    assert result.returncode != 0 and "does not match this model" in result.stderr


def test_gradient_accumulation_matches_one_big_batch(
    tmp_path: Path, uninterrupted: dict[str, torch.Tensor]
) -> None:
    assert train(tmp_path, "--accum", "2").returncode == 0
    for key, value in uninterrupted.items():
        torch.testing.assert_close(final(tmp_path)[key], value, rtol=1e-5, atol=1e-6)


def test_ddp_two_cpu_processes_match_one_process(
    tmp_path: Path, uninterrupted: dict[str, torch.Tensor]
) -> None:
    result = train(tmp_path, torchrun=2)
    assert result.returncode == 0, result.stderr[-3000:]
    for key, value in uninterrupted.items():
        torch.testing.assert_close(final(tmp_path)[key], value, rtol=1e-5, atol=1e-6)
    shutil.rmtree(tmp_path / "checkpoints")


def test_compile_wraps_every_module_but_those_that_opt_out(tmp_path: Path) -> None:
    settings = TrainSettings(max_steps=1, batch_size=1, lr=1e-3, device="cpu", compile=True)
    engine = Engine(settings, tmp_path / "checkpoints", config={})
    compiled = engine.prepare("model", torch.nn.Linear(2, 2))
    eager = engine.prepare("discriminator", torch.nn.Linear(2, 2), compile=False)
    assert hasattr(compiled, "_orig_mod")  # torch.compile's wrapper (compiles on first call)
    assert isinstance(eager, torch.nn.Linear)  # R1's double backward needs eager autograd


def test_precision_auto_is_bf16_on_cuda_and_fp32_on_the_cpu_unless_asked() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert uses_bf16(cuda) and not uses_bf16(cuda, "fp32")
    assert not uses_bf16(cpu) and uses_bf16(cpu, "bf16")
    layer = torch.nn.Linear(4, 4)
    with autocast(cpu, "bf16"):
        assert layer(torch.ones(1, 4)).dtype == torch.bfloat16
    with autocast(cpu):
        assert layer(torch.ones(1, 4)).dtype == torch.float32
    assert layer.weight.dtype == torch.float32  # the weights stay fp32: autocast casts copies
