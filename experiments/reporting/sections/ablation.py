"""Study ``ablation``: the paper's Table 2, AD-DROP with one part replaced (FT, AD-DROP and RD are
the glue study's runs)."""
from dataclasses import dataclass, field
from typing import List, Tuple

import studies
from stats import mean_std, verdict
from tasks import TASKS

from ..common import TASK_ORDER, Against, Section, against_addrop, against_text, by, cost_ratio, paired_diffs, vs_addrop
from ..load import Data

STUDIES = ("ablation",)
ROWS = [  # (study, method, label): FT, AD-DROP and RD come from the glue study
    ("glue", "ft", "FT"), ("glue", "addrop", "AD-DROP (GA, pseudo labels, cross-tuning)"),
    ("ablation", "iga", f"r/w IGA (m = {studies.ABLATION_IG_STEPS})"), ("ablation", "aa", "r/w AA"),
    ("glue", "rd", "r/w RD"), ("ablation", "gold", "r/w gold labels"), ("ablation", "no_cross", "w/o cross-tuning"),
]


@dataclass
class Ablation(Section):
    tasks: List[str] = field(default_factory=list)
    seeds: List[int] = field(default_factory=list)
    verdicts: List[Against] = field(default_factory=list)  # each variant against AD-DROP, per task


def groups_of(runs: List[dict], glue_runs: List[dict]) -> Tuple[List[str], dict]:
    """The ablation's tasks and its runs grouped with the glue study's FT, AD-DROP and RD on them."""
    tasks = [t for t in TASK_ORDER if any(r["task"] == t for r in runs)]
    return tasks, by(runs + [r for r in glue_runs if r["task"] in tasks], "study", "task", "method")


def build(data: Data, rel: str, done: dict) -> Ablation:
    runs = data.study(*STUDIES)
    out = Ablation()
    if not runs:
        return out
    tasks, groups = groups_of(runs, data.study("glue"))
    out.tasks, out.seeds = tasks, sorted({r["seed"] for r in runs})
    out.verdicts = against_addrop(groups, tasks, ROWS)
    lines = ["## ablation: the paper's Table 2", "",
             "AD-DROP with one part replaced, same learning rate, seeds and budget; FT, AD-DROP and RD are the "
             "glue study's runs. Cells: best-epoch dev score mean ± std, the paired Δ to FT, the paired Δ to "
             "AD-DROP (what replacing that part changes; **bold** where significant); cost = seconds per update "
             "relative to FT's runs on the same task (these runs shared the CPU two at a time, and the ablation's "
             "own rows ran in other sessions than FT's: indicative only; the cost study is the clean measurement).", "",
             "| method | " + " | ".join(f"{TASKS[t].name} ({TASKS[t].metric}) | Δ FT | Δ AD-DROP | cost" for t in tasks)
             + " |", "|---|" + "---|---|---|---|" * len(tasks)]
    for study, method, label in ROWS:
        cells = []
        for t in tasks:
            rs = groups.get((study, t, method), [])
            ft = {r["seed"]: r for r in groups.get(("glue", t, "ft"), [])}
            diffs = paired_diffs(rs, ft) if method != "ft" else []
            vs = vs_addrop(groups, study, t, method) if method not in ("ft", "addrop") else []
            vs_text = mean_std(vs) if vs else "–"
            cells.append(f"{mean_std([r['best']['score'] for r in rs])} | {mean_std(diffs) if diffs else '–'} | "
                         + (f"**{vs_text}**" if verdict(vs) in ("helps", "hurts") else vs_text)
                         + f" | {cost_ratio(rs, list(ft.values()))}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    summary = against_text(out.verdicts)
    out.lines = lines + (["", f"Against AD-DROP, paired per seed: {summary}."] if summary else []) + [""]
    return out
