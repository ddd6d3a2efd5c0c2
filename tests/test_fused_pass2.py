"""Pass 2 through fused attention (``scaled_dot_product_attention``) on both seams.

* :func:`sites.masked_attention` equals eager masked attention, fully masked rows uniform, no NaN;
* with attention dropout > 0 the share of probability mass dropout removes agrees between
  eager and fused (V = identity makes the attention output the dropped probability map), and
  AD-DROP's dropped keys get exactly 0 in both (HF attention function, fairseq MultiheadAttention);
* MiniLM through ADDropTrainer and through ``--criterion addrop_ce``: fused vs eager pass 2
  (fp32, attention dropout 0) give the same masks bit for bit, outputs and parameter
  gradients within 1e-5 relative, with padding and a fully padded row; bf16 autocast: no NaN,
  within bf16 tolerance of fp32;
* a fairseq transformer: encoder self-attention and encoder-decoder attention alike;
* AD-DROP still active with the same drop fraction (the Trainer's ``addrop_active``,
  ``addrop_drop_frac``), and the fused kernel is what pass 2 ran.
"""
import copy
import math

import pytest
import torch

import hf_builders as hb
from addrop_fairseq import sites as core
from addrop_fairseq.hf import seam as hf_seam
from addrop_fairseq.hf.trainer import ADDropArguments, ADDropTrainer

tf = hb.tf()


@pytest.fixture(autouse=True)
def _threads(one_torch_thread):
    yield


def rel(a, b):
    """Relative error of ``a`` against ``b`` (norms)."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def assert_grads_close(got, want, tol=1e-5):
    """Each parameter's gradient within ``tol`` relative, and all of them together. Gradients
    that are zero on paper (key biases: softmax ignores a shift of a row) are rounding noise,
    ~1e-10; those below 1e-6 of the largest are checked only within the whole."""
    assert got.keys() == want.keys()
    flat = lambda g: torch.cat([g[n].double().flatten() for n in sorted(want)])  # noqa: E731
    assert rel(flat(got), flat(want)) < tol
    scale = max(float(g.norm()) for g in want.values())
    bad = {n: rel(got[n], want[n]) for n in want if float(want[n].norm()) > 1e-6 * scale}
    bad = {n: r for n, r in bad.items() if r >= tol}
    assert not bad, bad


class Count:
    """Counts calls of torch's scaled_dot_product_attention (proof the fused kernel ran)."""

    def __init__(self, monkeypatch):
        self.n = 0
        real = torch.nn.functional.scaled_dot_product_attention

        def counted(*args, **kwargs):
            self.n += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counted)


# ------------------------------------------------------------------------------ the kernel


def eager_reference(q, k, v, bias, drop, scale):
    scores = q @ k.transpose(-1, -2) * scale + bias
    scores = scores.masked_fill(drop, torch.finfo(scores.dtype).min)
    return scores.softmax(-1) @ v


def test_masked_attention_equals_eager_with_fully_masked_rows(monkeypatch):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 5, 8, generator=g) for _ in range(3))
    keep = torch.ones(3, 1, 5, 5, dtype=torch.bool)
    keep[1, :, :, 3:] = False  # padded keys
    keep[2] = False  # a fully padded sequence: every key blocked
    bias = core.finite_bias(keep, torch.float32)
    drop = (torch.rand(3, 2, 5, 5, generator=g) < 0.3) & keep
    drop[..., 0] = False  # AD-DROP never empties a row
    for sl in (slice(0, 2), slice(0, 3)):  # the fused kernel; with the padded sequence, eager maths
        args = [x[sl].clone().requires_grad_() for x in (q, k, v)]
        count = Count(monkeypatch)
        got = core.masked_attention(*args, bias[sl], drop[sl], 0.0, 8 ** -0.5)
        assert count.n == (1 if sl.stop == 2 else 0)
        monkeypatch.undo()
        got_grads = torch.autograd.grad(got.square().sum(), args)
        args = [x[sl].clone().requires_grad_() for x in (q, k, v)]
        want = eager_reference(*args, bias[sl], drop[sl], 8 ** -0.5)
        want_grads = torch.autograd.grad(want.square().sum(), args)
        assert torch.isfinite(got).all()
        assert rel(got, want) < 1e-6
        assert all(rel(a, b) < 1e-5 for a, b in zip(got_grads, want_grads))
    # the fully padded row: uniform over its keys, as the eager path's finite fill gives
    torch.testing.assert_close(got[2], v[2].mean(-2, keepdim=True).expand_as(got[2]), rtol=1e-5, atol=1e-6)
    # -inf would have made NaN; finite_bias never hands it on
    assert torch.isfinite(core.finite_bias(torch.full((2, 2), float("-inf")), torch.bfloat16)).all()


def test_pass2_mode_option_and_error():
    assert core.Masker(lambda i, v: v).fused
    with core.pass2_attention("eager"):
        assert not core.Masker(lambda i, v: v).fused
    assert core.Masker(lambda i, v: v).fused
    assert not core.fusable(core.Recorder(1)) and not core.fusable(core.ScoreEditor(lambda i, s, v: s))
    with pytest.raises(ValueError, match="pass 2 attention must be one of"):
        core.set_pass2_attention("flash")


# ------------------------------------------------------------------------------ attention dropout, statistically


class _Module(torch.nn.Module):
    pass


def dropped_maps(fused: bool, p: float, seed: int, n_calls: int = 40):
    """HF attention function with V = identity: its output is the post-dropout probability map."""
    module = _Module().train()
    g = torch.Generator().manual_seed(seed)
    B, H, S = 4, 2, 16
    q, k = torch.randn(B, H, S, S, generator=g), torch.randn(B, H, S, S, generator=g)
    v = torch.eye(S).expand(B, H, S, S)
    am = torch.ones(B, S, dtype=torch.bool)
    am[1, 11:] = False
    mask = core.finite_bias(am[:, None, None, :], torch.float32)
    picked = (torch.rand(B, H, S, S, generator=g) < 0.2)
    setattr(module, core.STATE, core.SiteState(index=0))
    outs = []
    torch.manual_seed(seed)
    with core.masking([core.AttentionSite("m", "encoder-self", 0, module)], lambda i, valid: picked & valid,
                      fused=fused):
        for _ in range(n_calls):
            out, _ = hf_seam.addrop_attention_forward(module, q, k, v, mask, scaling=S ** -0.5, dropout=p)
            outs.append(out.transpose(1, 2))  # [B, H, T, S]
    valid = hf_seam.valid_from_mask(mask, q, k, True).expand(B, H, S, S)
    return torch.stack(outs), picked & valid, valid


def dropped_share(maps, p):
    """Share of each real row's probability mass that attention dropout removed."""
    return 1.0 - (1.0 - p) * maps.sum(-1)


def test_attention_dropout_removes_the_same_share_of_mass():
    p = 0.3
    eager, picked, valid = dropped_maps(False, p, seed=1)
    fused, picked_f, _ = dropped_maps(True, p, seed=1)
    assert torch.equal(picked, picked_f)
    rows = valid.any(-1)  # real query rows
    se, sf = dropped_share(eager, p)[:, rows], dropped_share(fused, p)[:, rows]
    # AD-DROP's keys are gone in both, before and after dropout
    assert float(eager[:, picked].abs().max()) == 0.0 and float(fused[:, picked].abs().max()) == 0.0
    # dropout is on in the kernel (not every row keeps its whole mass) ...
    assert float(sf.std()) > 0.05
    # ... and removes the same share as eager's: means within 4 standard errors, each ~ p
    n = se.numel()
    stderr = math.sqrt(float(se.var()) / n + float(sf.var()) / n)
    assert abs(float(se.mean()) - float(sf.mean())) < 4 * stderr
    assert abs(float(sf.mean()) - p) < 4 * math.sqrt(float(sf.var()) / n)
    # the share of entries zeroed among kept nonzero probabilities, too
    kept = (valid & ~picked).expand_as(fused)
    assert abs(float((fused[kept] == 0).float().mean()) - float((eager[kept] == 0).float().mean())) < 0.02


def fairseq_dropped_maps(fused: bool, p: float, seed: int, n_calls: int = 40):
    """fairseq MultiheadAttention with identity V and output projections on one-hot inputs."""
    from fairseq.modules.multihead_attention import MultiheadAttention

    from addrop_fairseq import fairseq_seam

    S, B = 12, 3
    torch.manual_seed(seed)
    mha = MultiheadAttention(S, 1, dropout=p, self_attention=True).train()
    with torch.no_grad():
        for proj in (mha.v_proj, mha.out_proj):
            proj.weight.copy_(torch.eye(S))
            proj.bias.zero_()
    x = torch.eye(S)[:, None, :].expand(S, B, S).contiguous()  # token t is e_t
    pad = torch.zeros(B, S, dtype=torch.bool)
    pad[2, 9:] = True
    (site,) = [core.AttentionSite("m", "encoder-self", 0, mha, fairseq_seam.SEAM)]
    core.install([site])
    g = torch.Generator().manual_seed(seed)
    picked = torch.rand(B, 1, S, S, generator=g) < 0.2
    outs = []
    torch.manual_seed(seed)
    with core.masking([site], lambda i, valid: picked & valid, fused=fused):
        for _ in range(n_calls):
            out, _ = mha(x, x, x, key_padding_mask=pad, need_weights=False)
            outs.append(out.transpose(0, 1))  # [B, T, S]: row t is the probability map of query t
    valid = ~pad[:, None, :] & ~pad[:, :, None]
    return torch.stack(outs), picked[:, 0] & valid, valid


def test_fairseq_attention_dropout_removes_the_same_share_of_mass(monkeypatch):
    from addrop_fairseq import fairseq_seam

    p = 0.25
    count = Count(monkeypatch)
    eager, picked, valid = fairseq_dropped_maps(False, p, seed=2)
    assert count.n == 0
    fused, _, _ = fairseq_dropped_maps(True, p, seed=2)
    assert count.n == 40
    rows = valid.any(-1)
    se, sf = dropped_share(eager, p)[:, rows], dropped_share(fused, p)[:, rows]
    assert float(eager[:, picked].abs().max()) == 0.0 and float(fused[:, picked].abs().max()) == 0.0
    assert float(sf.std()) > 0.05
    n = se.numel()
    stderr = math.sqrt(float(se.var()) / n + float(sf.var()) / n)
    assert abs(float(se.mean()) - float(sf.mean())) < 4 * stderr


# ------------------------------------------------------------------------------ MiniLM through the Trainer


def targs(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_train_epochs=1,
                logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True, seed=3)
    base.update(kw)
    return tf.TrainingArguments(**base)


@pytest.fixture(scope="module")
def minilm(shared_data):
    """MiniLM with attention dropout 0 (hidden dropout on) and a padded CoLA batch."""
    model_dir = hb.minilm_dir()
    torch.manual_seed(0)
    model = tf.BertForSequenceClassification.from_pretrained(model_dir, num_labels=2,
                                                             attention_probs_dropout_prob=0.0)
    tok = tf.AutoTokenizer.from_pretrained(model_dir)
    lines = [line.split("\t") for line in hb.read_lines(shared_data / "glue" / "CoLA" / "train.tsv", 5)]
    enc = tok([r[3] for r in lines], padding=True, return_tensors="pt")
    inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
              "labels": torch.tensor([int(r[1]) for r in lines])}
    assert (enc["attention_mask"] == 0).any()
    return model, inputs


def trainer_step(model, inputs, tmp_path, fused, autocast=None):
    model = copy.deepcopy(model)
    trainer = ADDropTrainer(model=model, args=targs(tmp_path),
                            addrop_args=ADDropArguments(addrop_p=0.3, addrop_q=0.3, addrop_schedule="always"))
    model.train()
    model.zero_grad()
    torch.manual_seed(11)
    with core.pass2_attention("auto" if fused else "eager"):
        if autocast is not None:
            with torch.autocast("cpu", dtype=autocast):
                (loss, outputs), drop = trainer.addrop_step(model, dict(inputs), return_outputs=True, keep=True)
        else:
            (loss, outputs), drop = trainer.addrop_step(model, dict(inputs), return_outputs=True, keep=True)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), outputs.logits.detach(), grads, drop


@pytest.mark.slow  # MiniLM
@pytest.mark.parametrize("padded_sequence", [False, True])
def test_minilm_trainer_fused_equals_eager(minilm, tmp_path, monkeypatch, padded_sequence):
    """With a sequence of padding only (every key of its rows blocked) the calls are computed
    eagerly (SDPA's backward is wrong on such rows), still equal."""
    model, inputs = minilm
    if padded_sequence:
        inputs = dict(inputs, attention_mask=inputs["attention_mask"].clone())
        inputs["attention_mask"][4] = 0
    count = Count(monkeypatch)
    e_loss, e_logits, e_grads, e_drop = trainer_step(model, inputs, tmp_path, fused=False)
    stock = count.n  # site discovery's probe runs the stock sdpa implementation
    f_loss, f_logits, f_grads, f_drop = trainer_step(model, inputs, tmp_path, fused=True)
    assert count.n - 2 * stock == (0 if padded_sequence else 6)  # each layer's pass 2 through the fused kernel
    for i in range(6):
        assert torch.equal(e_drop.kept[i][0], f_drop.kept[i][0]), f"attribution of layer {i}"
        assert torch.equal(e_drop.kept[i][1], f_drop.kept[i][1]), f"mask of layer {i}"
    assert int(e_drop.dropped) == int(f_drop.dropped) > 0 and int(e_drop.valid) == int(f_drop.valid)
    if padded_sequence:
        assert not f_drop.kept[0][1][4].any()  # nothing dropped in the padded sequence
    assert torch.isfinite(f_logits).all()
    assert rel(f_loss, e_loss) < 1e-5 and rel(f_logits, e_logits) < 1e-5
    assert e_grads.keys() == f_grads.keys()
    assert_grads_close(f_grads, e_grads)


@pytest.mark.slow  # MiniLM
def test_minilm_bf16_autocast_fused_has_no_nan_and_matches_fp32(minilm, tmp_path):
    model, inputs = minilm
    e_loss, e_logits, e_grads, _ = trainer_step(model, inputs, tmp_path, fused=False)
    b_loss, b_logits, b_grads, b_drop = trainer_step(model, inputs, tmp_path, fused=True, autocast=torch.bfloat16)
    assert int(b_drop.dropped) > 0
    assert torch.isfinite(b_logits).all() and torch.isfinite(b_loss)
    assert all(torch.isfinite(g).all() for g in b_grads.values())
    # bf16 keeps 8 bits: the logits within a few per cent, the loss and the gradient's direction too
    assert rel(b_logits.float(), e_logits) < 5e-2
    assert abs(float(b_loss) - float(e_loss)) < 5e-2 * abs(float(e_loss))
    flat_e = torch.cat([e_grads[n].flatten() for n in e_grads])
    flat_b = torch.cat([b_grads[n].float().flatten() for n in e_grads])
    assert float(torch.nn.functional.cosine_similarity(flat_e, flat_b, dim=0)) > 0.95


@pytest.mark.slow  # MiniLM
def test_trainer_reports_the_same_activity_and_drop_fraction(tmp_path, monkeypatch):
    """A few updates of ADDropTrainer.train(): addrop_active 1 and the same addrop_drop_frac
    (about p q) with fused and eager pass 2."""
    g = torch.Generator().manual_seed(1)
    data = [{"input_ids": torch.randint(5, 60, (6 + i % 5,), generator=g).tolist(), "labels": i % 2}
            for i in range(8)]

    def collate(batch):
        n = max(len(r["input_ids"]) for r in batch)
        ids = torch.zeros(len(batch), n, dtype=torch.long)
        mask = torch.zeros(len(batch), n, dtype=torch.long)
        for i, r in enumerate(batch):
            ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
            mask[i, : len(r["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([r["labels"] for r in batch])}

    logs, calls = {}, {}
    count = Count(monkeypatch)
    for mode in ("eager", "auto"):
        count.n = 0
        torch.manual_seed(0)
        model = tf.BertForSequenceClassification(tf.BertConfig(
            vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=32, num_labels=2, attention_probs_dropout_prob=0.0))
        trainer = ADDropTrainer(model=model, args=targs(tmp_path, per_device_train_batch_size=2), train_dataset=data,
                                data_collator=collate,
                                addrop_args=ADDropArguments(addrop_p=0.5, addrop_q=0.5, addrop_schedule="always"))
        with core.pass2_attention(mode):
            trainer.train()
        logs[mode] = [h for h in trainer.state.log_history if "addrop_active" in h]
        calls[mode] = count.n
    assert calls["auto"] - calls["eager"] == 4 * 2  # 4 updates x 2 layers, all fused in the "auto" run
    assert len(logs["auto"]) == len(logs["eager"]) == 4
    for e, f in zip(logs["eager"], logs["auto"]):
        assert f["addrop_active"] == e["addrop_active"] == 1.0
        assert f["addrop_drop_frac"] == e["addrop_drop_frac"]
        assert 0.15 < f["addrop_drop_frac"] < 0.5  # p q = 0.25, more on short rows (k = int(n (1 - p)))
        assert math.isclose(f["loss"], e["loss"], rel_tol=1e-5)


# ------------------------------------------------------------------------------ --criterion addrop_ce


@pytest.fixture(scope="module")
def minilm_fairseq(tmp_path_factory, shared_data):
    """hf_sequence_classifier on MiniLM (RTE, padded batch), attention dropout 0."""
    from addrop_fairseq.hf import preprocess as hf_preprocess

    root = tmp_path_factory.mktemp("fused_minilm")
    model_dir = hb.minilm_dir()
    hb.write_pairs(root / "raw", "train", hb.read_glue_tsv(shared_data / "glue" / "RTE" / "train.tsv", 6))
    hb.write_pairs(root / "raw", "valid", hb.read_glue_tsv(shared_data / "glue" / "RTE" / "dev.tsv", 2))
    hf_preprocess.main(["--model-dir", str(model_dir), "--task", "sentence_prediction", "--max-length", "40",
                        "--trainpref", str(root / "raw" / "train"), "--validpref", str(root / "raw" / "valid"),
                        "--destdir", str(root / "rte")])
    torch.manual_seed(0)
    task, model, cfg = hb.build([
        root / "rte", "--task", "sentence_prediction", "--num-classes", "2", "--arch", "hf_sequence_classifier",
        "--hf-model-dir", model_dir, "--max-positions", "512", "--criterion", "addrop_ce", "--addrop-p", "0.3",
        "--addrop-q", "0.3", "--addrop-schedule", "always",
    ])
    for m in model.modules():
        if type(m).__name__ == "BertSelfAttention":
            m.dropout.p = 0.0
    task.load_dataset("train")
    itr = task.get_batch_iterator(task.dataset("train"), max_sentences=4).next_epoch_itr(shuffle=False)
    sample = next(iter(itr))
    assert sample["net_input"]["src_tokens"].eq(model.pad).any()
    return task, model, cfg, sample


def criterion_step(task, model, cfg, sample, fused):
    model = copy.deepcopy(model).train()
    criterion = task.build_criterion(cfg.criterion)
    model.zero_grad()
    torch.manual_seed(7)
    with core.pass2_attention("auto" if fused else "eager"):
        loss, sample_size, log, drop = criterion.addrop_step(model, sample, keep=True)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, drop


@pytest.mark.slow  # MiniLM
def test_minilm_criterion_fused_equals_eager(minilm_fairseq, monkeypatch):
    task, model, cfg, sample = minilm_fairseq
    count = Count(monkeypatch)
    e_loss, e_grads, e_drop = criterion_step(task, model, cfg, sample, fused=False)
    stock = count.n  # site discovery's probe runs the stock sdpa implementation
    f_loss, f_grads, f_drop = criterion_step(task, model, cfg, sample, fused=True)
    assert count.n - 2 * stock == 6
    for i in range(6):
        assert torch.equal(e_drop.kept[i][1], f_drop.kept[i][1]), f"mask of layer {i}"
    assert int(e_drop.dropped) == int(f_drop.dropped) > 0
    assert rel(f_loss, e_loss) < 1e-5
    assert_grads_close(f_grads, e_grads)


# ------------------------------------------------------------------------------ a fairseq transformer


@pytest.fixture(scope="module")
def transformer(tmp_path_factory):
    import fairseq_builders as fb

    data = fb.translation_dir(tmp_path_factory.mktemp("fused_mt"))

    def make(kinds):
        torch.manual_seed(0)
        cfg, task, model, criterion = fb.build(data, fb.TINY_TRANSFORMER + [
            "--criterion", "addrop_ce", "--addrop-p", "0.4", "--addrop-q", "0.5", "--addrop-schedule", "always",
            "--addrop-attention", kinds, "--dropout", "0.1", "--attention-dropout", "0.0",
        ])
        return task, model, criterion

    return make, fb


@pytest.mark.parametrize("kinds", ["encoder-self", "encoder-decoder"])
def test_fairseq_transformer_fused_equals_eager(transformer, kinds, monkeypatch):
    from addrop_fairseq import fairseq_seam

    make, fb = transformer
    task, model, criterion = make(kinds)
    sample = fb.translation_batch(task, bsz=4, src_len=8, tgt_len=7)
    assert sample["net_input"]["src_tokens"].eq(task.source_dictionary.pad()).any()
    count = Count(monkeypatch)
    results, calls = {}, {}
    for mode in ("eager", "auto"):
        count.n = 0
        m = copy.deepcopy(model).train()
        m.zero_grad()
        torch.manual_seed(5)
        with core.pass2_attention(mode):
            loss, sample_size, log, drop = criterion.addrop_step(m, sample, keep=True)
        loss.backward()
        results[mode] = (loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None},
                         drop)
        calls[mode] = count.n  # the idle modules' stock path runs torch's SDPA too
    # encoder-decoder: the last decoder layer's call asks for weights (alignment): it stays eager
    assert calls["auto"] - calls["eager"] == (2 if kinds == "encoder-self" else 1)
    (e_loss, e_grads, e_drop), (f_loss, f_grads, f_drop) = results["eager"], results["auto"]
    for i in sorted(e_drop.kept):
        assert torch.equal(e_drop.kept[i][1], f_drop.kept[i][1]), f"mask of site {i}"
    assert int(e_drop.dropped) == int(f_drop.dropped) > 0
    assert rel(f_loss, e_loss) < 1e-5
    assert_grads_close(f_grads, e_grads)


def test_fairseq_transformer_bf16_autocast(transformer):
    make, fb = transformer
    task, model, criterion = make("encoder-self")
    sample = fb.translation_batch(task, bsz=4, src_len=8, tgt_len=7)
    losses = {}
    for mode, dtype in (("eager", None), ("auto", torch.bfloat16)):
        m = copy.deepcopy(model).train()
        torch.manual_seed(5)
        with core.pass2_attention(mode), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            loss, sample_size, log, drop = criterion.addrop_step(m, sample)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
        losses[mode] = float(loss)
    assert math.isfinite(losses["auto"])
    assert abs(losses["auto"] - losses["eager"]) < 3e-2 * abs(losses["eager"])
