"""Every shipped preset trains through the installed ``fairseq-hydra-train`` in a fresh process
(issue 33, item 4).

fairseq resolves the composed config before it imports ``common.user_dir``, so a preset may
not lean on the plugin's dataclasses for an interpolation (sentence_prediction's
``regression_target: ${criterion.regression_target}`` crashed every GLUE preset). Each run:
tiny data, one update, AD-DROP on (``addrop_schedule=always``, so that one update is AD-DROP's),
no checkpoint written; the GLUE presets on a tiny random BERT instead of MiniLM.
"""
import re
import subprocess

import pytest

import hf_builders as hb
from addrop_fairseq.config import CONFIG_DIR, PLUGIN_DIR, presets
from conftest import REPO, cli_env, run_cli
from test_presets import hydra_train_cmd

pytestmark = pytest.mark.slow  # subprocesses, MiniLM or training: the full suite, not the fast lane

PRESETS = [(setup, name) for setup, names in presets().items() for name in names]


def _translation_bin(root, shared, folder, src, tgt):
    """A joined-dictionary binarized slice (whitespace tokens) of newsdev2016."""
    raw = root / f"raw_{src}{tgt}"
    s = hb._short(hb.read_lines(shared / folder / f"newsdev2016.{src}", 24), 8)
    t = hb._short(hb.read_lines(shared / folder / f"newsdev2016.{tgt}", 24), 8)
    hb.write_parallel(raw, "train", src, tgt, s[:16], t[:16])
    hb.write_parallel(raw, "valid", src, tgt, s[16:20], t[16:20])
    dest = root / f"bin_{src}{tgt}"
    run_cli("fairseq_cli.preprocess", ["--source-lang", src, "--target-lang", tgt, "--joined-dictionary",
                                       "--trainpref", raw / "train", "--validpref", raw / "valid",
                                       "--destdir", dest, "--workers", "1"])
    return dest


@pytest.fixture(scope="module")
def data(tmp_path_factory, shared_data):
    """{setup or task: (task.data, model.hf_model_dir or None)}."""
    from addrop_fairseq.hf import preprocess as hf_preprocess
    from addrop_fairseq.tagging.sample import sample

    root = tmp_path_factory.mktemp("presets_hydra")
    D = shared_data
    en = hb._short(hb.read_lines(D / "wmt16_en_ro" / "newsdev2016.en", 60), 12)
    bert = hb.make_bert(root / "bert", en, vocab_size=300)
    out = {}
    for name, folder, regression in (("cls", "RTE", False), ("reg", "STS-B", True)):
        raw = root / f"raw_{name}"
        for split, tsv, n in (("train", "train.tsv", 8), ("valid", "dev.tsv", 4)):
            rows = hb.read_glue_tsv(D / "glue" / folder / tsv, n)
            if not regression:  # 0/1, as CoLA's and MRPC's: their metrics (mcc, f1) read the labels as ints
                rows = [(a, b, str(int(y == "entailment"))) for a, b, y in rows]
            hb.write_pairs(raw, split, rows)
        hf_preprocess.main(["--model-dir", str(bert), "--task", "sentence_prediction", "--max-length", "48",
                            *(["--regression"] if regression else []), "--trainpref", str(raw / "train"),
                            "--validpref", str(raw / "valid"), "--destdir", str(root / f"bin_{name}")])
        out[name] = (root / f"bin_{name}", bert)
    sample(D / "conll2003" / "train.txt", root / "ner_train.txt", 16)
    sample(D / "conll2003" / "valid.txt", root / "ner_valid.txt", 4)
    run_cli("addrop_fairseq.tagging.preprocess", ["--train", root / "ner_train.txt", "--valid", root / "ner_valid.txt",
                                                   "--destdir", root / "bin_ner", "--subword", "sentencepiece",
                                                   "--sentencepiece-vocab-size", "120"])
    out["conll2003"] = (root / "bin_ner", None)
    out["en_ro"] = (_translation_bin(root, D, "wmt16_en_ro", "en", "ro"), None)
    out["tr_en"] = (_translation_bin(root, D, "wmt16_tr_en", "tr", "en"), None)
    out["root"] = root
    return out


def preset_data(data, setup, name):
    if setup == "glue":
        return data["reg" if name == "stsb" else "cls"]
    if setup == "wmt16":
        return data[name.split("_")[0] + "_" + name.split("_")[1]]
    return data[setup]


@pytest.mark.parametrize("setup, name", PRESETS, ids=[f"{s}/{n}" for s, n in PRESETS])
def test_preset_trains_one_update_in_a_fresh_fairseq_hydra_train(data, setup, name):
    """From the repository root (the presets' ``common.user_dir: addrop_fairseq``), except every
    third preset, which runs from elsewhere with the plugin's absolute path, as the headers say."""
    task_data, model_dir = preset_data(data, setup, name)
    elsewhere = PRESETS.index((setup, name)) % 3 == 2
    cwd = data["root"] if elsewhere else REPO
    overrides = [f"task.data={task_data}", f"checkpoint.save_dir={data['root'] / 'ckpt' / setup / name}",
                 "optimization.max_update=1", "checkpoint.no_save=true", "criterion.addrop_schedule=always",
                 "common.log_interval=1", "dataset.num_workers=0"]
    if model_dir is not None:
        overrides += [f"model.hf_model_dir={model_dir}", "dataset.batch_size=4"]
    else:
        overrides += ["dataset.max_tokens=300"]
    if elsewhere:
        overrides.append(f"common.user_dir={PLUGIN_DIR}")
    proc = subprocess.run([*hydra_train_cmd(), "--config-dir", f"{CONFIG_DIR}/{setup}", "--config-name", name,
                           *overrides], cwd=cwd, env=cli_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"),
                          capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    assert "InterpolationKeyError" not in log
    epoch = [line for line in log.splitlines() if "| train | epoch 001 |" in line]
    assert epoch and "| num_updates 1 |" in epoch[-1], log[-4000:]
    assert "| addrop_active 1 |" in epoch[-1], epoch[-1]
    assert float(re.search(r"\| addrop_drop_frac ([0-9.e-]+) \|", epoch[-1]).group(1)) > 0, epoch[-1]
    assert "done training" in log, log[-3000:]
