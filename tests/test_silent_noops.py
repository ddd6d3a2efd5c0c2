"""No silent no-ops (issue 33, items 1-2).

* A ``torch.compile``'d model (the Trainer's ``torch_compile=True``, or compiled by the user):
  pass 1 runs on the uncompiled module (a compiled graph gives the recorded maps zero
  gradients, which made AD-DROP random dropout), pass 2 stays compiled and applies the masks
  as eager code does; real MiniLM, ``aot_eager`` backend.
* An AD-DROP update whose attributions are all zero is refused in the engine
  (:func:`addrop_fairseq.engine.check_attributed`), in both front ends.
* Cross-tuning planned to stop before its first AD-DROP update is warned about at the start
  and again at the end (``fairseq-train --max-epoch 1`` / ``--max-update``, the Trainer's
  ``num_train_epochs=1`` / ``max_steps``); no warning when AD-DROP will run.
"""
import logging
import re

import pytest
import torch

import hf_builders as hb
from conftest import REPO, run_cli
from fairseq_builders import TINY_ROBERTA, binarized_sentence_prediction, build, sentence_batch

from addrop_fairseq import engine, masks, schedule, sites
from addrop_fairseq.options import ADDropOptions

tf = hb.tf()

from addrop_fairseq.hf import heads  # noqa: E402
from addrop_fairseq.hf.trainer import ADDropArguments, ADDropTrainer  # noqa: E402

pytestmark = pytest.mark.slow  # subprocesses, MiniLM or training: the full suite, not the fast lane

PLUGIN = str(REPO / "addrop_fairseq")
START = "AD-DROP will not run in this training"
END = "without a single AD-DROP update"


@pytest.fixture(autouse=True)
def _threads(one_torch_thread):
    yield


# ------------------------------------------------------------------------------ MiniLM and compile


def minilm(dropout=0.1, seed=0):
    tf.logging.set_verbosity_error()
    torch.manual_seed(seed)
    return tf.BertForSequenceClassification.from_pretrained(
        hb.minilm_dir(), num_labels=2, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)


def minilm_rows(n=4, length=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        ids = torch.randint(1000, 3000, (length - i % 2,), generator=g)
        ids[0], ids[-1] = 101, 102
        out.append({"input_ids": ids.tolist(), "labels": i % 2})
    return out


def collate(batch):
    n = max(len(r["input_ids"]) for r in batch)
    ids = torch.zeros(len(batch), n, dtype=torch.long)
    mask = torch.zeros(len(batch), n, dtype=torch.long)
    for i, r in enumerate(batch):
        ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
        mask[i, : len(r["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([r["labels"] for r in batch])}


def targs(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, num_train_epochs=1,
                logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True, seed=3)
    base.update(kw)
    return tf.TrainingArguments(**base)


class Kept(ADDropTrainer):
    """Keeps, per AD-DROP micro-batch, the model pass 2 ran on and each site's attribution."""

    def addrop_step(self, model, inputs, return_outputs=False, num_items_in_batch=None, keep=False):
        result, drop = super().addrop_step(model, inputs, return_outputs, num_items_in_batch, keep=True)
        self.kept.append((model, {i: a.detach().clone() for i, (a, _) in drop.kept.items()}))
        return result, drop


def compiled(module) -> bool:
    return isinstance(module, torch._dynamo.eval_frame.OptimizedModule)


def test_compiled_pass_one_is_refused_and_compiled_pass_two_masks_as_eager_code_does():
    """Pass 1 through a compiled MiniLM gets all-zero gradients at the maps (what made AD-DROP
    random dropout): the engine's check refuses that update. Pass 2 may stay compiled: with
    the same masks (q = 1: no draw; no dropout) the compiled model's loss and gradients are
    the eager ones, and differ from the unmasked loss."""
    model = minilm(dropout=0.0).train()
    selected = heads.find_sites(model, None, None)
    kind = heads.kind_of(model)
    addrop = engine.ADDropEngine(ADDropOptions(addrop_schedule="always", addrop_q=1.0), "test")
    batch = collate(minilm_rows())
    net = torch.compile(model, backend="aot_eager")

    zeros = addrop.attribute(kind, net, batch, selected)
    assert [float(a.abs().sum()) for a in zeros] == [0.0] * 6
    drop = addrop.masks(zeros)
    with sites.masking(selected, drop):
        net(**batch)
    with pytest.raises(engine.ZeroAttributionError, match="every attribution of this update is zero"):
        engine.check_attributed(drop, "test")

    attributions = addrop.attribute(kind, model, batch, selected)
    assert all(float(a.abs().sum()) > 0 for a in attributions)
    results = []
    for runner in (model, net):
        model.zero_grad()
        drop = addrop.masks([a.clone() for a in attributions])
        with sites.masking(selected, drop):
            loss = runner(**batch).loss
        engine.check_attributed(drop, "test")
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, int(drop.dropped)))
    (eager_loss, eager_grads, eager_dropped), (comp_loss, comp_grads, comp_dropped) = results
    assert eager_dropped == comp_dropped > 0
    torch.testing.assert_close(comp_loss, eager_loss)
    for n in eager_grads:
        torch.testing.assert_close(comp_grads[n], eager_grads[n], rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        assert abs(float(net(**batch).loss) - float(eager_loss)) > 1e-4


def test_compiled_pass_two_with_dynamic_shapes_draws_its_masks():
    """A model compiled with dynamic shapes (what a compiled Trainer gets after its first
    recompile on another sequence length) traces pass 2's mask draws: ``torch.rand(shape,
    generator=None)`` would need concrete sizes there (masks.uniform draws with rand_like)."""
    model = minilm(dropout=0.0).train()
    selected = heads.find_sites(model, None, None)
    kind = heads.kind_of(model)
    addrop = engine.ADDropEngine(ADDropOptions(addrop_schedule="always"), "test")
    net = torch.compile(model, backend="aot_eager", dynamic=True)
    for length in (7, 9):
        batch = collate(minilm_rows(length=length))
        loss, drop = addrop.run(kind, model, batch, selected, lambda: net(**batch).loss)
        assert torch.isfinite(loss.loss if hasattr(loss, "loss") else loss)
        frac = int(drop.dropped_attributed) / int(drop.valid_attributed)
        assert 0.03 < frac < 0.25, frac  # about p * q = 0.09 of the attributed rows' keys


@pytest.mark.parametrize("how", ["torch_compile", "user"])
def test_a_compiled_model_gets_real_attributions_in_the_trainer(tmp_path, how):
    """``torch_compile=True`` and a model the user compiled: pass 1 runs uncompiled (non-zero
    attributions on all 6 layers, equal to the uncompiled model's on the same batch and RNG
    state), pass 2 on the compiled module; the logged drop is AD-DROP's, not q."""
    model = minilm()
    reference = minilm()
    given = torch.compile(model, backend="aot_eager") if how == "user" else model
    # a compiled forward hides its signature: the stock Trainer would drop every column
    kw = (dict(torch_compile=True, torch_compile_backend="aot_eager") if how == "torch_compile"
          else dict(remove_unused_columns=False))
    trainer = Kept(model=given, args=targs(tmp_path, max_steps=1, **kw), train_dataset=minilm_rows(2),
                   data_collator=collate, addrop_args=ADDropArguments(addrop_schedule="always"))
    trainer.kept = []
    assert [s.name for s in trainer.addrop_sites][0].startswith("bert.encoder.layer.0")
    trainer.train()
    (ran_on, attributions), = trainer.kept
    assert compiled(ran_on)
    assert sorted(attributions) == list(range(6))
    assert all(float(a.abs().sum()) > 0 for a in attributions.values())
    frac = [h["addrop_drop_frac"] for h in trainer.state.log_history if "addrop_drop_frac" in h]
    assert frac and frac[0] < 0.25  # random dropout of every key at q = 0.3 would log ~0.3


def test_the_trainer_refuses_an_update_with_all_zero_attributions(tmp_path):
    """A head whose output ignores the maps (zeroed classifier: constant logits) gives zero
    attributions: the Trainer's AD-DROP step fails before its backward, naming the causes."""
    model = minilm()
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = ADDropTrainer(model=model, args=targs(tmp_path, max_steps=1), train_dataset=minilm_rows(2),
                            data_collator=collate, addrop_args=ADDropArguments(addrop_schedule="always"))
    with pytest.raises(engine.ZeroAttributionError, match="torch.compile"):
        trainer.train()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_the_criterion_refuses_an_update_with_all_zero_attributions(spdir):
    """``--criterion addrop_ce``: the same check, with a zeroed classification head."""
    _, task, model, crit = build(spdir, TINY_ROBERTA + ["--num-classes", "2", "--criterion", "addrop_ce",
                                                        "--addrop-schedule", "always"],
                                 task="sentence_prediction", arch="roberta")
    sample = sentence_batch(task)
    model.train()
    crit(model, sample)  # a random head: fine
    head = model.classification_heads["sentence_classification_head"].out_proj
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    with pytest.raises(engine.ZeroAttributionError, match=r"--criterion addrop_ce.*every attribution"):
        crit(model, sample)


def test_the_criterion_runs_pass_one_uncompiled(spdir):
    """A compiled fairseq model: the criterion's unwrap reaches the uncompiled module for pass 1."""
    from addrop_fairseq.criterions.site_criterion import unwrap

    _, task, model, crit = build(spdir, TINY_ROBERTA + ["--num-classes", "2", "--criterion", "addrop_ce",
                                                        "--addrop-schedule", "always"],
                                 task="sentence_prediction", arch="roberta")
    net = torch.compile(model, backend="aot_eager")
    assert unwrap(net) is model
    net.train()
    _, _, _, drop = crit.addrop_step(net, sentence_batch(task), keep=True)
    assert all(float(a.abs().sum()) > 0 for a, _ in drop.kept.values())


# ------------------------------------------------------------------------------ the plan (pure)


@pytest.mark.parametrize("kw, want", [
    (dict(max_epoch=1), False),
    (dict(max_epoch=2), True),
    (dict(), True),
    (dict(max_update=6, left_in_epoch=6, updates_per_epoch=6), False),
    (dict(max_update=7, left_in_epoch=6, updates_per_epoch=6), True),
    (dict(max_update=3), None),  # the epoch length decides and is unknown
    (dict(period=4, max_update=4), False),
    (dict(period=4, max_update=5), True),
    (dict(period=4, max_epoch=1, left_in_epoch=3, updates_per_epoch=3), False),
    (dict(period=4, max_epoch=2, left_in_epoch=3, updates_per_epoch=3), True),
    (dict(epoch=2, max_epoch=2), True),
    (dict(epoch=3, num_updates=12, max_epoch=3), False),
])
def test_addrop_planned(kw, want):
    kw = dict(kw)
    period, epoch, num_updates = kw.pop("period", 0), kw.pop("epoch", 1), kw.pop("num_updates", 0)
    assert schedule.addrop_planned("cross", period, epoch, num_updates, **kw) is want
    assert schedule.addrop_planned("always", period, epoch, num_updates, **kw) is not False
    assert schedule.addrop_planned("never", period, epoch, num_updates, **kw) is False


# ------------------------------------------------------------------------------ the plan: Trainer


def tiny_bert(seed=0):
    torch.manual_seed(seed)
    return tf.BertForSequenceClassification(tf.BertConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, num_labels=2))


def tiny_rows(n=8):
    g = torch.Generator().manual_seed(1)
    return [{"input_ids": torch.randint(1, 60, (5 + i % 3,), generator=g).tolist(), "labels": i % 2} for i in range(n)]


@pytest.mark.parametrize("kw, addrop, warned", [
    (dict(num_train_epochs=1), {}, True),
    (dict(num_train_epochs=3, max_steps=4), {}, True),  # 4 updates an epoch: epoch 2 never starts
    (dict(num_train_epochs=2), {}, False),
    (dict(num_train_epochs=1), dict(addrop_cross_period=2), False),
    (dict(max_steps=2), dict(addrop_cross_period=2), True),
    (dict(num_train_epochs=1), dict(addrop_schedule="always"), False),
    (dict(num_train_epochs=1), dict(addrop_p=0.0), False),  # AD-DROP off on purpose
])
def test_the_trainer_warns_when_cross_tuning_never_reaches_addrop(tmp_path, caplog, kw, addrop, warned):
    trainer = ADDropTrainer(model=tiny_bert(), args=targs(tmp_path, **kw), train_dataset=tiny_rows(),
                            data_collator=collate, addrop_args=ADDropArguments(**addrop))
    with caplog.at_level(logging.WARNING, logger="addrop_fairseq.hf.trainer"):
        trainer.train()
    text = caplog.text
    ran = [h["addrop_active"] for h in trainer.state.log_history if "addrop_active" in h]
    if warned:
        assert text.count(START) == 1 and text.count(END) == 1, text
        assert "addrop_cross_period" in text and "always" in text
        assert not any(ran)
    else:
        assert START not in text and END not in text, text
        assert any(ran) == (addrop.get("addrop_p", 0.3) > 0)


# ------------------------------------------------------------------------------ the plan: fairseq-train


@pytest.fixture(scope="module")
def sp_bin(tmp_path_factory):
    return binarized_sentence_prediction(tmp_path_factory.mktemp("noops_sp"), run_cli)


def fairseq_train(data, save_dir, *extra):
    return run_cli("fairseq_cli.train", [
        data, "--user-dir", PLUGIN, "--task", "sentence_prediction", "--arch", "roberta", *TINY_ROBERTA,
        "--num-classes", "2", "--criterion", "addrop_ce", "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "4",
        "--required-batch-size-multiple", "1", "--seed", "1", "--no-progress-bar", "--log-format", "simple",
        "--log-interval", "1", "--num-workers", "0", "--no-save", "--save-dir", save_dir, *map(str, extra),
    ])


@pytest.mark.parametrize("extra, warned", [
    (["--max-epoch", "1"], True),
    (["--max-update", "3"], True),  # 6 updates an epoch (24 rows, batches of 4)
    (["--max-epoch", "2"], False),
    (["--max-update", "3", "--addrop-cross-period", "2"], False),
])
def test_fairseq_train_warns_when_cross_tuning_never_reaches_addrop(sp_bin, tmp_path, extra, warned):
    proc = fairseq_train(sp_bin, tmp_path / "ckpt", *extra)
    out = proc.stdout + proc.stderr
    if warned:
        assert out.count(START) == 1 and out.count(END) == 1, out[-4000:]
        assert "--addrop-cross-period" in out and "--addrop-schedule always" in out
        assert out.index(START) < out.index("| INFO | train_inner |") < out.index(END)
        if "--max-update" in extra:
            assert "an epoch has 6 updates" in out
    else:
        assert START not in out and END not in out, out[-4000:]
        assert re.search(r"addrop_active=1\b", out), out[-4000:]  # an AD-DROP update ran


def test_the_fairseq_internals_the_plan_warning_reads():
    """What the fairseq warning relies on (pinned fairseq): the criterion's config has the
    training config as its parent (``merge_with_parent``), the task makes the training
    iterator through ``get_batch_iterator(dataset=...)`` over ``train_subset``, and the
    training loop stops at ``--max-update`` / ``--max-epoch``."""
    import inspect

    from fairseq.tasks import FairseqTask
    from fairseq.trainer import Trainer

    assert list(inspect.signature(FairseqTask.get_batch_iterator).parameters)[:2] == ["self", "dataset"]
    source = inspect.getsource(Trainer.get_train_iterator)
    assert "self.task.get_batch_iterator(" in source
    assert "dataset=self.task.dataset(self.cfg.dataset.train_subset)" in source


def test_the_criterion_sees_the_training_config_and_iterator(sp_bin):
    cfg, task, model, crit = build(sp_bin, TINY_ROBERTA + ["--num-classes", "2", "--criterion", "addrop_ce",
                                                           "--max-epoch", "1", "--batch-size", "4",
                                                           "--required-batch-size-multiple", "1"],
                                   task="sentence_prediction", arch="roberta")
    assert crit._setting("optimization.max_epoch", 0) == 1
    task.load_dataset("train")
    itr = task.get_batch_iterator(task.dataset("train"), max_sentences=4)
    assert crit._train_itr is itr and len(itr) == 6
