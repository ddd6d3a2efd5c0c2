"""Study ``hf_trainer``: a glue-study cell through HuggingFace's Trainer (``ADDropTrainer``)
beside the fairseq CLI's runs of the same cell: do the two front ends agree?"""
import math
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from stats import MIN_SEEDS_FOR_VERDICT, judged, mean_std, verdict
from tasks import TASKS

from ..common import Section
from ..load import Data

STUDIES = ("hf_trainer", "glue")


def welch_p(a: List[float], b: List[float]) -> Optional[float]:
    """Two-sided Welch t-test p-value of mean(a) = mean(b) (unpaired: other data order, other
    dropout draws, so seed k of one front end is not seed k of the other)."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return 1.0 if statistics.mean(a) == statistics.mean(b) else 0.0
    t = (statistics.mean(a) - statistics.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    from scipy.stats import t as student_t

    return float(2 * student_t.sf(abs(t), df))


@dataclass
class Agreement:
    task: str
    metric: str
    scores: Dict[str, Dict[str, Dict[int, float]]]  # front end -> method -> seed -> best score

    def gap(self, method: str):
        """(Trainer mean - fairseq mean, Welch p) for one method."""
        a = list(self.scores["trainer"].get(method, {}).values())
        b = list(self.scores["fairseq"].get(method, {}).values())
        if not a or not b:
            return None, None
        return statistics.mean(a) - statistics.mean(b), welch_p(a, b)

    def diffs(self, front: str) -> List[float]:
        s = self.scores[front]
        seeds = sorted(set(s.get("ft", {})) & set(s.get("addrop", {})))
        return [s["addrop"][k] - s["ft"][k] for k in seeds]


@dataclass
class HFTrainer(Section):
    agreements: Dict[str, Agreement] = field(default_factory=dict)

    def sentence(self, a: Agreement) -> str:
        """The README's words: each method's gap between the front ends, and both verdicts."""
        parts = []
        for method, name in (("ft", "FT"), ("addrop", "AD-DROP")):
            gap, p = a.gap(method)
            if gap is not None:
                noise = "" if p is None else f", {'not significantly different' if p >= 0.05 else 'significantly different'} (Welch p = {p:.2f})"
                parts.append(f"{name} {gap:+.1f}{noise}")
        d_t, d_f = a.diffs("trainer"), a.diffs("fairseq")
        return (f"{TASKS[a.task].name} ({a.metric}), Trainer minus fairseq CLI over seeds "
                f"{', '.join(map(str, sorted(a.scores['trainer'].get('ft', {}))))}: " + "; ".join(parts)
                + f". AD-DROP against FT, paired per seed: Trainer {mean_std(d_t)}, {judged(d_t) if d_t else '–'}; "
                f"fairseq CLI {mean_std(d_f)}, {judged(d_f) if d_f else '–'}")


def build(data: Data, rel: str, done: dict) -> HFTrainer:
    trainer = data.study("hf_trainer")
    out = HFTrainer()
    if not trainer:
        return out
    for task in sorted({r["task"] for r in trainer}):
        scores = {"trainer": {}, "fairseq": {}}
        for r in trainer:
            if r["task"] == task:
                scores["trainer"].setdefault(r["method"], {})[r["seed"]] = r["best"]["score"]
        seeds = set().union(*(s.keys() for s in scores["trainer"].values()))
        for r in data.study("glue"):
            if r["task"] == task and r["method"] in ("ft", "addrop") and r["seed"] in seeds:
                scores["fairseq"].setdefault(r["method"], {})[r["seed"]] = r["best"]["score"]
        out.agreements[task] = Agreement(task, next(r["metric"] for r in trainer if r["task"] == task), scores)
    lines = ["## hf_trainer: the same cell through HuggingFace's Trainer", "",
             "`ADDropTrainer` (`addrop_fairseq.hf.trainer`, `examples/hf_trainer_glue.py`, run by "
             "`python experiments/hf_trainer.py`) on a cell of the glue study: same MiniLM weights, 1000-example "
             "subset, whole dev set, 4 epochs, learning rate, Adam (0.9, 0.98) eps 1e-6, weight decay 0.01, 6% warm-up "
             "then linear decay, batch 16, max length 128, the paper's Table 11 p, q and layers, seeds as the glue "
             "study. What differs: the data order and every dropout draw (the Trainer's sampler and RNG, not "
             "fairseq's), torch's AdamW in place of fairseq's adam (both decouple weight decay), and the "
             "classification head's initial draw; so a seed of one front end is not the same run as that seed "
             "of the other, and the front ends are compared by their means over seeds (Welch t-test, 5%).", "",
             "| task (metric) | method | Trainer (per seed) | Trainer | fairseq CLI | Trainer − fairseq | verdict |",
             "|---|---|---|---|---|---|---|"]
    for a in out.agreements.values():
        for method, name in (("ft", "FT"), ("addrop", "AD-DROP")):
            t, f = a.scores["trainer"].get(method, {}), a.scores["fairseq"].get(method, {})
            gap, p = a.gap(method)
            judge = "–" if p is None else f"{'not significantly different' if p >= 0.05 else 'differs'} (p = {p:.2f})"
            lines.append(f"| {TASKS[a.task].name} ({a.metric}) | {name} | {', '.join(f'{t[k]:.1f}' for k in sorted(t))} | "
                         f"{mean_std(list(t.values()))} | {mean_std(list(f.values()))} | "
                         f"{'–' if gap is None else f'{gap:+.1f}'} | {judge} |")
        lines += ["", out.sentence(a) + ".", ""]
        d_t = a.diffs("trainer")
        if len(d_t) >= MIN_SEEDS_FOR_VERDICT and len(a.diffs("fairseq")) >= MIN_SEEDS_FOR_VERDICT:
            same = verdict(d_t) == verdict(a.diffs("fairseq"))
            lines += [f"The two front ends {'reach the same verdict' if same else 'reach different verdicts'} on "
                      f"AD-DROP against FT ({verdict(d_t)} through the Trainer, {verdict(a.diffs('fairseq'))} through "
                      "the fairseq CLI).", ""]
    out.lines = lines
    return out
