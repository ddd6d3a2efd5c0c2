"""Study ``epochs``: FT and AD-DROP trained ``LONG_EPOCHS`` epochs next to the glue study's
``EPOCHS``."""
from dataclasses import dataclass
from typing import Optional

import studies
from stats import judged, mean_std
from tasks import TASKS

from ..common import TASK_ORDER, Comparison, Section, by, comparison, learning_curves, paired_diffs
from ..load import Data

STUDIES = ("epochs",)


@dataclass
class Epochs(Section):
    comparison: Optional[Comparison] = None  # the long runs: per (task, method), paired Δ to FT at the same budget


def build(data: Data, rel: str, done: dict) -> Epochs:
    """Per task, FT at both budgets (paired by seed: the epochs half of FT's tuning) and AD-DROP's
    paired Δ to FT at each budget; then the long runs' full table and learning curves."""
    runs = data.study(*STUDIES)
    out = Epochs()
    if not runs:
        return out
    glue_runs, confirm_runs = data.study("glue"), data.study("epochs_confirm")
    short, long = studies.EPOCHS, studies.LONG_EPOCHS
    groups = by(runs + glue_runs, "study", "task", "method")
    tasks = [t for t in TASK_ORDER if ("epochs", t, "ft") in groups]
    lines = [f"## epochs: {long} epochs instead of {short}", "",
             f"FT and AD-DROP with the glue study's settings (same subsets, learning rate, p, q, layers, seeds), "
             f"trained {long} epochs: the epochs half of FT's tuning, and, if FT trained longer overfits its "
             "1000 examples (the regime line below says whether it does), the regime a regularizer is meant for. Δ FT = FT's best-epoch dev score at "
             f"{long} minus at {short} epochs, same seed; Δ AD-DROP = AD-DROP minus FT at the same budget, same seed.", "",
             f"| task (metric) | FT, {short} ep | FT, {long} ep | Δ FT {long} vs {short} | Δ AD-DROP, {short} ep | "
             f"Δ AD-DROP, {long} ep |", "|---|---|---|---|---|---|"]
    sentences = []

    def again(task: str) -> str:
        """What the same comparison gave on the fresh seeds of study epochs_confirm."""
        ft = {r["seed"]: r for r in confirm_runs if r["task"] == task and r["method"] == "ft"}
        d = paired_diffs([r for r in confirm_runs if r["task"] == task and r["method"] == "addrop"], ft)
        return f" Judged again on {len(d)} fresh seeds (epochs_confirm, below): {judged(d)}, Δ {mean_std(d)}." if d else ""

    for t in tasks:
        ft = {n: {r["seed"]: r for r in groups.get((study, t, "ft"), [])} for n, study in ((short, "glue"), (long, "epochs"))}
        d_ft = paired_diffs(list(ft[long].values()), ft[short])
        d_ad = {n: paired_diffs(groups.get((study, t, "addrop"), []), ft[n]) for n, study in ((short, "glue"), (long, "epochs"))}

        def cell(d):
            return f"{mean_std(d)}, {judged(d)}" if d else "–"

        lines.append(f"| {TASKS[t].name} ({TASKS[t].metric}) | {mean_std([r['best']['score'] for r in ft[short].values()])} | "
                     f"{mean_std([r['best']['score'] for r in ft[long].values()])} | {cell(d_ft)} | {cell(d_ad[short])} | "
                     f"{cell(d_ad[long])} |")
        if d_ad[long]:
            sentences.append(f"- {TASKS[t].name}: for FT, {long} epochs instead of {short}: "
                             f"{judged(d_ft) if d_ft else 'not paired'}; AD-DROP against FT at {long} epochs: "
                             f"{judged(d_ad[long])}, Δ {mean_std(d_ad[long])}." + again(t))
    lines += ["", "What the data say:", ""] + sentences + [""]
    out.comparison = comparison(runs, rel, "epochs_paired_differences.png")
    curves, curves_figure = learning_curves(runs, rel, "epochs_curves.png")
    out.lines = lines + out.comparison.lines + curves
    out.figures = [f for f in (out.comparison.figure, curves_figure) if f]
    return out
