"""The criterion's wiring, pinned: the masks pass 2 applies are exactly
``addrop_drop_mask(attribution of pass 1, valid keys, p, q, strategy)`` for every site, with
the attribution and the valid keys computed here independently of the criterion; the
drop-fraction counts; the cross period; the regression target's sign.

Dropout is 0 in these models, so the only random draws of a step are the masks' (in site
order): re-seeding reproduces them exactly.
"""
import pytest
import torch

from addrop_fairseq import sites as core
from addrop_fairseq.masks import addrop_drop_mask
from fairseq_builders import (
    DropoutTaps,
    TINY_ROBERTA,
    TINY_TRANSFORMER,
    build,
    sentence_batch,
    translation_batch,
)

P, Q = 0.6, 0.3  # p != q: swapping them changes the masks
NO_DROPOUT = ["--dropout", "0", "--attention-dropout", "0"]


@pytest.fixture
def applied(monkeypatch):
    """{site index: the drop mask pass 2 applied}: ``Masker.drop``'s mask, which the eager path
    fills into the scores and the fused path adds to SDPA's mask (test_fused_pass2 pins that the
    two paths apply it alike)."""
    seen = {}
    original = core.Masker.drop

    def spy(self, module, valid, shape):
        out = original(self, module, valid, shape)
        seen[core.state(module).index] = out
        return out

    monkeypatch.setattr(core.Masker, "drop", spy)
    return seen


def maps_and_target(model, sample, modules, target_fn, before=False):
    with DropoutTaps(modules, before) as taps:
        out = model(**sample["net_input"])
    return [taps.maps[i] for i in range(len(modules))], target_fn(out)


def encoder_valid(src_tokens, pad, heads):
    real = src_tokens.ne(pad)
    return (real[:, None, :, None] & real[:, None, None, :]).expand(-1, heads, -1, -1)


def token_target(sample, pad):
    def fn(out):
        logits = out[0].float()
        labels = logits.detach().argmax(-1)
        real = sample["target"].ne(pad)
        return logits.log_softmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)[real].sum()
    return fn


def build_translation(tdir, *extra):
    torch.manual_seed(0)
    _, task, model, crit = build(tdir, TINY_TRANSFORMER + NO_DROPOUT + [
        "--criterion", "addrop_ce", "--addrop-schedule", "always",
        "--addrop-p", str(P), "--addrop-q", str(Q), *extra])
    model.train()
    return task, model, crit


def check_masks(crit, model, sample, applied, attributions, valid, strategy="high", seed=5):
    torch.manual_seed(seed)
    _, _, log = crit(model, sample)
    torch.manual_seed(seed)
    expected = [addrop_drop_mask(a, valid, P, Q, strategy) for a in attributions]
    assert sorted(applied) == list(range(len(expected)))
    for i, e in enumerate(expected):
        assert torch.equal(applied[i], e), f"site {i}"
    # addrop_drop_frac's counts: dropped keys over the valid keys of the masked maps
    assert int(log["addrop_dropped"]) == sum(int(e.sum()) for e in expected)
    assert int(log["addrop_valid"]) == len(expected) * int(valid.sum())
    return log


@pytest.mark.parametrize("strategy", ["high", "low"])
def test_ga_masks_are_eq_6_7_of_the_pass_one_gradient(tdir, applied, strategy):
    task, model, crit = build_translation(tdir, "--addrop-drop", strategy)
    sample = translation_batch(task, bsz=4, src_len=9, tgt_len=7)
    pad = task.source_dictionary.pad()
    modules = [s.module for s in crit.prepare(model)]
    maps, target = maps_and_target(model, sample, modules, token_target(sample, task.target_dictionary.pad()))
    grads = torch.autograd.grad(target, maps)
    check_masks(crit, model, sample, applied, grads, encoder_valid(sample["net_input"]["src_tokens"], pad, 2), strategy)


def test_aa_masks_use_the_attention_weights(tdir, applied):
    task, model, crit = build_translation(tdir, "--addrop-attribution", "aa")
    sample = translation_batch(task, bsz=4, src_len=9, tgt_len=7)
    modules = [s.module for s in crit.prepare(model)]
    with torch.no_grad():
        maps, _ = maps_and_target(model, sample, modules, lambda out: None, before=True)
    valid = encoder_valid(sample["net_input"]["src_tokens"], task.source_dictionary.pad(), 2)
    check_masks(crit, model, sample, applied, maps, valid)


def test_rd_masks_are_a_random_region(tdir, applied):
    task, model, crit = build_translation(tdir, "--addrop-attribution", "rd")
    sample = translation_batch(task, bsz=4, src_len=9, tgt_len=7)
    crit.prepare(model)
    valid = encoder_valid(sample["net_input"]["src_tokens"], task.source_dictionary.pad(), 2)
    torch.manual_seed(9)
    crit(model, sample)
    torch.manual_seed(9)
    for i in range(2):
        region = torch.rand(valid.shape)
        assert torch.equal(applied[i], addrop_drop_mask(region, valid, P, Q)), f"site {i}"


def build_classifier(spdir, *extra, regression=False):
    torch.manual_seed(0)
    args = TINY_ROBERTA + NO_DROPOUT + ["--criterion", "addrop_ce", "--addrop-schedule", "always",
                                        "--addrop-p", str(P), "--addrop-q", str(Q), *extra]
    args += ["--regression-target", "--num-classes", "1"] if regression else ["--num-classes", "2"]
    _, task, model, crit = build(spdir, args, task="sentence_prediction", arch="roberta")
    model.register_classification_head("sentence_classification_head", num_classes=1 if regression else 2)
    model.train()
    return task, model, crit


def classifier_out(model, sample):
    return model(**sample["net_input"], features_only=True, classification_head_name="sentence_classification_head")[0]


@pytest.mark.parametrize("labels", ["pseudo", "gold"])
def test_classification_masks_follow_the_labels_logit(spdir, applied, labels):
    task, model, crit = build_classifier(spdir, "--addrop-labels", labels)
    sample = sentence_batch(task, bsz=5, length=9)
    modules = [s.module for s in crit.prepare(model)]
    with DropoutTaps(modules) as taps:
        logits = classifier_out(model, sample)
    chosen = sample["target"] if labels == "gold" else logits.detach().argmax(-1)
    # gold labels that differ from the pseudo labels somewhere: the two checks are different
    assert not torch.equal(sample["target"], logits.detach().argmax(-1))
    target = logits.gather(-1, chosen.view(-1, 1)).sum()  # Eq. 5
    grads = torch.autograd.grad(target, [taps.maps[0], taps.maps[1]])
    valid = encoder_valid(sample["net_input"]["src_tokens"], task.source_dictionary.pad(), 2)
    check_masks(crit, model, sample, applied, grads, valid)


def test_regression_target_is_minus_the_squared_error(spdir, applied):
    task, model, crit = build_classifier(spdir, regression=True)
    sample = sentence_batch(task, bsz=5, length=9, regression=True)
    sites = crit.prepare(model)
    got = crit.attribute(model, sample, sites)
    with DropoutTaps([s.module for s in sites]) as taps:
        pred = classifier_out(model, sample).view(-1).float()
    loss = sum((pred[i] - sample["target"][i]) ** 2 for i in range(len(pred)))  # written out
    grads = torch.autograd.grad(-loss, [taps.maps[0], taps.maps[1]])
    for g, r in zip(got, grads):
        torch.testing.assert_close(g, r)
        assert r.abs().sum() > 0


@pytest.mark.slow  # trains several updates
def test_cross_period_alternates_updates_through_the_criterion(tdir):
    torch.manual_seed(0)
    _, task, model, crit = build(tdir, TINY_TRANSFORMER + NO_DROPOUT + [
        "--criterion", "addrop_ce", "--addrop-cross-period", "2"])
    model.train()
    task.begin_epoch(1, model)  # an odd epoch: without the period every update would be plain
    sample = translation_batch(task)
    active = []
    for update in range(6):
        crit.set_update_num(update)
        active.append(crit(model, sample)[2]["addrop_active"])
    assert active == [0, 0, 1, 1, 0, 0]


def test_epoch_drop_fraction_is_weighted_by_valid_positions():
    """fairseq aggregates the per-update values over an epoch: the epoch's addrop_drop_frac is
    sum(dropped) / sum(valid), not the mean of the per-update fractions."""
    from fairseq.logging import metrics

    from addrop_fairseq.criterions.addrop_ce import ADDropCriterion

    def log(dropped, valid):
        return {"loss": 1.0, "ntokens": 8, "nsentences": 4, "sample_size": 4, "addrop_steps": 1,
                "addrop_active": 1, "addrop_dropped": dropped, "addrop_valid": valid}

    with metrics.aggregate(new_root=True) as agg:
        ADDropCriterion.reduce_metrics([log(1, 10)])
        ADDropCriterion.reduce_metrics([log(30, 40)])
        ADDropCriterion.reduce_metrics([log(0, 0) | {"addrop_active": 0}])
    values = agg.get_smoothed_values()
    assert values["addrop_drop_frac"] == pytest.approx(31 / 50, abs=1e-4)
    assert values["addrop_active"] == pytest.approx(2 / 3, abs=1e-3)
