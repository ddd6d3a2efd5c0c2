"""The statistics every verdict in the report uses, in one place.

Judgement per task and method, from the per-seed paired differences to a baseline (same seed,
same data), by a two-sided paired t-test at 5%: "helps" when the mean difference is positive and
significant, "hurts" when negative and significant, otherwise "within noise"; no verdict below
three seeds (two paired differences of a discrete metric on a small dev set are too often exactly
equal, a zero-variance "significance"). With three seeds a verdict needs a mean above 4.3
standard errors: few seeds make a verdict hard to earn, on purpose.
"""
import math
import statistics
from typing import List, Optional


def fmt(x: Optional[float], nd: int = 1) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def mean_std(xs: List[Optional[float]], nd: int = 1) -> str:
    """'mean ± std' over the values that exist (the value alone for one, '–' for none)."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    if len(xs) == 1:
        return f"{xs[0]:.{nd}f}"
    return f"{statistics.mean(xs):.{nd}f} ± {statistics.stdev(xs):.{nd}f}"


def paired_p(diffs: List[float]) -> Optional[float]:
    """Two-sided p-value of the paired t-test (mean difference 0); None below two seeds.
    scipy comes with seqeval (through scikit-learn)."""
    if len(diffs) < 2:
        return None
    m = statistics.mean(diffs)
    sd = statistics.stdev(diffs)
    if sd == 0:
        return 1.0 if m == 0 else 0.0
    from scipy.stats import t as student_t

    return float(2 * student_t.sf(abs(m) / (sd / math.sqrt(len(diffs))), len(diffs) - 1))


MIN_SEEDS_FOR_VERDICT = 3


def verdict(diffs: List[float]) -> str:
    if len(diffs) < MIN_SEEDS_FOR_VERDICT:
        return f"{['no', 'one', 'two'][len(diffs)]} seed{'s' if len(diffs) != 1 else ''}: no verdict"
    p = paired_p(diffs)
    if p < 0.05:
        return "helps" if statistics.mean(diffs) > 0 else "hurts"
    return "within noise"


def in_plain_words(v: str) -> str:
    """A verdict as the sentence a user reads (the demo, the README's lead)."""
    return {"helps": "AD-DROP helps on these seeds (paired t-test, 5%)",
            "hurts": "AD-DROP hurts on these seeds (paired t-test, 5%)",
            "within noise": "AD-DROP's difference to plain fine-tuning is within seed noise: no evidence it helps "
                            "or hurts at this scale"}.get(v, v)


def p_text(diffs: List[float]) -> str:
    p = paired_p(diffs)
    if p is None:
        return ""
    return "p < 0.01" if p < 0.01 else f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"  # 0.047 is not "0.05"


def judged(diffs: List[float]) -> str:
    """The verdict with its p-value, for tables."""
    return f"{verdict(diffs)} ({p_text(diffs)})" if len(diffs) >= MIN_SEEDS_FOR_VERDICT else verdict(diffs)


def over_seeds(n: int) -> str:
    """'over 1 seed' / 'over 3 seeds', as every paired Δ in the report is qualified."""
    return f"over {n} seed{'s' if n != 1 else ''}"
