"""`bench/gpu_check.sh --cpu`: the GPU script's dry run on tiny shapes, so that the one short
run a lent GPU gets does not fail on a typo."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_gpu_check_dry_run_prints_every_figure() -> None:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--cpu"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = result.stdout
    for figure in ("training step G+D", "encode (tokenize)", "torch.compile", "sdpa", "batch 8"):
        assert figure in out, figure
    assert out.rstrip().endswith("gpu_check: done")
