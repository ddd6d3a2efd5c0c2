"""What a study runs now: its runs as the finished ones fix them (the settings chosen from earlier
runs read from the results folder), the task families each study runs on, and a run's
estimated CPU cost for --dry-run. The CLI re-plans after every finished run, so a study whose
later runs wait on earlier ones goes on without a restart."""
import json
import math
from pathlib import Path
from typing import Dict, List, Tuple

import glue
import selection
import studies
from tasks import TASKS


def load_study(results: Path, study: str) -> List[dict]:
    """The finished runs of ``study`` (its JSONs), for a study whose later runs depend on them."""
    return [json.loads(path.read_text()) for path in sorted((results / study).glob("*/*/seed*.json"))]


def tuned_lrs(results: Path) -> Dict[str, float]:
    """Per task whose whole grid of study ``tune`` has run, FT's learning rate (``selection.chosen_lr``)."""
    runs = load_study(results, "tune")
    return {t: lr for t in sorted({r["task"] for r in runs}) if (lr := selection.chosen_lr(t, runs)) is not None}


def sensitivity_best(results: Path) -> Dict[str, Tuple[float, float]]:
    """Per task whose cross-tuning grid of study ``sensitivity`` is complete, the (p, q) of its
    best best-epoch dev score (ties: the first in grid order)."""
    cells: Dict[str, Dict[Tuple[float, float], float]] = {}
    for path in sorted((results / "sensitivity").glob("*/cross_*/seed*.json")):
        r = json.loads(path.read_text())
        cells.setdefault(r["task"], {})[(float(r["meta"]["p"]), float(r["meta"]["q"]))] = r["best"]["score"]
    return {t: best for t, by_pq in cells.items() if (best := selection.best_cell(by_pq)) is not None}


def plan(study: str, tasks: List[str], seeds: List[int], lrs: Dict[str, float], args) -> List[studies.Run]:
    """The study's runs as its finished runs fix them now (``confirm``, ``protocol`` and the studies
    at the protocol's choice take later runs' settings from earlier ones, as ``selection``
    chooses them: a run they cannot fix yet has ``waits_for`` set)."""
    if study == "confirm":
        runs = studies.confirm(tasks, seeds, lrs, sensitivity_best(args.results))
    elif study == "protocol":
        done = load_study(args.results, "smoke" if args.smoke else "protocol")
        done = [r for r in done if r.get("recipe") == "reference"]
        runs = studies.protocol(tasks, seeds, lrs, {t: selection.protocol_search(t, done) for t in tasks})
    elif study == "ood":  # the protocol study's choice; a smoke run checks the pipeline with a placeholder
        choice = (studies.DEFAULT_LR, (0.3, 0.3)) if args.smoke else \
            selection.protocol_choice(studies.OOD_CHOICE_FROM, load_study(args.results, "protocol"))
        runs = studies.ood(tasks, seeds, lrs, choice)
    elif study in ("demo", "registered"):  # one task: the protocol study's choice for it (a smoke run: a placeholder)
        choice = (studies.DEFAULT_LR, (0.3, 0.3)) if args.smoke else \
            selection.protocol_choice(tasks[0], load_study(args.protocol_results or args.results, "protocol"))
        runs = studies.STUDIES[study](tasks[:1] if study == "demo" else tasks, seeds, lrs, choice)
    elif study == "dropcheck":  # each task's protocol choice
        done = load_study(args.results, "protocol")
        runs = studies.dropcheck(tasks, seeds, lrs, {t: c for t in tasks if (c := selection.protocol_choice(t, done))})
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


#: the task families a study's methods are written for (every study not named: glue)
STUDY_FAMILIES = {"tune": ("glue", "ner", "mt"), "smoke": ("glue", "ner", "mt"), "regularizers": ("glue", "ner"),
                  "ner": ("ner",), "mt": ("mt",), "ood": ("ood",)}


def study_families(study: str) -> Tuple[str, ...]:
    return STUDY_FAMILIES.get(study, ("glue",))


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
