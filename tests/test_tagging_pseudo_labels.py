"""AD-DROP's pseudo labels on the real ``sequence_tagging`` task are tags the tagger can output:
never one of the tag dictionary's special symbols (``<s>``, ``<pad>``, ``</s>``, ``<unk>``),
even where the model scores them highest. The exclusion comes from the task's own declaration
(``addrop_unpredictable_labels``), so these tests build the real task, the real criterion and
real models (fairseq's ``transformer_tagger`` and ``hf_token_classifier``): changing the
declaration fails them."""
from pathlib import Path

import pytest

import hf_builders as hb
from addrop_fairseq.tagging import preprocess
from fairseq_builders import build

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SENTENCES = [
    [("EU", "B-ORG"), ("rejects", "O"), ("German", "B-MISC"), ("call", "O")],
    [("Peter", "B-PER"), ("Blackburn", "I-PER"), ("spoke", "O")],
    [("BRUSSELS", "B-LOC"), ("1996-08-22", "O")],
    [("the", "O"), ("European", "B-ORG"), ("Commission", "I-ORG"), ("said", "O"), ("on", "O"), ("Thursday", "O")],
]
TINY = ["--encoder-layers", "1", "--encoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
        "--encoder-attention-heads", "2"]


def tiny_tagging_data(root: Path, *subword) -> Path:
    """SENTENCES as CoNLL (train = valid), binarized by addrop-tagging-preprocess; the data dir."""
    root.mkdir(parents=True, exist_ok=True)
    conll = root / "train.txt"
    conll.write_text("\n".join("".join(f"{w} {t}\n" for w, t in s) for s in SENTENCES), encoding="utf-8")
    preprocess.main(["--train", str(conll), "--valid", str(conll), "--destdir", str(root / "bin"), *subword])
    return root / "bin"


def first_batch(task):
    task.load_dataset("valid")
    data = task.dataset("valid")
    return data.collater([data[i] for i in range(len(data))])


def pseudo_labels_with_specials_on_top(task, model, criterion, scores):
    """Pass 1's pseudo labels while ``scores`` (a module giving the per-tag scores) puts every
    special symbol far above the real tags."""
    n = task.target_dictionary.nspecial
    assert [task.target_dictionary[i] for i in range(n)] == ["<s>", "<pad>", "</s>", "<unk>"]

    def specials_on_top(module, inputs, out):
        out = out.clone()
        out[..., :n] += 100.0
        return out

    hook = scores.register_forward_hook(specials_on_top)
    try:
        prediction = criterion.task_kind.predict(model.eval(), first_batch(task))
    finally:
        hook.remove()
    assert (prediction.output.argmax(-1) < n).all()  # the model's own choice: a special, everywhere
    return criterion.task_kind.labels(prediction), n


def test_fairseq_tagger_pseudo_labels_are_real_tags(tmp_path):
    _, task, model, criterion = build(tiny_tagging_data(tmp_path), ["--criterion", "addrop_ce", *TINY],
                                      task="sequence_tagging", arch="transformer_tagger_small")
    labels, n = pseudo_labels_with_specials_on_top(task, model, criterion, model.head)
    assert (labels >= n).all()


def test_hf_token_classifier_pseudo_labels_are_real_tags(tmp_path):
    words = [w for s in SENTENCES for w, _ in s]
    model_dir = hb.make_bert(tmp_path / "bert", [" ".join(words)] * 4, vocab_size=120)
    data = tiny_tagging_data(tmp_path, "--subword", "hf", "--hf-model-dir", str(model_dir))
    _, task, model, criterion = build(data, ["--criterion", "addrop_ce", "--hf-model-dir", model_dir],
                                      task="sequence_tagging", arch="hf_token_classifier")
    assert model.hf.classifier.out_features == len(task.target_dictionary)  # specials scored too
    labels, n = pseudo_labels_with_specials_on_top(task, model, criterion, model.hf.classifier)
    assert (labels >= n).all()
