"""Study ``tune``: FT's learning rate per task, the one every method then uses."""
from dataclasses import dataclass, field
from typing import Dict, Optional

import selection
import studies
from stats import fmt
from tasks import TASKS

from ..common import TASK_ORDER, Section
from ..load import Data

STUDIES = ("tune",)


@dataclass
class Tune(Section):
    chosen: Dict[str, Optional[float]] = field(default_factory=dict)  # task -> learning rate (None: grid incomplete)


def build(data: Data, rel: str, done: dict) -> Tune:
    runs = data.study(*STUDIES)
    out = Tune()
    if not runs:
        return out
    grid = sorted({lr for t in TASK_ORDER if any(r["task"] == t for r in runs) for lr in TASKS[t].lr_grid})
    lines = ["## tune: FT's learning rate", "",
             f"FT (`--addrop-schedule never`), seed 1, {studies.EPOCHS} epochs ({studies.MT_EPOCHS} for translation), "
             f"batch {studies.BATCH}, each task's grid. Best-epoch dev score; for translation the lowest dev loss (its "
             "score is BLEU on the test block, which nothing is chosen on). The chosen learning rate is used by "
             "every method in the other studies.", "",
             "| task | chosen on | " + " | ".join(f"lr {lr:g}" for lr in grid) + " | chosen |",
             "|---|---|" + "---|" * len(grid) + "---|"]
    for task in TASK_ORDER:
        rs = [r for r in runs if r["task"] == task]
        if not rs:
            continue
        mt = TASKS[task].family == "mt"
        value = {r["lr"]: -selection.tune_score(r) if mt else selection.tune_score(r) for r in rs}
        best = out.chosen[task] = selection.chosen_lr(task, rs)
        edge = " (the grid's edge: widen it)" if best in (min(TASKS[task].lr_grid), max(TASKS[task].lr_grid)) else ""
        chosen = f"{best:g}{edge}" if best is not None else "grid incomplete"
        lines.append(f"| {TASKS[task].name} | {'dev loss (lowest)' if mt else 'dev ' + rs[0]['metric']} | "
                     + " | ".join(fmt(value.get(lr), 3 if mt else 1) for lr in grid) + f" | {chosen} |")
    out.lines = lines + [""]
    return out
