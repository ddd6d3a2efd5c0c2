"""Attribution targets and methods on a real (tiny) fairseq transformer, against slow references."""
import math

import pytest
import torch

from addrop_fairseq import attribution
from addrop_fairseq import sites as core
from fairseq_builders import TINY_ROBERTA, TINY_TRANSFORMER, build, sentence_batch, sentence_prediction_dir, translation_batch, translation_dir

NO_DROPOUT = ["--dropout", "0", "--attention-dropout", "0"]


@pytest.fixture(scope="module")
def translation(tmp_path_factory):
    torch.manual_seed(0)
    d = translation_dir(tmp_path_factory.mktemp("dict"))
    cfg, task, model, crit = build(d, TINY_TRANSFORMER + NO_DROPOUT + ["--criterion", "addrop_ce"])
    model.train()
    sites = crit.prepare(model)
    return task, model, crit, sites


@pytest.fixture(scope="module")
def translation_all_kinds(tmp_path_factory):
    """The tiny transformer with AD-DROP on every attention kind (encoder-self, causal
    decoder-self, encoder-decoder), so that references see each kind's masks."""
    torch.manual_seed(0)
    d = translation_dir(tmp_path_factory.mktemp("dict_all"))
    cfg, task, model, crit = build(d, TINY_TRANSFORMER + NO_DROPOUT + [
        "--criterion", "addrop_ce", "--addrop-attention", "encoder-self,decoder-self,encoder-decoder"])
    model.train()
    sites = crit.prepare(model)
    assert sorted({s.kind for s in sites}) == ["decoder-self", "encoder-decoder", "encoder-self"]
    return task, model, crit, sites


def per_layer_reference(model, sample, sites, pad):
    """The original code's way, built independently of the criterion: for each layer its own
    forward pass, its own target (the summed log-probability of each real position's arg-max
    class, computed here from the logits) and one autograd call for that layer's map only."""
    grads = []
    for layer in range(len(sites)):
        with core.recording(sites) as rec:
            logits, _ = model(**sample["net_input"])
        lprobs = logits.float().log_softmax(-1)
        labels = logits.detach().argmax(-1)
        real = sample["target"].ne(pad)
        target = lprobs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)[real].sum()
        grads.append(torch.autograd.grad(target, rec.result()[layer])[0])
    return grads


def test_one_call_equals_per_layer_calls(translation_all_kinds):
    task, model, crit, sites = translation_all_kinds
    sample = translation_batch(task)
    one = crit.attribute(model, sample, sites)
    # dropout is 0, so every forward pass below computes the same maps as the criterion's
    many = per_layer_reference(model, sample, sites, task.target_dictionary.pad())
    assert len(one) == len(many) == len(sites) == 6
    for a, b in zip(one, many):
        assert a.shape == b.shape and a.dim() == 4
        torch.testing.assert_close(a, b)
        assert a.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters()), "attribution must not touch parameter grads"


def test_pseudo_loss_attribution_is_eq_8_by_the_chain_rule(translation):
    """-dL/dA = sum_i sum_c (y_ic - P_ic) dF_ic/dA (Eq. 10, with every class's path), by a loop."""
    task, model, crit, sites = translation
    sample = translation_batch(task)
    got = crit.attribute(model, sample, sites)

    with core.recording(sites) as rec:
        logits, _ = model(**sample["net_input"])
    maps = rec.result()
    probs = logits.float().softmax(-1).detach()
    target = sample["target"]
    real = target.ne(task.target_dictionary.pad())
    ref = [torch.zeros_like(m) for m in maps]
    for b in range(target.size(0)):
        for t in range(target.size(1)):
            if not real[b, t]:
                continue  # padding contributes nothing
            y = torch.zeros_like(probs[b, t])
            y[probs[b, t].argmax()] = 1.0
            weighted = ((y - probs[b, t]) * logits[b, t]).sum()
            for acc, g in zip(ref, torch.autograd.grad(weighted, maps, retain_graph=True)):
                acc += g
    for a, r in zip(got, ref):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-6)


def test_pseudo_target_ignores_padding():
    lprobs = torch.randn(2, 3, 5).log_softmax(-1).requires_grad_()
    target = torch.tensor([[4, 2, 1], [3, 1, 1]])  # pad = 1
    value = attribution.token_pseudo_target(lprobs, target, pad_idx=1)
    (g,) = torch.autograd.grad(value, lprobs)
    assert g[0, 2].abs().sum() == 0 and g[1, 1:].abs().sum() == 0
    assert value.item() == pytest.approx(lprobs[0, :2].max(-1).values.sum().item() + lprobs[1, 0].max().item())


@pytest.mark.slow  # 20-step IGA once per layer (Eq. 3 stays in the fast lane: test_faithful.py)
def test_iga_satisfies_completeness_per_layer(translation):
    """Per-layer IGA (Eq. 3; the slow loop is in test_faithful.py): for each layer l, the sum
    of B_l is F(A) - F(A with l's map at 0), up to the Riemann-sum error."""
    task, model, crit, sites = translation
    sample = translation_batch(task)
    with torch.no_grad(), core.recording(sites):
        prediction = crit.task_kind.predict(model, sample)
    labels = attribution.pseudo_labels(prediction.output)
    steps = 20
    many = attribution.integrated_gradient_attribution(
        lambda r=None, point="attended", repeat=1: _forward(crit, model, sample, sites, labels, r), steps=steps
    )
    with torch.no_grad():
        f_a, maps = _forward(crit, model, sample, sites, labels, None)
    for layer, b in enumerate(many):
        only = [None] * len(maps)
        only[layer] = torch.zeros_like(maps[layer])
        with torch.no_grad():
            f_0, _ = _forward(crit, model, sample, sites, labels, only)

        # Eq. 3 is a right Riemann sum of g(alpha) = A_l . grad F(alpha A_l); with
        # (g(0) - g(1)) / 2m added it is the trapezoid rule, which converges as 1/m^2
        def g(alpha):
            scaled = [None] * len(maps)
            scaled[layer] = (alpha * maps[layer].detach()).requires_grad_()
            value, _ = _forward(crit, model, sample, sites, labels, scaled)
            (grad,) = torch.autograd.grad(value, [scaled[layer]])
            return (maps[layer] * grad).sum().item()

        trapezoid = b.sum().item() + (g(0.0) - g(1.0)) / (2 * steps)
        assert trapezoid == pytest.approx((f_a - f_0).item(), rel=1e-2), layer


def _forward(crit, model, sample, sites, labels, replacements):
    with core.recording(sites, replacements) as rec:
        prediction = crit.task_kind.predict(model, sample)
    return crit.task_kind.target(prediction, labels), rec.result()


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("method", ["ga", "iga", "aa", "rd"])
def test_methods_keep_model_mode(translation, mode, method):
    task, model, crit, sites = translation
    getattr(model, mode)()
    before = [m.training for m in model.modules()]
    crit.addrop.method = attribution.get_attribution(method)
    crit.addrop.options.addrop_ig_steps = 2
    try:
        out = crit.attribute(model, translation_batch(task), sites)
        after = [m.training for m in model.modules()]
    finally:
        crit.addrop.method = attribution.get_attribution("ga")
        crit.addrop.options.addrop_ig_steps = 20
        model.train()
    assert after == before
    if method == "rd":
        assert out is None
    else:
        assert len(out) == len(sites)


_MHA_ARGS = ("query", "key", "value", "key_padding_mask", "incremental_state", "need_weights", "static_kv", "attn_mask")


def manual_attention_probs(module, call):
    """softmax(Q K^T / sqrt(d)) of one fairseq MultiheadAttention call, from its inputs and
    weights alone: [B, H, T, S], padded keys and masked (causal) entries at 0."""
    assert module.bias_k is None and not module.add_zero_attn
    query, key = call["query"], call["key"] if call.get("key") is not None else call["query"]
    tgt_len, bsz, _ = query.shape
    heads, head_dim = module.num_heads, module.head_dim
    q = module.q_proj(query).view(tgt_len, bsz, heads, head_dim).permute(1, 2, 0, 3)
    k = module.k_proj(key).view(key.size(0), bsz, heads, head_dim).permute(1, 2, 0, 3)
    scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(head_dim)  # [B, H, T, S]
    attn_mask = call.get("attn_mask")
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask.float()
    kpm = call.get("key_padding_mask")
    if kpm is not None:
        scores = scores.masked_fill(kpm.bool()[:, None, None, :], float("-inf"))
    return scores.softmax(-1)


def test_aa_is_the_attention_probabilities(translation_all_kinds):
    """AA's maps are the model's attention probabilities, recomputed here from each attention
    module's inputs (captured by a pre-hook) and its q/k projections, in eval mode."""
    task, model, crit, sites = translation_all_kinds
    sample = translation_batch(task)
    calls = {}

    def capture(i):
        def hook(module, args, kwargs):
            calls[i] = {**dict(zip(_MHA_ARGS, args)), **kwargs}
        return hook

    handles = [s.module.register_forward_pre_hook(capture(i), with_kwargs=True) for i, s in enumerate(sites)]
    crit.addrop.method = attribution.get_attribution("aa")
    model.eval()
    try:
        maps = crit.attribute(model, sample, sites)
    finally:
        crit.addrop.method = attribution.get_attribution("ga")
        model.train()
        for h in handles:
            h.remove()
    assert len(maps) == len(sites) == len(calls) == 6
    pad = task.source_dictionary.pad()
    assert sample["net_input"]["src_tokens"].eq(pad).any()  # padded keys are in the comparison
    with torch.no_grad():
        for i, (site, m) in enumerate(zip(sites, maps)):
            assert not m.requires_grad
            want = manual_attention_probs(site.module, calls[i])
            assert m.shape == want.shape, site.name
            torch.testing.assert_close(m, want.to(m.dtype), atol=1e-6, rtol=1e-5)
            if site.kind == "decoder-self":  # causal: no weight above the diagonal
                assert float(m.triu(1).abs().max()) == 0.0


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    torch.manual_seed(0)
    d = sentence_prediction_dir(tmp_path_factory.mktemp("sp"))
    cfg, task, model, crit = build(
        d, TINY_ROBERTA + NO_DROPOUT + ["--num-classes", "2", "--criterion", "addrop_ce"],
        task="sentence_prediction", arch="roberta",
    )
    model.train()
    return task, model, crit, crit.prepare(model)


def test_classification_target_is_the_pseudo_label_logit(classifier):
    """Eq. 5: d F_c~ / dA, by one grad call per example (slow) vs the batched target."""
    task, model, crit, sites = classifier
    sample = sentence_batch(task)
    got = crit.attribute(model, sample, sites)
    with core.recording(sites) as rec:
        logits, _ = model(**sample["net_input"], features_only=True, classification_head_name="sentence_classification_head")
    maps = rec.result()
    ref = [torch.zeros_like(m) for m in maps]
    for b in range(logits.size(0)):
        c = logits[b].argmax()
        for acc, g in zip(ref, torch.autograd.grad(logits[b, c], maps, retain_graph=True)):
            acc += g
    for a, r in zip(got, ref):
        torch.testing.assert_close(a, r)


def test_gold_labels_use_the_gold_logit(classifier):
    task, model, crit, sites = classifier
    sample = sentence_batch(task)
    with torch.no_grad():
        logits, _ = model(**sample["net_input"], features_only=True, classification_head_name="sentence_classification_head")
    # make the gold labels disagree with the predictions
    sample["target"] = 1 - logits.argmax(-1)
    crit.addrop.options.addrop_labels = "gold"
    try:
        gold = crit.attribute(model, sample, sites)
    finally:
        crit.addrop.options.addrop_labels = "pseudo"
    pseudo = crit.attribute(model, sample, sites)
    assert not torch.allclose(gold[0], pseudo[0])
    with core.recording(sites) as rec:
        logits, _ = model(**sample["net_input"], features_only=True, classification_head_name="sentence_classification_head")
    ref = torch.autograd.grad(logits.gather(1, sample["target"][:, None]).sum(), rec.result())
    torch.testing.assert_close(gold[0], ref[0])
