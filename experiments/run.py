#!/usr/bin/env python
"""Run a named study through the real CLI, one small JSON per run; resumable.

    python experiments/run.py tune  --tasks rte,mrpc,cola,stsb,sst2 --jobs 2   # FT's learning rate
    python experiments/run.py glue  --tasks rte,mrpc,cola,stsb,sst2 --seeds 1,2,3 --jobs 2
    python experiments/run.py prior --seeds 1,2,3 --jobs 2
    python experiments/run.py cost  --jobs 1
    python experiments/run.py epochs|epochs_confirm|regularizers|ner|mt|ablation|sensitivity --seeds 1,2,3 --jobs 2
    python experiments/run.py confirm --jobs 2        # sensitivity's best cell vs FT on fresh seeds 4-8
    python experiments/run.py glue --dry-run                # the plan and its CPU-time estimate
    python experiments/run.py --smoke                       # what the test suite runs
    python experiments/run.py regularizers --smoke --tasks ner   # a study's pipeline at smoke size, in minutes
    python experiments/report.py                            # RESULTS.md and figures from the JSONs

Every run is ``fairseq-train --user-dir addrop_fairseq ... --log-format json`` (the command a
user types): real MiniLM weights on GLUE and CoNLL-2003, small from-scratch models on CoNLL-2003
and the WMT16 newsdev slices, all from ``../shared/data`` (``tasks.py`` lists the tasks). Its summary goes to
``experiments/results/<study>/<task>/<method>/seed<N>.json``: the exact command, versions and
git commit, per-epoch train loss, dev loss and dev metrics, best and last epoch, train_wall,
updates, peak memory. A run whose JSON exists is skipped, so a study resumes where it
stopped, across sessions and machines. Binarized data and logs go to ``experiments/work/``
(not committed); nothing is checkpointed (``--no-save``).
"""
import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import glue
import studies
from tasks import TASKS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

RESULTS = HERE / "results"
WORK = HERE / "work"
_print_lock = threading.Lock()


def say(msg: str) -> None:
    with _print_lock:
        print(msg, flush=True)


def shared_data() -> Path:
    return Path(os.environ.get("ADDROP_SHARED_DATA", REPO.parent / "shared" / "data"))


def result_path(results: Path, run: studies.Run) -> Path:
    return results / f"{run.key}.json"


def write_references(results: Path, data: Path, tasks: List[str]) -> None:
    """``results/reference/TASK.json``: the majority-class score of each GLUE task at the
    studies' training subset (the report's floor line); written once, when the data is here."""
    for task in tasks:
        path = results / "reference" / f"{task}.json"
        if task not in glue.TASKS or path.exists() or not (data / "glue").is_dir():
            continue
        ref = glue.majority_reference(data / "glue", task, studies.TRAIN_SIZE)
        if ref is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")


def tuned_lrs(results: Path) -> Dict[str, float]:
    """Per task whose whole grid of study ``tune`` has run, FT's learning rate (``studies.chosen_lr``)."""
    runs = [json.loads(path.read_text()) for path in sorted((results / "tune").glob("*/*/seed*.json"))]
    return {t: lr for t in sorted({r["task"] for r in runs}) if (lr := studies.chosen_lr(t, runs)) is not None}


def sensitivity_best(results: Path) -> Dict[str, Tuple[float, float]]:
    """Per task whose cross-tuning grid of study ``sensitivity`` is complete, the (p, q) of its
    best best-epoch dev score (ties: the first in grid order)."""
    cells: Dict[str, Dict[Tuple[float, float], float]] = {}
    for path in sorted((results / "sensitivity").glob("*/cross_*/seed*.json")):
        r = json.loads(path.read_text())
        cells.setdefault(r["task"], {})[(float(r["meta"]["p"]), float(r["meta"]["q"]))] = r["best"]["score"]
    return {t: best for t, by_pq in cells.items() if (best := studies.best_cell(by_pq)) is not None}


def updates_per_epoch(run: studies.Run, sizes: dict) -> int:
    return math.ceil(sizes["train"] / studies.BATCH)


def finetune_recipe(lr: float, total_updates: int, batch: int, epochs: int) -> Tuple[str, ...]:
    """Our fine-tuning recipe (GLUE, NER), fairseq's RoBERTa GLUE one: Adam (0.9, 0.98), eps
    1e-6, weight decay 0.01, linear warm-up over 6% of the updates then linear decay, ``batch``
    examples (studies.py's docstring says where each setting comes from)."""
    return ("--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-06", "--weight-decay", "0.01",
            "--lr", f"{lr:g}", "--lr-scheduler", "polynomial_decay", "--total-num-update", str(total_updates),
            "--warmup-updates", str(max(1, int(0.06 * total_updates))),
            "--batch-size", str(batch), "--required-batch-size-multiple", "1", "--max-epoch", str(epochs))


def reference_recipe(lr: float, total_updates: int, batch: int, epochs: int) -> Tuple[str, ...]:
    """The authors' code's recipe: AdamW (fairseq's adam decouples weight decay) (0.9, 0.999), eps
    1e-6, weight decay 0.01, a constant learning rate, no warm-up, ``batch`` examples."""
    return ("--optimizer", "adam", "--adam-betas", "(0.9, 0.999)", "--adam-eps", "1e-06", "--weight-decay", "0.01",
            "--lr", f"{lr:g}", "--lr-scheduler", "fixed", "--warmup-updates", "0",
            "--batch-size", str(batch), "--required-batch-size-multiple", "1", "--max-epoch", str(epochs))


RECIPES = {"finetune": finetune_recipe, "reference": reference_recipe}
assert set(RECIPES) == set(studies.RECIPES)


def save_dir(args, run: studies.Run) -> Path:
    return args.work / "checkpoints" / run.key


def command(run: studies.Run, data_bin: Path, sizes: dict, model_dir: str, device: str,
            checkpoints: Optional[Path] = None) -> List[str]:
    """fairseq-train for ``run``; a task that evaluates checkpoints after training (translation)
    saves its best (dev loss) and last ones in ``checkpoints``, the others save nothing and pick
    the best epoch by their dev metric."""
    task = TASKS[run.task]
    flags = list(run.flags)
    total = updates_per_epoch(run, sizes) * run.epochs
    if "--max-update" in flags:
        total = int(flags[flags.index("--max-update") + 1])
    recipe = getattr(task, "recipe", RECIPES[run.recipe])
    cmd = [
        "fairseq-train", str(data_bin), "--user-dir", str(REPO / "addrop_fairseq"), *task.fairseq_args(model_dir),
        *recipe(run.lr, total, studies.BATCH, run.epochs),
        "--seed", str(run.seed), "--log-format", "json", "--log-interval", "1000", "--num-workers", "0",
    ]
    if getattr(task, "saves_checkpoints", False):
        cmd += ["--save-dir", str(checkpoints), "--no-epoch-checkpoints"]
    elif getattr(task, "ood", ()):  # the best dev checkpoint only, for the OOD sets after training
        cmd += ["--save-dir", str(checkpoints), "--no-epoch-checkpoints", "--no-last-checkpoints",
                "--no-save-optimizer-state", "--best-checkpoint-metric", task.metric, "--maximize-best-checkpoint-metric"]
    else:
        cmd += ["--no-save"]
        if "--disable-validation" not in flags:
            cmd += ["--best-checkpoint-metric", task.metric, "--maximize-best-checkpoint-metric"]
    if run.patience is not None:  # fairseq's own early stopping, on the best-checkpoint metric
        cmd += ["--patience", str(run.patience)]
    if device == "cpu":
        cmd += ["--cpu"]
    return cmd + flags


def portable(cmd: List[str], model_dir: str, work: Path) -> List[str]:
    """The command with machine paths replaced by placeholders (it is committed)."""
    out = []
    for a in cmd:
        a = a.replace(str(REPO / "addrop_fairseq"), "addrop_fairseq").replace(model_dir, "$MINILM")
        out.append(a.replace(str(work), "$WORK"))
    return out


def parse_log(lines: List[str]) -> List[dict]:
    """Per-epoch records from fairseq's ``--log-format json`` output."""
    epochs: Dict[int, dict] = {}
    for line in lines:
        i = line.find('{"epoch"')
        if i < 0:
            continue
        try:
            stats = json.loads(line[i:])
        except json.JSONDecodeError:
            continue
        keys = list(stats)
        if not any(k.startswith(("train_", "valid_")) for k in keys) or any(k.startswith("train_inner") for k in keys):
            continue
        rec = epochs.setdefault(int(stats["epoch"]), {"epoch": int(stats["epoch"])})
        for k, v in stats.items():
            if k.startswith(("train_", "valid_")) and not isinstance(v, (list, dict)):
                try:
                    rec[k] = float(v)
                except (TypeError, ValueError):
                    rec[k] = v
    return [epochs[e] for e in sorted(epochs)]


def machine() -> str:
    """The hardware a run's timings belong to: CPU model, cores, memory."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        mem = ""
    return f"{model}, {os.cpu_count()} cores{mem}"


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "machine": machine()}
    for name in ("torch", "fairseq-fixed", "transformers"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "addrop_fairseq"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip() != ""
        out["git_commit"] = commit + ("+dirty" if dirty else "")
    except OSError:
        out["git_commit"] = None
    return out


def summarise(run: studies.Run, epochs: List[dict]) -> dict:
    metric = TASKS[run.task].metric
    key = f"valid_{metric}"
    scored = [e for e in epochs if key in e]
    out = {"metric": metric}
    if scored:
        best = max(scored, key=lambda e: e[key])
        out["best"] = {"epoch": best["epoch"], "score": best[key]}
        out["last"] = {"epoch": scored[-1]["epoch"], "score": scored[-1][key]}
    else:
        out["best"] = out["last"] = {"epoch": None, "score": None}
    return out


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


def estimate(run: studies.Run) -> float:
    """Rough CPU seconds of a run (dry-run plan): updates x seconds per update x method cost + dev passes."""
    n = run.train_size or getattr(TASKS[run.task], "train_total", 1000)
    updates = math.ceil(n / studies.BATCH) * run.expected_epochs
    flags = list(run.flags)
    if "--max-update" in flags:
        updates = int(flags[flags.index("--max-update") + 1])
    # Table 11's lengths cut few examples (no cheaper updates); shorter caps (smoke) do
    cap = studies.TABLE11_MAX_LENGTH.get(run.task, 128)
    sec = TASKS[run.task].sec_per_update * (1.0 if run.max_length >= cap else run.max_length / 128)
    dev = 0 if "--disable-validation" in flags else run.expected_epochs * 300 * sec / 3 / studies.BATCH
    ood_rows = sum(run.ood_rows or OOD_ROWS.get(o.name, 0) for o in getattr(TASKS[run.task], "ood", ()))
    return updates * sec * run.cost + dev + ood_rows * sec / 3 / studies.BATCH


OOD_ROWS = {"hans": 30000, "paws": 8000}  # for the estimate


#: the task families a study's methods are written for (every study not named: glue)
STUDY_FAMILIES = {"tune": ("glue", "ner", "mt"), "smoke": ("glue", "ner", "mt"), "regularizers": ("glue", "ner"),
                  "ner": ("ner",), "mt": ("mt",), "ood": ("ood",)}


def study_families(study: str) -> Tuple[str, ...]:
    return STUDY_FAMILIES.get(study, ("glue",))


def positive(text: str) -> int:
    """--jobs, --threads: a whole number >= 1 (a usage error otherwise, not a traceback)."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def seed_list(text: str) -> List[int]:
    """--seeds: comma-separated whole numbers."""
    items = [s.strip() for s in text.split(",")]
    if not all(s.isdigit() for s in items):
        raise argparse.ArgumentTypeError(f"comma-separated whole numbers (e.g. 1,2,3), got {text!r}")
    return [int(s) for s in items]


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("study", nargs="?", choices=sorted(studies.STUDIES))
    p.add_argument("--tasks", default=None, help="comma-separated GLUE tasks (default: the study's)")
    p.add_argument("--seeds", type=seed_list, default=None, help="comma-separated (default 1,2,3; confirm: 4,5,6,7,8)")
    p.add_argument("--jobs", type=positive, default=1, help="runs at a time")
    p.add_argument("--threads", type=positive, default=1, help="torch threads per run")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--dry-run", action="store_true", help="print the plan and its CPU-time estimate")
    p.add_argument("--smoke", action="store_true", help="the smoke study (one task, one seed, a few updates); "
                   "with a study: that study's runs at smoke size, recorded as study smoke")
    p.add_argument("--only", default=None, help="comma-separated methods to run (default: all of the study's)")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--protocol-results", type=Path, default=None,
                   help="demo: where the protocol study's results are (default: --results)")
    p.add_argument("--work", type=Path, default=WORK)
    p.add_argument("--data", type=Path, default=None, help="folder with glue/ (default ../shared/data)")
    return p


def load_study(results: Path, study: str) -> List[dict]:
    """The finished runs of ``study`` (its JSONs), for a study whose later runs depend on them."""
    return [json.loads(path.read_text()) for path in sorted((results / study).glob("*/*/seed*.json"))]


def plan(study: str, tasks: List[str], seeds: List[int], lrs: Dict[str, float], args) -> List[studies.Run]:
    """The study's runs as its finished runs fix them now (``confirm`` and ``protocol`` choose
    later runs' settings from earlier ones: a run they cannot fix yet has ``waits_for`` set)."""
    if study == "confirm":
        runs = studies.confirm(tasks, seeds, lrs, sensitivity_best(args.results))
    elif study == "protocol":
        done = load_study(args.results, "smoke" if args.smoke else "protocol")
        runs = studies.protocol(tasks, seeds, lrs, [r for r in done if r.get("recipe") == "reference"])
    elif study == "ood":  # the protocol study's choice; a smoke run checks the pipeline with a placeholder
        choice = (studies.DEFAULT_LR, (0.3, 0.3)) if args.smoke else \
            studies.protocol_choice(studies.OOD_CHOICE_FROM, load_study(args.results, "protocol"))
        runs = studies.ood(tasks, seeds, lrs, choice)
    elif study in ("demo", "registered"):  # one task: the protocol study's choice for it (a smoke run: a placeholder)
        choice = (studies.DEFAULT_LR, (0.3, 0.3)) if args.smoke else \
            studies.protocol_choice(tasks[0], load_study(args.protocol_results or args.results, "protocol"))
        runs = studies.STUDIES[study](tasks[:1] if study == "demo" else tasks, seeds, lrs, choice)
    elif study == "dropcheck":  # each task's protocol choice
        done = load_study(args.results, "protocol")
        runs = studies.dropcheck(tasks, seeds, lrs, {t: c for t in tasks if (c := studies.protocol_choice(t, done))})
    else:
        runs = studies.STUDIES[study](tasks, seeds, lrs)
    if args.smoke and study != "smoke":
        runs = studies.smoke_sized(runs)
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - {r.method for r in runs})
        if unknown:
            raise ValueError(f"--only: {unknown} are not methods of study {study} "
                             f"(its methods: {', '.join(sorted({r.method for r in runs}))})")
        runs = [r for r in runs if r.method in wanted]
    return runs


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    study = args.study or ("smoke" if args.smoke else None)
    if study is None:
        build_parser().error("name a study or pass --smoke")
    tasks = args.tasks.split(",") if args.tasks else studies.DEFAULT_TASKS[study]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        build_parser().error(f"unknown task(s) {unknown}; known: {sorted(TASKS)}")
    families = study_families(study)
    foreign = [t for t in tasks if TASKS[t].family not in families]
    if foreign:
        fits = sorted(t for t in TASKS if TASKS[t].family in families)
        build_parser().error(f"study {study} does not run task(s) {foreign}; its tasks: {', '.join(fits)}")
    seeds = args.seeds if args.seeds else list(studies.DEFAULT_SEEDS.get(study, (1, 2, 3)))
    lrs = tuned_lrs(args.results)
    if study not in ("tune", "smoke", "protocol", "ood", "demo", "registered", "dropcheck"):  # protocol searches its rate; ood, demo use its choice
        untuned = sorted({t for t in tasks if t not in lrs} | ({"mrpc"} - set(lrs) if study != "glue" else set()))
        if untuned:
            say(f"note: {untuned} not tuned yet (the whole lr grid of study tune): the study's default learning "
                "rate (run `python experiments/run.py tune` first)")
    if study == "epochs_confirm" and set(seeds) & {1, 2, 3}:
        build_parser().error("epochs_confirm: seeds 1-3 are the epochs study's; judge it on fresh ones")
    if study == "confirm":
        if 1 in seeds:
            build_parser().error("confirm: seed 1 chose the sensitivity cell; judge it on other seeds")
        waiting = [t for t in tasks if t not in sensitivity_best(args.results)]
        if waiting:
            say(f"note: {waiting}: the sensitivity grid (with cross-tuning) is not complete: nothing to confirm yet")
    try:
        runs = plan(study, tasks, seeds, lrs, args)
    except ValueError as e:
        build_parser().error(str(e))
    todo = [r for r in runs if not result_path(args.results, r).exists()]
    waiting = [r for r in todo if r.waits_for]
    write_references(args.results, args.data or shared_data(), tasks)
    est = sum(estimate(r) for r in todo)
    say(f"study {study}: {len(runs)} runs, {len(runs) - len(todo)} done, {len(todo)} to run"
        + (f" ({len(waiting)} of them wait for settings earlier runs choose)" if waiting else "")
        + f"; estimated {est / 3600:.1f} CPU-hours ({est / 3600 / max(1, args.jobs):.1f} h wall at --jobs {args.jobs})")
    if args.dry_run:
        for r in todo:
            say(f"  {r.key:<40} lr {r.lr:g}  {r.epochs} ep  train {r.train_size}  len {r.max_length}  "
                f"~{estimate(r) / 60:.0f} min  " + (f"(waits for {r.waits_for}) " if r.waits_for else "")
                + " ".join(r.flags))
        return 0
    if not todo:
        return 0
    data = args.data or shared_data()
    model_dir = glue.minilm_dir()
    prepared: dict = {}

    def prepare(run: studies.Run) -> None:
        key = (run.task, run.train_size, run.dev_size, run.max_length)
        if key in prepared:
            return
        task, n_train, n_dev, max_len = key
        say(f"data: {task} train {n_train or 'all'} dev {n_dev or 'all'} (max length {max_len})")
        prepared[key] = TASKS[task].prepare(data, task, n_train, args.work, n_dev, max_len, model_dir)
        if any("attendout" in r.flags for r in todo if r.task == task):  # its scoring split, not the dev set
            if not hasattr(TASKS[task], "prepare_heldout"):
                build_parser().error(f"{task}: AttendOut needs a held-out split, which this task does not make")
            n = TASKS[task].prepare_heldout(data, task, n_train, prepared[key][0], max_len, model_dir)
            say(f"data: {task} held-out split 'test' ({n} training rows outside the subset) for AttendOut")

    # A free slot takes the first runnable run in plan order, re-planned after every finished
    # run: a study whose later runs wait on earlier ones (protocol) goes on without a restart,
    # and its first task's next phase goes before the next task's search.
    failed, started = [], set()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        running: dict = {}
        while True:
            pending = [r for r in plan(study, tasks, seeds, lrs, args)
                       if r.key not in started and not result_path(args.results, r).exists()]
            ready = [r for r in pending if not r.waits_for]
            while ready and len(running) < args.jobs:
                r = ready.pop(0)
                prepare(r)
                started.add(r.key)
                total = len(started) + sum(x.key not in started for x in pending)  # runs of this call, as planned now
                running[pool.submit(execute, r, args, prepared, model_dir, len(started), total)] = r
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                if f.result() is None:
                    failed.append(running[f].key)
                del running[f]
    left = [r for r in plan(study, tasks, seeds, lrs, args) if not result_path(args.results, r).exists()]
    say(f"study {study}: {len(started) - len(failed)} runs done, {len(failed)} failed"
        + (f"; {len(left)} not run: their settings wait for runs that failed or that --only left out" if left else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
