"""Importing the plugin keeps torch's weights-only loading on (addrop_fairseq/safe_loading.py).

A file whose pickle runs a command stays refused after ``import addrop_fairseq``, in this
process and in the plugin's own entry points (fairseq's --user-dir import, the tag CLI); fresh
fairseq checkpoints of ours load with ``weights_only=True`` all the same. Resuming, tagging and
the hf_* checkpoints under safe loading are exercised by test_cli_core, test_tagging_e2e,
test_hf_cli and test_wmt16.
"""
import os
import pickle
import re
import shlex
import subprocess
import sys

import pytest
import torch

import fairseq  # noqa: F401,I001  (first, as in fairseq-train: then importing the plugin registers it)
import addrop_fairseq  # noqa: F401  (what fairseq's --user-dir does)
from addrop_fairseq.safe_loading import fairseq_checkpoint_globals
from conftest import REPO, cli_env, run_cli

PLUGIN = str(REPO / "addrop_fairseq")
UNSAFE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def safe_env(**extra):
    """cli_env without the variable, whatever the calling shell exported."""
    env = cli_env(**extra)
    env.pop(UNSAFE, None)
    return env


class RunsCommand:
    """Unpickling this runs a shell command (pickle calls os.system)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class Evals:
    """Unpickling this evaluates Python (pickle calls builtins.eval)."""

    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return eval, (self.code,)


def malicious_checkpoint(path, marker, kind="system"):
    """A file shaped like a fairseq checkpoint whose loading would create ``marker``."""
    if kind == "system":
        payload = RunsCommand(f"touch {shlex.quote(str(marker))}")
    else:
        payload = Evals(f"open({str(marker)!r}, 'w').close()")
    torch.save({"args": None, "cfg": payload, "model": {"w": torch.zeros(2)}}, path)
    return path


@pytest.fixture(autouse=True)
def no_unsafe_variable(monkeypatch):
    monkeypatch.delenv(UNSAFE, raising=False)


def test_allowlist_is_data_classes_and_numpys_array_rebuild():
    """No function that can run code: classes (built by __new__ + attributes), and the one
    function numpy pickles arrays with, under its numpy 1 and numpy 2 names."""
    import numpy as np

    names = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in fairseq_checkpoint_globals()}
    functions = [g for g in fairseq_checkpoint_globals() if not isinstance(g, type)]
    rebuild = (np._core if hasattr(np, "_core") else np.core).multiarray._reconstruct
    assert functions == [(rebuild, "numpy.core.multiarray._reconstruct"), (rebuild, "numpy._core.multiarray._reconstruct")]
    assert "argparse.Namespace" in names and "numpy.ndarray" in names and "numpy.dtype" in names
    assert not any(type(np.dtype(c)) in fairseq_checkpoint_globals() for c in "OSUVMm")  # object, str, void, time
    allowed = {f"{g.__module__}.{g.__qualname__}": g for g in torch.serialization.get_safe_globals()
               if not isinstance(g, tuple)}
    assert allowed["argparse.Namespace"] is __import__("argparse").Namespace  # registered by the import


@pytest.mark.parametrize("kind", ["system", "eval"])
def test_code_in_a_pickle_is_refused_after_importing_the_plugin(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = malicious_checkpoint(tmp_path / "evil.pt", marker, kind)
    for kwargs in ({}, {"weights_only": True}):  # torch's default, and asked for
        with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
            torch.load(path, **kwargs)
    from fairseq import checkpoint_utils

    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        checkpoint_utils.load_checkpoint_to_cpu(str(path))
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: loading fully runs it
    assert marker.exists()


@pytest.mark.slow
def test_code_in_a_pickle_is_refused_by_the_plugins_entry_points(tmp_path):
    """fairseq's --user-dir import of the plugin, then fairseq's loader; and the tag CLI."""
    marker = tmp_path / "pwned"
    path = malicious_checkpoint(tmp_path / "evil.pt", marker)
    code = (
        "import argparse, os, pickle\n"
        "from fairseq import checkpoint_utils, utils\n"
        f"utils.import_user_module(argparse.Namespace(user_dir={PLUGIN!r}))\n"
        f"assert {UNSAFE!r} not in os.environ\n"
        "try:\n"
        f"    checkpoint_utils.load_checkpoint_to_cpu({str(path)!r})\n"
        "except pickle.UnpicklingError as e:\n"
        "    print('refused:', str(e).splitlines()[0])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=safe_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "refused: Weights only load failed" in proc.stdout
    assert not marker.exists()

    conll = tmp_path / "in.txt"
    conll.write_text("EU B-ORG\nrejects O\n\n", encoding="utf-8")
    proc = run_cli("addrop_fairseq.tag", ["--checkpoint", path, "--input", conll, "--output", tmp_path / "out.txt",
                                          "--cpu"], cwd=tmp_path, check=False, env=safe_env())
    assert proc.returncode != 0
    assert "Weights only load failed" in proc.stderr, proc.stderr[-3000:]
    assert not marker.exists() and not (tmp_path / "out.txt").exists()


# ----------------------------------------------------------------- fresh fairseq checkpoints


def preprocess(argv):
    """fairseq-preprocess in this process (it has imported fairseq already)."""
    from fairseq import options
    from fairseq_cli import preprocess as cli

    cli.main(options.get_preprocessing_parser().parse_args([str(a) for a in argv]))


@pytest.fixture(scope="module")
def enro(tmp_path_factory, shared_data):
    """160 train / 24 valid / 16 test newsdev2016 EN-RO pairs, whitespace tokens, binarized."""
    root = tmp_path_factory.mktemp("enro")
    src = shared_data / "wmt16_en_ro" / "newsdev2016"
    lines = {lang: src.with_suffix(f".{lang}").read_text(encoding="utf-8").splitlines() for lang in ("en", "ro")}
    for split, (a, b) in {"train": (0, 160), "valid": (160, 184), "test": (184, 200)}.items():
        for lang in ("en", "ro"):
            (root / f"{split}.{lang}").write_text("\n".join(lines[lang][a:b]) + "\n", encoding="utf-8")
    preprocess(["--source-lang", "en", "--target-lang", "ro", "--joined-dictionary", "--workers", "1",
                "--trainpref", root / "train", "--validpref", root / "valid", "--testpref", root / "test",
                "--destdir", root / "bin"])
    return root


TRAIN_COMMON = [
    "--user-dir", PLUGIN, "--criterion", "addrop_ce", "--addrop-schedule", "always", "--addrop-p", "0.3",
    "--addrop-q", "0.3", "--optimizer", "adam", "--lr", "1e-3", "--max-epoch", "1", "--seed", "1",
    "--log-format", "simple", "--no-progress-bar", "--num-workers", "0", "--required-batch-size-multiple", "1",
    "--encoder-layers", "1", "--encoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
    "--encoder-attention-heads", "2",
]


@pytest.fixture(scope="module")
def translation(enro):
    """A transformer trained with --eval-bleu (the metrics then hold numpy arrays) and EMA."""
    save = enro / "ckpt"
    run_cli("fairseq_cli.train", [
        enro / "bin", "--task", "translation", "--arch", "transformer", *TRAIN_COMMON, "--decoder-layers", "1",
        "--decoder-embed-dim", "16", "--decoder-ffn-embed-dim", "32", "--decoder-attention-heads", "2",
        "--share-all-embeddings", "--max-tokens", "1500", "--eval-bleu", "--eval-bleu-args", '{"beam": 1}',
        "--best-checkpoint-metric", "bleu", "--maximize-best-checkpoint-metric", "--store-ema",
        "--save-dir", save,
    ], env=safe_env())
    return save / "checkpoint_last.pt"


@pytest.fixture(scope="module")
def roberta(enro):
    """A tiny RoBERTa trained with sentence_prediction (one input: the English side, label =
    whether the sentence is longer than 20 words)."""
    root = enro / "sp"
    root.mkdir()
    for split in ("train", "valid"):
        sents = (enro / f"{split}.en").read_text(encoding="utf-8").splitlines()
        (root / f"{split}.input0").write_text("\n".join(sents) + "\n", encoding="utf-8")
        (root / f"{split}.label").write_text("".join(f"{int(len(s.split()) > 20)}\n" for s in sents))
    for name in ("input0", "label"):
        preprocess(["--only-source", "--trainpref", root / f"train.{name}", "--validpref", root / f"valid.{name}",
                    "--destdir", root / "bin" / name, "--workers", "1"])
    save = root / "ckpt"
    run_cli("fairseq_cli.train", [
        root / "bin", "--task", "sentence_prediction", "--arch", "roberta", *TRAIN_COMMON,
        "--max-positions", "256", "--num-classes", "2", "--init-token", "0", "--separator-token", "2",
        "--batch-size", "16", "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric",
        "--save-dir", save, "--no-epoch-checkpoints",
    ], env=safe_env())
    return save, root / "bin"


@pytest.mark.slow
def test_fresh_checkpoints_load_weights_only(translation, roberta):
    """Everything they pickle beyond torch's defaults is on the allowlist (and needed)."""
    import numpy as np

    names = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in fairseq_checkpoint_globals()}
    seen = set()
    for path in (translation, roberta[0] / "checkpoint_best.pt"):
        registered = torch.serialization.get_safe_globals()
        torch.serialization.clear_safe_globals()  # what torch itself refuses
        try:
            unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        finally:
            torch.serialization.add_safe_globals(registered)
        assert unsafe <= names, unsafe - names
        seen |= unsafe
        state = torch.load(path, weights_only=True)
        assert isinstance(state["cfg"]["model"], __import__("argparse").Namespace)
    assert {"argparse.Namespace", "numpy.ndarray", "numpy.dtype"} <= seen
    valid = torch.load(translation, weights_only=True)["extra_state"]["metrics"]["valid"]
    arrays = [v for _, _, _, meter in valid for v in meter.values() if isinstance(v, np.ndarray)]
    assert arrays and all(a.dtype.kind in "iu" for a in arrays)  # the BLEU n-gram counts


def generate(enro, checkpoint, cwd, env, *extra):
    proc = run_cli("fairseq_cli.generate", [
        enro / "bin", "--path", checkpoint, "--gen-subset", "test", "--beam", "2", "--max-len-b", "20",
        "--batch-size", "16", "--required-batch-size-multiple", "1", *extra,
    ], cwd=cwd, env=env)
    return sorted(l for l in proc.stdout.splitlines() if re.match(r"[HDP]-\d+\t", l))


@pytest.mark.slow
def test_generate_with_user_dir_is_stock_generate(enro, translation, tmp_path):
    """What our scripts run (--user-dir: safe loading) gives what stock fairseq-generate
    without the plugin gives when told to load fully."""
    plain = cli_env(**{UNSAFE: "1"})
    plain.pop("PYTHONPATH")
    stock = generate(enro, translation, tmp_path, plain)
    ours = generate(enro, translation, tmp_path, safe_env(), "--user-dir", PLUGIN)
    assert len(stock) == 3 * 16 and ours == stock


@pytest.mark.slow
def test_roberta_from_pretrained_with_the_plugin(roberta, tmp_path):
    save, data = roberta
    code = (
        "import pickle\n"
        "from fairseq import checkpoint_utils\n"
        "from fairseq.models.roberta import RobertaModel\n"
        "try:  # bare fairseq under torch's default: refused (fairseq pickles its config)\n"
        f"    checkpoint_utils.load_checkpoint_to_cpu({str(save / 'checkpoint_best.pt')!r})\n"
        "    raise SystemExit('loaded without the allowlist')\n"
        "except pickle.UnpicklingError:\n"
        "    pass\n"
        "# user_dir=: fairseq imports the plugin, which allowlists what the checkpoint holds\n"
        f"m = RobertaModel.from_pretrained({str(save)!r}, 'checkpoint_best.pt', {str(data)!r}, bpe='characters',\n"
        f"                                 user_dir={PLUGIN!r})\n"
        "m.eval()\n"
        "print(m.predict('sentence_classification_head', m.task.source_dictionary.encode_line(\n"
        "    'the cat sat', append_eos=True, add_if_not_exist=False).long()).shape)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=safe_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch.Size([1, 2])" in proc.stdout
