"""ADDropTrainer / ADDropSeq2SeqTrainer (addrop_fairseq.hf.trainer).

* importable without fairseq; ADDropArguments = the criterion's options (names, defaults,
  help), read by HfArgumentParser;
* one Trainer step equals one ``--criterion addrop_ce`` step on real MiniLM weights (same
  attribution, masks, loss and gradients);
* ``schedule never`` and cross-tuning's plain epochs equal the stock Trainer bit for bit;
* cross-tuning by the Trainer's epoch under gradient accumulation (each micro-batch's masks
  from that micro-batch) and across a resume from a mid-epoch checkpoint;
* token classification and seq2seq heads; bf16 through the Trainer, fp16 below it;
* two gloo processes on CPU; refused heads and options.
"""
import copy
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

import hf_builders as hb
from conftest import REPO, cli_env

tf = hb.tf()

from addrop_fairseq.hf import heads  # noqa: E402
from addrop_fairseq.hf.trainer import ADDropArguments, ADDropSeq2SeqTrainer, ADDropTrainer  # noqa: E402


@pytest.fixture(autouse=True)
def _threads(one_torch_thread):
    yield


def tiny_bert_config(**kw):
    base = dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                max_position_embeddings=32, num_labels=2)
    base.update(kw)
    return tf.BertConfig(**base)


def tiny(cls=None, seed=0, **kw):
    torch.manual_seed(seed)
    return (cls or tf.BertForSequenceClassification)(tiny_bert_config(**kw))


def rows(n=8, seed=1, token_labels=False, num_labels=2):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = 5 + i % 4
        r = {"input_ids": torch.randint(1, 60, (length,), generator=g).tolist()}
        if token_labels:
            lab = torch.randint(0, num_labels, (length,), generator=g)
            lab[0] = -100
            r["labels"] = lab.tolist()
        else:
            r["labels"] = i % num_labels
        out.append(r)
    return out


def collate(batch):
    """Dynamic padding (each micro-batch its own length), attention mask, labels (-100 padded)."""
    n = max(len(r["input_ids"]) for r in batch)
    ids = torch.zeros(len(batch), n, dtype=torch.long)
    mask = torch.zeros(len(batch), n, dtype=torch.long)
    for i, r in enumerate(batch):
        ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
        mask[i, : len(r["input_ids"])] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    if isinstance(batch[0]["labels"], list):
        labels = torch.full((len(batch), n), -100, dtype=torch.long)
        for i, r in enumerate(batch):
            labels[i, : len(r["labels"])] = torch.tensor(r["labels"])
        out["labels"] = labels
    else:
        out["labels"] = torch.tensor([r["labels"] for r in batch])
    return out


def targs(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, num_train_epochs=1,
                logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True, seed=3)
    base.update(kw)
    return tf.TrainingArguments(**base)


def params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# ------------------------------------------------------------------------------ imports and options


@pytest.mark.slow
def test_import_without_fairseq():
    code = ("import sys; from addrop_fairseq.hf.trainer import ADDropTrainer, ADDropArguments; "
            "assert 'fairseq' not in sys.modules, sorted(m for m in sys.modules if m.startswith('fairseq'))[:5]; "
            "print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_arguments_are_the_criterions_options():
    """Same field names, defaults, choices and help as ADDropCriterionConfig's --addrop-* options."""
    import dataclasses

    from addrop_fairseq.criterions.addrop_ce import ADDropCriterionConfig

    ours = {f.name: f for f in dataclasses.fields(ADDropArguments)}
    theirs = {f.name: f for f in dataclasses.fields(ADDropCriterionConfig) if f.name.startswith("addrop_")}
    assert set(ours) == set(theirs)
    for name, f in theirs.items():
        assert ours[name].default == f.default, name
        assert ours[name].metadata["help"] == f.metadata["help"], name
        choices = getattr(f.type, "__members__", None)
        if choices:  # fairseq's ChoiceEnum vs our Literal
            assert tuple(choices) == ours[name].type.__args__, name

    parser = tf.HfArgumentParser((tf.TrainingArguments, ADDropArguments))
    _, a = parser.parse_args_into_dataclasses(["--output_dir", "x", "--addrop-p", "0.1", "--addrop_q", "0.2",
                                               "--addrop-layers", "0,1", "--addrop-schedule", "always"])
    assert (a.addrop_p, a.addrop_q, a.layers, a.addrop_schedule, a.kinds) == (0.1, 0.2, [0, 1], "always", None)
    with pytest.raises(SystemExit):
        parser.parse_args_into_dataclasses(["--output_dir", "x", "--addrop-schedule", "sometimes"])


@pytest.mark.parametrize("bad,match", [
    (dict(addrop_p=1.5), "--addrop-p must be in"),
    (dict(addrop_attribution="nope"), "--addrop-attribution: unknown attribution method 'nope'"),
    (dict(addrop_cross_period=-3), "--addrop-cross-period must be >= 0"),
    (dict(addrop_ig_steps=0), "--addrop-ig-steps"),
    (dict(addrop_layers="x"), "--addrop-layers must be"),
    (dict(addrop_attention="cross"), "--addrop-attention: unknown kind"),
    (dict(addrop_layers="5"), r"--addrop-attention / --addrop-layers: layer\(s\) \[5\] out of range"),
    (dict(addrop_attention="decoder-self"), "has no decoder-self attention"),
])
def test_bad_options_are_refused_at_construction(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        ADDropTrainer(model=tiny(), args=targs(tmp_path), train_dataset=rows(), data_collator=collate,
                      addrop_args=ADDropArguments(**bad))


# ------------------------------------------------------------------------------ refused heads


@pytest.mark.parametrize("make,match", [
    (lambda: tiny(tf.BertForMaskedLM), "cannot train BertForMaskedLM: it handles"),
    (lambda: tiny(tf.BertForQuestionAnswering), "cannot train BertForQuestionAnswering"),
    (lambda: tiny(tf.BertModel), "cannot train BertModel"),
    (lambda: tiny(problem_type="multi_label_classification"), "multi_label_classification"),
    (lambda: tf.DebertaV2ForSequenceClassification(tf.DebertaV2Config(
        vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32)), "does not route its attention through transformers' AttentionInterface"),
])
def test_unsupported_models_are_refused_at_construction(tmp_path, make, match):
    with pytest.raises(ValueError, match=match):
        ADDropTrainer(model=make(), args=targs(tmp_path), train_dataset=rows(), data_collator=collate)


def test_gold_labels_on_regression_and_gradient_checkpointing_are_refused(tmp_path):
    with pytest.raises(ValueError, match="gold needs class labels"):
        ADDropTrainer(model=tiny(num_labels=1), args=targs(tmp_path), train_dataset=rows(),
                      addrop_args=ADDropArguments(addrop_labels="gold"))
    with pytest.raises(ValueError, match="gradient checkpointing"):
        ADDropTrainer(model=tiny(), args=targs(tmp_path, activation_checkpointing=True), train_dataset=rows())


def test_kinds_from_heads():
    assert heads.kind_of(tiny()).name == "classification"
    assert heads.kind_of(tiny(num_labels=1)).name == "regression"
    assert heads.kind_of(tiny(tf.BertForTokenClassification)).name == "token"
    marian = tf.MarianMTModel(tf.MarianConfig(vocab_size=30, d_model=16, encoder_layers=1, decoder_layers=1,
                                              encoder_attention_heads=2, decoder_attention_heads=2,
                                              encoder_ffn_dim=16, decoder_ffn_dim=16, pad_token_id=29,
                                              decoder_start_token_id=29, eos_token_id=0))
    assert heads.kind_of(marian).name == "seq2seq"


# ------------------------------------------------------------------------------ the stock Trainer when off


def one_step(trainer_cls, model, tmp_path, batch, seed=5, **kw):
    trainer = trainer_cls(model=model, args=targs(tmp_path), train_dataset=rows(), data_collator=collate, **kw)
    trainer.current_gradient_accumulation_steps = 1  # set by train()'s loop
    model.zero_grad()
    torch.manual_seed(seed)
    loss = trainer.training_step(model, dict(batch))
    return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, trainer


@pytest.mark.parametrize("schedule", ["never", "cross"])
def test_plain_updates_equal_the_stock_trainer(tmp_path, schedule):
    """``never`` and cross-tuning's first epoch (the model already switched to the addrop
    implementation, idle): loss and gradients bit-identical to transformers' Trainer."""
    batch = collate(rows()[:4])
    want_loss, want_grads, _ = one_step(tf.Trainer, tiny(), tmp_path, batch)
    got_loss, got_grads, trainer = one_step(ADDropTrainer, tiny(), tmp_path, batch,
                                            addrop_args=ADDropArguments(addrop_schedule=schedule))
    assert trainer.model.config._attn_implementation == ("addrop" if schedule == "cross" else "sdpa")
    assert torch.equal(got_loss, want_loss)
    assert want_grads.keys() == got_grads.keys()
    for n in want_grads:
        assert torch.equal(got_grads[n], want_grads[n]), n


def test_evaluation_and_predict_stay_plain(tmp_path):
    model = tiny()
    ref = copy.deepcopy(model)
    trainer = ADDropTrainer(model=model, args=targs(tmp_path), train_dataset=rows(), eval_dataset=rows(6, seed=4),
                            data_collator=collate, addrop_args=ADDropArguments(addrop_schedule="always"))
    got = trainer.predict(rows(6, seed=4)).predictions
    stock = tf.Trainer(model=ref, args=targs(tmp_path), data_collator=collate).predict(rows(6, seed=4)).predictions
    assert torch.equal(torch.as_tensor(got), torch.as_tensor(stock))
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and "addrop_active" not in metrics


# ------------------------------------------------------------------------------ equality with the fairseq criterion


@pytest.fixture(scope="module")
def minilm_pair(tmp_path_factory, shared_data):
    """The fairseq hf_sequence_classifier on MiniLM (RTE batch) and the same weights as a plain
    BertForSequenceClassification, with the fairseq batch turned into HF inputs."""
    from addrop_fairseq.hf import preprocess as hf_preprocess
    from addrop_fairseq.hf.loading import right_align
    from hf_builders import build

    root = tmp_path_factory.mktemp("minilm_trainer")
    model_dir = hb.minilm_dir()
    hb.write_pairs(root / "raw", "train", hb.read_glue_tsv(shared_data / "glue" / "RTE" / "train.tsv", 8))
    hb.write_pairs(root / "raw", "valid", hb.read_glue_tsv(shared_data / "glue" / "RTE" / "dev.tsv", 4))
    hf_preprocess.main(["--model-dir", str(model_dir), "--task", "sentence_prediction", "--max-length", "48",
                        "--trainpref", str(root / "raw" / "train"), "--validpref", str(root / "raw" / "valid"),
                        "--destdir", str(root / "rte")])
    torch.manual_seed(0)
    task, fs_model, cfg = build([
        root / "rte", "--task", "sentence_prediction", "--num-classes", "2", "--arch", "hf_sequence_classifier",
        "--hf-model-dir", model_dir, "--max-positions", "512", "--criterion", "addrop_ce", "--addrop-p", "0.3",
        "--addrop-q", "0.3", "--addrop-schedule", "always",
    ])
    task.load_dataset("train")
    itr = task.get_batch_iterator(task.dataset("train"), max_sentences=4).next_epoch_itr(shuffle=False)
    sample = next(iter(itr))
    hf_model = tf.BertForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    hf_model.load_state_dict(fs_model.hf.state_dict())  # the fairseq model's (random) head too
    tokens, _ = right_align(sample["net_input"]["src_tokens"], fs_model.pad)
    inputs = dict(fs_model.hf_inputs(tokens))
    inputs["labels"] = sample["target"].view(-1)
    return task, fs_model, cfg, sample, hf_model, inputs


@pytest.mark.slow  # loads the pretrained MiniLM
def test_one_step_equals_the_fairseq_criterion_on_minilm(minilm_pair, tmp_path):
    task, fs_model, cfg, sample, hf_model, inputs = minilm_pair
    criterion = task.build_criterion(cfg.criterion)
    trainer = ADDropTrainer(model=hf_model, args=targs(tmp_path), data_collator=collate,
                            addrop_args=ADDropArguments(addrop_p=0.3, addrop_q=0.3, addrop_schedule="always"))
    assert len(trainer.addrop_sites) == 6

    fs_model.train()
    fs_model.zero_grad()
    torch.manual_seed(11)
    fs_loss, sample_size, _, fs_drop = criterion.addrop_step(fs_model, sample, keep=True)
    (fs_loss / sample_size).backward()

    hf_model.train()
    hf_model.zero_grad()
    torch.manual_seed(11)
    hf_loss, hf_drop = trainer.addrop_step(hf_model, dict(inputs), keep=True)
    hf_loss.backward()

    assert sorted(fs_drop.kept) == sorted(hf_drop.kept) == list(range(6))
    for i in range(6):
        (fa, fm), (ha, hm) = fs_drop.kept[i], hf_drop.kept[i]
        assert torch.equal(fa, ha), f"attribution of layer {i}"
        assert fa.abs().sum() > 0
        assert torch.equal(fm, hm), f"mask of layer {i}"
    assert int(fs_drop.dropped) == int(hf_drop.dropped) > 0 and int(fs_drop.valid) == int(hf_drop.valid)
    torch.testing.assert_close(hf_loss, fs_loss / sample_size, rtol=1e-6, atol=0)
    fs_grads = {n[3:]: p.grad for n, p in fs_model.named_parameters() if p.grad is not None}
    for n, p in hf_model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(p.grad, fs_grads[n], rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------ cross-tuning, accumulation, resume


class Recording(ADDropTrainer):
    """Keeps, per training micro-batch: the step, epoch, whether AD-DROP ran, its inputs, and
    (AD-DROP) the masks, the parameters and the RNG state it started from."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.records.append({"step": self.state.global_step, "epoch": self.addrop_epoch(),
                                 "active": self.addrop_now(), "inputs": {k: v.clone() for k, v in inputs.items()},
                                 "rng": torch.get_rng_state(), "params": copy.deepcopy(model.state_dict())})
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def addrop_step(self, model, inputs, return_outputs=False, num_items_in_batch=None, keep=False):
        result, drop = super().addrop_step(model, inputs, return_outputs, num_items_in_batch, keep=True)
        self.records[-1]["kept"] = {i: (a.clone(), m.clone()) for i, (a, m) in drop.kept.items()}
        return result, drop


def make_recording(tmp_path, **kw):
    args = targs(tmp_path, gradient_accumulation_steps=2, num_train_epochs=4, save_strategy="steps", save_steps=1,
                 **kw)
    trainer = Recording(model=tiny(), args=args, train_dataset=rows(8), data_collator=collate,
                        addrop_args=ADDropArguments(addrop_p=0.5, addrop_q=0.5))
    trainer.records = []
    return trainer


@pytest.mark.slow  # trains
def test_cross_tuning_by_epoch_with_accumulation_and_resume(tmp_path):
    # 8 examples, micro-batches of 2, 2 per update: 2 updates per epoch, 4 epochs
    full = make_recording(tmp_path)
    full.train()
    rec = full.records
    assert len(rec) == 16
    assert [r["epoch"] for r in rec] == [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4
    assert [r["active"] for r in rec] == [False] * 4 + [True] * 4 + [False] * 4 + [True] * 4
    assert [r["step"] for r in rec] == [s for s in range(8) for _ in (0, 1)]
    logs = [h for h in full.state.log_history if "loss" in h]
    assert [h["addrop_active"] for h in logs] == [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    assert all(0.0 < h["addrop_drop_frac"] < 0.6 for h in logs if h["addrop_active"])

    final = params(full.model)

    # every micro-batch's masks are its own: its size and length, its padding never dropped,
    # and the same masks again from that micro-batch alone (same parameters and RNG state)
    for r in rec:
        if not r["active"]:
            assert "kept" not in r
            continue
        ids, mask = r["inputs"]["input_ids"], r["inputs"]["attention_mask"].bool()
        assert len(r["kept"]) == 2
        for a, m in r["kept"].values():
            assert a.shape[0] == m.shape[0] == ids.shape[0] and m.shape[-1] == ids.shape[1]
            assert not (m & ~mask[:, None, None, :]).any()
    second = next(i for i, r in enumerate(rec) if r["active"] and rec[i - 1]["active"])  # 2nd micro-batch of an update
    r = rec[second]
    model = full.model
    model.load_state_dict(r["params"])
    model.train()
    torch.set_rng_state(r["rng"])
    _, again = full.addrop_step(model, dict(r["inputs"]), keep=True)
    for i, (a, m) in r["kept"].items():
        assert torch.equal(again.kept[i][0], a) and torch.equal(again.kept[i][1], m)

    # resume from the checkpoint after update 3 (mid epoch 2): the schedule continues, and
    # the run ends where the uninterrupted one did
    resumed = make_recording(tmp_path)
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-3"))
    assert [(r["step"], r["epoch"], r["active"]) for r in resumed.records] == \
        [(r["step"], r["epoch"], r["active"]) for r in rec[6:]]
    for n, p in params(resumed.model).items():
        assert torch.equal(p, final[n]), n


# ------------------------------------------------------------------------------ token classification, seq2seq


def test_token_classification_trains_on_labelled_positions(tmp_path):
    model = tiny(tf.BertForTokenClassification, num_labels=3)
    trainer = ADDropTrainer(model=model, args=targs(tmp_path, num_train_epochs=1), train_dataset=rows(4, token_labels=True,
                            num_labels=3), data_collator=collate, addrop_args=ADDropArguments(addrop_schedule="always"))
    batch = collate(rows(4, token_labels=True, num_labels=3))
    model.train()
    torch.manual_seed(0)
    kind = trainer.addrop_kind
    pred = kind.predict(model, batch)
    real = batch["labels"].ne(-100)
    assert torch.equal(pred.real, real) and not real[:, 0].any()
    labels = kind.labels(pred)
    want = torch.log_softmax(pred.output, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)[real].sum()
    torch.testing.assert_close(kind.target(pred, labels), want)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert logs and all(h["addrop_active"] == 1.0 and h["addrop_drop_frac"] > 0 for h in logs)


def test_seq2seq_trainer_marian(tmp_path):
    config = tf.MarianConfig(vocab_size=30, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                             decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16,
                             max_position_embeddings=32, pad_token_id=29, decoder_start_token_id=29, eos_token_id=0,
                             forced_eos_token_id=0)
    torch.manual_seed(0)
    model = tf.MarianMTModel(config)
    g = torch.Generator().manual_seed(2)

    def example(i):
        src = torch.randint(1, 29, (4 + i % 3,), generator=g).tolist() + [0]
        return {"input_ids": src, "labels": list(reversed(src[:-1])) + [0]}

    data = [example(i) for i in range(6)]

    def collate_s2s(batch):
        n = max(len(r["input_ids"]) for r in batch)
        m = max(len(r["labels"]) for r in batch)
        ids = torch.full((len(batch), n), 29)
        labels = torch.full((len(batch), m), -100)
        for i, r in enumerate(batch):
            ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
            labels[i, : len(r["labels"])] = torch.tensor(r["labels"])
        return {"input_ids": ids, "attention_mask": ids.ne(29).long(), "labels": labels}

    args = tf.Seq2SeqTrainingArguments(output_dir=str(tmp_path / "s2s"), per_device_train_batch_size=3,
                                       num_train_epochs=2, logging_steps=1, report_to=[], use_cpu=True,
                                       save_strategy="no", disable_tqdm=True, predict_with_generate=True,
                                       generation_max_length=8)
    trainer = ADDropSeq2SeqTrainer(model=model, args=args, train_dataset=data, eval_dataset=data[:3],
                                   data_collator=collate_s2s,
                                   addrop_args=ADDropArguments(addrop_attention="encoder-self,encoder-decoder"))
    assert {s.kind for s in trainer.addrop_sites} == {"encoder-self", "encoder-decoder"}
    # encoder-decoder sites see the decoder's real rows: the labelled positions
    batch = collate_s2s(data[:3])
    qv = trainer.addrop_kind.query_valid(batch, trainer.addrop_sites)
    assert [q is None for q in qv] == [s.kind != "encoder-decoder" for s in trainer.addrop_sites]
    assert torch.equal(next(q for q in qv if q is not None), batch["labels"].ne(-100))
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["addrop_active"] for h in logs] == [0.0, 0.0, 1.0, 1.0]
    assert all(h["addrop_drop_frac"] > 0 for h in logs[2:])
    out = trainer.predict(data[:3])  # generate: plain
    assert out.predictions.shape[0] == 3


# ------------------------------------------------------------------------------ fp16 / bf16


def unpadded(n=8):
    """Rows of one length, batched without an attention mask: the maps keep autocast's dtype
    (an fp32 padding mask added to bf16 scores would promote them to fp32)."""
    data = [dict(r, input_ids=r["input_ids"][:5]) for r in rows(n)]
    return data, lambda b: {k: v for k, v in collate(b).items() if k != "attention_mask"}


def spy_on_gradients(trainer):
    seen, grad = [], trainer.addrop.grad

    def spy(target, maps):
        out = grad(target, maps)
        seen.append(([m.dtype for m in maps], out))
        return out

    trainer.addrop.grad = spy
    return seen


@pytest.mark.slow  # trains
def test_bf16_through_the_trainer_and_fp16_below_it(tmp_path):
    data, collate_unpadded = unpadded()
    trainer = ADDropTrainer(model=tiny(), args=targs(tmp_path, bf16=True, num_train_epochs=2), train_dataset=data,
                            data_collator=collate_unpadded, addrop_args=ADDropArguments(addrop_schedule="always"))
    seen = spy_on_gradients(trainer)
    trainer.train()
    # the maps were bf16: the loss-scaled target ran, and gave finite fp32 attributions
    assert len(seen) == 8 and all(d == torch.bfloat16 for dts, _ in seen for d in dts)
    for _, grads in seen:
        for g in grads:
            assert g.dtype == torch.float32 and torch.isfinite(g).all()
            assert (g[:, :, 0].abs().sum(-1) > 0).all()  # the [CLS] rows: no underflow to zeros
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 8 and all(torch.isfinite(torch.tensor(h["loss"])) and h["addrop_drop_frac"] > 0 for h in logs)

    # fp16: the Trainer keeps fp32 maps on CPU, so run its step under fp16 autocast directly
    model = tiny()
    trainer = ADDropTrainer(model=model, args=targs(tmp_path), data_collator=collate_unpadded,
                            addrop_args=ADDropArguments(addrop_schedule="always"))
    seen = spy_on_gradients(trainer)
    model.train()
    with torch.autocast("cpu", dtype=torch.float16):
        loss, drop = trainer.addrop_step(model, collate_unpadded(data[:4]), keep=True)
    assert torch.isfinite(loss) and all(d == torch.float16 for d in seen[0][0])
    for a, m in drop.kept.values():
        assert a.dtype == torch.float32 and torch.isfinite(a).all() and m.any()
        assert (a[:, :, 0].abs().sum(-1) > 0).all()


# ------------------------------------------------------------------------------ two processes


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path):
    port = free_port()
    out = str(tmp_path / "ddp")
    procs = []
    for rank in (0, 1):
        env = cli_env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TOKENIZERS_PARALLELISM="false")
        procs.append(subprocess.Popen([sys.executable, str(REPO / "tests" / "hf_trainer_ddp_driver.py"), out],
                                      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
        text, _ = p.communicate(timeout=600)
        assert p.returncode == 0, text[-4000:]
    results = [json.loads(open(f"{out}.rank{r}.json").read()) for r in (0, 1)]
    for res in results:
        assert res["world_size"] == 2 and res["distributed_type"] == "DistributedType.MULTI_CPU"
        logs = [h for h in res["log_history"] if "loss" in h]
        assert [h["addrop_active"] for h in logs] == [0.0, 0.0, 1.0, 1.0]
        assert all(h["addrop_drop_frac"] > 0 for h in logs[2:])
    # the same parameters on both ranks (DDP all-reduced pass 2's gradients), the same
    # process-summed metrics
    assert results[0]["params_sum"] == results[1]["params_sum"]
    assert results[0]["params_abs"] == results[1]["params_abs"]
    assert results[0]["log_history"][:-1] == results[1]["log_history"][:-1]
    assert os.path.exists(f"{out}.rank0.json")
