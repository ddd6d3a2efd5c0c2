"""The step benchmark still runs every criterion it times: a criterion that grows a start-up
check (AttendOut's scoring split) must not silently break the numbers docs/cost.md quotes."""
import subprocess
import sys

import pytest

from conftest import REPO, cli_env

pytestmark = pytest.mark.slow  # starts subprocesses (fairseq/HF CLIs, fresh interpreters)

VARIANTS = ["plain", "addrop_off", "addrop_ga", "attendout", "attn_reg_scores", "attn_reg_layerdrop"]


def test_step_overhead_times_every_criterion_on_a_tiny_model():
    cmd = [sys.executable, str(REPO / "benchmarks" / "step_overhead.py"), "--layers", "1", "--dim", "16",
           "--heads", "2", "--vocab", "40", "--batch", "4", "--length", "6", "--steps", "2", "--warmup", "0",
           "--threads", "1", "--no-memory", "--variants", ",".join(VARIANTS)]
    out = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = {line.split()[0]: line for line in out.stdout.splitlines() if line.split()[:1] and line.split()[0] in VARIANTS}
    assert sorted(rows) == sorted(VARIANTS), out.stdout
