"""One planned run carried out: its fairseq-train subprocess (progress printed per epoch), the
translation test block or the OOD sets scored after training, and its JSON written atomically
once it has finished. The CLI calls ``execute`` from a thread per slot, so printing goes
through ``say``."""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional

import studies
from commands import command, portable, save_dir
from paths import REPO, result_path, shared_data
from record import parse_log, summarise, versions
from tasks import TASKS

_print_lock = threading.Lock()


def say(msg: str) -> None:
    with _print_lock:
        print(msg, flush=True)


def execute(run: studies.Run, args, prepared: dict, model_dir: str, index: int, total: int) -> Optional[dict]:
    if result_path(args.results, run).exists():  # another process finished it meanwhile
        say(f"[{index}/{total}] {run.key}: done meanwhile, skipped")
        return json.loads(result_path(args.results, run).read_text())
    data_bin, sizes = prepared[(run.task, run.train_size, run.dev_size, run.max_length)]
    task = TASKS[run.task]
    checkpoints = save_dir(args, run)
    if checkpoints.exists():  # an interrupted attempt: start over (a run is its whole training)
        shutil.rmtree(checkpoints)
    cmd = command(run, data_bin, sizes, model_dir, args.device, checkpoints)
    log_dir = args.work / "logs" / run.study / run.task / run.method
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"seed{run.seed}.log"
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    start = time.time()
    lines: List[str] = []
    epoch_times: List[float] = []
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            lines.append(line)
            if '"valid_loss"' in line or ('"train_loss"' in line and "--disable-validation" in run.flags):
                epoch_times.append(time.time() - start)
                done = len(epoch_times)
                eta = (time.time() - start) / done * (run.epochs - done)
                rec = parse_log([line])
                score = rec[0].get(f"valid_{TASKS[run.task].metric}") if rec else None
                say(f"[{index}/{total}] {run.key}: epoch {done}/{run.epochs}"
                    + (f", dev {TASKS[run.task].metric} {score:.1f}" if score is not None else "")
                    + f", {time.time() - start:.0f}s, ETA {eta:.0f}s")
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - start
    if proc.returncode != 0:
        say(f"[{index}/{total}] {run.key}: FAILED (exit {proc.returncode}); log: {log_path}\n" + "".join(lines[-15:]))
        return None
    epochs = parse_log(lines)
    scores = summarise(run, epochs)
    if getattr(task, "saves_checkpoints", False):  # translation: the test block, best and last checkpoint
        say(f"[{index}/{total}] {run.key}: translating the test block")
        test = task.evaluate(checkpoints, data_bin, sizes, run.seed, env)
        shutil.rmtree(checkpoints)
        losses = [e for e in epochs if "valid_loss" in e]
        best_epoch = min(losses, key=lambda e: e["valid_loss"])["epoch"] if losses else None
        scores["test"] = test
        scores["best"] = {"epoch": best_epoch, "score": test["best"][task.metric]}
        scores["last"] = {"epoch": epochs[-1]["epoch"] if epochs else None, "score": test["last"][task.metric]}
    if getattr(task, "ood", ()):
        say(f"[{index}/{total}] {run.key}: scoring the best dev checkpoint on {', '.join(o.name for o in task.ood)}")
        ood = score_ood(run, checkpoints / "checkpoint_best.pt", args, env)
        shutil.rmtree(checkpoints)
        if ood is None:
            return None
        scores["ood"] = ood
    updates = max((e.get("train_num_updates", 0) for e in epochs), default=0)
    result = {
        "study": run.study, "task": run.task, "method": run.method, "seed": run.seed, "meta": dict(run.meta),
        "lr": run.lr, "epochs_planned": run.epochs, "batch_size": getattr(task, "batch", studies.BATCH),
        **({"recipe": run.recipe} if run.recipe != "finetune" else {}),
        **({"patience": run.patience} if run.patience is not None else {}),
        "data": {**{k: v for k, v in sizes.items() if k != "test_ref"}, "max_length": run.max_length},
        "command": portable(cmd, model_dir, args.work),
        "versions": versions(), "device": args.device, "threads": args.threads,
        "epochs": epochs, **scores,
        "updates": int(updates),
        "train_wall": sum(e.get("train_train_wall", e.get("train_wall", 0.0)) for e in epochs),
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }
    path = result_path(args.results, run)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    say(f"[{index}/{total}] {run.key}: done in {wall:.0f}s, best {result['metric']} {result['best']['score']} "
        f"(epoch {result['best']['epoch']}) -> {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return result


def score_ood(run: studies.Run, checkpoint: Path, args, env: dict) -> Optional[dict]:
    """``addrop-evaluate`` on each OOD set of the run's task: {set: scores}; None if one fails."""
    out = {}
    data = args.data or shared_data()
    for ood in TASKS[run.task].ood:
        path = args.work / "logs" / run.study / run.task / run.method / f"seed{run.seed}.{ood.name}.json"
        cmd = [sys.executable, "-m", "addrop_fairseq.evaluate", "--checkpoint", str(checkpoint), *ood.evaluate_args(data),
               "--max-length", str(run.max_length), "--output", str(path),
               *(("--limit", str(run.ood_rows)) if run.ood_rows else ()), *(("--cpu",) if args.device == "cpu" else ())]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            say(f"{run.key}: scoring {ood.name} FAILED (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
            return None
        scores = json.loads(path.read_text())
        out[ood.name] = {k: v for k, v in scores.items() if k not in ("checkpoint", "input")}
        out[ood.name]["file"] = ood.path
    return out
