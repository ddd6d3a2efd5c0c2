"""The statistics every verdict in the report uses, in one place.

Judgement per task and method, from the per-seed paired differences to a baseline (same seed,
same data), by a two-sided paired t-test at 5%: "helps" when the mean difference is positive and
significant, "hurts" when negative and significant, otherwise "not significant"; no verdict below
three seeds (two paired differences of a discrete metric on a small dev set are too often exactly
equal, a zero-variance "significance"). With three seeds a verdict needs a mean above 4.3
standard errors: few seeds make a verdict hard to earn, on purpose.

"Not significant" is not "no effect": every verdict carries its 95% interval and the smallest
effect its test could detect at 80% power (``read``), and where the paper reports a gain for the
task, whether the interval excludes it or the test cannot tell (``beside_paper``).
"""
import math
import statistics
from dataclasses import dataclass
from typing import List, Optional, Tuple


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
    return "not significant"


def in_plain_words(v: str) -> str:
    """A verdict as the sentence a user reads (the demo, the README's lead)."""
    return {"helps": "AD-DROP helps on these seeds (paired t-test, 5%)",
            "hurts": "AD-DROP hurts on these seeds (paired t-test, 5%)",
            "not significant": "AD-DROP's difference to plain fine-tuning is not significant (paired t-test, 5%)"}.get(v, v)


def p_text(diffs: List[float]) -> str:
    p = paired_p(diffs)
    return "" if p is None else p_words(p)


def judged(diffs: List[float]) -> str:
    """The verdict with its p-value, its 95% interval and the effect its test could detect."""
    if len(diffs) < MIN_SEEDS_FOR_VERDICT:
        return verdict(diffs)
    r = read(diffs)
    lo, hi = r.ci
    return f"{verdict(diffs)} ({p_text(diffs)}; 95% CI [{lo:+.1f}, {hi:+.1f}], detects {r.detectable:.1f})"


def over_seeds(n: int) -> str:
    """'over 1 seed' / 'over 3 seeds', as every paired Δ in the report is qualified."""
    return f"over {n} seed{'s' if n != 1 else ''}"


CONFIDENCE = 0.95
POWER = 0.8


def interval(diffs: List[float], level: float = CONFIDENCE) -> Optional[Tuple[float, float]]:
    """The t-based confidence interval of the mean paired difference; None below two pairs."""
    if len(diffs) < 2:
        return None
    from scipy.stats import t as student_t

    m, se = statistics.mean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))
    half = student_t.ppf(0.5 + level / 2, len(diffs) - 1) * se
    return m - half, m + half


def power(effect: float, sd: float, n: int, alpha: float = 1 - CONFIDENCE) -> float:
    """The chance a two-sided paired t-test at ``alpha`` on ``n`` pairs whose differences have
    standard deviation ``sd`` finds a true mean difference ``effect`` (noncentral t)."""
    from scipy.stats import nct, t as student_t

    df = n - 1
    crit = student_t.ppf(1 - alpha / 2, df)
    nc = effect / (sd / math.sqrt(n))
    return float(nct.sf(crit, df, nc) + nct.cdf(-crit, df, nc))


def detectable_effect(sd: float, n: int, target: float = POWER, alpha: float = 1 - CONFIDENCE) -> Optional[float]:
    """The smallest mean difference the paired test on ``n`` pairs finds with probability
    ``target`` (80%), given the spread ``sd`` of the differences; None below two pairs."""
    if n < 2:
        return None
    if sd == 0:
        return 0.0
    lo, hi = 0.0, sd
    while power(hi, sd, n, alpha) < target:
        hi *= 2
    for _ in range(100):  # bisection: power rises with the effect
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if power(mid, sd, n, alpha) < target else (lo, mid)
    return hi


def sign_test_p(diffs: List[float]) -> Optional[float]:
    """Two-sided exact sign test on the nonzero differences (ties dropped); None if all tie."""
    pos, neg = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    if pos + neg == 0:
        return None
    from scipy.stats import binomtest

    return float(binomtest(pos, pos + neg, 0.5).pvalue)


@dataclass(frozen=True)
class Reading:
    """What a paired test can show: the mean difference, its interval, the effect it could have
    detected, and (where the paper reports one) whether the paper's gain is still possible."""

    n: int
    mean: float
    ci: Optional[Tuple[float, float]]
    detectable: Optional[float]
    p: Optional[float]
    paper: Optional[float] = None  # the paper's gain for the task, in the same metric

    @property
    def kind(self) -> str:
        """'helps' / 'hurts' (significant at 5%), 'excludes paper' (not significant, and the
        interval's upper end is below the paper's gain), 'cannot tell' (the interval holds both 0
        and the paper's gain), 'no effect seen' (not significant, no paper figure), or 'too few'."""
        if self.n < MIN_SEEDS_FOR_VERDICT:
            return "too few"
        if self.p < 0.05:
            return "helps" if self.mean > 0 else "hurts"
        if self.paper is None:
            return "no effect seen"
        return "excludes paper" if self.ci[1] < self.paper else "cannot tell"

    def numbers(self, nd: int = 1) -> str:
        """'Δ -1.2, 95% CI [-4.0, +1.6], n = 5, detectable 3.9'."""
        if self.n < 2:
            return f"Δ {self.mean:+.{nd}f}, n = {self.n}" if self.n else "n = 0"
        lo, hi = self.ci
        return (f"Δ {self.mean:+.{nd}f}, 95% CI [{lo:+.{nd}f}, {hi:+.{nd}f}], n = {self.n}, "
                f"detectable at 80% power {self.detectable:.{nd}f}")

    def words(self) -> str:
        """The verdict as a reader should take it."""
        kind = self.kind
        if kind == "too few":
            return f"{self.n} pair{'s' if self.n != 1 else ''}: no verdict"
        if kind in ("helps", "hurts"):
            return f"AD-DROP {kind} (paired t-test, {p_words(self.p)})"
        if kind == "excludes paper":
            return "no significant difference, and the interval excludes the paper's gain"
        if kind == "cannot tell":
            return "the interval includes both no effect and the paper's gain: this test cannot tell"
        return f"no significant difference; effects smaller than {self.detectable:.1f} would likely go unseen"


def short_words(r: "Reading") -> str:
    """The reading in a few words, for the README's lead."""
    kind = r.kind
    if kind in ("helps", "hurts"):
        return f"AD-DROP {kind} (paired t-test, {p_words(r.p)})"
    if kind == "excludes paper":
        return f"not significant, and the interval excludes the paper's {r.paper:+g}"
    if kind == "cannot tell":
        return f"this test cannot tell: its interval holds both 0 and the paper's {r.paper:+g}"
    return r.words()


def p_words(p: float) -> str:
    return "p < 0.01" if p < 0.01 else f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"  # 0.047 is not "0.05"


def read(diffs: List[float], paper: Optional[float] = None) -> Reading:
    """The one place a paired verdict is computed (AD-DROP minus baseline, same seeds)."""
    n = len(diffs)
    if n == 0:
        return Reading(0, 0.0, None, None, None, paper)
    sd = statistics.stdev(diffs) if n > 1 else 0.0
    return Reading(n, statistics.mean(diffs), interval(diffs), detectable_effect(sd, n) if n > 1 else None,
                   paired_p(diffs), paper)


def beside_paper(task: str, metric: str, diffs: List[float], paper_metric_diffs: Optional[List[float]] = None,
                 ft_scores: Optional[List[float]] = None, floor: Optional[float] = None) -> str:
    """The paper's gain for ``task`` beside our verdict, and which reading it is: the interval
    excludes it, the test cannot tell, or a significant effect. ``diffs`` are in our ``metric``;
    where the paper's metric differs (MRPC: accuracy; translation: BLEU), ``paper_metric_diffs``
    are the same pairs in the paper's metric. ``ft_scores`` add the regime: FT's level here
    against the paper's FT, in the paper's metric (and ``floor``, the majority class's score).
    '' where the paper reports nothing for the task."""
    from paper import paper_gain

    g = paper_gain(task)
    if g is None:
        return ""
    same = g.key == metric
    d = diffs if same else paper_metric_diffs
    regime = ""
    if ft_scores:
        regime = (f"; regime: FT here {mean_std(ft_scores)} {g.metric}, the paper's FT {g.ft:g}"
                  + ("" if floor is None else f", the floor (majority class) {floor:.1f}"))
    if not d:
        return f"{g.label()}: " + ("no pair yet" if same else f"not comparable (this study reports {metric})") + regime
    r = read(d, g.gain)
    pre = "" if same else f"in {g.metric}: {r.numbers()}; "
    if r.kind == "too few":
        return f"{pre}{g.label()}: {r.words()}{regime}"
    if r.kind in ("helps", "hurts"):
        same_sign = (r.mean > 0) == (g.gain > 0)
        return f"{pre}{g.label()}: {'the same sign' if same_sign else 'the opposite'}, significant here ({p_words(r.p)}){regime}"
    return f"{pre}{g.label()}: {r.words()}{regime}"
