"""benchmarks/step_overhead.py times AD-DROP with fused and with eager pass 2 under autocast."""
import subprocess
import sys

from conftest import REPO, cli_env

import pytest

pytestmark = pytest.mark.slow  # subprocesses, MiniLM or training: the full suite, not the fast lane


def test_step_overhead_eager_and_fused_pass2_in_bf16():
    cmd = [sys.executable, str(REPO / "benchmarks" / "step_overhead.py"), "--layers", "1", "--dim", "16",
           "--heads", "2", "--vocab", "40", "--batch", "4", "--length", "6", "--steps", "2", "--warmup", "0",
           "--threads", "1", "--no-memory", "--dtype", "bf16", "--variants", "plain,MAIN,MAIN_eager"]
    out = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = [line.split()[0] for line in out.stdout.splitlines() if line.split()[:1]]
    assert {"plain", "addrop_ga", "addrop_ga_eager"} <= set(rows), out.stdout
    assert "dtype bf16" in out.stdout
    assert "ga_all_layers_vs_plain = " in out.stdout and "ga_eager_vs_plain = " in out.stdout
