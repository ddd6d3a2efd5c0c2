"""Eq. 6-7 against a slow per-row reference, plus property tests."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from addrop_fairseq.masks import (
    addrop_drop_mask,
    candidate_region,
    drop_fill_value,
    threshold_index,
)


def reference_candidates(attr, valid, p, strategy="high"):
    """Loop over rows. high (Eq. 6): sort the valid attributions, the keys >= the value at
    position int(n(1-p)). low (the reference code's prior experiment): the keys strictly below
    the value at position int(p n), all of them when int(p n) >= n."""
    out = torch.zeros_like(valid)
    flat_a, flat_v, flat_o = attr.reshape(-1, attr.size(-1)), valid.reshape(-1, valid.size(-1)), out.view(-1, out.size(-1))
    for r in range(flat_a.size(0)):
        idx = [j for j in range(flat_a.size(1)) if flat_v[r, j]]
        n = len(idx)
        vals = [float(flat_a[r, j]) for j in idx]
        if strategy == "high":
            # exact rational arithmetic for int(n(1-p)) with p given as a decimal
            k = math.floor(n * (1 - p) + 1e-9)
            if k >= n:
                continue
            thresh = sorted(vals)[k]
            chosen = [j for j, v in zip(idx, vals) if v >= thresh]
        else:
            k = math.floor(n * p + 1e-9)
            thresh = sorted(vals)[k] if k < n else math.inf
            chosen = [j for j, v in zip(idx, vals) if v < thresh]
        for j in chosen:
            flat_o[r, j] = True
    return out


def random_valid(shape, gen, causal=False):
    b, h, t, s = shape
    lengths = torch.randint(1, s + 1, (b,), generator=gen)
    valid = torch.arange(s)[None, :] < lengths[:, None]  # right padding
    valid = valid[:, None, None, :].expand(b, h, t, s).clone()
    if causal:
        valid &= torch.ones(t, s, dtype=torch.bool).tril()
    return valid


@pytest.mark.parametrize("p", [0.0, 0.1, 0.3, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("strategy", ["high", "low"])
@pytest.mark.parametrize("causal", [False, True])
def test_candidates_match_row_loop(p, strategy, causal):
    gen = torch.Generator().manual_seed(0)
    shape = (3, 2, 6, 6)
    attr = torch.randn(shape, generator=gen)
    valid = random_valid(shape, gen, causal)
    got = candidate_region(attr, valid, p, strategy)
    assert torch.equal(got, reference_candidates(attr, valid, p, strategy))


def test_ties_are_all_candidates():
    attr = torch.tensor([[1.0, 2.0, 2.0, 2.0, 0.0]])
    valid = torch.ones_like(attr, dtype=torch.bool)
    # n=5, p=0.2 -> k=4 -> threshold = 2.0 -> all three 2.0s are candidates
    assert candidate_region(attr, valid, 0.2).tolist() == [[False, True, True, True, False]]


def test_threshold_index_has_no_float_surprises():
    n = torch.tensor([10, 10, 10, 3, 1, 7])
    ks = threshold_index(n, 0.9).tolist()
    assert ks[0] == 1  # 10 * (1 - 0.9) is 0.999... in floats
    assert threshold_index(torch.tensor([10]), 0.7).item() == 3
    assert threshold_index(torch.tensor([10]), 0.3).item() == 7
    assert threshold_index(torch.tensor([5]), 0.0).item() == 5  # p=0: no candidates
    assert threshold_index(torch.tensor([5]), 1.0).item() == 0
    for n_ in range(1, 50):
        for p10 in range(11):
            p = p10 / 10
            assert threshold_index(torch.tensor([n_]), p).item() == (n_ * (10 - p10)) // 10


@pytest.mark.parametrize("q", [0.0, 1.0])
def test_deterministic_q_matches_reference(q):
    gen = torch.Generator().manual_seed(1)
    shape = (4, 3, 5, 7)
    attr = torch.randn(shape, generator=gen)
    valid = random_valid(shape, gen)
    drop = addrop_drop_mask(attr, valid, 0.5, q)
    cand = reference_candidates(attr, valid, 0.5)
    if q == 0.0:
        assert not drop.any()
    else:
        # every candidate dropped, except rows where that would drop every valid key
        full = (cand == valid).all(-1, keepdim=True) & valid.any(-1, keepdim=True)
        assert torch.equal(drop & ~full, cand & ~full)
        assert ((drop.sum(-1) == cand.sum(-1) - 1) | ~full.squeeze(-1)).all()


def test_statistical_q():
    gen = torch.Generator().manual_seed(2)
    shape = (8, 4, 32, 32)
    attr = torch.randn(shape, generator=gen)
    valid = torch.ones(shape, dtype=torch.bool)
    q = 0.3
    cand = candidate_region(attr, valid, 0.5)
    rates = []
    for seed in range(5):
        drop = addrop_drop_mask(attr, valid, 0.5, q, generator=torch.Generator().manual_seed(1000 + seed))
        assert not (drop & ~cand).any()
        rates.append(drop.sum().item() / cand.sum().item())
    rate = sum(rates) / len(rates)
    # 5 * 16384 Bernoulli(0.3) draws: std ~ 0.0016
    assert abs(rate - q) < 0.01


def test_row_of_one_key_survives_and_padding_rows_are_inert():
    attr = torch.tensor([[[5.0, 0.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.0]]])
    valid = torch.tensor([[[True, False, False], [True, True, False], [False, False, False]]])
    for _ in range(20):
        drop = addrop_drop_mask(attr, valid, 1.0, 1.0)
        assert drop[0, 0].tolist() == [False, False, False]  # only key kept
        assert drop[0, 1].tolist() == [False, True, False]  # the lower-attribution key kept
        assert not drop[0, 2].any()


def test_drop_low_keeps_the_highest_when_row_would_empty():
    attr = torch.tensor([[1.0, 2.0, 3.0]])
    valid = torch.ones_like(attr, dtype=torch.bool)
    drop = addrop_drop_mask(attr, valid, 1.0, 1.0, strategy="low")
    assert drop.tolist() == [[True, True, False]]
    drop = addrop_drop_mask(attr, valid, 0.4, 1.0, strategy="low")  # int(3*.4)=1 -> the lowest one
    assert drop.tolist() == [[True, False, False]]
    drop = addrop_drop_mask(attr, valid, 0.3, 1.0, strategy="low")  # int(3*.3)=0 -> none
    assert drop.tolist() == [[False, False, False]]


@pytest.mark.parametrize("p", [0.1, 0.25, 0.3, 0.5, 0.6, 0.75, 0.9])
def test_drop_low_count_is_the_reference_codes(p):
    """The reference code's drop-low takes the int(p n) lowest keys (strict comparison), not
    n - int(n(1-p)): n=10, p=0.25 drops 2 keys (the mirror of Eq. 6 would drop 3)."""
    for n in range(1, 13):
        gen = torch.Generator().manual_seed(n)
        attr = torch.randperm(12, generator=gen).float()[None]  # distinct values
        valid = (torch.arange(12) < n)[None]
        drop = addrop_drop_mask(attr, valid, p, 1.0, strategy="low")
        count = math.floor(p * n + 1e-9)
        count = min(count, n - 1)  # a row never loses all of its keys
        assert int(drop.sum()) == count, (n, p)
        lowest = attr[0, :n].argsort()[:count]
        assert drop[0, lowest].all() and not (drop & ~valid).any()
    # ties at the threshold are kept (strict comparison): fewer keys
    attr = torch.tensor([[0.0, 1.0, 1.0, 1.0, 2.0]])
    drop = addrop_drop_mask(attr, torch.ones_like(attr, dtype=torch.bool), 0.6, 1.0, strategy="low")
    assert drop.tolist() == [[True, False, False, False, False]]


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_bad_rates_are_refused_where_they_enter(bad):
    """p and q are checked once, at the options (the maths trust them); a bad strategy still errors."""
    from addrop_fairseq.options import ADDropOptions, check_rate

    check_rate("--addrop-p", 0.0), check_rate("--addrop-p", 1.0)  # the ends are rates
    with pytest.raises(ValueError, match=r"--addrop-p must be in \[0, 1\]"):
        ADDropOptions(addrop_p=bad).check()
    with pytest.raises(ValueError, match=r"--addrop-q must be in \[0, 1\]"):
        ADDropOptions(addrop_q=bad).check()
    attr = torch.zeros(1, 3)
    with pytest.raises(ValueError, match="strategy"):
        candidate_region(attr, torch.ones(1, 3, dtype=torch.bool), 0.5, "middle")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_fill_gives_finite_softmax(dtype):
    scores = torch.tensor([[-60000.0, 3.0, 100.0, -5.0]]).to(dtype)
    drop = torch.tensor([[False, True, True, True]])
    probs = scores.masked_fill(drop, drop_fill_value(dtype)).float().softmax(-1)
    assert torch.isfinite(probs).all()
    assert probs[0, 0].item() == 1.0
    # with fairseq's -inf padding on top, a row keeping one valid key is still finite
    padded = scores.masked_fill(drop, drop_fill_value(dtype)).masked_fill(
        torch.tensor([[False, False, True, False]]), float("-inf")
    )
    assert torch.isfinite(padded.float().softmax(-1)).all()


@st.composite
def mask_problems(draw):
    b = draw(st.integers(1, 3))
    t = draw(st.integers(1, 6))
    s = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    # few distinct values: plenty of ties
    attr = torch.randint(-3, 4, (b, 2, t, s), generator=gen).float()
    valid = torch.rand(b, 2, t, s, generator=gen) < draw(st.floats(0.0, 1.0))
    p = draw(st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.9, 1.0]))
    q = draw(st.sampled_from([0.0, 0.2, 0.5, 1.0]))
    strategy = draw(st.sampled_from(["high", "low"]))
    return attr, valid, p, q, strategy, seed


@settings(max_examples=200, deadline=None)
@given(mask_problems())
def test_mask_properties(problem):
    attr, valid, p, q, strategy, seed = problem
    drop = addrop_drop_mask(attr, valid, p, q, strategy, torch.Generator().manual_seed(seed))
    assert drop.dtype == torch.bool and drop.shape == attr.shape
    assert not (drop & ~valid).any(), "dropped an invalid key"
    has_valid = valid.any(-1)
    kept = (valid & ~drop).any(-1)
    assert (kept | ~has_valid).all(), "a row lost all of its valid keys"
    cand = reference_candidates(attr, valid, p, strategy)
    assert not (drop & ~cand).any(), "dropped a non-candidate"
    if q == 0.0 or p == 0.0:
        assert not drop.any()


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]), st.sampled_from([0.2, 0.5, 0.8]))
def test_expected_drop_fraction(p, q):
    """Distinct attributions, long rows: the dropped fraction is close to (1 - k/n) * q."""
    gen = torch.Generator().manual_seed(int(p * 100 + q * 10))
    mask_gen = torch.Generator().manual_seed(7919 + int(p * 100 + q * 10))
    n = 40
    attr = torch.randn(16, 4, 8, n, generator=gen)
    valid = torch.ones_like(attr, dtype=torch.bool)
    drop = addrop_drop_mask(attr, valid, p, q, generator=mask_gen)
    k = math.floor(n * (1 - p) + 1e-9)
    expected = (n - k) / n * q
    assert abs(drop.float().mean().item() - expected) < 0.02


def test_drop_masks_follow_each_sites_attribution_and_count():
    """Pass 2's mask maker: site i's mask is Eq. 6-7 of site i's attribution, a site without
    one (skipped by LayerDrop in pass 1) gets no mask and is not counted, RD draws a region."""
    from addrop_fairseq.masks import DropMasks

    gen = torch.Generator().manual_seed(3)
    attr = [torch.randn(2, 2, 5, 5, generator=gen) for _ in range(3)]
    valid = random_valid((2, 2, 5, 5), gen)
    masks = DropMasks([attr[0], None, attr[2]], 0.5, 1.0)
    assert torch.equal(masks(2, valid), addrop_drop_mask(attr[2], valid, 0.5, 1.0))
    assert not masks(1, valid).any()
    assert torch.equal(masks(0, valid), addrop_drop_mask(attr[0], valid, 0.5, 1.0))
    assert int(masks.valid) == 2 * int(valid.sum())
    assert int(masks.dropped) == int(addrop_drop_mask(attr[0], valid, 0.5, 1.0).sum() + addrop_drop_mask(attr[2], valid, 0.5, 1.0).sum())
    assert masks.attributions == [None, None, None]  # each attribution let go once used
    rd = DropMasks(None, 0.5, 1.0, generator=torch.Generator().manual_seed(5))
    region = torch.rand(valid.shape, generator=torch.Generator().manual_seed(5))
    assert torch.equal(rd(0, valid), addrop_drop_mask(region, valid, 0.5, 1.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_the_drop_fill_value_is_finite_and_its_weight_is_zero(dtype):
    """drop_fill_value's contract: exp() of it is 0 beside any real score, yet it is finite, so a
    row whose every key got it stays a distribution (uniform) instead of NaN (-inf would not)."""
    scores = torch.randn(3, 5, generator=torch.Generator().manual_seed(0)).to(dtype)
    fill = drop_fill_value(dtype)
    assert torch.isfinite(torch.tensor(fill, dtype=dtype))
    some = torch.tensor([True, True, False, True, False])
    probs = torch.softmax(scores.masked_fill(some, fill).float(), dim=-1)
    assert probs[:, some].eq(0).all() and torch.allclose(probs.sum(-1), torch.ones(3))
    every = torch.softmax(scores.masked_fill(torch.ones(5, dtype=torch.bool), fill).float(), dim=-1)
    assert torch.isfinite(every).all() and torch.allclose(every, torch.full_like(every, 0.2))
