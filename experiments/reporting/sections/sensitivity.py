"""Study ``sensitivity``: every (p, q) of the grid, with and without cross-tuning, one seed (the
paper's Fig. 6 and Fig. 4 analogues)."""
import statistics
from dataclasses import dataclass, field
from functools import partial
from typing import Dict, List, Optional, Tuple

import studies
from tasks import TASKS

from .. import figures as plots
from ..common import TASK_ORDER, Figure, Section
from ..load import Data

STUDIES = ("sensitivity",)


@dataclass
class Cells:
    """One task's map: FT's mean over the glue study's seeds, every cell's best-epoch dev score,
    FT per seed, and the seeds the grid ran on."""

    ft_mean: float
    scores: Dict[Tuple[str, float, float], float]  # (schedule, p, q) -> best score
    ft_by_seed: Dict[int, float]
    seeds: List[int]

    @property
    def own(self) -> Optional[Tuple[int, float]]:
        return own_seed_ft(self.ft_by_seed, self.seeds)


@dataclass
class Sensitivity(Section):
    cells: Dict[str, Cells] = field(default_factory=dict)  # tasks with FT runs to compare with
    tasks: List[str] = field(default_factory=list)  # every task the grid ran on (sorted by name)
    runs: int = 0
    planned: int = 0  # runs the grid has on those tasks


def cells_of(runs: List[dict], glue_runs: List[dict]) -> Dict[str, Cells]:
    out = {}
    for t in TASK_ORDER:
        rs = [r for r in runs if r["task"] == t]
        ft = {r["seed"]: r["best"]["score"] for r in glue_runs if r["task"] == t and r["method"] == "ft"}
        if rs and ft:
            out[t] = Cells(statistics.mean(ft.values()),
                           {(r["meta"]["schedule"], float(r["meta"]["p"]), float(r["meta"]["q"])): r["best"]["score"] for r in rs},
                           ft, sorted({r["seed"] for r in rs}))
    return out


def build(data: Data, rel: str, done: dict) -> Sensitivity:
    runs = data.study(*STUDIES)
    out = Sensitivity(cells=cells_of(runs, data.study("glue")), tasks=sorted({r["task"] for r in runs}), runs=len(runs))
    if runs:
        out.planned = len(studies.sensitivity(out.tasks, [1], {}))
    if not out.cells:
        return out
    grid = studies.SENSITIVITY_GRID
    lines = ["## sensitivity: p × q (Fig. 6 and Fig. 4 analogues)", "",
             f"Every (p, q) in {{{', '.join(f'{x:g}' for x in grid)}}}², with cross-tuning and without (AD-DROP on "
             "every epoch), one seed; the difference of the best-epoch dev score to FT's mean over the glue "
             "study's seeds, divided by the largest absolute difference of the grid (MaxAbsScaler, as the paper).", ""]
    for t, c in out.cells.items():
        for schedule in ("cross", "always"):
            diffs = {(p, q): v - c.ft_mean for (s, p, q), v in c.scores.items() if s == schedule}
            if not diffs:
                continue
            lines += [f"{TASKS[t].name}, {'with' if schedule == 'cross' else 'without'} cross-tuning: Δ to FT "
                      f"({c.ft_mean:.1f}), rows p, columns q:", "",
                      "| p \\ q | " + " | ".join(f"{q:g}" for q in grid) + " |", "|---|" + "---|" * len(grid)]
            for p in grid:
                lines.append(f"| {p:g} | " + " | ".join(f"{diffs[(p, q)]:+.1f}" if (p, q) in diffs else "–"
                                                        for q in grid) + " |")
            best = max(diffs, key=diffs.get)
            above = sum(d > 0 for d in diffs.values())
            partial_ = "" if len(diffs) == len(grid) ** 2 else f"So far ({len(diffs)} of {len(grid) ** 2} cells run): "
            lines += ["", f"{partial_}Best cell p = {best[0]:g}, q = {best[1]:g} ({diffs[best]:+.1f}); {above} of "
                      f"{len(diffs)} cells above FT's mean; the plugin's default p = q = 0.3: "
                      + (f"{diffs[(0.3, 0.3)]:+.1f}." if (0.3, 0.3) in diffs else "not run.")
                      + same_seed(c, [v for (s, _, _), v in c.scores.items() if s == schedule]), ""]
        name = f"sensitivity_{t}.png"
        out.figures.append(Figure(name, partial(plots.plot_sensitivity, t, c.ft_mean, c.scores, own=c.own)))
        lines += [f"![p x q heat maps and score distributions]({rel}/{name})", ""]
    out.lines = lines
    return out


def own_seed_ft(ft_by_seed: Dict[int, float], seeds: List[int]) -> Optional[Tuple[int, float]]:
    """(seed, FT's score on it) when the grid ran on one seed FT also ran: a one-seed map measured
    against FT's mean carries that seed's luck, so it is also judged against FT on its own seed."""
    return (seeds[0], ft_by_seed[seeds[0]]) if len(seeds) == 1 and seeds[0] in ft_by_seed else None


def same_seed(c: Cells, cells: List[float]) -> str:
    if c.own is None:
        return ""
    seed, ft = c.own
    return (f" Against FT on the same seed (seed {seed}: {ft:.1f}, {ft - c.ft_mean:+.1f} from FT's mean), "
            f"{sum(v > ft for v in cells)} of {len(cells)} cells are above.")
