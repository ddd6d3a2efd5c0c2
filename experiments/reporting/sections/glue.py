"""Study ``glue`` (with the ``regularizers`` rows and ``smoke`` runs on GLUE tasks): AD-DROP and
its peers against FT on five GLUE tasks, the paper's Table 1 analogue."""
import json
from dataclasses import dataclass, field
from functools import partial
from typing import Dict, List, Optional

import studies
from stats import mean_std
from tasks import TASKS

from .. import figures as plots
from ..common import (GLUE_ORDER, METHOD_NAMES, SHORT_NAMES, TASK_ORDER, Comparison, Figure, Section, by,
                      comparison, learning_curves, regularizer_settings, regularizer_verdicts, sizes_line)
from ..load import Data

STUDIES = ("glue", "regularizers", "smoke")
SECOND_METRICS = {"mrpc": "accuracy", "stsb": "spearman"}  # GLUE scores these two tasks twice


@dataclass
class Glue(Section):
    comparison: Optional[Comparison] = None  # per (task, method): runs and paired Δ to FT
    tasks: List[str] = field(default_factory=list)  # GLUE tasks with FT runs, in GLUE_ORDER
    seeds: List[int] = field(default_factory=list)
    references: Dict[str, dict] = field(default_factory=dict)  # majority-class floors
    regularizer_lines: List[str] = field(default_factory=list)  # AttendOut & co against AD-DROP


def build(data: Data, rel: str, done: dict) -> Glue:
    runs = data.study(*STUDIES, family="glue")
    out = Glue(references=data.references)
    if not runs:
        return out
    epochs = sorted({r["epochs_planned"] for r in runs})
    out.comparison = comparison(runs, rel, "glue_paired_differences.png", references=data.references)
    out.tasks = [t for t in GLUE_ORDER if out.comparison.ft(t)]
    out.seeds = sorted({r["seed"] for r in runs})
    out.regularizer_lines = regularizer_verdicts(runs, "glue")
    curves, curves_figure = learning_curves(runs, rel, "glue_curves.png")
    rates, rates_figure = attendout_rates_figure(runs, rel)
    out.lines = (["## glue: AD-DROP and its peers on five GLUE tasks (Table 1 analogue)", "",
                  "MiniLM. Train / dev examples (training subsets are a fixed shuffle, the same for every run; "
                  f"dev sets whole unless marked): {sizes_line(runs)}. {'/'.join(map(str, epochs))} epochs, batch "
                  f"{studies.BATCH}; p, q and layers of AD-DROP and RD from the paper's Table 11 (BERT column; not "
                  "re-tuned for MiniLM, whose learning rate alone was tuned, for FT), first layer for SST-2 and STS-B; "
                  "STS-B is regression, where AD-DROP has no pseudo labels and attributes the real loss (Appendix A); extra attention dropout (HF's "
                  "`attention_probs_dropout_prob`: every layer, every epoch) = MiniLM's 0.1 + p·q × the share of layers "
                  f"AD-DROP acts on ({attention_dropout_rates(runs)}); R-Drop alpha 1 (its GLUE setting)."
                  + regularizer_settings(runs, "", "rows"),
                  ""] + majority_line(data.references, sorted({r["task"] for r in runs}))
                 + out.comparison.lines + out.regularizer_lines + second_metrics_table(runs) + curves + rates)
    out.figures = [f for f in (out.comparison.figure, curves_figure, rates_figure) if f]
    return out


def majority_line(references: Dict[str, dict], tasks: List[str]) -> List[str]:
    refs = [references[t] for t in GLUE_ORDER if t in references and t in tasks]
    if not refs:
        return []
    return ["Majority-class floor (the training subset's most frequent label predicted for every dev example): "
            + ", ".join(f"{TASKS[r['task']].name} {r['metric']} {r['score']:.1f}" for r in refs)
            + ("; STS-B none (a constant prediction has no correlation)" if "stsb" in tasks else "") + ".", ""]


def attention_dropout_rates(runs: List[dict]) -> str:
    """The attention-dropout peer's rate per task, read from the commands that ran."""
    rates = {}
    for r in runs:
        if r["method"] == "attn_dropout":
            cmd = r["command"]
            rates[r["task"]] = json.loads(cmd[cmd.index("--hf-config-overrides") + 1])["attention_probs_dropout_prob"]
    return ", ".join(f"{TASKS[t].name} {rates[t]:g}" for t in TASK_ORDER if t in rates)


def second_metric(r: dict, metric: str) -> Optional[float]:
    """``metric`` at the epoch where the run's headline metric was best (one early-stopping choice)."""
    return next((e.get(f"valid_{metric}") for e in r["epochs"] if e["epoch"] == r["best"]["epoch"]), None)


def second_metrics_table(runs: List[dict]) -> List[str]:
    """GLUE's other metric for MRPC (accuracy) and STS-B (Spearman), per method, with its paired Δ."""
    groups = by(runs, "task", "method")
    rows = []
    for task, metric in SECOND_METRICS.items():
        ft = {r["seed"]: second_metric(r, metric) for r in groups.get((task, "ft"), [])}
        for method in METHOD_NAMES:
            rs = sorted(groups.get((task, method), []), key=lambda r: r["seed"])
            vals = {r["seed"]: second_metric(r, metric) for r in rs}
            if not rs or any(v is None for v in vals.values()):
                continue
            diffs = [v - ft[s] for s, v in vals.items() if ft.get(s) is not None] if method != "ft" else []
            rows.append(f"| {TASKS[task].name} ({metric}) | {SHORT_NAMES.get(method, 'FT')} | {len(rs)} | "
                        f"{mean_std(list(vals.values()))} | {mean_std(diffs) if diffs else ''} |")
    if not rows:
        return []
    return ["GLUE's second metric for MRPC and STS-B, at the epoch where the headline metric was best:", "",
            "| task (metric) | method | seeds | dev score | paired Δ vs FT |", "|---|---|---|---|---|"] + rows + [""]


def attendout_rates_figure(runs: List[dict], rel: str):
    """AttendOut's learned drop rates per layer (the paper's Fig. 3), when AttendOut ran."""
    ao = [r for r in runs if r["method"] == "attendout"]
    if not ao:
        return [], None
    name = "attendout_drop_rates.png"
    return (["AttendOut's learned drop probability per attacked layer (the paper's Fig. 3; epoch means, "
             "averaged over seeds):", "", f"![AttendOut drop rates]({rel}/{name})", ""],
            Figure(name, partial(plots.plot_attendout_rates, ao)))
