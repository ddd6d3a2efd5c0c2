"""``addrop_drop_frac_attributed`` (issue 32, item 3): the dropped share over the query rows
whose attribution is not all zero, beside ``addrop_drop_frac``.

In a sentence classifier's last layer only the [CLS] row reaches the output: every other row's
attribution is zero, all its keys tie as candidates and each is dropped with probability q
without any effect on the loss. The new figure counts the [CLS] rows only, so it is near
p * q while ``addrop_drop_frac`` is near q. Checked on real MiniLM through the Trainer, on a
fairseq RoBERTa through ``--criterion addrop_ce``'s metrics, and in ``addrop-explain``'s
summary; the masks are the ones ``addrop_drop_mask`` draws, bit for bit.
"""
import json
import random

import pytest
import torch

import hf_builders as hb
from conftest import REPO, run_cli
from fairseq_builders import TINY_ROBERTA, build, sentence_batch

from addrop_fairseq import masks

tf = hb.tf()

from addrop_fairseq.hf.trainer import ADDropArguments, ADDropTrainer  # noqa: E402

pytestmark = pytest.mark.slow  # subprocesses, MiniLM or training: the full suite, not the fast lane

P = Q = 0.3


@pytest.fixture(autouse=True)
def _threads(one_torch_thread):
    yield


def expected(n_keys, p=P, q=Q):
    """The mean drop of a row with n valid keys and distinct attributions: (n - int(n(1-p))) / n * q."""
    return (n_keys - int(n_keys * (1 - p) + 1e-9)) / n_keys * q


def cls_rows(attribution):
    """[B, H, T]: True on query row 0 (the [CLS] / <s> row the classifier reads)."""
    rows = torch.zeros(attribution.shape[:-1], dtype=torch.bool)
    rows[..., 0] = True
    return rows


# ------------------------------------------------------------------------------ the maths


def test_counts_and_masks_bit_identical():
    """Rows with an all-zero attribution are left out of the new counts; the masks are
    addrop_drop_mask's with the same generator (counting draws nothing)."""
    g = torch.Generator().manual_seed(0)
    attribution = torch.randn(2, 3, 5, 6, generator=g)
    attribution[:, :, 1:] = 0.0  # only query row 0 is attributed
    attribution[1, 2, 0] = 0.0  # ... except in one (example, head)
    valid = torch.ones(2, 1, 5, 6, dtype=torch.bool)
    valid[1, :, :, 4:] = False  # padding keys of example 1
    valid[1, :, 4:, :] = False  # and its padded query rows
    full = valid.expand(2, 3, 5, 6)
    want = masks.addrop_drop_mask(attribution, full, P, 0.5, generator=torch.Generator().manual_seed(7))
    drop = masks.DropMasks([attribution], P, 0.5, generator=torch.Generator().manual_seed(7))
    got = drop(0, full)
    assert torch.equal(got, want)
    rows = masks.attributed_rows(attribution, full)
    assert rows.shape == (2, 3, 5, 1)
    assert rows[..., 0].sum() == 5 and not rows[1, 2, 0]
    assert int(drop.dropped) == int(want.sum()) and int(drop.valid) == int(full.sum())
    assert int(drop.valid_attributed) == 3 * 6 + 2 * 4
    assert int(drop.dropped_attributed) == int(want[:, :, 0].sum() - want[1, 2, 0].sum())
    assert not drop.all_zero()
    zero = masks.DropMasks([torch.zeros(2, 3, 5, 6)], P, Q)
    zero(0, full)
    assert zero.all_zero() and int(zero.valid_attributed) == 0
    rd = masks.DropMasks(None, P, Q)
    rd(0, full)
    assert not rd.all_zero() and int(rd.valid_attributed) == int(full.sum())  # a random region: every row


# ------------------------------------------------------------------------------ the Trainer, real MiniLM


def sentences(n, length, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        ids = torch.randint(1000, 8000, (length - 2 * (i % 2),), generator=g)
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


class Kept(ADDropTrainer):
    def addrop_step(self, model, inputs, return_outputs=False, num_items_in_batch=None, keep=False):
        result, drop = super().addrop_step(model, inputs, return_outputs, num_items_in_batch, keep=True)
        self.kept.append((inputs["attention_mask"].clone(), {i: (a.clone(), m.clone()) for i, (a, m) in drop.kept.items()}))
        return result, drop


def test_trainer_logs_the_drop_over_attributed_rows_on_minilm(tmp_path):
    """MiniLM sequence classifier, AD-DROP on its last layer only: the attributed rows are the
    [CLS] rows exactly; the logged new figure is the drop over them (counted here from the
    masks), near p q; addrop_drop_frac is near q."""
    tf.logging.set_verbosity_error()
    torch.manual_seed(0)
    model = tf.BertForSequenceClassification.from_pretrained(hb.minilm_dir(), num_labels=2)
    args = tf.TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, max_steps=2,
                                logging_steps=2, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
                                seed=3)
    trainer = Kept(model=model, args=args, train_dataset=sentences(16, 20), data_collator=collate,
                   addrop_args=ADDropArguments(addrop_p=P, addrop_q=Q, addrop_layers="5", addrop_schedule="always"))
    trainer.kept = []
    trainer.train()
    logged = [h for h in trainer.state.log_history if "addrop_drop_frac_attributed" in h]
    assert len(logged) == 1
    dropped = valid = dropped_all = valid_all = 0
    for attention_mask, kept in trainer.kept:
        (attribution, mask), = kept.values()
        heads = attribution.size(1)
        real = attention_mask.bool()
        assert torch.equal(attribution.ne(0).any(-1), cls_rows(attribution)), "only [CLS] rows are attributed"
        dropped += int(mask[:, :, 0].sum())
        valid += int(real.sum()) * heads
        dropped_all += int(mask.sum())
        valid_all += int((real[:, None, :, None] & real[:, None, None, :]).sum()) * heads
    new, old = logged[0]["addrop_drop_frac_attributed"], logged[0]["addrop_drop_frac"]
    assert new == round(dropped / valid, 4) and old == round(dropped_all / valid_all, 4)
    assert abs(new - expected(19)) < 0.03, new  # rows of 18 and 20 keys: (6/20, 6/18) x q
    assert abs(old - Q) < 0.03 and old > 2.5 * new, (old, new)


# ------------------------------------------------------------------------------ the criterion's metrics


def test_criterion_logs_the_drop_over_attributed_rows(spdir):
    """fairseq RoBERTa (2 layers, AD-DROP on the last): the summed logging outputs give
    addrop_drop_frac_attributed over the <s> rows (counted here from the masks), near p q."""
    from fairseq.logging import metrics

    from addrop_fairseq.criterions.addrop_ce import ADDropCriterion

    _, task, model, crit = build(spdir, TINY_ROBERTA + [
        "--num-classes", "2", "--criterion", "addrop_ce", "--addrop-layers", "1", "--addrop-schedule", "always",
        "--addrop-p", str(P), "--addrop-q", str(Q)], task="sentence_prediction", arch="roberta")
    model.train()
    logs, dropped, valid = [], 0, 0
    torch.manual_seed(0)
    for seed in range(4):
        sample = sentence_batch(task, bsz=16, length=21, seed=seed)
        _, _, log, drop = crit.addrop_step(model, sample, keep=True)
        logs.append(log)
        (attribution, mask), = drop.kept.values()
        real = sample["net_input"]["src_tokens"].ne(task.source_dictionary.pad())
        assert torch.equal(attribution.ne(0).any(-1), cls_rows(attribution)), "only <s> rows are attributed"
        dropped += int(mask[:, :, 0].sum())
        valid += int(real.sum()) * attribution.size(1)
    with metrics.aggregate(new_root=True) as agg:
        ADDropCriterion.reduce_metrics(logs)
    values = agg.get_smoothed_values()
    new, old = values["addrop_drop_frac_attributed"], values["addrop_drop_frac"]
    assert new == round(dropped / valid, 4)
    assert abs(new - expected(20)) < 0.03, new
    assert abs(old - Q) < 0.04 and old > 2 * new, (old, new)
    plain = crit.plain_loss(model, sample, addrop_dropped_attributed=0, addrop_valid_attributed=0)[2]
    assert plain["addrop_valid_attributed"] == 0


# ------------------------------------------------------------------------------ addrop-explain's summary


WORDS = "the a cat dog sat ran on under mat tree big small red blue house".split()


def test_explain_summary_gives_both_figures(tmp_path):
    rng = random.Random(1)
    sents = [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(5, 12))) for _ in range(12)]
    for split, rows in (("train", sents[:8]), ("valid", sents[8:])):
        (tmp_path / f"{split}.input0").write_text("\n".join(rows) + "\n")
        (tmp_path / f"{split}.label").write_text("".join(f"{i % 2}\n" for i in range(len(rows))))
    for name in ("input0", "label"):
        run_cli("fairseq_cli.preprocess", ["--only-source", "--trainpref", tmp_path / f"train.{name}", "--validpref",
                                           tmp_path / f"valid.{name}", "--destdir", tmp_path / "bin" / name,
                                           "--workers", "1"])
    run_cli("fairseq_cli.train", [
        tmp_path / "bin", "--user-dir", REPO / "addrop_fairseq", "--task", "sentence_prediction", "--arch", "roberta",
        *TINY_ROBERTA[:-6], "--max-positions", "64", "--init-token", "0", "--separator-token", "2",
        "--num-classes", "2", "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "8", "--max-update", "1", "--required-batch-size-multiple", "1",
        "--no-progress-bar", "--num-workers", "0", "--no-epoch-checkpoints", "--criterion", "addrop_ce",
        "--addrop-schedule", "always", "--save-dir", tmp_path / "ckpt"])
    out = tmp_path / "explain.png"
    proc = run_cli("addrop_fairseq.explain", [
        "--checkpoint", tmp_path / "ckpt" / "checkpoint_last.pt", "--out", out, "--addrop-layers", "1", "--layer", "1",
        "--addrop-p", str(P), "--addrop-q", str(Q), "--text", "the big cat sat on the red mat under a small tree"])
    summary = json.loads(out.with_suffix(".json").read_text())
    new, old = summary["addrop_drop_frac_attributed"], summary["addrop_drop_frac"]
    assert 0 <= new < old <= 1
    assert f"{new:.4f} (addrop_drop_frac_attributed)" in proc.stdout and f"{old:.4f} (addrop_drop_frac)" in proc.stdout
    # the figures of the masks the summary lists: the last layer's <s> rows are the attributed ones
    (site,) = [s for s in summary["sites"] if s["layer"] == 1]
    n, heads = len(summary["tokens"]), 2
    dropped = site["dropped"]
    assert old == round(len(dropped) / (heads * n * n), 4)
    assert new == round(sum(1 for _, query, _ in dropped if query == 0) / (heads * n), 4)
