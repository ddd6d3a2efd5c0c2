"""AD-DROP as the paper and the reference code define it (issue 8), in-process on tiny models:
the attributed tensor (after attention dropout), per-layer IGA, tagging pseudo labels, the
translation default, padded decoder rows, LayerDrop, half precision, shared modules and
TorchScript."""
import copy

import pytest
import torch
from fairseq.modules.multihead_attention import MultiheadAttention

from addrop_fairseq import attribution
from addrop_fairseq import sites as core
from fairseq_builders import DropoutTaps, TINY_TRANSFORMER, build, translation_batch

BOTH_SELF = ["--addrop-attention", "encoder-self,decoder-self"]


def make(tdir, *extra):
    torch.manual_seed(0)
    return build(tdir, TINY_TRANSFORMER + ["--dropout", "0", "--criterion", "addrop_ce", *extra])


def real_positions_target(logits, sample, pad):
    """Eq. 8 written out: summed log-probability of each real position's arg-max class."""
    lprobs = logits.float().log_softmax(-1)
    labels = logits.detach().argmax(-1)
    real = sample["target"].ne(pad)
    return lprobs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)[real].sum()


# ------------------------------------------------------------------ 1. the attributed tensor


def test_ga_is_not_blinded_by_attention_dropout(tdir):
    """With attention dropout 0.3 in train mode, GA differentiates the tensor that multiplies V:
    no entry is a structural zero where the eval-mode attribution is non-zero, and GA equals a
    per-layer autograd reference on that tensor with the same dropout draw."""
    _, task, model, crit = make(tdir, "--attention-dropout", "0.3", *BOTH_SELF)
    sites = crit.prepare(model)
    sample = translation_batch(task, bsz=4, src_len=9, tgt_len=8)
    pad = task.target_dictionary.pad()

    model.eval()
    eval_attr = crit.attribute(model, sample, sites)
    model.train()
    torch.manual_seed(11)
    train_attr = crit.attribute(model, sample, sites)
    for e, t in zip(eval_attr, train_attr):
        nonzero = e != 0
        assert nonzero.float().mean() > 0.3  # the real entries
        assert (t[nonzero] != 0).all(), "an entry removed by attention dropout got attribution 0"

    modules = [s.module for s in sites]
    for layer in range(len(sites)):
        torch.manual_seed(11)  # the same dropout draws as the criterion's pass
        with DropoutTaps(modules) as taps:
            logits, _ = model(**sample["net_input"])
        target = real_positions_target(logits, sample, pad)
        (ref,) = torch.autograd.grad(target, [taps.maps[layer]])
        torch.testing.assert_close(train_attr[layer], ref)


def test_aa_is_the_weights_before_attention_dropout(tdir):
    _, task, model, crit = make(tdir, "--attention-dropout", "0.3", "--addrop-attribution", "aa")
    sites = crit.prepare(model)
    sample = translation_batch(task)
    model.train()
    aa = crit.attribute(model, sample, sites)
    for a in aa:
        rows = a.sum(-1)
        # post-dropout rows would sum to about 1/(1-0.3) with zeros; softmax rows sum to 1
        torch.testing.assert_close(rows[rows > 0], torch.ones_like(rows[rows > 0]))
        assert (a >= 0).all()


# ------------------------------------------------------------------ 2. IGA per layer


def slow_per_layer_iga(model, sample, modules, steps, pad):
    """Eq. 3 by a loop: for each layer l and k=1..m, only l's map is replaced by k/m A_l."""
    with torch.no_grad(), DropoutTaps(modules) as taps:
        logits, _ = model(**sample["net_input"])
    base = {i: a.detach() for i, a in taps.maps.items()}
    labels_logits = logits.detach()
    out = []
    for layer in range(len(modules)):
        total = torch.zeros_like(base[layer])
        for k in range(1, steps + 1):
            scaled = (base[layer] * (k / steps)).requires_grad_(True)
            with DropoutTaps(modules, replace={layer: scaled}):
                logits, _ = model(**sample["net_input"])
            lprobs = logits.float().log_softmax(-1)
            labels = labels_logits.argmax(-1)  # pseudo labels of the unscaled pass
            real = sample["target"].ne(pad)
            target = lprobs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)[real].sum()
            total += torch.autograd.grad(target, [scaled])[0]
        out.append(base[layer] * total / steps)
    return out


def test_iga_is_per_layer_eq_3(tdir):
    _, task, model, crit = make(tdir, "--attention-dropout", "0.1", "--addrop-attribution", "iga",
                                "--addrop-ig-steps", "3", *BOTH_SELF)
    sites = crit.prepare(model)
    assert len(sites) == 4  # two encoder and two decoder layers: later layers see layer 0's change
    model.eval()
    sample = translation_batch(task)
    pad = task.target_dictionary.pad()
    got = crit.attribute(model, sample, sites)
    ref = slow_per_layer_iga(model, sample, [s.module for s in sites], 3, pad)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-7)

    # alpha steps batched along a tiled batch: the same numbers
    crit.addrop.options.addrop_ig_batch = 2
    batched = crit.attribute(model, sample, sites)
    crit.addrop.options.addrop_ig_batch = 1
    for g, b in zip(got, batched):
        torch.testing.assert_close(b, g, rtol=1e-5, atol=1e-7)

    # m = 1 is A * GA, exactly, for every layer
    crit.addrop.options.addrop_ig_steps = 1
    iga1 = crit.attribute(model, sample, sites)
    crit.addrop.method = attribution.get_attribution("ga")
    ga = crit.attribute(model, sample, sites)
    with torch.no_grad(), core.recording(sites) as rec:
        model(**sample["net_input"])
    for a, i1, g in zip(rec.result(), iga1, ga):
        torch.testing.assert_close(i1, a * g, rtol=1e-6, atol=0)


# ------------------------------------------------------------------ 4. tagging pseudo labels


def test_tagging_pseudo_labels_are_predictable_tags():
    from addrop_fairseq.task_kinds import TokenKind

    from addrop_fairseq.task_kinds import Prediction

    class Task:  # what TokenKind reads of a task
        addrop_unpredictable_labels = range(4)
        target_dictionary = type("D", (), {"pad": staticmethod(lambda: 1)})()

    class Cfg:
        sentence_avg, label_smoothing, ignore_prefix_size, report_accuracy = False, 0.0, 0, False

    lprobs = torch.randn(2, 5, 9)
    lprobs[..., :4] += 100  # the specials have the largest scores
    labels = TokenKind(Task(), Cfg()).labels(Prediction(lprobs, None))
    assert (labels >= 4).all()
    assert torch.equal(labels, lprobs[..., 4:].argmax(-1) + 4)


# ------------------------------------------------------------------ 5. translation default


def test_translation_default_is_encoder_self_attention(tdir):
    _, task, model, crit = make(tdir)
    sites = crit.prepare(model)
    assert [s.name for s in sites] == ["encoder.layers.0.self_attn", "encoder.layers.1.self_attn"]


# ------------------------------------------------------------------ 6. set-ups


def test_padded_decoder_rows_are_never_counted_in_encoder_decoder_attention(tdir):
    _, task, model, crit = make(tdir, "--attention-dropout", "0", "--addrop-attention", "encoder-decoder",
                                "--addrop-schedule", "always", "--addrop-p", "1", "--addrop-q", "1")
    model.train()
    sample = translation_batch(task)
    _, _, log = crit(model, sample)
    src_real = sample["net_input"]["src_tokens"].ne(task.source_dictionary.pad()).sum(-1)
    tgt_real = sample["net_input"]["prev_output_tokens"].ne(task.target_dictionary.pad()).sum(-1)
    heads, layers = 2, 2
    assert int(log["addrop_valid"]) == layers * heads * int((src_real * tgt_real).sum())
    # p = q = 1: every valid key but one per row is dropped
    assert int(log["addrop_dropped"]) == layers * heads * int(((src_real - 1) * tgt_real).sum())


@pytest.mark.slow  # trains 12 steps
def test_layerdrop_sites_skipped_in_either_pass_get_no_mask(tdir):
    _, task, model, crit = make(tdir, "--encoder-layerdrop", "0.5", "--attention-dropout", "0",
                                "--addrop-schedule", "always", "--addrop-p", "1", "--addrop-q", "1")
    model.train()
    sample = translation_batch(task)
    per_site = int(sample["net_input"]["src_tokens"].ne(task.source_dictionary.pad()).sum(-1).pow(2).sum()) * 2
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        loss, _, log = crit(model, sample)
        assert torch.isfinite(loss)
        valid = int(log["addrop_valid"])
        assert valid % per_site == 0 and valid <= 2 * per_site
        seen.add(valid // per_site)
    assert seen >= {0, 1}  # some updates mask no site, some one (LayerDrop differs per pass)


def test_activation_checkpointing_is_refused_before_the_first_update(tdir):
    _, task, model, crit = make(tdir, "--checkpoint-activations")
    with pytest.raises(ValueError, match="--checkpoint-activations"):
        task.begin_epoch(1, model)


def test_shared_attention_module_is_refused(tdir):
    _, task, model, crit = make(tdir)
    model.encoder.layers[1].self_attn = model.encoder.layers[0].self_attn  # ALBERT-style sharing
    with pytest.raises(ValueError, match="shared attention module"):
        crit.prepare(model)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_attribution_is_scaled_not_underflowed(tdir, dtype):
    """A half-precision model whose attribution gradients are below fp16's range: the scaled
    target keeps them non-zero (no row of tied zeros), and the drop fraction stays about p*q."""
    _, task, model, crit = make(tdir, "--attention-dropout", "0", "--addrop-schedule", "always",
                                "--addrop-p", "0.5", "--addrop-q", "0.5")
    with torch.no_grad():  # small weights on the path from the maps to the logits: tiny gradients
        model.decoder.output_projection.weight.mul_(0.03)
        for attn in [l.self_attn for l in model.encoder.layers] + [l.encoder_attn for l in model.decoder.layers]:
            attn.v_proj.weight.mul_(0.03)
            attn.out_proj.weight.mul_(0.03)
    model = model.to(dtype).train()
    sites = crit.prepare(model)
    sample = translation_batch(task, bsz=6, src_len=12, tgt_len=10)

    crit_grad = crit.addrop.grad
    crit.addrop.grad = attribution.gradients
    unscaled = crit.attribute(model, sample, sites)
    crit.addrop.grad = crit_grad
    scaled = crit.attribute(model, sample, sites)
    real_rows = sample["net_input"]["src_tokens"].ne(task.source_dictionary.pad())
    for u, s in zip(unscaled, scaled):
        rows = real_rows[:, None, :].expand(s.shape[:-1])
        zero_rows_scaled = (s[rows] == 0).all(-1).float().mean().item()
        assert zero_rows_scaled == 0.0
        if dtype == torch.float16:
            assert (u[rows] == 0).all(-1).float().mean().item() > 0.5  # what the scale prevents
    log = crit(model, sample)[2]
    frac = int(log["addrop_dropped"]) / int(log["addrop_valid"])
    assert abs(frac - 0.25) < 0.08


@pytest.mark.slow  # scripts whole models
def test_torchscript_with_the_plugin_installed(tdir):
    """fairseq scripts transformers and sequence generators: installed sites stay scriptable,
    and scripted outputs equal the stock model's, also after a masking pass has run."""
    from fairseq.sequence_generator import SequenceGenerator

    _, task, model, crit = make(tdir, "--attention-dropout", "0.1", *BOTH_SELF)
    stock = copy.deepcopy(model).eval()
    sites = crit.prepare(model)
    model.train()
    with core.masking(sites, lambda i, valid: torch.zeros_like(valid)):
        model(**translation_batch(task)["net_input"])  # a pass with a mask-nothing hook open
    assert all(type(s.module) is MultiheadAttention for s in sites)
    model.eval()
    scripted = torch.jit.script(model)
    sample = translation_batch(task)
    ref, _ = stock(**sample["net_input"])
    got, _ = scripted(**sample["net_input"])
    torch.testing.assert_close(got, ref)
    gen = torch.jit.script(SequenceGenerator([model], task.target_dictionary, beam_size=2, max_len_b=5))
    stock_gen = SequenceGenerator([stock], task.target_dictionary, beam_size=2, max_len_b=5)
    net_input = {k: v for k, v in sample["net_input"].items() if k != "prev_output_tokens"}
    hyps = gen._generate({"net_input": net_input})
    ref_hyps = stock_gen._generate({"net_input": net_input})
    for h, r in zip(hyps, ref_hyps):
        assert torch.equal(h[0]["tokens"], r[0]["tokens"])
