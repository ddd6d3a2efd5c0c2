"""Study ``ood``: the paper's Section 4.6 at CPU scale: trained on MNLI / QQP slices, scored once
on HANS / PAWS-Wiki test (standing in for PAWS-X English test), FT against AD-DROP per seed."""
import statistics
from dataclasses import dataclass, field
from functools import partial
from typing import Dict, List, Optional, Tuple

import studies
from paper import paper_gain
from stats import MIN_SEEDS_FOR_VERDICT, beside_paper, judged, mean_std, over_seeds, p_text, verdict
from tasks import TASKS

from .. import figures as plots
from ..common import Figure, Section
from ..load import Data

STUDIES = ("ood",)
FIGURE = "ood_accuracy.png"
OOD_NAMES = {"hans": "HANS (30,000 pairs)", "paws": "PAWS-Wiki test (8,000 pairs; standing in for PAWS-X English test)"}
HANS_GROUPS = ("lexical_overlap", "subsequence", "constituent")
LABEL_NAMES = {"paws": {"0": "not paraphrase (0)", "1": "paraphrase (1)"}}  # PAWS's files give 0/1; HANS names its labels


@dataclass
class Measure:
    """One score of FT and AD-DROP per seed, and AD-DROP's paired differences to FT."""

    name: str
    ft: Dict[int, float]
    addrop: Dict[int, float]

    @property
    def seeds(self) -> List[int]:
        return sorted(set(self.ft) & set(self.addrop))

    @property
    def diffs(self) -> List[float]:
        return [self.addrop[s] - self.ft[s] for s in self.seeds]

    def row(self) -> str:
        d = self.diffs
        return (f"| {self.name} | {mean_std(list(self.ft.values()))} | {mean_std(list(self.addrop.values()))} | "
                f"{mean_std(d) if d else '–'} | {', '.join(f'{x:+.1f}' for x in d)} | {judged(d) if d else '–'} |")


@dataclass
class TaskResult:
    task: str
    ood: str  # the OOD set's name (hans, paws)
    measures: List[Measure]  # in-distribution dev first, then the OOD set overall, then its breakdowns
    choice: str  # the setting's words (rate, p, q, where chosen)
    floor: Optional[str] = None  # the most frequent OOD label's score, in words
    floor_share: Optional[float] = None  # ... and as a number (50: balanced)
    balanced: Optional[Measure] = None  # the mean of the per-gold-label accuracies (one of measures)
    gold: List[Measure] = field(default_factory=list)  # accuracy per gold label (among measures)

    @property
    def title(self) -> str:
        return f"{TASKS[self.task].name} -> {self.ood.upper()}"

    @property
    def at_chance(self) -> bool:
        """Both methods' balanced accuracy within 2 points of a coin's 50 (two labels): neither
        model solves the OOD set, so it cannot show an OOD gain either way."""
        m = self.balanced
        return bool(m and m.ft and m.addrop and all(abs(statistics.mean(v.values()) - 50.0) < 2.0 for v in (m.ft, m.addrop)))

    @property
    def unbalanced(self) -> bool:
        return self.floor_share is not None and self.floor_share > 51.0

    @property
    def dev(self) -> Measure:
        return self.measures[0]

    @property
    def overall(self) -> Measure:
        return self.measures[1]


@dataclass
class Ood(Section):
    tasks: Dict[str, TaskResult] = field(default_factory=dict)

    def line(self, t: TaskResult) -> str:
        """The README's words for one training set: in-distribution and OOD Δ, verdicts, the paper's."""
        def part(m: Measure) -> str:
            d = m.diffs
            if not d:
                return f"{m.name}: no pair yet"
            v = f": {verdict(d)}" if len(d) >= MIN_SEEDS_FOR_VERDICT else ""
            return f"{m.name} FT {mean_std(list(m.ft.values()))}, AD-DROP Δ {mean_std(d)} {over_seeds(len(d))}{v}"
        g = paper_gain(t.ood)
        text = (f"{t.title}: {part(t.dev)}; {part(t.overall)} (the paper's "
                f"RoBERTa-base, full training set: {g.ft:.2f} -> {g.addrop:.2f}, {g.gain:+.2f})")
        if t.unbalanced and t.balanced:  # on a balanced set it is the accuracy
            text += f"; {part(t.balanced)} ({t.floor})"
        return text + (f"; {CHANCE_WORDS}" if t.at_chance else "")


def scores(runs: List[dict], key) -> Dict[int, float]:
    return {r["seed"]: v for r in runs if (v := key(r)) is not None}


def label_name(ood: str, label: str) -> str:
    return LABEL_NAMES.get(ood, {}).get(label, label)


def balanced(by_label):
    """Mean of the per-gold-label accuracies: blind to a shift in which label a model predicts,
    which raw accuracy on an unbalanced set (PAWS: 55.8% not paraphrase) rewards."""
    def get(r):
        labels = by_label(r)
        return statistics.mean(v["accuracy"] for v in labels.values()) if labels else None
    return get


def predicted_share(predicted, label: str):
    def get(r):
        counts = predicted(r)
        return 100.0 * counts.get(label, 0) / sum(counts.values()) if counts else None
    return get


def floor(ood: str, sample: dict) -> Tuple[Optional[str], Optional[float]]:
    """The score of always predicting the OOD set's most frequent gold label: in words, and the number."""
    labels = sample.get("by_label") if sample else None
    if not labels:
        return None, None
    top = max(labels, key=lambda k: labels[k]["n"])
    n, total = labels[top]["n"], sum(v["n"] for v in labels.values())
    share = 100 * n / total
    return f"always predicting {label_name(ood, top)} scores {share:.1f}: {n:,} of {total:,} pairs", share


def label_shift(t: "TaskResult") -> Optional[str]:
    """Where AD-DROP's mean per-gold-label differences have opposite signs, each larger than its
    overall difference: what was measured, each with its own test (a shift in the predicted label
    would look like this; with few seeds it is not shown)."""
    gold = [m for m in t.gold if m.diffs]
    if len(gold) != 2 or not t.overall.diffs:
        return None
    means = [statistics.mean(m.diffs) for m in gold]
    overall = abs(statistics.mean(t.overall.diffs))
    if means[0] * means[1] >= 0 or min(abs(x) for x in means) <= overall:
        return None
    parts = "; ".join(f"{x:+.1f} on {m.name[len(f'{t.ood} gold '):]}, {judged(m.diffs)}" for m, x in zip(gold, means))
    significant = sum(verdict(m.diffs) in ("helps", "hurts") for m in gold)
    return (f"Measured per gold label: AD-DROP's mean differences have opposite signs, each larger than the overall "
            f"{statistics.mean(t.overall.diffs):+.1f} ({parts}); a shift in which label it predicts would look like "
            "this, " + ("but neither difference is significant, so no shift is shown." if not significant else
                        f"and {significant} of the two differences is significant.")
            + (" On a set this unbalanced raw accuracy rewards such a shift; the balanced accuracy row does not."
               if t.unbalanced else ""))


CHANCE_WORDS = ("both methods are at chance on the OOD set (balanced accuracy within 2 points of 50): neither model "
                "solves it at this scale, so it cannot show the paper's OOD gain, or its absence")


def balanced_words(t: "TaskResult") -> str:
    """', and on balanced accuracy ...' where the OOD set is unbalanced (else the two agree)."""
    m = t.balanced
    if not t.unbalanced or m is None or len(m.diffs) < MIN_SEEDS_FOR_VERDICT:
        return ""
    return f"; on balanced accuracy: {judged(m.diffs)}, mean Δ {statistics.mean(m.diffs):+.2f}"


def task_result(task: str, runs: List[dict]) -> TaskResult:
    by = {m: [r for r in runs if r["task"] == task and r["method"] == m] for m in ("ft", "addrop")}
    ood = TASKS[task].ood[0].name

    def measure(name, key):
        return Measure(name, scores(by["ft"], key), scores(by["addrop"], key))

    def ood_key(*path):
        def get(r):
            x = r.get("ood", {}).get(ood)
            for k in path:
                x = None if x is None else x.get(k)
            return x
        return get

    measures = [measure(f"{TASKS[task].name} dev accuracy (in distribution)", lambda r: r["best"]["score"]),
                measure(f"{ood.upper()} accuracy", ood_key("accuracy"))]
    sample = next((r["ood"][ood] for r in by["ft"] + by["addrop"] if ood in r.get("ood", {})), None)
    balanced_m = None
    if sample and sample.get("by_label"):
        balanced_m = measure(f"{ood.upper()} balanced accuracy (mean over gold labels)", balanced(ood_key("by_label")))
        measures.append(balanced_m)
    if sample and sample.get("predicted"):
        first = sorted(sample["predicted"])[0]
        measures.append(measure(f"{ood.upper()} predicted {label_name(ood, first)} (% of pairs)",
                                predicted_share(ood_key("predicted"), first)))
    gold = [measure(f"{ood.upper()} gold {label_name(ood, label)}", ood_key("by_label", label, "accuracy"))
            for label in sorted(sample.get("by_label", {}))] if sample else []
    measures += gold
    if sample:
        for group in [g for g in HANS_GROUPS if g in sample.get("by_group", {})]:
            measures.append(measure(f"{ood.upper()} {group.replace('_', ' ')}", ood_key("by_group", group, "accuracy")))
            for label in sorted(sample.get("by_label", {})):
                measures.append(measure(f"{ood.upper()} {group.replace('_', ' ')} / {label}",
                                        ood_key("by_group_label", f"{group}/{label}", "accuracy")))
    meta = next((r for r in by["addrop"]), None)
    lr = meta["lr"] if meta else None
    choice = (f"learning rate {lr:g}, AD-DROP p = {meta['meta']['p']}, q = {meta['meta']['q']} on all layers "
              f"({meta['meta'].get('chosen_on', '?')}'s choice)") if meta else "–"
    return TaskResult(task, ood, measures, choice, *floor(ood, sample), balanced=balanced_m, gold=gold)


def ood_drop(t: TaskResult, runs: List[dict], checks: List[dict]) -> Optional[str]:
    """What the cell drops here (logged over every query row), and over attributed rows where a
    ``dropcheck`` run of the task the cell was chosen on measured it (not logged in these runs)."""
    from .protocol import drop_fraction

    mine = [r for r in runs if r["task"] == t.task and r["method"] == "addrop"]
    logged = drop_fraction(mine, "addrop_drop_frac")
    if logged is None:
        return None
    text = f"Drop: `addrop_drop_frac` {logged:.3f} on AD-DROP epochs (over every query row)"
    attributed = drop_fraction(mine, "addrop_drop_frac_attributed")
    if attributed is not None:
        return text + f"; over rows with a nonzero attribution {attributed:.3f}."
    cell = mine[0]["meta"]
    on = [r for r in checks if r["task"] == studies.OOD_CHOICE_FROM and r["meta"].get("p") == cell["p"]
          and r["meta"].get("q") == cell["q"]]
    check = drop_fraction(on, "addrop_drop_frac_attributed")
    return text + ("; over rows with a nonzero attribution: not logged in these runs"
                   + (f" (on {TASKS[studies.OOD_CHOICE_FROM].name}, where the cell was chosen, a rerun logs {check:.3f}: "
                      "protocol section)" if check is not None else "") + ".")


def points(t: TaskResult) -> Dict[str, List[Tuple[float, float]]]:
    """Per method: (in-distribution dev accuracy, OOD accuracy) per seed (the figure's data)."""
    out = {}
    for m, attr in (("ft", "ft"), ("addrop", "addrop")):
        dev, ood = getattr(t.dev, attr), getattr(t.overall, attr)
        out[m] = [(dev[s], ood[s]) for s in sorted(set(dev) & set(ood))]
    return out


def build(data: Data, rel: str, done: dict) -> Ood:
    runs = data.study(*STUDIES)
    out = Ood()
    if not runs:
        return out
    order = [t for t in studies.OOD_TASKS if any(r["task"] == t for r in runs)]
    out.tasks = {t: task_result(t, runs) for t in order}
    lines = ["## ood: out-of-distribution generalization (the paper's Section 4.6)", "",
             f"MiniLM fine-tuned on {studies.OOD_TRAIN_SIZE} examples of a GLUE training set (the slices in "
             "`../shared/data/mnli`, `qqp`; their own 1000-row dev slices, disjoint from training, are the "
             "in-distribution dev sets) with the protocol study's recipe and early stopping on that dev set; the best "
             "dev checkpoint of each run is then scored once with `addrop-evaluate` on the OOD set: MNLI -> HANS "
             "(MNLI's neutral and contradiction both count as non-entailment, as in HANS's own evaluation), QQP -> "
             "PAWS-Wiki's labeled test (PAWS-X English test_2k, the paper's set, is not reachable here; PAWS-Wiki "
             "test stands in). Nothing is chosen on an OOD set: learning rate and p, q are the protocol study's "
             f"choice for {TASKS[studies.OOD_CHOICE_FROM].name}. Δ = AD-DROP minus FT, same seed; verdict: paired "
             "t-test, 5%, two-sided.", ""]
    for t in out.tasks.values():
        lines += [f"### {TASKS[t.task].name} -> {OOD_NAMES[t.ood]}", "", f"Setting: {t.choice}.", ""]
        drop = ood_drop(t, runs, data.study("dropcheck"))
        lines += [drop, ""] if drop else []
        lines += [
                  "| measure | FT | AD-DROP | Δ | per-seed Δ | verdict |", "|---|---|---|---|---|---|"]
        lines += [m.row() for m in t.measures] + [""]
        if t.floor:
            lines += [f"Floor: {t.floor}" + (f"; {CHANCE_WORDS}." if t.at_chance else "."), ""]
        shift = label_shift(t)
        if shift:
            lines += [shift, ""]
        g = paper_gain(t.ood)
        d = t.overall.diffs
        beside = beside_paper(t.ood, "accuracy", d, ft_scores=list(t.overall.ft.values()), floor=t.floor_share) \
            if d else g.label()
        lines += [f"Beside the paper: {beside}. Not comparable in level (another model, 1000 training examples here"
                  + (", another PAWS test set" if t.ood == "paws" else "") + ").", ""]
        d = t.overall.diffs
        if len(d) >= MIN_SEEDS_FOR_VERDICT:
            dev = judged(t.dev.diffs) if len(t.dev.diffs) >= MIN_SEEDS_FOR_VERDICT else "not yet judged"
            lines += [f"In words: on {t.ood.upper()}, AD-DROP against FT: {judged(d)}, mean Δ "
                      f"{statistics.mean(d):+.2f} {over_seeds(len(d))}{balanced_words(t)}; in distribution: {dev}.", ""]
    data_for_plot = {t.title: points(t) for t in out.tasks.values()}
    if any(p for pts in data_for_plot.values() for p in pts.values()):
        floors = {t.title: t.floor_share for t in out.tasks.values() if t.floor_share}
        out.figures = [Figure(FIGURE, partial(plots.plot_ood, data_for_plot, floors))]
        lines += [f"![in-distribution vs OOD accuracy per seed]({rel}/{FIGURE})", "",
                  "Each point is one run (seed): its best in-distribution dev accuracy against its OOD accuracy; dashed: "
                  "always predicting the OOD set's most frequent label; dotted: a coin (50).", ""]
    out.lines = lines
    return out
