"""sentence_prediction_rdrop (the R-Drop peer): the loss is CE1 + CE2 + alpha * symmetric KL
of two dropout passes, written out here; validation is the stock criterion."""
import pytest
import torch
import torch.nn.functional as F

from fairseq_builders import TINY_ROBERTA, build, sentence_batch


def make(spdir, criterion, regression=False):
    torch.manual_seed(0)
    extra = ["--regression-target", "--num-classes", "1"] if regression else ["--num-classes", "3"]
    _, task, model, crit = build(spdir, TINY_ROBERTA + ["--dropout", "0.3", "--criterion", criterion, *extra],
                                 task="sentence_prediction", arch="roberta")
    model.register_classification_head("sentence_classification_head", num_classes=1 if regression else 3)
    return task, model, crit


@pytest.mark.parametrize("regression", [False, True])
def test_rdrop_loss_written_out(spdir, regression):
    task, model, crit = make(spdir, "sentence_prediction_rdrop", regression)
    sample = sentence_batch(task, bsz=4, n_classes=3, regression=regression)
    model.train()
    torch.manual_seed(7)
    loss, size, log = crit(model, sample)
    # the same dropout draws: one forward over the batch twice
    torch.manual_seed(7)
    net = {k: torch.cat([v, v]) for k, v in sample["net_input"].items()}
    out, _ = model(**net, features_only=True, classification_head_name="sentence_classification_head")
    a, b = out[:4], out[4:]
    y = sample["target"]
    if regression:
        ref = ((a.view(-1) - y) ** 2).sum() + ((b.view(-1) - y) ** 2).sum() + ((a - b) ** 2).sum()
    else:
        pa, pb = a.softmax(-1), b.softmax(-1)
        kl = (pa * (pa.log() - pb.log())).sum() + (pb * (pb.log() - pa.log())).sum()
        ref = F.cross_entropy(a, y, reduction="sum") + F.cross_entropy(b, y, reduction="sum") + kl / 2
        assert float(log["rdrop_kl"]) > 0  # dropout made the passes differ
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    assert size == 8


def test_rdrop_validation_is_the_stock_criterion(spdir):
    task, model, ours = make(spdir, "sentence_prediction_rdrop")
    _, _, _, stock = build(spdir, TINY_ROBERTA + ["--criterion", "sentence_prediction", "--num-classes", "3"],
                           task="sentence_prediction", arch="roberta")
    model.eval()
    sample = sentence_batch(task, bsz=4, n_classes=3)
    with torch.no_grad():
        assert torch.equal(ours(model, sample)[0], stock(model, sample)[0])


def test_negative_alpha_is_refused(spdir):
    with pytest.raises(ValueError, match="--rdrop-alpha"):
        build(spdir, TINY_ROBERTA + ["--criterion", "sentence_prediction_rdrop", "--rdrop-alpha", "-1",
                                     "--num-classes", "3"], task="sentence_prediction", arch="roberta")
