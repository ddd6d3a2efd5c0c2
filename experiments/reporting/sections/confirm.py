"""Study ``confirm``: the sensitivity map's best cell against FT on seeds the selection never saw."""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from tasks import TASKS

from ..common import Comparison, Section, comparison
from ..load import Data

STUDIES = ("confirm",)


@dataclass
class Confirm(Section):
    cells: Dict[str, str] = field(default_factory=dict)  # task -> "p = .., q = .." of its AD-DROP runs
    comparison: Optional[Comparison] = None  # per (task, method): paired Δ to FT on the fresh seeds


def best_cells(runs: List[dict]) -> Dict[str, str]:
    """{task: "p = .., q = .."} of the confirm study's AD-DROP runs."""
    return {r["task"]: f"p = {r['meta']['p']}, q = {r['meta']['q']}" for r in runs if r["method"] == "addrop_best"}


def build(data: Data, rel: str, done: dict) -> Confirm:
    runs = data.study(*STUDIES)
    out = Confirm(cells=best_cells(runs))
    if not runs:
        return out
    seeds = sorted({r["seed"] for r in runs})
    out.comparison = comparison(runs, rel, "confirm_paired_differences.png")
    out.lines = ["## confirm: the sensitivity map's best cell on fresh seeds", "",
                 "The cross-tuning cell with the best dev score in the sensitivity study (one seed, seed 1) is a "
                 "selection: its lead includes that seed's luck. Here it is judged against FT on seeds the selection "
                 f"never saw ({', '.join(map(str, seeds))}), same budget and learning rate: "
                 + "; ".join(f"{TASKS[t].name} {c}" for t, c in out.cells.items()) + ".", ""] + out.comparison.lines
    out.figures = [out.comparison.figure] if out.comparison.figure else []
    return out
