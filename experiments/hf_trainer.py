#!/usr/bin/env python
"""Study ``hf_trainer``: one glue-study cell through HuggingFace's Trainer (``ADDropTrainer``)
instead of the fairseq CLI, to show the two front ends agree.

    python experiments/hf_trainer.py [--task mrpc] [--seeds 1,2,3] [--jobs 2]

Each seed runs ``examples/hf_trainer_glue.py`` (FT, then AD-DROP) with the glue study's
settings for the task: its 1000-example subset, whole dev set, 4 epochs, FT's tuned learning
rate (study ``tune``), the paper's Table 11 p, q and layers, batch 16, max length 128, one
thread. Each run's summary goes to ``results/hf_trainer/TASK/METHOD/seedN.json`` in the
layout run.py writes (resumable: a seed whose two JSONs exist is skipped). The report sets them
beside the fairseq CLI's ``glue`` runs of the same cell.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import studies
from paths import RESULTS, WORK
from planning import tuned_lrs
from record import versions
from tasks import TASKS

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "hf_trainer_glue.py"


def command(task: str, seed: int, lr: float, out: Path) -> list:
    p, q = studies.PAPER_PQ[task]
    return [sys.executable, str(EXAMPLE), "--task", task, "--seed", str(seed), "--epochs", str(studies.EPOCHS),
            "--lr", f"{lr:g}", "--train-size", str(studies.TRAIN_SIZE), "--p", str(p), "--q", str(q),
            "--layers", studies.PAPER_LAYERS[task], "--batch-size", str(studies.BATCH), "--max-length", "128",
            "--threads", "1", "--cpu", "--output-dir", str(out)]


def summaries(task: str, seed: int, lr: float, result: dict, cmd: list, cpu_s: float, wall_s: float) -> dict:
    """{method: run JSON} from the example's results.json, in run.py's layout."""
    out = {}
    for r in result["runs"]:
        epochs = [{"epoch": e["epoch"], **{f"valid_{k}": v for k, v in e.items() if k in ("accuracy", "f1", "mcc", "pearson", "spearman", "loss")},
                   **({"train_loss": e["train_loss"]} if e.get("train_loss") is not None else {}),
                   **({"train_addrop_active": e["addrop_active"]} if e.get("addrop_active") is not None else {}),
                   **({"train_addrop_drop_frac": e["addrop_drop_frac"]} if e.get("addrop_drop_frac") is not None else {})}
                  for e in r["epochs"]]
        out[r["method"]] = {
            "study": "hf_trainer", "task": task, "method": r["method"], "seed": seed, "meta": {"front_end": "transformers Trainer"},
            "lr": lr, "epochs_planned": studies.EPOCHS, "batch_size": studies.BATCH, "metric": r["metric"],
            "data": {"train": studies.TRAIN_SIZE, "max_length": 128},
            "command": [a.replace(str(HERE.parent) + "/", "") for a in cmd],
            "versions": versions(), "device": "cpu", "threads": 1, "epochs": epochs,
            "best": {"epoch": r["best_epoch"], "score": r["best"]}, "last": {"epoch": epochs[-1]["epoch"], "score": r["last"]},
            "train_seconds": r["train_seconds"],
        }
    add_cost(out, cpu_s, wall_s)
    return out


def add_cost(runs: dict, cpu_s: float, wall_s: float) -> None:
    """One process trains both methods: its CPU and wall seconds are split between them by their
    training seconds (``cost_split`` says so in each JSON)."""
    total = sum(r["train_seconds"] for r in runs.values()) or 1.0
    for r in runs.values():
        share = r["train_seconds"] / total
        r.update(cpu_s=round(cpu_s * share, 1), wall_s=round(wall_s * share, 1),
                 cost_split=f"one process trained FT and AD-DROP ({cpu_s:.0f} CPU-s, {wall_s:.0f} s wall): split by training seconds")


def run_seed(task: str, seed: int, lr: float, results: Path, work: Path) -> bool:
    paths = {m: results / "hf_trainer" / task / m / f"seed{seed}.json" for m in ("ft", "addrop")}
    if all(p.exists() for p in paths.values()):
        print(f"hf_trainer/{task}/seed{seed}: done, skipped", flush=True)
        return True
    out = work / "hf_trainer" / task / f"seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    cmd = command(task, seed, lr, out)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    print(f"hf_trainer/{task}/seed{seed}: {' '.join(cmd)}", flush=True)
    start = time.time()
    with open(out / "log.txt", "w") as log:
        proc = subprocess.Popen(cmd, cwd=HERE.parent, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        print(f"hf_trainer/{task}/seed{seed}: FAILED; log: {out / 'log.txt'}", flush=True)
        return False
    runs = summaries(task, seed, lr, json.loads((out / "results.json").read_text()), cmd,
                     usage.ru_utime + usage.ru_stime, time.time() - start)
    for m, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(runs[m], indent=1, sort_keys=True) + "\n")
        print(f"hf_trainer/{task}/{m}/seed{seed}: best {runs[m]['metric']} {runs[m]['best']['score']:.2f} -> {path}", flush=True)
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="mrpc", choices=[t for t in TASKS if TASKS[t].family == "glue"])
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--work", type=Path, default=WORK)
    a = p.parse_args(argv)
    lr = tuned_lrs(a.results).get(a.task, studies.DEFAULT_LR)
    seeds = [int(s) for s in a.seeds.split(",")]
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        ok = list(pool.map(lambda s: run_seed(a.task, s, lr, a.results, a.work), seeds))
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
