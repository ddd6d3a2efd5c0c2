"""Study ``mt`` (with ``smoke`` runs on translation tasks): WMT16 EN-RO and TR-EN, small
transformers from scratch, scored on a held-out test block."""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import studies
from stats import judged, mean_std, over_seeds, verdict
from tasks import TASKS

from ..common import METHOD_NAMES, TASK_ORDER, Comparison, Section, by, comparison, dev_losses, paired_diffs, sizes_line
from ..load import Data

STUDIES = ("mt", "smoke")
DEGENERATE_LENGTH = (0.5, 2.0)  # test output / reference length outside this: not translations yet


@dataclass
class Mt(Section):
    comparison: Optional[Comparison] = None  # per (task, method): test chrF, paired Δ to FT
    lowest_loss: Dict[Tuple[str, str], List[float]] = field(default_factory=dict)  # (task, method) -> Δ lowest dev loss
    lengths: Dict[str, Tuple[List[float], int]] = field(default_factory=dict)  # task -> (length ratios, how many degenerate)


def build(data: Data, rel: str, done: dict) -> Mt:
    runs = data.study(*STUDIES, family="mt")
    out = Mt()
    if not runs:
        return out
    epochs = sorted({r["epochs_planned"] for r in runs})
    p, q = studies.MT_PQ
    lines = ["## mt: WMT16 EN-RO and TR-EN, small transformers from scratch", "",
             "These are 2+2-layer, d = 128 transformers trained from scratch on the newsdev2016 pairs (the "
             "paper fine-tunes OPUS-MT, which cannot be downloaded here; the WMT16 training corpora are not "
             "on these machines either): the point is the relative effect and its variance, not the level. "
             f"Train / valid / test pairs: {sizes_line(runs)} (valid for the checkpoint choice by loss). "
             f"{'/'.join(map(str, epochs))} epochs, 2048 tokens per batch, label smoothing 0.1; AD-DROP and RD "
             f"with p = {p}, q = {q} on all layers of encoder self-attention (the reference code's default) or "
             "of encoder and decoder self-attention (`addrop_dec`); R-Drop is fairseq's "
             "`label_smoothed_cross_entropy_with_rdrop`, alpha 5. Scores: sacrebleu on the test block against "
             "the untouched references, beam 4; \"best epoch\" = the checkpoint with the lowest valid loss. The "
             "score compared is chrF, not BLEU: FT scores 0-1 BLEU here (study tune), where 4-gram matches are "
             "too rare to rank methods; BLEU is in the second table.", ""]
    out.comparison = comparison(runs, rel, "mt_paired_differences.png", "best checkpoint's test chrF")
    lines += out.comparison.lines
    lines += ["The best checkpoint's BLEU and length ratio, and its dev loss (the lowest of the run, what the "
              "checkpoint is chosen on) with the paired Δ to FT's; the verdict there counts a lower loss as "
              "helping:", "",
              "| task | method | seeds | BLEU (best ckpt) | length ratio | lowest dev loss | paired Δ vs FT | "
              "per-seed Δ | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    groups = by(runs, "task", "method")
    for task in TASK_ORDER:
        for method in METHOD_NAMES:
            rs = groups.get((task, method), [])
            if not rs:
                continue
            diffs = lowest_loss_diffs(rs, groups.get((task, "ft"), [])) if method != "ft" else []
            if method != "ft":
                out.lowest_loss[(task, method)] = diffs
            lines.append(f"| {TASKS[task].name} | {METHOD_NAMES[method]} | {len(rs)} | "
                         f"{mean_std([r['test']['best']['bleu'] for r in rs], 2)} | "
                         f"{mean_std([r['test']['best']['len_ratio'] for r in rs], 3)} | "
                         f"{mean_std([min(dev_losses(r)) for r in rs], 3)} | " + (
                             f"{mean_std(diffs, 3)} | {', '.join(f'{d:+.3f}' for d in diffs)} | "
                             f"{judged([-d for d in diffs])} |" if diffs else " |  |  |"))
    out.lengths = {t: length_ratios(runs, t) for t in TASK_ORDER if any(r["task"] == t for r in runs)}
    sig = sorted({r["test"]["signatures"]["bleu"] for r in runs})
    lines += [""] + length_warnings(runs) + mt_attention_default(runs)
    out.lines = lines + ["sacrebleu signatures: BLEU `" + "`, `".join(sig) + "`; chrF `"
                         + "`, `".join(sorted({r["test"]["signatures"]["chrf"] for r in runs})) + "`.", ""]
    out.figures = [out.comparison.figure] if out.comparison.figure else []
    return out


def length_ratios(runs: List[dict], task: str) -> Tuple[List[float], int]:
    """The best checkpoints' test length ratios on ``task``, and how many are outside DEGENERATE_LENGTH."""
    lo, hi = DEGENERATE_LENGTH
    ratios = [r["test"]["best"]["len_ratio"] for r in runs if r["task"] == task]
    return ratios, sum(not lo <= x <= hi for x in ratios)


def lowest_loss_diffs(runs: List[dict], ft_runs: List[dict]) -> List[float]:
    """Each run's lowest dev loss (what a translation checkpoint is chosen on) minus FT's, same seed."""
    ft = {r["seed"]: min(dev_losses(r)) for r in ft_runs}
    return [min(dev_losses(r)) - ft[r["seed"]] for r in sorted(runs, key=lambda r: r["seed"]) if r["seed"] in ft]


def length_warnings(runs: List[dict]) -> List[str]:
    """Where outputs are far from the references' length, chrF (and BLEU's brevity penalty) rank
    lengths more than translations; said per task, from the runs' own length ratios."""
    lo, hi = DEGENERATE_LENGTH
    out = []
    for task in TASK_ORDER:
        ratios, bad = length_ratios(runs, task)
        if bad:
            out.append(f"{TASKS[task].name}: {bad} of {len(ratios)} runs translate the test block to less than "
                       f"{lo:g} or more than {hi:g} times the references' length (length ratios {min(ratios):.2f} to "
                       f"{max(ratios):.2f}): those outputs are not translations yet, and chrF differences between "
                       "them are mostly length differences; the dev loss column is the cleaner signal there.")
    return out + [""] if out else []


def mt_attention_default(runs: List[dict]) -> List[str]:
    """Which attention AD-DROP should act on in translation, by a rule fixed before the runs:
    encoder + decoder self-attention replaces the reference code's encoder-only default only
    if it beats it, paired per seed on the test score (chrF), significantly (p < 0.05) on every task run."""
    per_task = {}
    for task in TASK_ORDER:
        enc = {r["seed"]: r for r in runs if r["task"] == task and r["method"] == "addrop"}
        diffs = paired_diffs([r for r in runs if r["task"] == task and r["method"] == "addrop_dec"], enc)
        if diffs:
            per_task[task] = diffs
    if not per_task:
        return []
    parts = "; ".join(f"{TASKS[t].name} Δ {mean_std(d, 2)} {TASKS[t].metric} {over_seeds(len(d))}, {judged(d)}"
                      for t, d in per_task.items())
    wins = all(verdict(d) == "helps" for d in per_task.values())
    return [f"Attention default for translation (encoder + decoder self-attention minus encoder only, paired "
            f"per seed): {parts}. " + (
                "The evidence picks encoder + decoder self-attention over the reference code's encoder-only "
                "default on every task." if wins else
                "The evidence does not pick a different default: `--addrop-attention auto` stays encoder "
                "self-attention, the reference code's choice."), ""]
