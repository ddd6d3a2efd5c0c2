"""What a paired test can show (experiments/stats.py): the 95% interval, the smallest effect it
detects at 80% power, the sign test, and the reading beside the paper's gain, each checked
against scipy (or a simulation) on known cases."""
import math

import numpy as np
import pytest
from scipy import stats as sp

import stats
from paper import PAPER, paper_gain


def test_interval_is_scipys_t_interval():
    for diffs in ([-1.3, -5.1, -0.2, 0.7, -0.1], [1.0, 2.0, 3.0], [0.4, 0.1, -0.2, 0.9, 0.0, 1.2, -0.3]):
        lo, hi = stats.interval(diffs)
        want = sp.t.interval(0.95, len(diffs) - 1, loc=np.mean(diffs), scale=sp.sem(diffs))
        assert (lo, hi) == pytest.approx(want, abs=1e-12)
    assert stats.interval([1.0]) is None


def test_detectable_effect_has_eighty_percent_power():
    # the textbook value: a paired t-test on 30 pairs, sd 1, two-sided 5%, 80% power needs d = 0.5292
    # (statsmodels' TTestPower().solve_power(nobs=30, alpha=0.05, power=0.8))
    assert stats.detectable_effect(1.0, 30) == pytest.approx(0.5292, abs=1e-4)
    # the CoLA protocol study's five pairs (sd 2.29): 3.9 MCC; thirty pairs: 1.2 (the registered design)
    assert stats.detectable_effect(2.2935, 5) == pytest.approx(3.86, abs=0.01)
    assert stats.detectable_effect(2.2935, 30) == pytest.approx(1.21, abs=0.01)
    # power from scipy's noncentral t, written out independently: 0.8 at the returned effect
    sd, n = 1.7, 12
    d = stats.detectable_effect(sd, n)
    crit = sp.t.ppf(0.975, n - 1)
    nc = d / (sd / math.sqrt(n))
    assert sp.nct.sf(crit, n - 1, nc) + sp.nct.cdf(-crit, n - 1, nc) == pytest.approx(0.8, abs=1e-6)
    # and by simulation: paired t-tests on normal differences with that mean reject about 80% of the time
    rng = np.random.default_rng(0)
    draws = rng.normal(d, sd, size=(20000, n))
    rejected = sp.ttest_1samp(draws, 0.0, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.8, abs=0.015)
    assert stats.detectable_effect(0.0, 5) == 0.0 and stats.detectable_effect(1.0, 1) is None


def test_sign_test_is_the_exact_binomial():
    assert stats.sign_test_p([-1.3, -5.1, -0.2, 0.7, -0.1]) == pytest.approx(sp.binomtest(1, 5).pvalue)
    assert stats.sign_test_p([1.0, 0.0, 2.0, 3.0]) == pytest.approx(sp.binomtest(3, 3).pvalue)  # ties dropped
    assert stats.sign_test_p([0.0, 0.0]) is None


def test_reading_says_which_of_the_three_it_is():
    cola = paper_gain("cola").gain
    assert cola == pytest.approx(1.6)
    # CoLA's five protocol pairs: the interval [-4.0, +1.65] holds both 0 and +1.6
    r = stats.read([-1.3, -5.1, -0.2, 0.7, -0.1], cola)
    assert r.kind == "cannot tell" and "this test cannot tell" in r.words()
    assert r.numbers() == "Δ -1.2, 95% CI [-4.0, +1.6], n = 5, detectable at 80% power 3.9"
    # a tight interval around 0 excludes the paper's gain
    r = stats.read([0.1, -0.2, 0.0, 0.3, -0.1, 0.2], cola)
    assert r.kind == "excludes paper" and r.ci[1] < cola and "excludes the paper's gain" in r.words()
    # significant either way
    assert stats.read([1.9, 2.0, 2.1], cola).kind == "helps"
    assert stats.read([-1.9, -2.0, -2.1], cola).kind == "hurts"
    # no paper figure: no third reading, the detectable effect instead
    r = stats.read([1.0, -1.0, 0.5])
    assert r.kind == "no effect seen" and f"smaller than {r.detectable:.1f}" in r.words()
    assert stats.read([1.0, 2.0]).kind == "too few" and stats.read([]).words() == "0 pairs: no verdict"


def test_beside_paper_compares_in_the_papers_metric():
    # MRPC: the paper reports accuracy; our F1 pairs get no reading against it, the accuracy pairs do
    acc = [-0.5, 0.2, -0.3, 0.0, -0.4]
    text = stats.beside_paper("mrpc", "f1", [-0.2, 0.1, -0.3, 0.0, -0.1], acc, [75.0, 76.0, 75.5, 75.8, 76.2], 68.4)
    assert text.startswith("in accuracy: " + stats.read(acc, PAPER["mrpc"].gain).numbers())
    assert "the paper's +2.2 accuracy (Table 3, BERT-base, mean of 5 seeds: FT 85.2 -> 87.4)" in text
    assert "excludes the paper's gain" in text
    assert "regime: FT here 75.7 ± 0.5 accuracy, the paper's FT 85.2, the floor (majority class) 68.4" in text
    # translation: chrF pairs without BLEU ones are not compared with the paper's BLEU
    assert "not comparable (this study reports chrf)" in stats.beside_paper("wmt_en_ro", "chrf", [0.1, 0.2, 0.3])
    assert stats.beside_paper("sst2", "accuracy", [0.1, 0.2, 0.3]) == ""  # the paper's Table 3 has no SST-2
    # every paper figure carries its source: table, model, and seeds or "one run"
    for g in PAPER.values():
        assert g.source.startswith("Table ") and ("seeds" in g.source or "one run" in g.source)
