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

This file is the command line; the jobs it hands out live beside it: ``planning.py`` (a
study's runs now, its estimate), ``commands.py`` (the fairseq-train command and its recipe),
``execute.py`` (one run carried out), ``record.py`` (what its JSON records), and
``selection.py`` (the settings chosen from finished runs).
"""
import argparse
import sys
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import List

import glue
import studies
from execute import execute, say
from paths import RESULTS, WORK, result_path, shared_data
from planning import estimate, plan, sensitivity_best, study_families, tuned_lrs, write_references
from tasks import TASKS


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
