"""Study ``prior``: dropping low- vs high-attribution positions (the paper's Fig. 2 / Fig. 7), and
``prior_mechanism.py``'s measurement of why "high" collapses training."""
import statistics
from dataclasses import dataclass
from functools import partial
from typing import List, Optional

from stats import fmt, mean_std

from .. import figures as plots
from ..common import Figure, Section
from ..load import Data

STUDIES = ("prior",)


@dataclass
class Prior(Section):
    ran: bool = False
    mechanism: Optional[dict] = None


def build(data: Data, rel: str, done: dict) -> Prior:
    runs = data.study(*STUDIES)
    out = Prior(ran=bool(runs), mechanism=data.mechanism)
    if not runs:
        return out
    references = data.references
    lines = ["## prior: dropping low- vs high-attribution positions (Fig. 2 / Fig. 7 analogue)", "",
             "MRPC, first layer only, gold-label GA, AD-DROP on every update; dropping rate 0.3 "
             "(p = 0.3, q = 1): none (FT), random (RD), high (AD-DROP's candidates) and low "
             "(the int(p n) lowest-attribution keys, as the reference code).", ""]
    main = [r for r in runs if r["meta"].get("rate") == "0.3" or r["method"] == "none"]
    strategies = ["none", "random", "high", "low"]
    lines += ["| strategy | seeds | final train loss (bits) | final dev loss (bits) | best dev F1 | last dev F1 |", "|---|---|---|---|---|---|"]
    curves = {}
    for s in strategies:
        rs = [r for r in main if r["method"] == s]
        if not rs:
            continue
        tl = [r["epochs"][-1].get("train_loss") for r in rs]
        vl = [r["epochs"][-1].get("valid_loss") for r in rs]
        lines.append(f"| {s} | {len(rs)} | {mean_std(tl, 3)} | {mean_std(vl, 3)} | "
                     f"{mean_std([r['best']['score'] for r in rs])} | {mean_std([r['last']['score'] for r in rs])} |")
        curves[s] = rs
    lines.append("")
    floor = (references or {}).get("mrpc")
    if floor:
        lines += [f"MRPC's majority-class floor is F1 {floor['score']:.1f}: a run there answers \"paraphrase\" for "
                  "every pair.", ""]
    if "none" in curves and len(curves) > 1:
        none = {r["seed"]: r for r in curves["none"]}

        def mean_loss(r, key):  # the area under the curve: how fast it fits, not only where it ends
            return statistics.mean(e[key] for e in r["epochs"] if key in e)

        def compare(s, key, word):
            pairs = [(mean_loss(r, key), mean_loss(none[r["seed"]], key)) for r in curves[s] if r["seed"] in none]
            above = sum(a > b for a, b in pairs)
            return (f"{word} {statistics.mean(a for a, _ in pairs):.3f} vs none's "
                    f"{statistics.mean(b for _, b in pairs):.3f}, above none's in {above} of {len(pairs)} seeds")

        expect = {"random": "close to none", "high": "slower fitting: train loss above none's",
                  "low": "faster fitting and overfitting: train loss below none's, dev loss above"}
        said = [f"- {s} (paper: {expect[s]}): {compare(s, 'train_loss', 'train loss')}; "
                f"{compare(s, 'valid_loss', 'dev loss')}." for s in strategies if s != "none" and s in curves]
        lines += ["What the data say (losses averaged over the epochs, i.e. the area under the curves of the "
                  "figure below; each seed against none's run with the same seed; after each strategy, what the "
                  "paper's Fig. 2 shows for it):", ""] + said + [""]
    if curves:
        name = "prior_losses.png"
        out.figures.append(Figure(name, partial(plots.plot_prior, curves)))
        lines += [f"![train and dev loss per epoch by strategy]({rel}/{name})", ""]
    first = min(r["seed"] for r in main) if main else None
    rates = [r for r in runs if "_rate" in r["method"]] + [r for r in main if r["method"] in ("high", "low")
                                                           and r["seed"] == first]
    if any("_rate" in r["method"] for r in rates):
        scores = {(r["meta"]["strategy"], float(r["meta"]["rate"])): (best_accuracy(r), r["best"]["score"]) for r in rates}
        grid = sorted({rate for _, rate in scores})
        none_first = next((r for r in curves.get("none", []) if r["seed"] == first), None)
        floor_acc = floor and 100 * floor["dev_counts"][floor["label"]] / floor["dev_size"]
        lines += [f"Dev accuracy and F1 (each the best over the epochs) against the dropping rate, seed {first} "
                  f"(Fig. 7 analogue, which plots accuracy). None, seed {first}: accuracy "
                  f"{fmt(none_first and best_accuracy(none_first))}, F1 {fmt(none_first and none_first['best']['score'])}"
                  + (f"; majority class: accuracy {floor_acc:.1f}, F1 {floor['score']:.1f}" if floor else "") + ".", "",
                  "| strategy (metric) | " + " | ".join(f"rate {g:g}" for g in grid) + " |", "|---|" + "---|" * len(grid)]
        lines += [f"| {s} ({metric}) | " + " | ".join(fmt((scores.get((s, g)) or (None, None))[i]) for g in grid) + " |"
                  for s in ("high", "low") for i, metric in enumerate(("accuracy", "F1"))]
        name = "prior_rates.png"
        out.figures.append(Figure(name, partial(plots.plot_rates, {k: v[0] for k, v in scores.items()},
                                                ft=none_first and best_accuracy(none_first), floor=floor_acc)))
        lines += ["", f"![dev accuracy vs dropping rate]({rel}/{name})", ""]
    out.lines = lines + mechanism_lines(data.mechanism)
    return out


def best_accuracy(r: dict) -> Optional[float]:
    vals = [e["valid_accuracy"] for e in r["epochs"] if "valid_accuracy" in e]
    return max(vals) if vals else None


def mechanism_lines(m: Optional[dict]) -> List[str]:
    """Why a strategy collapses training: what its mask does to a model that has learned MRPC."""
    if not m:
        return []
    st = m["strategies"]
    cats = [c for c in ("[CLS]", "[SEP]", "punctuation", "other") if all(c in v["drop_share"] for v in st.values())]
    lines = [f"Why (`python experiments/prior_mechanism.py`): the same masks (layer {m['layer']}, {m['labels']}-label "
             f"attribution, rate {m['rate']:g}, q = 1) applied to FT's trained MiniLM ({m['checkpoint']}) on all "
             f"{next(iter(st.values()))['pairs']} MRPC dev pairs, eval mode: the gold-label loss without and with "
             "the mask, the right predictions the mask turns wrong, and the share of (head, query) rows that "
             "drop each kind of key.", "",
             "| strategy | gold loss, no mask (nats) | with the mask | Δ per pair | right predictions turned wrong | "
             + " | ".join(f"{c} dropped" for c in cats) + " |", "|---|---|---|---|---|" + "---|" * len(cats)]
    for name, v in sorted(st.items(), key=lambda kv: ("random", "high", "low").index(kv[0])):
        lines.append(f"| {name} | {v['gold_loss_clean']:.3f} | {v['gold_loss_masked']:.3f} | "
                     f"{v['delta_mean']:+.3f} ± {v['delta_std']:.3f} | {v['flipped']} of {v['right']} "
                     f"({100 * v['flipped'] / max(1, v['right']):.0f}%) | "
                     + " | ".join(f"{100 * v['drop_share'][c]:.0f}%" for c in cats) + " |")
    if {"high", "random", "low"} <= set(st):
        hi, rd, lo = (st[k]["delta_mean"] for k in ("high", "random", "low"))
        lines += ["", f"Dropping the high-attribution keys raises the gold loss by {hi:+.3f} nats per pair, against "
                  f"{rd:+.3f} for a random region of the same size and {lo:+.3f} for the low-attribution keys: "
                  + ("the keys \"high\" removes carry the evidence for the right answer; a model trained under "
                     "that mask on every update is denied it, which fits the runs above."
                     if hi > max(rd, lo) else "the mask does not remove more evidence than the others here.")]
    return lines + [""]
