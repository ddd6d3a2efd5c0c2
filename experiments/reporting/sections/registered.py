"""Study ``registered``: one test of CoLA at the protocol study's choice, sized to see the paper's
gain, whose definition was committed before its first run (the text below is that definition;
it is written from constants and the protocol study's stored pairs, so it does not move)."""
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import studies
from paper import paper_gain
from stats import Reading, read, sign_test_p
from tasks import TASKS

from ..common import Section
from ..load import Data

STUDIES = ("registered",)
POOLED_FROM = "protocol"  # the protocol study's fresh seeds 4-8 are the first five pairs


@dataclass
class Registered(Section):
    pairs: Dict[int, tuple] = field(default_factory=dict)  # seed -> (FT run, AD-DROP run)
    planned: int = 0
    reading: Optional[Reading] = None  # set once every planned pair is in
    design_sd: Optional[float] = None

    @property
    def complete(self) -> bool:
        return self.planned > 0 and len(self.pairs) == self.planned


def pairs_of(runs: List[dict], task: str) -> Dict[int, tuple]:
    by = {m: {r["seed"]: r for r in runs if r["task"] == task and r["method"] == m} for m in ("ft", "addrop")}
    return {s: (by["ft"][s], by["addrop"][s]) for s in sorted(set(by["ft"]) & set(by["addrop"]))}


def diff(pair: tuple) -> float:
    ft, ad = pair
    return ad["best"]["score"] - ft["best"]["score"]


def build(data: Data, rel: str, done: dict) -> Registered:
    task = studies.REGISTERED_TASK
    protocol = done["protocol"].tasks.get(task)
    out = Registered()
    if protocol is None or protocol.cell is None:
        return out
    first = {s: (protocol.fresh["ft"][s], protocol.fresh["addrop"][s]) for s in studies.CONFIRM_SEEDS
             if s in protocol.fresh["ft"] and s in protocol.fresh["addrop"]}
    design = [diff(p) for p in first.values()]
    out.design_sd = statistics.stdev(design) if len(design) > 1 else None
    n = len(studies.CONFIRM_SEEDS) + len(studies.REGISTERED_SEEDS)
    out.planned = n
    out.pairs = {**first, **pairs_of(data.study(*STUDIES), task)}
    gain = paper_gain(task)
    name, (p, q) = TASKS[task].name, protocol.cell
    from stats import detectable_effect

    mde = detectable_effect(out.design_sd, n) if out.design_sd else None
    lines = [f"## registered: {name}, {n} paired seeds, defined before it ran", "",
             "The definition below was committed before the study's first run; nothing in it changes with the "
             "results.", "",
             f"- **Question.** Does AD-DROP at the protocol study's {name} choice (p = {p:g}, q = {q:g}, all layers, GA, "
             f"pseudo labels, cross-tuning) beat plain fine-tuning at FT's chosen rate ({protocol.lr:g}), on MiniLM with "
             f"{studies.TRAIN_SIZE} {name} training rows, the protocol recipe, patience {studies.PROTOCOL_PATIENCE}, "
             f"cap {studies.PROTOCOL_EPOCHS} epochs?",
             f"- **Runs.** The protocol study's fresh-seed runs, unchanged but for the seed: seeds "
             f"{studies.REGISTERED_SEEDS[0]}-{studies.REGISTERED_SEEDS[-1]} (study `registered`, "
             f"`python experiments/run.py registered --jobs 2`), pooled with the protocol study's seeds "
             f"{studies.CONFIRM_SEEDS[0]}-{studies.CONFIRM_SEEDS[-1]}: n = {n} pairs. Seed {studies.DEMO_SEED} is the "
             "demo's and is not used. No pair is left out or rerun on its score; a run that fails is rerun with its "
             "stored command.",
             "- **Primary test.** Paired t-test, two-sided, 5%, on the per-seed difference of best-epoch dev "
             f"{TASKS[task].metric} (AD-DROP minus FT); reported with the mean difference and its 95% t interval. "
             "Secondary: the exact sign test (two-sided, ties dropped).",
             f"- **Design.** With the spread of the first five pairs (sd {out.design_sd:.2f}), {n} pairs detect a mean "
             f"difference of {mde:.1f} {TASKS[task].metric} at 80% power (two-sided 5%); "
             + (f"{gain.label()} is larger than that." if gain else ""),
             "- **Reading, fixed in advance.** p < 0.05: AD-DROP helps (or hurts, by the sign). Otherwise: if the "
             f"interval's upper end is below the paper's {gain.gain:+.1f}, the interval excludes the paper's gain at "
             "this scale; if not, this test cannot tell. The README's lead reports it, whatever it says.", ""]
    new = {s: v for s, v in out.pairs.items() if s not in first}
    lines += [f"Status: {len(out.pairs)} of {n} pairs ({len(new)} of {len(studies.REGISTERED_SEEDS)} new).", ""]
    if out.complete:
        diffs = [diff(v) for v in out.pairs.values()]
        out.reading = read(diffs, gain.gain if gain else None)
        ft = [v[0]["best"]["score"] for v in out.pairs.values()]
        ad = [v[1]["best"]["score"] for v in out.pairs.values()]
        sp = sign_test_p(diffs)
        lines += [f"**Result.** FT {statistics.mean(ft):.1f} ± {statistics.stdev(ft):.1f}, AD-DROP "
                  f"{statistics.mean(ad):.1f} ± {statistics.stdev(ad):.1f}; {out.reading.numbers()}; "
                  f"AD-DROP ahead on {sum(d > 0 for d in diffs)}, behind on {sum(d < 0 for d in diffs)}, tied on "
                  f"{sum(d == 0 for d in diffs)}; sign test p = {sp:.2f}: {out.reading.words()}.", ""]
    if out.pairs:
        lines += ["| seed | FT | AD-DROP | Δ |", "|---|---|---|---|"]
        lines += [f"| {s} | {v[0]['best']['score']:.1f} | {v[1]['best']['score']:.1f} | {diff(v):+.1f} |"
                  for s, v in sorted(out.pairs.items())]
        lines.append("")
    out.lines = lines
    return out
