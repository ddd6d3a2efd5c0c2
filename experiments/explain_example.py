#!/usr/bin/env python
"""The README's ``addrop-explain`` figure: MiniLM fine-tuned on the glue study's MRPC subset
with AD-DROP (the study's command, two epochs: one plain, one AD-DROP, checkpoint kept), then
``addrop-explain`` on the shortest MRPC dev pair, layer 0, head 0, seed 1.

    python experiments/explain_example.py      # -> experiments/figures/explain_mrpc.png

About 10 CPU-minutes; the checkpoint stays in experiments/work/explain/ (not committed).
"""
import subprocess
import sys
from pathlib import Path

import glue
import studies
from commands import command
from paths import shared_data
from planning import tuned_lrs

HERE = Path(__file__).resolve().parent


def main() -> int:
    work = HERE / "work"
    save = work / "explain" / "mrpc"
    model_dir = glue.minilm_dir()
    data_bin, sizes = glue.prepare(shared_data() / "glue", "mrpc", studies.TRAIN_SIZE, work, None, 128, model_dir)
    lr = tuned_lrs(HERE / "results").get("mrpc", studies.DEFAULT_LR)
    p, q = studies.PAPER_PQ["mrpc"]
    r = studies.Run("explain", "mrpc", "addrop", 1, studies.addrop_flags(p, q, studies.PAPER_LAYERS["mrpc"]),
                    lr=lr, epochs=2)
    cmd = command(r, data_bin, sizes, model_dir, "cpu")
    cmd[cmd.index("--no-save"):cmd.index("--no-save") + 1] = ["--save-dir", str(save), "--no-epoch-checkpoints"]
    if not (save / "checkpoint_last.pt").exists():
        print("$ " + " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=run.REPO, env=dict(__import__("os").environ, OMP_NUM_THREADS="1"))
    dev = glue.read_split(shared_data() / "glue", "mrpc", "dev")
    first = min(dev, key=lambda row: len(row[0].split()) + len(row[1].split()))  # the shortest pair: readable
    out = HERE / "figures" / "explain_mrpc.png"
    explain = [sys.executable, "-m", "addrop_fairseq.explain", "--checkpoint", str(save / "checkpoint_last.pt"),
               "--text", first[0], "--text-pair", first[1], "--layer", "0", "--head", "0", "--seed", "1",
               "--out", str(out)]
    print("$ " + " ".join(explain[1:]), flush=True)
    subprocess.run(explain, check=True, cwd=run.REPO)
    # the figure is committed; its JSON (every dropped position of every layer) stays in work/
    out.with_suffix(".json").replace(save / "explain_mrpc.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
