"""Tiny random Marian, BERT, ELECTRA and RoBERTa through the fairseq CLI with AD-DROP.

One training epoch each (started together, one thread each) with ``--criterion addrop_ce
--addrop-schedule always``: Marian on WMT16 en-ro (translation, encoder-self + decoder-self
+ cross attention), BERT on RTE (sentence_prediction), ELECTRA on CoNLL-2003
(sequence_tagging, integrated gradients), RoBERTa on STS-B (regression). hf_seq2seq is then
decoded with ``fairseq-generate`` beam search and scored with sacrebleu.
"""
import math
import re

import pytest

import hf_builders as hb
from addrop_fairseq.hf import preprocess as hf_preprocess

pytestmark = pytest.mark.slow  # starts subprocesses (fairseq/HF CLIs, fresh interpreters)

USER_DIR = hb.Path(__file__).resolve().parents[1] / "addrop_fairseq"
P, Q = 0.3, 0.3
COMMON = [
    "--user-dir", USER_DIR,
    "--criterion", "addrop_ce", "--addrop-schedule", "always", "--addrop-p", str(P), "--addrop-q", str(Q),
    "--optimizer", "adam", "--lr", "5e-4", "--max-epoch", "1", "--seed", "1",
    "--log-format", "simple", "--log-interval", "1", "--no-progress-bar", "--num-workers", "0",
    "--no-epoch-checkpoints", "--required-batch-size-multiple", "1",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("hf_cli")
    D = shared_data
    en = hb._short(hb.read_lines(D / "wmt16_en_ro" / "newsdev2016.en", 100), 8)
    ro = hb._short(hb.read_lines(D / "wmt16_en_ro" / "newsdev2016.ro", 100), 8)
    dirs = {
        "marian": hb.make_marian(root / "m" / "marian", en, ro, vocab_size=200),
        "bert": hb.make_bert(root / "m" / "bert", en, vocab_size=400),
        "electra": hb.make_bert(root / "m" / "electra", en, vocab_size=400, arch="electra"),
        "roberta": hb.make_roberta(root / "m" / "roberta", en, vocab_size=400),
    }
    raw = root / "raw"
    hb.write_parallel(raw / "enro", "train", "en", "ro", en[:64], ro[:64])
    hb.write_parallel(raw / "enro", "valid", "en", "ro", en[64:80], ro[64:80])
    hb.write_parallel(raw / "enro", "test", "en", "ro", en[80:100], ro[80:100])
    hb.write_pairs(raw / "rte", "train", hb.read_glue_tsv(D / "glue" / "RTE" / "train.tsv", 32))
    hb.write_pairs(raw / "rte", "valid", hb.read_glue_tsv(D / "glue" / "RTE" / "dev.tsv", 8))
    hb.write_pairs(raw / "stsb", "train", hb.read_glue_tsv(D / "glue" / "STS-B" / "train.tsv", 32))
    hb.write_pairs(raw / "stsb", "valid", hb.read_glue_tsv(D / "glue" / "STS-B" / "dev.tsv", 8))
    hb.conll_slice(D / "conll2003" / "train.txt", raw / "conll" / "train.txt", 32)
    hb.conll_slice(D / "conll2003" / "valid.txt", raw / "conll" / "valid.txt", 8)

    # the preprocessing command itself once (Marian), in-process for the others
    procs = {"prep": (hb.start_cli("addrop_fairseq.hf.preprocess", [
        "--model-dir", dirs["marian"], "--task", "translation", "--src", "en", "--tgt", "ro",
        "--trainpref", raw / "enro" / "train", "--validpref", raw / "enro" / "valid",
        "--testpref", raw / "enro" / "test", "--destdir", root / "bin" / "enro"], root / "prep.log"), root / "prep.log")}
    hf_preprocess.main(["--model-dir", str(dirs["bert"]), "--task", "sentence_prediction", "--max-length", "96",
                        "--trainpref", str(raw / "rte" / "train"), "--validpref", str(raw / "rte" / "valid"),
                        "--destdir", str(root / "bin" / "rte")])
    hf_preprocess.main(["--model-dir", str(dirs["roberta"]), "--task", "sentence_prediction", "--regression",
                        "--max-length", "96", "--trainpref", str(raw / "stsb" / "train"),
                        "--validpref", str(raw / "stsb" / "valid"), "--destdir", str(root / "bin" / "stsb")])
    hf_preprocess.main(["--model-dir", str(dirs["electra"]), "--task", "sequence_tagging",
                        "--trainpref", str(raw / "conll" / "train.txt"), "--validpref", str(raw / "conll" / "valid.txt"),
                        "--destdir", str(root / "bin" / "conll")])
    prep = hb.wait_all(procs)["prep"]
    assert prep[0] == 0, prep[1][-4000:]

    train = {
        "marian": [root / "bin" / "enro", "--task", "translation", "--source-lang", "en", "--target-lang", "ro",
                   "--arch", "hf_seq2seq", "--hf-model-dir", dirs["marian"], "--max-tokens", "600",
                   "--label-smoothing", "0.1", "--addrop-attention", "encoder-self,decoder-self,encoder-decoder"],
        "bert": [root / "bin" / "rte", "--task", "sentence_prediction", "--num-classes", "2",
                 "--arch", "hf_sequence_classifier", "--hf-model-dir", dirs["bert"], "--batch-size", "12",
                 "--max-positions", "128"],
        "electra": [root / "bin" / "conll", "--task", "sequence_tagging", "--prepend-bos", "--append-eos",
                    "--arch", "hf_token_classifier", "--hf-model-dir", dirs["electra"], "--batch-size", "12",
                    "--addrop-attribution", "iga", "--addrop-ig-steps", "2"],
        "roberta": [root / "bin" / "stsb", "--task", "sentence_prediction", "--regression-target", "--num-classes", "1",
                    "--arch", "hf_sequence_classifier", "--hf-model-dir", dirs["roberta"], "--batch-size", "12",
                    "--max-positions", "128", "--best-checkpoint-metric", "loss", "--addrop-layers", "1"],
    }
    generate = [
        root / "bin" / "enro", "--user-dir", USER_DIR, "--task", "translation", "--source-lang", "en",
        "--target-lang", "ro", "--path", root / "ckpt" / "marian" / "checkpoint_last.pt", "--gen-subset", "test",
        "--beam", "4", "--batch-size", "10", "--required-batch-size-multiple", "1", "--max-len-a", "0",
        "--max-len-b", "12", "--bpe", "hf", "--hf-tokenizer-dir", dirs["marian"], "--scoring", "sacrebleu",
    ]
    plan = [{"name": name, "module": "fairseq_cli.train", "log": root / f"{name}.log",
             "argv": [*args, *COMMON, "--save-dir", root / "ckpt" / name]} for name, args in train.items()]
    plan.append({"name": "generate", "module": "fairseq_cli.generate", "log": root / "generate.log", "argv": generate})
    return {"root": root, "dirs": dirs, "logs": hb.run_plan(plan, root / "plan.json")}


@pytest.mark.parametrize("name", ["marian", "bert", "electra", "roberta"])
def test_one_epoch_with_addrop(runs, name):
    rc, log = runs["logs"][name]
    assert rc == 0, log[-6000:]
    stats = hb.epoch_stats(log)
    assert stats["addrop_active"] == "1", stats
    assert math.isfinite(float(stats["loss"])), stats
    # dropped / valid over the epoch. Per row of n valid keys the candidates number
    # n - floor(n (1 - p)), between p*n and n (all n when the attributions tie, e.g. the
    # zero-gradient rows of a last layer under a [CLS] head), each dropped with probability q;
    # only 1-key rows (a decoder's first query) drop nothing. So about p*q <= frac <= q, the
    # 1-key rows being < 10% of the valid positions here, and every run has > 5000 valid
    # positions: binomial sd < sqrt(q (1 - q) / 5000) < 0.007, hence the 0.02 margin.
    frac = float(stats["addrop_drop_frac"])
    assert 0.9 * P * Q - 0.02 <= frac <= Q + 0.02, stats
    assert math.isfinite(float(hb.epoch_stats(log, "valid")["loss"]))
    assert (runs["root"] / "ckpt" / name / "checkpoint_last.pt").exists()


def test_marian_sites_include_cross_attention(runs):
    rc, log = runs["logs"]["marian"]
    assert "AD-DROP sites of MarianMTModel: {'encoder-self': 2, 'decoder-self': 2, 'encoder-decoder': 2}" in log


def test_tagging_reports_entity_f1(runs):
    stats = hb.epoch_stats(runs["logs"]["electra"][1], "valid")
    # the F1 printed is the harmonic mean of the entity precision and recall printed beside it
    p, r, f1 = (float(stats[k]) for k in ("precision", "recall", "f1"))
    assert f1 == pytest.approx(2 * p * r / (p + r) if p + r else 0.0, abs=2e-3), stats


def test_marian_generate_and_sacrebleu(runs):
    """fairseq-generate beam search on the reloaded checkpoint, detokenized by the HF tokenizer."""
    import sacrebleu

    rc, out = runs["logs"]["generate"]
    assert rc == 0, out[-6000:]
    hyps = {int(m.group(1)): m.group(2) for m in re.finditer(r"^D-(\d+)\t\S+\t(.*)$", out, re.M)}
    refs = {int(m.group(1)): m.group(2) for m in re.finditer(r"^T-(\d+)\t(.*)$", out, re.M)}
    assert len(hyps) == len(refs) == 20, out[-3000:]
    assert not any("\u2581" in h for h in list(hyps.values()) + list(refs.values()))
    raw_refs = (runs["root"] / "raw" / "enro" / "test.ro").read_text(encoding="utf-8").splitlines()
    assert sum(refs[i] == raw_refs[i] for i in refs) >= 15  # the tokenizer's decode gives the text back
    reported = re.search(r"BLEU = ([\d.]+)", out)
    assert reported, out[-3000:]
    ids = sorted(hyps)
    bleu = sacrebleu.corpus_bleu([hyps[i] for i in ids], [[refs[i] for i in ids]])
    assert abs(bleu.score - float(reported.group(1))) < 0.01


def test_checkpoints_reload(runs):
    """A fairseq checkpoint's ``hf.`` state loads into the HF class; a moved --hf-model-dir is
    found again with fairseq's --model-overrides."""
    import shutil

    import torch
    from fairseq import checkpoint_utils

    root, dirs = runs["root"], runs["dirs"]
    state = checkpoint_utils.load_checkpoint_to_cpu(str(root / "ckpt" / "bert" / "checkpoint_last.pt"))
    hf_state = {k[len("hf."):]: v for k, v in state["model"].items()}
    model = hb.tf().BertForSequenceClassification.from_pretrained(dirs["bert"], num_labels=2)
    model.load_state_dict(hf_state, strict=True)
    torch.testing.assert_close(model.classifier.weight, state["model"]["hf.classifier.weight"])

    moved = root / "moved_marian"
    shutil.move(str(dirs["marian"]), str(moved))
    try:
        models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
            [str(root / "ckpt" / "marian" / "checkpoint_last.pt")], arg_overrides={"hf_model_dir": str(moved)})
        assert cfg.model.hf_model_dir == str(moved)
        assert type(models[0]).__name__ == "HFSeq2SeqModel"
    finally:
        shutil.move(str(moved), str(dirs["marian"]))


def _hans_rows(shared_data, tmp_path, n_per_heuristic=4):
    """A few rows of the real HANS file per heuristic and label, written back as HANS's TSV."""
    lines = (shared_data / "hans" / "hans_eval_30k.tsv").read_text(encoding="utf-8").splitlines()
    header, picked, seen = lines[0], [], {}
    for line in lines[1:]:
        key = tuple(line.split("\t")[3:5])
        if seen.get(key, 0) < n_per_heuristic // 2:
            seen[key] = seen.get(key, 0) + 1
            picked.append(line)
    path = tmp_path / "hans.tsv"
    path.write_text("\r\n".join([header, *picked]) + "\r\n", encoding="utf-8")  # CRLF, as PAWS ships
    return path, [line.split("\t") for line in picked]


def test_evaluate_scores_a_checkpoint_per_group_as_one_example_at_a_time(runs, shared_data, tmp_path):
    """addrop-evaluate on real HANS rows with an RTE model: its batched predictions equal the
    model run on one example at a time (no padding), and its accuracies are counted from them."""
    import json

    import torch

    from addrop_fairseq import evaluate
    from addrop_fairseq.hf.preprocess import Encoder

    path, rows = _hans_rows(shared_data, tmp_path)
    ckpt = str(runs["root"] / "ckpt" / "bert" / "checkpoint_last.pt")
    out = tmp_path / "hans.json"
    result = evaluate.run(["--checkpoint", ckpt, "--input", str(path), "--label-column", "gold_label",
                            "--group-column", "heuristic", "--label-map", "not_entailment=non-entailment",
                            "--batch-size", "5", "--max-length", "96", "--output", str(out), "--cpu"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["n"] == len(rows) == 12 and set(result["by_group"]) == {"lexical_overlap", "subsequence", "constituent"}

    model, task, head = evaluate.load(ckpt, None)
    model.eval()
    enc, labels = Encoder(model.tokenizer), task.label_dictionary
    mapped = {"not_entailment": "non-entailment"}
    slow, slow_logits = [], []
    with torch.no_grad():
        for r in rows:
            ids = enc.fairseq_ids(model.tokenizer(r[1], r[2], truncation=True, max_length=96)["input_ids"])
            logits, _ = model(torch.tensor([ids]), torch.tensor([len(ids)]), features_only=True,
                              classification_head_name=head)
            slow_logits.append(logits[0])
            name = labels[int(logits.argmax()) + labels.nspecial]
            slow.append(mapped.get(name, name))
    batched = evaluate.predict_logits(model, task, head, [r[1:3] for r in rows], 96, 5, torch.device("cpu"))
    torch.testing.assert_close(batched, torch.stack(slow_logits), atol=1e-5, rtol=1e-4)  # order, padding
    hits = [p == r[3] for p, r in zip(slow, rows)]
    assert result["accuracy"] == pytest.approx(100 * sum(hits) / len(hits))
    assert result["predicted"] == {p: slow.count(p) for p in set(slow)}
    for grp in result["by_group"]:
        mine = [h for h, r in zip(hits, rows) if r[4] == grp]
        assert result["by_group"][grp] == {"n": len(mine), "accuracy": pytest.approx(100 * sum(mine) / len(mine))}
    for label in ("entailment", "non-entailment"):
        mine = [h for h, r in zip(hits, rows) if r[3] == label]
        assert result["by_label"][label]["n"] == len(mine) == 6


def test_evaluate_refuses_bad_input_with_one_line_naming_it(runs, shared_data, tmp_path, capsys):
    """A gold label the model cannot predict (no --label-map), a missing column, a label map
    naming a label the model lacks, a ragged row, a missing checkpoint: one ``error:`` line each,
    before any prediction."""
    from addrop_fairseq import evaluate

    path, _ = _hans_rows(shared_data, tmp_path)
    ckpt = str(runs["root"] / "ckpt" / "bert" / "checkpoint_last.pt")
    base = ["--checkpoint", ckpt, "--input", str(path), "--label-column", "gold_label", "--cpu"]
    ragged = tmp_path / "ragged.tsv"
    ragged.write_text("sentence1\tsentence2\tlabel\na\tb\tentailment\nc\td\n", encoding="utf-8")
    cases = {
        "hans.tsv:2: gold label 'non-entailment' is not one the model can predict": base,
        "no column(s) ['premise']": base + ["--text-columns", "premise,sentence2"],
        "--label-map: ['neutral'] are not labels of the model": base + ["--label-map", "neutral=non-entailment"],
        "ragged.tsv:3: 2 fields, the header has 3": ["--checkpoint", ckpt, "--input", str(ragged), "--cpu"],
        "nope.pt: no such file": ["--checkpoint", str(tmp_path / "nope.pt"), "--input", str(path)],
    }
    for message, argv in cases.items():
        with pytest.raises(SystemExit) as e:
            evaluate.main(argv)
        assert str(e.value).startswith("error: ") and message in str(e.value), (message, e.value)
        assert "\n" not in str(e.value)
