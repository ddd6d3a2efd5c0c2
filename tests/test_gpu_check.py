"""The prepared GPU check, rehearsed on the CPU at toy size (``--tiny``) so that device minutes
are not spent on bugs: the preparation step's inputs, every part (a)-(d), the JSON it writes,
and no fairseq import on the way (the GPU machine has none)."""
import json
import subprocess
import sys

from conftest import REPO, cli_env

import pytest

pytestmark = pytest.mark.slow  # subprocesses, MiniLM or training: the full suite, not the fast lane


def test_gpu_check_rehearsal_on_cpu(tmp_path, shared_data):
    inputs, out = tmp_path / "inputs", tmp_path / "out"
    prep = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "prepare", "--dest", str(inputs),
                           "--cola", str(shared_data / "glue" / "CoLA")], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=600)
    assert prep.returncode == 0, prep.stderr[-3000:]
    size = sum(f.stat().st_size for f in inputs.rglob("*") if f.is_file())
    assert size < 50 * 2**20  # what the device tool carries beside the working tree (64 MiB in all)
    for script in ("gpu_check.sh", "gpu_prepare.sh"):
        assert subprocess.run(["bash", "-n", str(REPO / "benchmarks" / script)]).returncode == 0

    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "check", "--tiny", "--device",
                           "cpu", "--inputs", str(inputs), "--out", str(out), "--budget", "3000",
                           "--min-pairs-time", "0"], cwd=REPO, env=cli_env(OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "check.json").read_text())
    assert report["fairseq_imported"] is False
    a = report["a_cost"]
    assert set(a["ratio"]) == {"plain", "addrop_fused", "addrop_eager"} and a["dtype"] == "bf16"
    assert a["finite_losses"] and all(a["median_ms"][v] > 0 for v in a["ratio"])
    assert report["b_masks"]["masks_equal"] is True and report["b_masks"]["compared"] > 0
    c = report["c_finite"]
    assert c["updates"] == 2 and c["finite_losses_and_grad_norms"] and c["finite_parameters"]
    assert c["addrop_active"] == [1.0, 1.0] and c["addrop_drop_frac_mean"] > 0
    cola = json.loads((out / "cola_full.json").read_text())
    assert cola["label"] == "GPU, full data" and cola["settings"]["max_length"] == 47
    (pair,) = cola["pairs"]
    assert pair["complete"] and pair["ft"] is not None and pair["addrop"] is not None
    runs = {r["method"]: r for r in cola["runs"]}
    assert runs["ft"]["epochs_evaluated"] == runs["addrop"]["epochs_evaluated"] == 2
    assert runs["ft"]["train_rows"] == 16 and runs["ft"]["exit"] == 0
    # cross-tuning: epoch 1 plain, epoch 2 AD-DROP; FT never
    assert runs["addrop"]["addrop_active"] == [0.0, 1.0] and runs["ft"]["addrop_active"] == [0.0, 0.0]
    assert "summary: fused" in proc.stdout
