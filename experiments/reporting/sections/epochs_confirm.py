"""Study ``epochs_confirm``: the epochs study's setting judged again on fresh seeds."""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import studies
from stats import judged, mean_std
from tasks import TASKS

from ..common import GLUE_ORDER, TASK_ORDER, Comparison, Section, ahead, comparison, paired_diffs
from ..load import Data

STUDIES = ("epochs_confirm",)


@dataclass
class EpochsConfirm(Section):
    comparison: Optional[Comparison] = None  # per (task, method) on the fresh seeds: paired Δ to FT
    settings: List[Tuple[str, int]] = field(default_factory=list)  # (task, epochs) where FT and AD-DROP were compared

    def settings_text(self) -> str:
        """How many settings the one judged here was chosen among, and which ('' if unknown)."""
        if not self.settings:
            return ""
        budgets = sorted({n for _, n in self.settings})
        return (f"{len(self.settings)} settings looked at: " + "; ".join(
            ", ".join(TASKS[t].name for t, m in self.settings if m == n) + f" at {n} epochs" for n in budgets))


def settings_looked_at(data: Data) -> List[Tuple[str, int]]:
    """The (task, budget) settings where AD-DROP met FT before this study: the glue study's at
    ``EPOCHS``, the epochs study's at ``LONG_EPOCHS``."""
    out = []
    for study, n in (("glue", studies.EPOCHS), ("epochs", studies.LONG_EPOCHS)):
        runs = data.study(study)
        out += [(t, n) for t in GLUE_ORDER if {"ft", "addrop"} <= {r["method"] for r in runs if r["task"] == t}]
    return out


def build(data: Data, rel: str, done: dict) -> EpochsConfirm:
    runs = data.study(*STUDIES)
    out = EpochsConfirm()
    if not runs:
        return out
    epochs_runs = data.study("epochs")
    seeds = sorted({r["seed"] for r in runs})
    out.settings = settings_looked_at(data)
    out.comparison = comparison(runs, rel, "epochs_confirm_paired_differences.png")
    lines = ["## epochs_confirm: the epochs study on fresh seeds", "",
             f"FT and AD-DROP exactly as in the epochs study ({studies.LONG_EPOCHS} epochs), on seeds "
             f"{', '.join(map(str, seeds))}, which played no part in choosing that setting"
             + (f" (it was one of {out.settings_text()})" if out.settings else "") + ": a gain must hold here before the README's demo is built on it.", ""] + out.comparison.lines
    pooled = []
    for task in TASK_ORDER:
        both = [r for r in runs + epochs_runs if r["task"] == task]
        ft = {r["seed"]: r for r in both if r["method"] == "ft"}
        diffs = paired_diffs([r for r in both if r["method"] == "addrop"], ft)
        fresh = paired_diffs([r for r in runs if r["task"] == task and r["method"] == "addrop"], ft)
        if fresh and len(diffs) > len(fresh):
            pooled.append(f"- {TASKS[task].name}: FT {mean_std([r['best']['score'] for r in ft.values()])}, AD-DROP Δ "
                          f"{mean_std(diffs)}, {ahead(diffs)}; {judged(diffs)}.")
    if pooled:
        lines += ["Both studies' seeds together (the seeds "
                  "that chose the setting are in it, so the fresh seeds above are the unbiased test):", ""] + pooled + [""]
    out.lines = lines
    out.figures = [out.comparison.figure] if out.comparison.figure else []
    return out
