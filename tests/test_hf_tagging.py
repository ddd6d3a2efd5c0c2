"""One tagging pipeline for every splitter, HF tokenizers included (real MiniLM weights).

* ``addrop-hf-preprocess --task sequence_tagging`` is ``addrop-tagging-preprocess --subword
  hf``: the same files, byte for byte; the dictionary is the tokenizer's one-to-one one and
  the words decode back (normalized by the tokenizer);
* ``hf_token_classifier`` trained for a few updates through fairseq-train on that data, then
  the tag CLI (``addrop-tag``) on it: on the dev slice it reports the F1 that training's
  validation logged for the checkpoint (the CLI encodes words as the data was made), and on
  a held-out slice the F1 it prints is seqeval's on the file it wrote.
"""
import filecmp
import importlib.metadata
import json
import re

import pytest
import seqeval.metrics

import hf_builders as hb
from addrop_fairseq.hf import preprocess as hf_preprocess
from addrop_fairseq.hf import vocab as hv
from addrop_fairseq.tagging import preprocess as tagging_preprocess
from addrop_fairseq.tagging.conll import read_conll
from addrop_fairseq.tagging.subwords import load_splitter, read_meta

USER_DIR = hb.Path(__file__).resolve().parents[1] / "addrop_fairseq"


@pytest.fixture(scope="module")
def data(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("hf_tagging")
    model_dir = hb.minilm_dir()
    conll = shared_data / "conll2003"
    raw = {
        "train": hb.conll_slice(conll / "train.txt", root / "raw" / "train.txt", 48, max_words=25),
        "valid": hb.conll_slice(conll / "valid.txt", root / "raw" / "valid.txt", 16, max_words=25),
        "held": hb.conll_slice(conll / "valid.txt", root / "raw" / "held.txt", 40, start=200),
    }
    hf_preprocess.main(["--model-dir", str(model_dir), "--task", "sequence_tagging",
                        "--trainpref", str(raw["train"]), "--validpref", str(raw["valid"]),
                        "--destdir", str(root / "bin")])
    return {"root": root, "model_dir": model_dir, "raw": raw, "bin": root / "bin"}


def test_hf_preprocess_is_the_tagging_pipeline_with_the_hf_splitter(data, tmp_path):
    """Both commands write the same files; the splitter and dictionary are the tokenizer's."""
    same = tmp_path / "bin"
    tagging_preprocess.main(["--train", str(data["raw"]["train"]), "--valid", str(data["raw"]["valid"]),
                             "--destdir", str(same), "--subword", "hf", "--hf-model-dir", str(data["model_dir"])])
    for sub in ("tokens", "tags"):
        for name in ("dict.txt", "train.bin", "train.idx", "valid.bin", "valid.idx"):
            assert filecmp.cmp(data["bin"] / sub / name, same / sub / name, shallow=False), f"{sub}/{name}"
    assert read_meta(same) == read_meta(data["bin"])
    meta = read_meta(data["bin"])
    assert meta["subword"] == {"kind": "hf", "model_dir": str(data["model_dir"]), "tokenizer": "BertTokenizer"}
    tok = hb.tf().AutoTokenizer.from_pretrained(data["model_dir"])
    hv.write_dictionary(tok, tmp_path / "want.txt")
    assert filecmp.cmp(data["bin"] / "tokens" / "dict.txt", tmp_path / "want.txt", shallow=False)
    summary = json.loads((data["bin"] / "hf_preprocess.json").read_text())
    assert summary["tokens"] == sum(s["pieces"] for s in meta["splits"].values())
    # the words come back as the tokenizer normalizes them (MiniLM: lower case, no accents)
    norm = tok.backend_tokenizer.normalizer.normalize_str
    splitter = load_splitter(str(data["bin"]), meta["subword"])
    for split in ("train", "valid"):
        back = tagging_preprocess.read_binarized(str(data["bin"]), split)
        want = [([norm(w) for w in s.tokens], s.tags) for s in read_conll(data["raw"][split]).sentences]
        assert back == want
        assert any(len(p) > 1 for words, _ in want for p in splitter.sentence_pieces(words))
    # a fixed dictionary: options that would build another one are refused
    with pytest.raises(SystemExit, match="fixed dictionary"):
        tagging_preprocess.main(["--train", str(data["raw"]["train"]), "--destdir", str(tmp_path / "x"),
                                 "--subword", "hf", "--hf-model-dir", str(data["model_dir"]), "--thresholdsrc", "2"])


def test_moved_tokenizer_is_an_error_naming_it(data):
    with pytest.raises(ValueError, match="not there any more"):
        load_splitter(str(data["bin"]), {"kind": "hf", "model_dir": str(data["root"] / "gone")})


def _declared_console_scripts():
    """setup.py's ``console_scripts``, read from its source (one place declares the CLIs)."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parents[1] / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    entry_points = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "entry_points"))
    return dict(line.replace(" ", "").split("=", 1) for line in entry_points["console_scripts"])


def test_console_scripts_are_installed():
    """The installed CLIs are the ones setup.py declares (a stale install fails here) and each
    names a module whose ``main`` exists."""
    declared = _declared_console_scripts()
    assert {"addrop-tag", "addrop-tagging-preprocess", "addrop-hf-preprocess", "addrop-explain"} <= set(declared)
    eps = importlib.metadata.entry_points(group="console_scripts")
    got = {ep.name: ep.value for ep in eps if ep.name.startswith("addrop-")}
    assert got == declared, "reinstall: pip install -e . --no-deps"
    for ep in eps:
        if ep.name in declared:
            assert callable(ep.load()), ep.name


@pytest.mark.slow
def test_old_module_paths_are_aliases():
    """``python -m addrop_fairseq.tag`` / ``.hf_preprocess`` (kept for scripts) run the new CLIs."""
    import subprocess
    import sys

    from addrop_fairseq import hf_preprocess as old_hf
    from addrop_fairseq import tag as old_tag
    from addrop_fairseq.tagging import cli
    from conftest import REPO, cli_env

    assert old_tag.main is cli.main and old_hf.main is hf_preprocess.main
    for module, prog in (("addrop_fairseq.tag", "addrop-tag"), ("addrop_fairseq.hf_preprocess", "addrop-hf-preprocess")):
        proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, env=cli_env(),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: {prog} "), proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def runs(data):
    root = data["root"]
    train = [data["bin"], "--user-dir", USER_DIR, "--task", "sequence_tagging", "--prepend-bos", "--append-eos",
             "--arch", "hf_token_classifier", "--hf-model-dir", data["model_dir"],
             "--criterion", "addrop_ce", "--addrop-schedule", "always", "--addrop-attribution", "ga",
             "--optimizer", "adam", "--lr", "3e-4", "--max-epoch", "2", "--batch-size", "8",
             "--required-batch-size-multiple", "1", "--seed", "1", "--log-format", "simple", "--log-interval", "1",
             "--no-progress-bar", "--num-workers", "0", "--no-epoch-checkpoints", "--no-last-checkpoints",
             "--best-checkpoint-metric", "f1", "--maximize-best-checkpoint-metric", "--save-dir", root / "ckpt"]
    ckpt = root / "ckpt" / "checkpoint_best.pt"
    tag = ["--checkpoint", ckpt, "--data", data["bin"], "--cpu"]
    plan = [
        {"name": "train", "module": "fairseq_cli.train", "log": root / "train.log", "argv": train},
        {"name": "tag_valid", "module": "addrop_fairseq.tagging.cli", "function": "main", "log": root / "valid.log",
         "argv": [*tag, "--input", data["raw"]["valid"], "--output", root / "valid.pred.txt"]},
        {"name": "tag_held", "module": "addrop_fairseq.tagging.cli", "function": "main", "log": root / "held.log",
         "argv": [*tag, "--input", data["raw"]["held"], "--output", root / "held.pred.txt"]},
    ]
    return hb.run_plan(plan, root / "plan.json")


def printed(log: str) -> dict:
    """The precision / recall / f1 (percent) of the tag CLI's report line."""
    m = re.search(r"entity-level \(seqeval\) precision ([0-9.]+) recall ([0-9.]+) f1 ([0-9.]+) \|", log)
    assert m, log[-4000:]
    return dict(zip(("precision", "recall", "f1"), map(float, m.groups())))


def written(src_path, pred_path):
    """(gold, predicted) tags per sentence of the tag CLI's output; checks its layout."""
    src, got = src_path.read_text().splitlines(), pred_path.read_text().splitlines()
    assert len(got) == len(src)
    gold, pred, g, p = [], [], [], []
    for a, b in zip(src + [""], got + [""]):
        if not a.strip():
            assert b == ""
            if g:
                gold.append(g), pred.append(p)
            g, p = [], []
            continue
        assert b.startswith(a + " ") and len(b.split()) == len(a.split()) + 1
        g.append(b.split()[-2]), p.append(b.split()[-1])
    return gold, pred


@pytest.mark.slow
def test_hf_token_classifier_trains_and_the_tag_cli_reproduces_its_dev_f1(runs):
    for name in ("train", "tag_valid"):
        assert runs[name][0] == 0, runs[name][1][-6000:]
    log = runs["train"][1]
    assert "AD-DROP sites of Bert" in log
    assert all("addrop_active=1" in line for line in log.splitlines() if "| train_inner |" in line)
    valid = [hb.epoch_stats(log, "valid", e) for e in (1, 2)]
    best = max(valid, key=lambda v: float(v["f1"]))  # the checkpoint the CLI loads
    got = printed(runs["tag_valid"][1])
    for key in ("precision", "recall", "f1"):
        assert got[key] == pytest.approx(float(best[key]), abs=0.006), (got, best)


@pytest.mark.slow
def test_tag_cli_on_held_out_slice_prints_seqeval_f1_of_what_it_wrote(runs, data):
    rc, log = runs["tag_held"]
    assert rc == 0, log[-6000:]
    gold, pred = written(data["raw"]["held"], data["root"] / "held.pred.txt")
    assert len(gold) == 40
    assert [t for s in gold for t in s] == [t for s in read_conll(data["raw"]["held"]).sentences for t in s.tags]
    assert all(t == "O" or t[:2] in ("B-", "I-") for s in pred for t in s)
    assert "micro avg" in log
    got = printed(log)
    f1 = 100 * seqeval.metrics.f1_score(gold, pred)
    assert got["f1"] == pytest.approx(f1, abs=0.006)
    assert got["precision"] == pytest.approx(100 * seqeval.metrics.precision_score(gold, pred), abs=0.006)
    assert got["recall"] == pytest.approx(100 * seqeval.metrics.recall_score(gold, pred), abs=0.006)
    assert f1 > 0, log[-3000:]  # a few updates of MiniLM already find some entities
