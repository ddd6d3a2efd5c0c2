"""The sequence_tagging task and the taggers, in-process: batches, seqeval-exact F1, and
AD-DROP's pseudo-label attribution ignoring padding and non-first pieces."""
import pytest
import seqeval.metrics
import torch

from fairseq.logging import metrics

from addrop_fairseq import attribution
from addrop_fairseq.tagging import preprocess
from addrop_fairseq.tagging.conll import read_conll
from addrop_fairseq.tagging.sample import sample
from fairseq_builders import build

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = ["--encoder-layers", "2", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--encoder-attention-heads", "2"]
ROBERTA = ["--prepend-bos", "--append-eos", "--add-mask-symbol"]
ARCHS = {
    "transformer_tagger": ("transformer_tagger_small", TINY),
    "roberta_tagger": ("roberta_tagger", TINY + ROBERTA),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory, shared_data):
    d = tmp_path_factory.mktemp("tagging")
    sample(shared_data / "conll2003" / "train.txt", d / "train.txt", 120)
    sample(shared_data / "conll2003" / "valid.txt", d / "valid.txt", 70)
    preprocess.main(["--train", str(d / "train.txt"), "--valid", str(d / "valid.txt"), "--destdir",
                     str(d / "bin"), "--subword", "sentencepiece", "--sentencepiece-vocab-size", "400"])
    return d


def make(data, name, criterion=("--criterion", "label_smoothed_cross_entropy")):
    arch, extra = ARCHS[name]
    torch.manual_seed(0)
    return build(data / "bin", [*criterion, *extra], task="sequence_tagging", arch=arch)


def batches(task, split, max_tokens):
    task.load_dataset(split)
    # required_batch_size_multiple=8 would drop the last, odd-sized batch in this fairseq
    itr = task.get_batch_iterator(dataset=task.dataset(split), max_tokens=max_tokens,
                                  required_batch_size_multiple=8)
    return list(itr.next_epoch_itr(shuffle=False))


@pytest.mark.parametrize("name", ARCHS)
def test_batches_label_first_pieces_only(data, name):
    cfg, task, model, _ = make(data, name)
    assert task.addrop_task_kind == "token" and task.target_dictionary.pad() == 1
    pad, tag_pad = task.source_dictionary.pad(), task.target_dictionary.pad()
    conll = read_conll(data / "valid.txt")
    seen = 0
    for s in batches(task, "valid", 400):
        src, tgt = s["net_input"]["src_tokens"], s["target"]
        assert src.shape == tgt.shape
        assert s["ntokens"] == int(tgt.ne(tag_pad).sum())
        assert (tgt[src.eq(pad)] == tag_pad).all()
        for row, (i, t) in enumerate(zip(s["id"].tolist(), tgt)):
            sent = conll.sentences[i]
            ids, first = task.encode_words(sent.tokens)  # what the tag CLI feeds the model
            n = len(ids)
            assert src[row, :n].tolist() == ids.tolist() and s["net_input"]["src_lengths"][row] == n
            assert t[:n].ne(tag_pad).tolist() == first.tolist()
            assert [task.target_dictionary[j] for j in t[:n][first].tolist()] == sent.tags
            if name == "roberta_tagger":
                assert ids[0] == task.source_dictionary.bos() and ids[-1] == task.source_dictionary.eos()
            seen += 1
    assert seen == len(conll.sentences)  # nothing dropped
    logits, _ = model(**s["net_input"])
    assert logits.shape == (*tgt.shape, len(task.target_dictionary))


@pytest.mark.slow  # trains and validates
@pytest.mark.parametrize("criterion", ["label_smoothed_cross_entropy", "addrop_ce"])
def test_task_f1_equals_seqeval(data, criterion):
    cfg, task, model, criterion = make(data, "transformer_tagger", ("--criterion", criterion))
    torch.nn.init.normal_(model.head.out_proj.weight, std=2.0)  # varied predictions from a random model
    model.eval()
    logs = [task.valid_step(s, model, criterion)[2] for s in batches(task, "valid", 300)]
    assert len(logs) > 2
    with metrics.aggregate() as agg:
        for log in logs:  # as fairseq does: one reduce per batch (and per worker), counts summed
            task.reduce_metrics([log], criterion)
        values = agg.get_smoothed_values()

    # independently: one sentence at a time from the CoNLL file, scored by seqeval itself
    conll = read_conll(data / "valid.txt")
    tags = task.target_dictionary
    gold, pred = [], []
    with torch.no_grad():
        for sent in conll.sentences:
            ids, first = task.encode_words(sent.tokens)
            logits = model(ids[None], torch.tensor([len(ids)]))[0][0]
            best = logits[:, tags.nspecial:].argmax(-1) + tags.nspecial
            pred.append([tags[i] for i in best[first].tolist()])
            gold.append(sent.tags)
    assert agg["_ner_words"].sum == sum(map(len, gold))  # every word of the dev slice counted
    f1 = seqeval.metrics.f1_score(gold, pred)
    precision = seqeval.metrics.precision_score(gold, pred)
    recall = seqeval.metrics.recall_score(gold, pred)
    # the comparisons below can tell a wrong count: some entities right and some wrong, and
    # precision != recall (so swapping the predicted and gold counts would show)
    assert 0 < f1 < 1 and abs(precision - recall) > 1e-3, (precision, recall)
    assert values["f1"] == pytest.approx(100 * f1, abs=1e-9)
    assert values["precision"] == pytest.approx(100 * precision, abs=1e-9)
    assert values["recall"] == pytest.approx(100 * recall, abs=1e-9)
    acc = sum(g == p for gs, ps in zip(gold, pred) for g, p in zip(gs, ps)) / sum(map(len, gold))
    assert values["word_acc"] == pytest.approx(100 * acc, abs=1e-9)


@pytest.mark.parametrize("name", ARCHS)
def test_pseudo_loss_attribution_ignores_padding_and_non_first_pieces(data, name):
    cfg, task, model, criterion = make(data, name, ("--criterion", "addrop_ce"))
    model.eval()  # no dropout: two passes see the same network
    sample_ = batches(task, "train", 600)[0]
    src, target = sample_["net_input"]["src_tokens"], sample_["target"]
    pad = task.target_dictionary.pad()
    ignored = target.eq(pad)
    assert (src.eq(task.source_dictionary.pad())).any()  # padding in the batch
    assert (ignored & src.ne(task.source_dictionary.pad())).any()  # non-first pieces (and <s>, </s>)

    # Eq. 8-9 target: d/dlogits is zero exactly at ignored positions
    logits = model(**sample_["net_input"])[0].detach().requires_grad_(True)
    target_value = attribution.token_pseudo_target(torch.log_softmax(logits, -1), target, pad)
    (grad,) = torch.autograd.grad(target_value, logits)
    assert grad[ignored].abs().max() == 0
    assert (grad[~ignored].abs().sum(-1) > 0).all()

    # through the model: attributions of every attention map are unchanged when the outputs
    # at ignored positions are scrambled, and change when one labelled position is
    sites = criterion.prepare(model)
    head = model.head if name == "transformer_tagger" else model.tagging_head

    def attribute(mask):
        noise = torch.randn(*target.shape, len(task.target_dictionary), generator=torch.Generator().manual_seed(1))
        hook = head.register_forward_hook(lambda m, i, out: out + 50 * noise * mask[..., None])
        try:
            return criterion.attribute(model, sample_, sites)
        finally:
            hook.remove()

    base = attribute(torch.zeros_like(ignored))
    assert len(base) == 2 and all(a.abs().sum() > 0 for a in base)
    scrambled = attribute(ignored)
    for a, b in zip(base, scrambled):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    one_word = torch.zeros_like(ignored)
    one_word[(~ignored).nonzero()[0].unbind()] = True
    moved = attribute(one_word)
    assert any((a - b).abs().max() > 1e-4 for a, b in zip(base, moved))
