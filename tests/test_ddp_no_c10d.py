"""Two gloo ranks on CPU with ``--ddp-backend no_c10d`` (issue 33, item 7), beside
test_cli_core's ``legacy_ddp`` run: on CPU fairseq's default ``pytorch_ddp`` passes
``device_ids`` to torch's DistributedDataParallel, which refuses it, so CPU training takes one
of these two. Both ranks train plain in epoch 1 and with AD-DROP in epoch 2, and their
parameters are the same bytes after every update (each rank draws its own masks; the
gradients are all-reduced)."""
import json
import subprocess
import sys

from conftest import REPO, cli_env
from test_cli_core import ADDROP, COMMON, PLUGIN, TINY, enro, epoch_lines, free_port  # noqa: F401

DRIVER = r'''
import hashlib, json, sys
from fairseq_cli.train import cli_main  # first: it sets fairseq's log format before fairseq is imported
import torch
from fairseq import trainer as fairseq_trainer

import pytest

pytestmark = pytest.mark.slow  # subprocesses, MiniLM or training: the full suite, not the fast lane

out, argv = sys.argv[1], sys.argv[2:]
digests = []
train_step = fairseq_trainer.Trainer.train_step

def recorded(self, *args, **kwargs):
    result = train_step(self, *args, **kwargs)
    flat = torch.cat([p.detach().reshape(-1).cpu() for p in self.model.parameters()])
    digests.append(hashlib.sha256(flat.numpy().tobytes()).hexdigest())
    return result

fairseq_trainer.Trainer.train_step = recorded
sys.argv = ["fairseq-train", *argv]
try:
    cli_main()
finally:
    with open(out, "w") as f:
        json.dump(digests, f)
'''


def test_two_process_gloo_no_c10d_keeps_ranks_identical(enro, tmp_path):  # noqa: F811
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    port = free_port()
    procs = []
    for rank in (0, 1):
        args = [
            enro / "bin", "--user-dir", PLUGIN, "--task", "translation", *TINY, *COMMON, *ADDROP,
            "--max-epoch", "2", "--save-dir", tmp_path / "ckpt", "--no-save", "--cpu",
            "--distributed-world-size", "2", "--distributed-rank", str(rank),
            "--distributed-backend", "gloo", "--distributed-init-method", f"tcp://127.0.0.1:{port}",
            "--distributed-no-spawn", "--ddp-backend", "no_c10d", "--device-id", "0",
        ]
        procs.append(subprocess.Popen(
            [sys.executable, str(driver), str(tmp_path / f"rank{rank}.json"), *map(str, args)], cwd=REPO,
            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    logs = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        logs.append(out)
        assert p.returncode == 0, out[-4000:]
    epochs = epoch_lines(logs[0])
    assert epochs[1]["addrop_active"] == 0 and epochs[2]["addrop_active"] == 1
    assert epochs[2]["addrop_drop_frac"] > 0
    assert "training on 2 devices" in logs[0]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == epochs[2]["num_updates"] > 2
    assert ranks[0] == ranks[1]  # the same parameters after every update, AD-DROP's included
    assert len(set(ranks[0])) == len(ranks[0])  # and every update changed them
