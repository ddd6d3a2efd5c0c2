"""``addrop-explain``: for a trained checkpoint and one input, the dropped positions it draws and
writes are the masks ``--criterion addrop_ce`` makes for that input with the same seed.

Two checkpoints trained through the real CLI: a tiny fairseq RoBERTa (one sentence, words as
tokens) and a tiny HF BERT with ``hf_sequence_classifier`` (a sentence pair, data from
``addrop-hf-preprocess``). The reference runs the criterion's own fairseq ``forward`` on a
batch built independently (the fairseq dictionary, or the validation set binarized from the
same text) and captures the masks pass 2 applies.
"""
import json

import pytest
import torch

import hf_builders as hb
from conftest import REPO, run_cli

pytestmark = pytest.mark.slow  # starts subprocesses (fairseq/HF CLIs, fresh interpreters)

PLUGIN = str(REPO / "addrop_fairseq")
WORDS = "the a cat dog sat ran on under mat tree big small red blue house".split()
TEXT = "the big cat sat on the red mat under a small tree"
PAIR = ("the dog ran under the tree", "a small dog sat on the house")
TRAIN = ["--optimizer", "adam", "--lr", "1e-3", "--batch-size", "8", "--max-update", "2", "--seed", "1",
         "--no-progress-bar", "--num-workers", "0", "--no-epoch-checkpoints", "--required-batch-size-multiple", "1",
         "--criterion", "addrop_ce", "--addrop-p", "0.5", "--addrop-q", "0.8", "--addrop-schedule", "always"]


def sentences(n, seed):
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(5, 12))) for _ in range(n)]


@pytest.fixture(scope="module")
def roberta(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain_roberta")
    for split, n in (("train", 16), ("valid", 4)):
        sents = sentences(n, {"train": 1, "valid": 2}[split])
        (root / f"{split}.input0").write_text("\n".join(sents) + "\n")
        (root / f"{split}.label").write_text("".join(f"{int('cat' in s)}\n" for s in sents))
    for name in ("input0", "label"):
        run_cli("fairseq_cli.preprocess", ["--only-source", "--trainpref", root / f"train.{name}", "--validpref",
                                           root / f"valid.{name}", "--destdir", root / "bin" / name, "--workers", "1"])
    run_cli("fairseq_cli.train", [
        root / "bin", "--user-dir", PLUGIN, "--task", "sentence_prediction", "--arch", "roberta",
        "--encoder-layers", "2", "--encoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
        "--encoder-attention-heads", "2", "--max-positions", "64", "--num-classes", "2",
        "--init-token", "0", "--separator-token", "2", "--addrop-layers", "all", *TRAIN, "--save-dir", root / "ckpt",
    ])
    return root


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain_bert")
    texts = sentences(40, 3)
    model_dir = hb.make_bert(root / "bert", texts + list(PAIR), vocab_size=120)
    rows = [(texts[i], texts[i + 1], str(i % 2)) for i in range(0, 32, 2)]
    hb.write_pairs(root / "raw", "train", rows)
    hb.write_pairs(root / "raw", "valid", [(PAIR[0], PAIR[1], "0")])  # the explained input, binarized
    from addrop_fairseq.hf import preprocess

    preprocess.main(["--model-dir", str(model_dir), "--task", "sentence_prediction",
                     "--trainpref", str(root / "raw" / "train"), "--validpref", str(root / "raw" / "valid"),
                     "--destdir", str(root / "bin")])
    run_cli("fairseq_cli.train", [
        root / "bin", "--user-dir", PLUGIN, "--task", "sentence_prediction", "--arch", "hf_sequence_classifier",
        "--hf-model-dir", model_dir, "--max-positions", "256", "--num-classes", "2",
        "--addrop-layers", "1", *TRAIN, "--save-dir", root / "ckpt",
    ])
    return root


def explain(checkpoint, out, *args):
    proc = run_cli("addrop_fairseq.explain", ["--checkpoint", checkpoint, "--out", out, *args])
    return json.loads(out.with_suffix(".json").read_text()), proc.stdout


def criterion_masks(checkpoint, make_sample, seed, **overrides):
    """The masks pass 2 applies when the criterion's own forward runs on ``make_sample(task)``,
    the checkpoint's criterion options changed by ``overrides``."""
    from fairseq import checkpoint_utils

    import addrop_fairseq
    from addrop_fairseq import masks

    addrop_fairseq.register()
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)])
    for k, v in dict(overrides, addrop_schedule="always").items():
        setattr(cfg.criterion, k, v)
    criterion = task.build_criterion(cfg.criterion)
    sample = make_sample(task)
    captured = {}
    original = masks.DropMasks.__call__

    def capture(self, index, valid):
        drop = original(self, index, valid)
        captured[index] = drop[0].nonzero().tolist()
        return drop

    masks.DropMasks.__call__ = capture
    try:
        torch.manual_seed(seed)
        criterion(models[0].train(), sample)
    finally:
        masks.DropMasks.__call__ = original
    return [captured[i] for i in sorted(captured)]


def one(tokens):
    return {"id": torch.tensor([0]), "nsentences": 1, "ntokens": len(tokens),
            "net_input": {"src_tokens": tokens[None], "src_lengths": torch.tensor([len(tokens)])},
            "target": torch.tensor([0])}


def test_fairseq_roberta_masks_equal_the_criterions(roberta, tmp_path):
    from fairseq.data import Dictionary

    ckpt = roberta / "ckpt" / "checkpoint_last.pt"
    got, stdout = explain(ckpt, tmp_path / "fig.png", "--text", TEXT, "--layer", "1", "--head", "1", "--seed", "7")
    d = Dictionary.load(str(roberta / "bin" / "input0" / "dict.txt"))
    tokens = torch.tensor([0] + [d.index(w) for w in TEXT.split()] + [d.eos()])
    assert got["tokens"] == ["<s>", *TEXT.split(), "</s>"]
    want = criterion_masks(ckpt, lambda task: one(tokens), seed=7)
    assert [s["dropped"] for s in got["sites"]] == want
    assert [s["layer"] for s in got["sites"]] == [0, 1]  # the checkpoint's --addrop-layers all
    n = len(tokens)
    assert 0.2 * n * n * 2 < len(want[0]) < 0.6 * n * n * 2  # about p*q of layer 0's keys, 2 heads
    assert got["options"]["addrop_p"] == 0.5 and got["options"]["addrop_q"] == 0.8
    assert got["prediction"] in ("0", "1")
    png = (tmp_path / "fig.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "layer 1 head 1" in stdout
    # another seed draws other masks (the seed is what fixes them)
    other, _ = explain(ckpt, tmp_path / "other.png", "--text", TEXT, "--seed", "8")
    assert [s["dropped"] for s in other["sites"]] != want


def test_hf_pair_masks_equal_the_criterions(bert, tmp_path):
    ckpt = bert / "ckpt" / "checkpoint_last.pt"
    got, _ = explain(ckpt, tmp_path / "pair.png", "--text", PAIR[0], "--text-pair", PAIR[1], "--layer", "1",
                     "--addrop-p", "0.6", "--addrop-q", "0.5")

    def binarized_pair(task):  # the pair as addrop-hf-preprocess binarized it (the valid set)
        task.load_dataset("valid")
        return one(task.dataset("valid")[0]["net_input.src_tokens"])

    want = criterion_masks(ckpt, binarized_pair, seed=1, addrop_p=0.6, addrop_q=0.5)  # the default --seed
    assert [s["dropped"] for s in got["sites"]] == want and want[0]
    assert [s["layer"] for s in got["sites"]] == [1]  # the checkpoint's --addrop-layers 1
    tok = hb.tf().AutoTokenizer.from_pretrained(str(bert / "bert"))
    assert got["tokens"] == tok.convert_ids_to_tokens(tok(*PAIR)["input_ids"])


def test_bad_requests_are_refused_with_the_option_named(roberta, tmp_path):
    ckpt = roberta / "ckpt" / "checkpoint_last.pt"
    for extra, message in ((["--layer", "5"], "--layer 5: AD-DROP masks layers [0, 1]"),
                           (["--head", "2"], "--head 2: layer 0 has heads 0-1"),
                           (["--addrop-labels", "gold"], "--label is needed for --addrop-labels gold"),
                           (["--label", "7", "--addrop-labels", "gold"], "--label: unknown class '7'")):
        proc = run_cli("addrop_fairseq.explain", ["--checkpoint", ckpt, "--text", TEXT, "--out",
                                                  tmp_path / "x.png", *extra], check=False)
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-2000:]
