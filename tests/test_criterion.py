"""addrop_ce inside fairseq: plain steps are the stock criterion, AD-DROP steps drop, bad input fails early."""
import copy
import re

import pytest
import torch
from fairseq.logging import metrics

from addrop_fairseq import masks, schedule
from fairseq_builders import (
    TINY_ROBERTA,
    TINY_TRANSFORMER,
    build,
    sentence_batch,
    translation_batch,
)


def step(model, crit, sample, seed=0):
    model.zero_grad()
    torch.manual_seed(seed)
    loss, size, log = crit(model, sample)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None], log


def test_plain_epoch_is_exactly_the_stock_criterion(tdir):
    torch.manual_seed(0)
    _, task, model, stock = build(tdir, TINY_TRANSFORMER + ["--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"])
    _, task2, _, ours = build(tdir, TINY_TRANSFORMER + ["--criterion", "addrop_ce", "--label-smoothing", "0.1"])
    twin = copy.deepcopy(model)
    model.train(), twin.train()
    task2.begin_epoch(1, twin)  # cross-tuning: epoch 1 is plain
    sample = translation_batch(task)
    l1, g1, log1 = step(model, stock, sample)
    l2, g2, log2 = step(twin, ours, sample)
    assert torch.equal(l1, l2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))
    assert log2["addrop_active"] == 0 and log2["loss"] == log1["loss"]
    # epoch 2 is an AD-DROP epoch: different loss, positions dropped
    task2.begin_epoch(2, twin)
    l3, _, log3 = step(twin, ours, sample)
    assert log3["addrop_active"] == 1 and not torch.equal(l3, l2)
    frac = log3["addrop_dropped"].item() / log3["addrop_valid"].item()
    assert 0.03 < frac < 0.2  # about p * q = 0.09
    # validation is always plain, with the stock logging keys only
    twin.eval()
    with torch.no_grad():
        l4, _, log4 = ours(twin, sample)
        l5, _, _ = stock(twin, sample)
    assert torch.equal(l4, l5) and "addrop_active" not in log4


@pytest.mark.slow  # trains 8 updates
def test_schedule_follows_fairseq_epochs_and_updates(tdir):
    _, task, model, crit = build(tdir, TINY_TRANSFORMER + ["--criterion", "addrop_ce"])
    seen = []
    for epoch in (1, 2, 3, 4):
        task.begin_epoch(epoch, model)
        seen.append(crit.addrop_now())
    assert seen == [False, True, False, True]
    _, task, model, crit = build(tdir, TINY_TRANSFORMER + ["--criterion", "addrop_ce", "--addrop-cross-period", "3"])
    task.begin_epoch(1, model)
    seen = []
    for update in range(8):
        task.train_step(translation_batch(task), model, crit, _NoOptimizer(), update)
        seen.append(crit.num_updates)
    assert seen == list(range(8))
    assert [schedule.addrop_active("cross", 1, u, 3) for u in range(8)] == [False] * 3 + [True] * 3 + [False] * 2
    assert [schedule.addrop_active("cross", e, 0) for e in (1, 2, 3)] == [False, True, False]
    assert schedule.addrop_active("always", 1, 0) and not schedule.addrop_active("never", 2, 0)


class _NoOptimizer:
    def backward(self, loss):
        loss.backward()


def test_extreme_rates_never_give_nan(tdir, monkeypatch):
    _, task, model, crit = build(
        tdir,
        TINY_TRANSFORMER + ["--criterion", "addrop_ce", "--addrop-schedule", "always", "--addrop-p", "1", "--addrop-q", "1",
                            "--addrop-attention", "encoder-self,decoder-self,encoder-decoder"],
    )
    model.train()
    applied = []  # (valid keys, drop mask) of every site pass 2 masked
    original = masks.DropMasks.__call__

    def spy(self, index, valid):
        drop = original(self, index, valid)
        applied.append((valid.clone(), drop.clone()))
        return drop

    monkeypatch.setattr(masks.DropMasks, "__call__", spy)
    loss, grads, log = step(model, crit, translation_batch(task))
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)
    # p = q = 1: every valid key is dropped but one per row; rows without a valid key (padded
    # queries) keep none; nothing outside the valid keys is touched
    assert len(applied) == 6  # 2 layers x (encoder-self, decoder-self, encoder-decoder)
    rows = 0
    for i, (valid, drop) in enumerate(applied):
        assert not (drop & ~valid).any(), f"site {i} drops an invalid key"
        kept = (valid & ~drop).sum(-1)
        has_keys = valid.any(-1)
        assert torch.equal(kept, has_keys.long()), f"site {i}: keys kept per row {kept.unique().tolist()}"
        rows += int(has_keys.sum())
    assert (~applied[-1][0].any(-1)).any(), "the batch has padded query rows (the case a row keeps none)"
    assert log["addrop_valid"] - log["addrop_dropped"] == rows


def test_metrics_are_logged(tdir):
    _, task, model, crit = build(tdir, TINY_TRANSFORMER + ["--criterion", "addrop_ce", "--addrop-schedule", "always"])
    model.train()
    logs = [step(model, crit, translation_batch(task, seed=s))[2] for s in range(2)]
    with metrics.aggregate() as agg:
        type(crit).reduce_metrics(logs)
    values = agg.get_smoothed_values()
    assert values["addrop_active"] == 1.0
    dropped = sum(l["addrop_dropped"].item() for l in logs)
    valid = sum(l["addrop_valid"].item() for l in logs)
    assert values["addrop_drop_frac"] == pytest.approx(dropped / valid, abs=1e-4)
    assert {"loss", "nll_loss", "ppl"} <= set(values)


def test_sentence_prediction_classification_and_regression(spdir):
    for extra, regression in (([], False), (["--regression-target"], True)):
        torch.manual_seed(0)
        n = ["--num-classes", "1" if regression else "2"]
        _, task, model, stock = build(spdir, TINY_ROBERTA + n + extra + ["--criterion", "sentence_prediction"], task="sentence_prediction", arch="roberta")
        _, task2, _, ours = build(spdir, TINY_ROBERTA + n + extra + ["--criterion", "addrop_ce", "--addrop-layers", "0"], task="sentence_prediction", arch="roberta")
        assert ours.task_kind.name == ("regression" if regression else "classification")
        twin = copy.deepcopy(model)
        model.train(), twin.train()
        sample = sentence_batch(task, regression=regression)
        task2.begin_epoch(1, twin)
        assert [s.name for s in ours.sites] == ["encoder.sentence_encoder.layers.0.self_attn"]
        l1, g1, _ = step(model, stock, sample)
        l2, g2, _ = step(twin, ours, sample)
        assert torch.equal(l1, l2) and all(torch.equal(a, b) for a, b in zip(g1, g2))
        task2.begin_epoch(2, twin)
        l3, g3, log = step(twin, ours, sample)
        assert log["addrop_active"] == 1 and torch.isfinite(l3)
        with metrics.aggregate() as agg:
            type(ours).reduce_metrics([log])
        assert ("accuracy" in agg.get_smoothed_values()) != regression


BAD_OPTIONS = [
    ("addrop_ce", "--addrop-p", "1.5", r"must be in \[0, 1\], got 1.5"),
    ("addrop_ce", "--addrop-q", "-0.1", r"must be in \[0, 1\], got -0.1"),
    ("addrop_ce", "--addrop-ig-steps", "0", "must be >= 1, got 0"),
    ("addrop_ce", "--addrop-ig-batch", "0", "must be >= 1, got 0"),
    ("addrop_ce", "--addrop-attribution", "saliency", "unknown attribution method 'saliency'"),
    ("addrop_ce", "--addrop-attention", "decoder", r"unknown kind\(s\) \['decoder'\]"),
    ("addrop_ce", "--addrop-layers", "one", "must be 'all' or comma-separated integers, got 'one'"),
    ("addrop_ce", "--addrop-cross-period", "-3", "must be >= 0, got -3"),
    ("attendout", "--attendout-steps", "0", "must be >= 1, got 0"),
    ("attendout", "--attendout-init-rate", "1", r"must be in \(0, 1\), got 1.0"),
    ("attendout", "--attendout-baseline-decay", "1", r"must be in \[0, 1\), got 1.0"),
    ("attendout", "--attendout-temperature", "0", "must be > 0, got 0.0"),
    ("attendout", "--attendout-layers", "-1", "must be 'all' or non-negative integers"),
    ("attention_regularizer", "--attn-reg-p", "2", r"must be in \[0, 1\], got 2.0"),
    ("attention_regularizer", "--attn-reg-slopes=x", None, "comma-separated numbers, got 'x'"),
]


@pytest.mark.parametrize("criterion, flag, value, message", BAD_OPTIONS)
def test_a_bad_option_is_a_one_line_usage_error_of_fairseq_train(tdir, capsys, criterion, flag, value, message):
    """fairseq-train's own argument parsing (options.parse_args_and_arch) refuses it: exit 2
    and argparse's one line naming the option, no traceback from the criterion."""
    from fairseq import options

    argv = [str(tdir), "--task", "translation", "--arch", "transformer", "--source-lang", "src",
            "--target-lang", "tgt", "--criterion", criterion, flag] + ([value] if value is not None else [])
    with pytest.raises(SystemExit) as exit_:
        options.parse_args_and_arch(options.get_training_parser(), argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    name = flag.split("=")[0]
    assert re.match(rf"\S+: error: argument {name}: {message}", err.strip().splitlines()[-1]), err[-500:]
    assert "Traceback" not in err


@pytest.mark.parametrize("criterion, flag, value, message", BAD_OPTIONS)
def test_a_bad_option_from_a_config_fails_when_the_criterion_is_built(tdir, criterion, flag, value, message):
    """Configs that skip argparse (fairseq-hydra-train, code) get the same check, prefixed
    with the option to change (--addrop-cross-period -3 used to be blamed on
    --addrop-attribution / --addrop-schedule)."""
    cfg, task, _, _ = build(tdir, TINY_TRANSFORMER + ["--criterion", criterion])
    name = flag.split("=")[0]
    text = value if value is not None else flag.split("=")[1]
    field = name[2:].replace("-", "_")
    kind = type(getattr(cfg.criterion, field))
    setattr(cfg.criterion, field, kind(text))
    with pytest.raises(ValueError, match=rf"^{name}:? {message}") as error:
        task.build_criterion(cfg.criterion)
    assert str(error.value).count("--") == 1  # no other option blamed


def test_bad_sites_fail_at_the_first_epoch_before_any_step(tdir, spdir):
    _, task, model, crit = build(tdir, TINY_TRANSFORMER + ["--criterion", "addrop_ce", "--addrop-layers", "0,5"])
    with pytest.raises(ValueError, match=r"layer\(s\) \[5\] out of range for encoder-self attention with 2 layers"):
        task.begin_epoch(1, model)
    _, task, model, crit = build(spdir, TINY_ROBERTA + ["--num-classes", "2", "--criterion", "addrop_ce", "--addrop-attention", "decoder-self"], task="sentence_prediction", arch="roberta")
    with pytest.raises(ValueError, match="RobertaModel has no decoder-self attention"):
        task.begin_epoch(1, model)
    _, task, model, crit = build(tdir, ["--criterion", "addrop_ce", "--encoder-layers", "1", "--decoder-layers", "1"], arch="lstm")
    with pytest.raises(ValueError, match="LSTMModel has no fairseq MultiheadAttention"):
        task.begin_epoch(1, model)


def test_gold_labels_with_regression_and_unknown_tasks_are_refused(spdir, tmp_path):
    with pytest.raises(ValueError, match="--addrop-labels gold needs class labels"):
        build(spdir, TINY_ROBERTA + ["--num-classes", "1", "--regression-target", "--criterion", "addrop_ce", "--addrop-labels", "gold"],
              task="sentence_prediction", arch="roberta")
    (tmp_path / "dict.txt").write_text("a 1\nb 1\n")
    with pytest.raises(ValueError, match="cannot handle task LanguageModelingTask"):
        build(tmp_path, ["--criterion", "addrop_ce"], task="language_modeling", arch="transformer_lm")


def test_pass_one_bypasses_wrappers(tdir):
    """Under DDP the criterion sees a wrapper; attribution must run on the bare model."""
    from fairseq.distributed import ModuleProxyWrapper

    _, task, model, crit = build(tdir, TINY_TRANSFORMER + ["--criterion", "addrop_ce", "--addrop-schedule", "always"])
    calls = []

    class Wrapper(torch.nn.Module):  # stands in for DistributedDataParallel
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args, **kwargs):
            calls.append(1)
            return self.module(*args, **kwargs)

    wrapped = ModuleProxyWrapper(Wrapper(model))
    wrapped.train()
    loss, _, log = crit(wrapped, translation_batch(task))
    assert log["addrop_active"] == 1 and len(calls) == 1  # only pass 2 went through the wrapper


def test_one_criterion_serves_a_second_model(tdir):
    """A criterion built once and used on another model masks that model (it used to keep the
    first model's sites and mask nothing, addrop_drop_frac 0)."""
    _, task, first, crit = build(tdir, TINY_TRANSFORMER + ["--criterion", "addrop_ce", "--addrop-schedule", "always"])
    second = task.build_model(build(tdir, TINY_TRANSFORMER + ["--criterion", "addrop_ce"])[0].model)
    sample = translation_batch(task)
    for model in (first, second, first):
        model.train()
        _, _, log = step(model, crit, sample)
        assert 0.03 < float(log["addrop_dropped"]) / max(float(log["addrop_valid"]), 1.0) < 0.2
        assert all(s.module in set(model.modules()) for s in crit.sites)


def test_two_criteria_on_one_task_both_follow_its_epochs_and_updates(tdir):
    """The second criterion built on a task used to replace the first one's hooks: the first
    stayed at epoch 1 (never an AD-DROP epoch under cross-tuning)."""
    _, task, model, first = build(tdir, TINY_TRANSFORMER + ["--criterion", "addrop_ce"])
    second = task.build_criterion(build(tdir, TINY_TRANSFORMER + ["--criterion", "addrop_ce"])[0].criterion)
    task.begin_epoch(2, model)
    assert first.epoch == second.epoch == 2 and first.addrop_now() and second.addrop_now()
    model.train()
    task.train_step(translation_batch(task), model, first, type("Opt", (), {"backward": lambda _, loss: None})(), 7)
    assert first.num_updates == second.num_updates == 7
    del second  # a discarded criterion is not kept alive by the task, nor called
    task.begin_epoch(3, model)
    assert first.epoch == 3 and len(task._addrop.followers()) == 1


def test_an_attendout_criterion_refuses_a_second_model(spdir):
    cfg, task, model, crit = build(spdir, TINY_ROBERTA + ["--num-classes", "2", "--criterion", "attendout"],
                                   task="sentence_prediction", arch="roberta")
    crit.scoring_data = lambda: None  # (no data here: prepare checks the split exists)
    crit.prepare(model)
    other = task.build_model(cfg.model)
    with pytest.raises(ValueError, match="already plays its game against another model"):
        crit.prepare(other)


def test_stock_loss_options_are_fairseqs_own_fields():
    """StockLossConfig reuses fairseq's criterion dataclasses instead of copying their fields
    (the copies' help strings had drifted from fairseq's)."""
    import dataclasses

    from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterionConfig
    from fairseq.criterions.sentence_prediction import SentencePredictionConfig

    from addrop_fairseq.criterions.site_criterion import StockLossConfig

    assert not StockLossConfig.__dict__.get("__annotations__")  # declares nothing of its own
    ours = {f.name: f for f in dataclasses.fields(StockLossConfig)}
    for stock in (LabelSmoothedCrossEntropyCriterionConfig, SentencePredictionConfig):
        for f in dataclasses.fields(stock):
            assert ours[f.name] is f or (ours[f.name].default == f.default and ours[f.name].metadata == f.metadata), f.name
