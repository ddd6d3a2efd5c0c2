"""Training set-ups through fairseq's CLI that used to crash (issue 8): LayerDrop under
cross-tuning, and activation checkpointing refused before the first update."""
import pytest

from conftest import run_cli
from test_cli_core import ADDROP, COMMON, PLUGIN, TINY, enro, epoch_lines  # noqa: F401  (enro: fixture)

pytestmark = pytest.mark.slow  # starts subprocesses (fairseq/HF CLIs, fresh interpreters)


def test_layerdrop_trains_through_cross_tuning(enro, tmp_path):
    proc = run_cli("fairseq_cli.train", [
        enro / "bin", "--user-dir", PLUGIN, "--task", "translation", *TINY, *COMMON, *ADDROP,
        "--encoder-layerdrop", "0.5", "--decoder-layerdrop", "0.5",
        "--addrop-attention", "encoder-self,decoder-self", "--max-epoch", "2", "--save-dir", tmp_path / "ckpt",
        "--no-save",
    ])
    epochs = epoch_lines(proc.stdout + proc.stderr)
    assert epochs[1]["addrop_active"] == 0 and epochs[2]["addrop_active"] == 1
    # layers skipped in either pass get no mask and are not counted: the rest drop about p*q
    assert 0.05 < epochs[2]["addrop_drop_frac"] < 0.13


def test_checkpoint_activations_is_refused_before_the_first_update(enro, tmp_path):
    proc = run_cli("fairseq_cli.train", [
        enro / "bin", "--user-dir", PLUGIN, "--task", "translation", *TINY, *COMMON, *ADDROP,
        "--checkpoint-activations", "--max-epoch", "2", "--save-dir", tmp_path / "ckpt", "--no-save",
    ], check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "--checkpoint-activations" in out and "addrop_ce" in out
    assert "| train | epoch" not in out and "num_updates" not in out
