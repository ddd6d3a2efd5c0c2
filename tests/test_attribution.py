"""Attribution targets and methods on a real (tiny) fairseq transformer, against slow references."""
import pytest
import torch

from addrop_fairseq import attention, attribution
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


def per_map_gradients(target, maps):
    """The original code's way: one autograd call per layer."""
    return [torch.autograd.grad(target, m, retain_graph=True)[0] for m in maps]


def test_one_call_equals_per_layer_calls(translation):
    task, model, crit, sites = translation
    sample = translation_batch(task)
    one = crit.attribute(model, sample, sites)
    crit.method = lambda forward, **_: per_map_gradients(*forward(None))
    try:
        many = crit.attribute(model, sample, sites)
    finally:
        crit.method = attribution.get_attribution("ga")
    assert len(one) == len(sites) == 4
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

    with attention.recording(sites) as rec:
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


def slow_integrated_gradients(crit, model, sample, sites, steps):
    """Eq. 3 literally: for k = 1..m, run with maps k/m*A, grad per map at the scaled map."""
    with torch.no_grad(), attention.recording(sites) as rec:
        scores, gold, real = crit.outputs.scores(model, sample)
    labels = attribution.pseudo_labels(scores)
    A = [m.detach() for m in rec.result()]
    total = [torch.zeros_like(a) for a in A]
    for k in range(1, steps + 1):
        for layer in range(len(A)):
            scaled = [(k / steps * a).requires_grad_() for a in A]
            with attention.recording(sites, replacements=scaled):
                scores, gold, real = crit.outputs.scores(model, sample)
            target = crit.outputs.target(scores, labels, real, gold)
            total[layer] += torch.autograd.grad(target, scaled[layer])[0]
    return [a / steps * t for a, t in zip(A, total)], labels


def test_iga_matches_slow_loop_and_completeness(translation):
    task, model, crit, sites = translation
    sample = translation_batch(task)
    ref, labels = slow_integrated_gradients(crit, model, sample, sites, steps=3)
    crit.method = attribution.get_attribution("iga")
    try:
        got = attribution.integrated_gradient_attribution(
            lambda r=None: _forward(crit, model, sample, sites, labels, r), steps=3
        )
        # completeness: sum of attributions ~ F(A) - F(0)
        many = attribution.integrated_gradient_attribution(
            lambda r=None: _forward(crit, model, sample, sites, labels, r), steps=20
        )
    finally:
        crit.method = attribution.get_attribution("ga")
    for a, r in zip(got, ref):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        f_a, maps = _forward(crit, model, sample, sites, labels, None)
        f_0, _ = _forward(crit, model, sample, sites, labels, [torch.zeros_like(m) for m in maps])
    # Eq. 3 is a right Riemann sum of g(alpha) = A . grad F(alpha A); with (g(0) - g(1)) / 2m
    # added it is the trapezoid rule, which converges as 1/m^2
    def g(alpha):
        scaled = [(alpha * m.detach()).requires_grad_() for m in maps]
        value, _ = _forward(crit, model, sample, sites, labels, scaled)
        grads = torch.autograd.grad(value, scaled)
        return sum((m * gr).sum() for m, gr in zip(maps, grads)).item()

    trapezoid = sum(a.sum() for a in many).item() + (g(0.0) - g(1.0)) / (2 * 20)
    assert trapezoid == pytest.approx((f_a - f_0).item(), rel=1e-2)


def _forward(crit, model, sample, sites, labels, replacements):
    with attention.recording(sites, replacements) as rec:
        scores, gold, real = crit.outputs.scores(model, sample)
    return crit.outputs.target(scores, labels, real, gold), rec.result()


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("method", ["ga", "iga", "aa", "rd"])
def test_methods_keep_model_mode(translation, mode, method):
    task, model, crit, sites = translation
    getattr(model, mode)()
    before = [m.training for m in model.modules()]
    crit.method = attribution.get_attribution(method)
    crit.cfg.addrop_ig_steps = 2
    try:
        out = crit.attribute(model, translation_batch(task), sites)
        after = [m.training for m in model.modules()]
    finally:
        crit.method = attribution.get_attribution("ga")
        crit.cfg.addrop_ig_steps = 20
        model.train()
    assert after == before
    if method == "rd":
        assert out is None
    else:
        assert len(out) == len(sites)


def test_aa_is_the_attention_probabilities(translation):
    task, model, crit, sites = translation
    sample = translation_batch(task)
    crit.method = attribution.get_attribution("aa")
    try:
        maps = crit.attribute(model, sample, sites)
    finally:
        crit.method = attribution.get_attribution("ga")
    for m in maps:
        sums = m.sum(-1)
        assert not m.requires_grad
        torch.testing.assert_close(sums[sums > 0], torch.ones_like(sums[sums > 0]))


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
    with attention.recording(sites) as rec:
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
    crit.cfg.addrop_labels = "gold"
    try:
        gold = crit.attribute(model, sample, sites)
    finally:
        crit.cfg.addrop_labels = "pseudo"
    pseudo = crit.attribute(model, sample, sites)
    assert not torch.allclose(gold[0], pseudo[0])
    with attention.recording(sites) as rec:
        logits, _ = model(**sample["net_input"], features_only=True, classification_head_name="sentence_classification_head")
    ref = torch.autograd.grad(logits.gather(1, sample["target"][:, None]).sum(), rec.result())
    torch.testing.assert_close(gold[0], ref[0])
