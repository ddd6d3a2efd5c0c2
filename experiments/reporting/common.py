"""What several sections share: method names and task order, the paired differences every
verdict is taken on, the per-task x method comparison table, learning curves, and the
``Section`` / ``Figure`` records a section returns."""
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import studies
from stats import MIN_SEEDS_FOR_VERDICT, beside_paper, fmt, judged, mean_std, over_seeds, p_text, verdict
from tasks import TASKS

from . import figures as plots
from .names import GLUE_ORDER, METHOD_NAMES, SHORT_NAMES, TASK_ORDER  # noqa: F401  (sections import them from here)



@dataclass
class Figure:
    """A PNG a section shows: ``draw(path)`` writes it (``main`` calls it under figures/)."""

    name: str
    draw: Callable[[Path], None]


@dataclass
class Section:
    """What a section's ``build`` returns: its RESULTS.md lines and figures; each section's
    subclass adds the rows and verdicts it computed, as data, for the README writer."""

    lines: List[str] = field(default_factory=list)
    figures: List[Figure] = field(default_factory=list)


FAIRSEQ_RDROP = "label_smoothed_cross_entropy_with_rdrop"


def dev_losses(run: dict) -> List[float]:
    """The dev loss after each epoch, on one scale for every criterion. fairseq's
    ``label_smoothed_cross_entropy_with_rdrop`` duplicates the batch in validation too and sums
    both copies' losses over one copy's tokens (its KL term is 0 there: no dropout in eval), so
    it logs twice the loss the other criteria log; halved here."""
    half = FAIRSEQ_RDROP in run.get("command", ())
    return [e["valid_loss"] / 2 if half else e["valid_loss"] for e in run["epochs"] if "valid_loss" in e]


def by(runs, *keys):
    out = defaultdict(list)
    for r in runs:
        out[tuple(r[k] for k in keys)].append(r)
    return out


def r_key(r: dict) -> str:
    return f"{r['study']}/{r['task']}/{r['method']}/seed{r['seed']}"


def header(runs: List[dict]) -> List[str]:
    if not runs:
        return []
    v = runs[0]["versions"]
    devices = sorted({f"{r['device']} ({r['threads']} thread{'s' if r['threads'] > 1 else ''} per run)" for r in runs})
    cpu_h = sum(r["cpu_s"] for r in runs) / 3600
    machines = defaultdict(int)
    for r in runs:
        machines[r["versions"].get("machine")] += 1
    recorded = [f"{m} ({n} run{'s' if n > 1 else ''})" for m, n in sorted((m, n) for m, n in machines.items() if m)]
    hardware = "; ".join(recorded + ([f"not recorded for {machines[None]} runs (made before run.py recorded it)"]
                                     if machines.get(None) else []))
    commits = {r["versions"].get("git_commit") or "?" for r in runs}
    dirty = sorted(r_key(r) for r in runs if (r["versions"].get("git_commit") or "").endswith("+dirty"))
    return [
        f"Runs: {len(runs)}, {cpu_h:.1f} CPU-hours in all; device {', '.join(devices)}; hardware: {hardware}; "
        f"python {v['python']}, torch {v['torch']}, fairseq-fixed {v['fairseq-fixed']}, "
        f"transformers {v['transformers']}; code at {len(commits)} commit{'s' if len(commits) > 1 else ''} "
        "(each run's JSON names its own)" + (f", {len(dirty)} run{'s' if len(dirty) > 1 else ''} from a tree with "
                                            f"uncommitted changes to `addrop_fairseq/` ({', '.join(dirty)})" if dirty else "") + ".",
        "",
    ]


def paired_diffs(runs: List[dict], ft_by_seed: Dict[int, dict]) -> List[float]:
    """Best-epoch dev score minus FT's, same seed (seeds FT has not run are left out)."""
    return [r["best"]["score"] - ft_by_seed[r["seed"]]["best"]["score"] for r in runs if r["seed"] in ft_by_seed]


def score_in(run: dict, key: str) -> Optional[float]:
    """``run``'s score in metric ``key`` at its best epoch (or its test block's best checkpoint):
    the paper's metric where it differs from the study's (MRPC: accuracy; translation: BLEU)."""
    if run["metric"] == key:
        return run["best"]["score"]
    test = run.get("test") or {}
    if key in test.get("best", {}):
        return test["best"][key]
    for e in run.get("epochs", []):
        if e["epoch"] == run["best"]["epoch"] and f"valid_{key}" in e:
            return e[f"valid_{key}"]
    return None


def floor_in(reference: Optional[dict], key: str) -> Optional[float]:
    """The majority-class floor (``results/reference/TASK.json``) in metric ``key``, where known."""
    if not reference:
        return None
    if reference["metric"] == key:
        return reference["score"]
    if key == "accuracy":
        return 100.0 * reference["dev_counts"][reference["label"]] / reference["dev_size"]
    return None


def paper_clause(task: str, runs: List[dict], ft_by_seed: Dict[int, dict], reference: Optional[dict] = None) -> str:
    """The paper's gain for ``task`` beside AD-DROP's paired verdict (``stats.beside_paper``),
    in the paper's metric where ours differs, with the regime (FT's level, the paper's FT, the
    floor from ``reference``); '' where the paper reports none."""
    from paper import paper_gain

    g = paper_gain(task)
    if g is None or not runs:
        return ""
    pairs = [(r, ft_by_seed[r["seed"]]) for r in runs if r["seed"] in ft_by_seed]
    diffs = [r["best"]["score"] - f["best"]["score"] for r, f in pairs]
    alt = [score_in(r, g.key) - score_in(f, g.key) for r, f in pairs
           if score_in(r, g.key) is not None and score_in(f, g.key) is not None]
    ft = [score_in(f, g.key) for f in ft_by_seed.values()]
    return beside_paper(task, runs[0]["metric"], diffs, alt if len(alt) == len(pairs) else None,
                        ft if None not in ft else None, floor_in(reference, g.key))


def ahead(diffs: List[float]) -> str:
    return f"ahead on {sum(d > 0 for d in diffs)} of {len(diffs)} seeds"


def sizes_line(runs: List[dict]) -> str:
    sizes = {r["task"]: r["data"] for r in runs}
    return "; ".join(f"{TASKS[t].name} {sizes[t]['train']}/{sizes[t]['dev']}"
                     + ("" if sizes[t]["dev"] == sizes[t]["dev_total"] else f" (of {sizes[t]['dev_total']})")
                     for t in TASK_ORDER if t in sizes)


def seconds_per_update(rs: List[dict]) -> float:
    return statistics.mean(r["train_wall"] / max(1, r["updates"]) for r in rs)


def cost_ratio(rs: List[dict], ft_runs: List[dict]) -> str:
    """Seconds per update of ``rs`` over FT's, as a table cell."""
    return fmt(seconds_per_update(rs) / seconds_per_update(ft_runs), 2) if rs and ft_runs else "–"


# ---------------------------------------------------------------------------- the comparison table


@dataclass
class Row:
    """One (task, method) of a comparison: its runs by seed and, for a method other than FT, the
    paired differences of its score to FT's (same seed)."""

    runs: List[dict]
    diffs: Optional[List[float]]  # None for FT itself

    @property
    def metric(self) -> str:
        return self.runs[0]["metric"]

    def last_dev_losses(self) -> List[float]:
        return [dev_losses(r)[-1] for r in self.runs]


@dataclass
class Comparison:
    """Per task and method (TASK_ORDER x METHOD_NAMES order): the runs and their paired
    differences to FT, with the table, the sentences and the figure RESULTS.md shows."""

    rows: Dict[Tuple[str, str], Row]
    lines: List[str]
    figure: Optional[Figure]

    def diffs(self, task: str, method: str) -> List[float]:
        row = self.rows.get((task, method))
        return (row.diffs or []) if row else []

    def ft(self, task: str) -> Optional[Row]:
        return self.rows.get((task, "ft"))

    @property
    def tested(self) -> int:
        """How many of its comparisons carry a verdict (enough seeds for the test)."""
        return sum(len(r.diffs) >= MIN_SEEDS_FOR_VERDICT for r in self.rows.values() if r.diffs)


def comparison(runs: List[dict], rel: str, figure: str, score: str = "best-epoch dev score",
               references: Optional[Dict[str, dict]] = None) -> Comparison:
    """Per task and method: seeds, best- and last-epoch ``score``, the paired differences to
    FT and their verdict; one sentence per method; the paired-differences figure."""
    lines = ["| task (metric) | method | seeds | best epoch | last epoch | dev loss, last epoch | paired Δ best vs FT | "
             "per-seed Δ | verdict | cost ×FT |", "|---|---|---|---|---|---|---|---|---|---|"]
    groups = by(runs, "task", "method")
    rows: Dict[Tuple[str, str], Row] = {}
    sentences = []
    plot = {}
    for task in TASK_ORDER:
        ft = {r["seed"]: r for r in groups.get((task, "ft"), [])}
        for method in METHOD_NAMES:
            rs = sorted(groups.get((task, method), []), key=lambda r: r["seed"])
            if not rs:
                continue
            best = [r["best"]["score"] for r in rs]
            last = [r["last"]["score"] for r in rs]
            cost = cost_ratio(rs, list(ft.values()))
            if method == "ft":
                diffs = None
                diff_txt = seeds_txt = judge = ""
            else:
                diffs = paired_diffs(rs, ft)
                plot[(task, method)] = diffs
                diff_txt = mean_std(diffs) if diffs else "–"
                seeds_txt = ", ".join(f"{d:+.1f}" for d in diffs)
                judge = judged(diffs)
                if diffs:
                    paper = paper_clause(task, rs, ft, (references or {}).get(task)) if method == "addrop" else ""
                    sentences.append(f"- {TASKS[task].name}, {METHOD_NAMES[method]}: {judged(diffs)}, "
                                     f"paired Δ {diff_txt} {over_seeds(len(diffs))}" + (f"; {paper}" if paper else "") + ".")
            rows[(task, method)] = Row(rs, diffs)
            lines.append(f"| {TASKS[task].name} ({rs[0]['metric']}) | {METHOD_NAMES[method]} | {len(rs)} | "
                         f"{mean_std(best)} | {mean_std(last)} | {mean_std([dev_losses(r)[-1] for r in rs], 3)} | "
                         f"{diff_txt} | {seeds_txt} | {judge} | {cost} |")
    other_studies = sorted({r["study"] for r in runs if r["method"] != "ft"} - {r["study"] for r in runs if r["method"] == "ft"})
    lines += ["", "Cost ×FT: seconds per update relative to FT's runs on the same task (these runs shared the CPU "
              "two at a time: indicative; the cost study and benchmarks/ are the clean measurements)."
              + (f" The rows of the {', '.join(f'`{s}`' for s in other_studies)} study ran in other sessions than FT's (another "
                 "machine or load): their ratio mixes the two, so below 1 means a faster session, not a cheaper "
                 "method; benchmarks/step_overhead.py times them side by side." if other_studies else "")
              + (" Dev loss: fairseq's R-Drop criterion logs twice the cross-entropy in validation (it scores "
                 "the batch and its duplicate); its column is halved to the other rows' scale."
                 if any(FAIRSEQ_RDROP in r.get("command", ()) for r in runs) else ""),
              "", f"What the data say (paired differences of the {score}, same seed; the verdict, from three seeds "
                                     "on, is a two-sided paired t-test at 5%, so three seeds need a mean above 4.3 standard errors):", ""] + sentences + [""]
    result = Comparison(rows, lines, None)
    tested = result.tested
    if tested > 1:
        lines += [f"{tested} comparisons at 5% each: about {0.05 * tested:.1f} \"helps\" or \"hurts\" would appear by chance "
                  "alone where no method differs from FT; a lone verdict with a small effect deserves that doubt.", ""]
    if plot:
        result.figure = Figure(figure, partial(plots.plot_paired, plot, score=score))
        lines += [f"![paired differences to FT]({rel}/{figure})", ""]
    return result


def learning_curves(runs: List[dict], rel: str, name: str) -> Tuple[List[str], Optional[Figure]]:
    """Per task: dev score and train loss per epoch for every method (mean over seeds, band =
    min to max), and one computed sentence on FT's regime: is it still improving when training
    stops, and is its dev loss already rising (the overfitting a regularizer is meant to curb)?"""
    if not any(r["task"] in TASK_ORDER for r in runs):
        return [], None
    figure = Figure(name, partial(plots.plot_curves, runs))
    ft = [r for r in runs if r["method"] == "ft"]
    lines = []
    if ft:
        at_end = sum(r["best"]["epoch"] == len(r["epochs"]) for r in ft)
        rising = sum(r["epochs"][-1]["valid_loss"] > min(e["valid_loss"] for e in r["epochs"]) for r in ft)
        lines = [f"FT's regime: its best dev score is at the last epoch in {at_end} of {len(ft)} runs (still "
                 f"improving when training stops), and its dev loss at the last epoch is above its minimum in "
                 f"{rising} of {len(ft)} runs (overfitting in the loss).", ""]
    return lines + [f"![dev score and train loss per epoch]({rel}/{name})", ""], figure


# ---------------------------------------------------------------------------- verdicts against AD-DROP

VS_ADDROP_WORDS = {"helps": "better than AD-DROP", "hurts": "worse than AD-DROP", "not significant": "not significantly different from AD-DROP"}


def vs_addrop(groups: dict, study: str, task: str, method: str, addrop_study: str = "glue") -> List[float]:
    """A variant's paired per-seed difference to AD-DROP: what replacing that part changes."""
    return paired_diffs(groups.get((study, task, method), []),
                        {r["seed"]: r for r in groups.get((addrop_study, task, "addrop"), [])})


@dataclass
class Against:
    """One variant against AD-DROP, paired per seed: ``said`` maps a verdict to its (task, Δs)."""

    label: str
    said: Dict[str, List[Tuple[str, List[float]]]]


def against_addrop(groups: dict, tasks: List[str], rows: Sequence[Tuple[str, str, str]],
                   addrop_study: str = "glue") -> List[Against]:
    """Per variant (``rows``: study, method, label) with any paired seeds: its verdict against
    AD-DROP (``addrop_study``'s runs) per task."""
    out = []
    for study, method, label in rows:
        said = defaultdict(list)
        for t in tasks:
            diffs = vs_addrop(groups, study, t, method, addrop_study) if method not in ("ft", "addrop") else []
            if diffs:
                said[verdict(diffs)].append((t, diffs))
        if said:
            out.append(Against(label, dict(said)))
    return out


def against_text(verdicts: List[Against], numbers: bool = False) -> str:
    """One clause per variant: its verdict against AD-DROP per task (with the paired Δ if ``numbers``)."""
    return "; ".join(f"{a.label}: " + ", ".join(
        f"{VS_ADDROP_WORDS.get(v, v)} on "
        + " and ".join(TASKS[t].name + (f" ({mean_std(d)})" if numbers else "") for t, d in ts)
        for v, ts in a.said.items()) for a in verdicts)


def regularizer_verdicts(runs: List[dict], addrop_study: str) -> List[str]:
    """AttendOut and its cheap regularizers against AD-DROP (``addrop_study``'s runs), paired per
    seed: the comparison the AttendOut issue asks to state plainly."""
    regs = [r for r in runs if r["study"] == "regularizers"]
    tasks = [t for t in TASK_ORDER if any(r["task"] == t for r in regs)]
    groups = by(regs + [r for r in runs if r["study"] == addrop_study and r["task"] in tasks], "study", "task", "method")
    text = against_text(against_addrop(groups, tasks, [("regularizers", m, METHOD_NAMES[m]) for m in studies.REGULARIZERS],
                                       addrop_study), numbers=True)
    return [f"AttendOut and its cheap regularizers against AD-DROP (paired per seed, the same test): {text}.", ""] if text else []


def regularizer_settings(runs: List[dict], model: str, unit: str) -> str:
    """The sentence that says how the ``regularizers`` rows were run (empty when there are none)."""
    if not any(r["method"] in studies.REGULARIZERS for r in runs):
        return ""
    return (f" AttendOut and its cheap regularizers (study `regularizers`, {model}same budget; the settings of "
            "AttendOut's paper, not re-tuned here, as AD-DROP's are not): AttendOut with T = 20, its nets scored "
            f"on 200 training {unit} outside the subset; scores dropout 0.1; attention LayerDrop 0.2; "
            f"{scheduled_text(runs)}.")


def scheduled_text(runs: List[dict]) -> str:
    """The scheduled scores dropout's setting, read from a run's command (its slopes depend on the
    run's length: the last layer reaches the end rate at the last update)."""
    for r in runs:
        for a in r.get("command", []):
            if r["method"] == "scheduled" and a.startswith("--attn-reg-slopes="):
                slopes = a.split("=", 1)[1]
                at = (studies.SCHEDULE_START - studies.SCHEDULE_END) / -float(slopes.split(",")[-1]) * 1000
                return (f"scheduled scores dropout from {studies.SCHEDULE_START:g}, per-layer slopes {slopes} "
                        f"per 1000 updates (the last layer at {studies.SCHEDULE_END:g} after {at:.0f} updates, "
                        f"a full run's length)")
    return f"scheduled scores dropout from {studies.SCHEDULE_START:g} down to {studies.SCHEDULE_END:g} in the last layer"

