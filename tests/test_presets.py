"""The presets, addrop_fairseq/config/<setup>/<name>.yaml (issue 9).

Every preset composes, as fairseq-hydra-train composes it (fairseq's schema under the config's
name), into a valid fairseq config whose only open values are the documented ``???``; the GLUE
presets are the command experiments/run.py builds for the glue study's AD-DROP runs; the flag
-> override helper the scripts use; and the CoNLL smoke preset trains with the real
``fairseq-hydra-train`` on a slice of ../shared/data, plain in epoch 1 and AD-DROP in epoch 2.
"""
import argparse
import ast
import fnmatch
import functools
import importlib.util
import math
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from addrop_fairseq.config import CONFIG_DIR, PLUGIN_DIR, presets
from addrop_fairseq.config.overrides import FlagError, register_plugin, to_overrides
from conftest import REPO, cli_env, run_cli

PRESETS = [(setup, name) for setup, names in presets().items() for name in names]
GLUE_TRAIN = {"rte": 2490, "mrpc": 3668, "cola": 8551, "stsb": 5749, "sst2": 67349}  # GLUE train sizes
GIVEN = {"task.data": "DATA", "model.hf_model_dir": "MINILM"}  # the values the command line gives


def raw(setup, name) -> dict:
    return OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / setup / f"{name}.yaml"))


def compose_preset(setup, name, overrides=(), hydra=False):
    """The config fairseq-hydra-train composes: fairseq's schema stored under the config's name
    (fairseq_cli.hydra_train.cli_main -> hydra_init(name)), hydra 1.1 semantics."""
    from fairseq.dataclass.initialize import hydra_init
    from hydra import compose, initialize_config_dir

    hydra_init(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hydra's deprecation notices for fairseq's schema matching
        with initialize_config_dir(config_dir=str(Path(CONFIG_DIR) / setup), version_base="1.1"):
            return compose(config_name=name, overrides=list(overrides), return_hydra_config=hydra)


def given(setup, name):
    return [f"{k}={v}" for k, v in GIVEN.items() if k in missing_keys(setup, name)]


@functools.lru_cache(maxsize=None)
def missing_keys(setup, name):
    return frozenset(OmegaConf.missing_keys(compose_preset(setup, name)))


def resolved(cfg) -> dict:
    """The config after fairseq's add_defaults (each choice's dataclass merged: unknown keys or
    wrong types raise here), as plain containers."""
    from fairseq.dataclass.initialize import add_defaults

    register_plugin()
    add_defaults(cfg)
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


# ------------------------------------------------------------------------------ the files


def test_presets_are_listed_and_shipped():
    assert presets() == {
        "conll2003": ["ner", "ner_smoke"],
        "glue": ["cola", "mrpc", "rte", "sst2", "stsb"],
        "wmt16": ["en_ro", "en_ro_demo", "en_ro_smoke", "tr_en", "tr_en_smoke"],
    }
    # setup.py's package_data covers every yaml (so that a pip install ships them)
    call = next(n for n in ast.walk(ast.parse((REPO / "setup.py").read_text())) if isinstance(n, ast.Call)
                and getattr(n.func, "id", "") == "setup")
    package_data = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "package_data"))
    for setup, name in PRESETS:
        path = f"{setup}/{name}.yaml"
        assert any(fnmatch.fnmatch(path, pat) for pat in package_data["addrop_fairseq.config"]), path


@pytest.mark.slow  # composes every preset with hydra
@pytest.mark.parametrize("setup, name", PRESETS, ids=[f"{s}/{n}" for s, n in PRESETS])
def test_preset_composes_into_a_valid_fairseq_config(setup, name):
    # the open values are exactly the documented ones, and the header names them
    expect = {"task.data"} | ({"model.hf_model_dir"} if setup == "glue" else set())
    assert missing_keys(setup, name) == expect
    header = (Path(CONFIG_DIR) / setup / f"{name}.yaml").read_text().split("\nhydra:")[0]
    assert all(k in header for k in expect) and "fairseq-hydra-train --config-dir" in header
    cfg = resolved(compose_preset(setup, name, given(setup, name)))
    assert cfg["common"]["user_dir"] == "addrop_fairseq"
    assert cfg["criterion"]["_name"] == "addrop_ce" and cfg["criterion"]["addrop_schedule"] == "cross"
    assert cfg["criterion"]["addrop_attribution"] == "ga"
    if cfg["model"]["_name"] in ("transformer", "transformer_wmt_en_de"):  # legacy models: their flags
        from addrop_fairseq.config.overrides import group_options

        known = {a.dest for a in group_options("model", cfg["model"]["_name"]).values()}
        assert set(cfg["model"]) - {"_name"} <= known
    # hydra writes its record and log beside the checkpoints and does not change directory
    hydra = compose_preset(setup, name, given(setup, name) + ["checkpoint.save_dir=/tmp/x"], hydra=True).hydra
    assert hydra.run.dir == "/tmp/x" and hydra.job.chdir is False


@pytest.mark.slow  # composes presets with hydra
def test_ner_presets_write_out_the_tagger_sizes():
    """``_name: transformer_tagger_small`` in a hydra config keeps the dataclass's base sizes
    (they are filled in before the architecture function runs), so the presets name
    transformer_tagger with the sizes the script's --size gives."""
    from addrop_fairseq.models.transformer_tagger import transformer_tagger_small

    small = argparse.Namespace()
    transformer_tagger_small(small)
    model = resolved(compose_preset("conll2003", "ner", given("conll2003", "ner")))["model"]
    assert model["_name"] == "transformer_tagger"
    assert {k: model[k] for k in vars(small)} == vars(small)
    tiny = resolved(compose_preset("conll2003", "ner_smoke", given("conll2003", "ner_smoke")))["model"]
    assert (tiny["encoder_layers"], tiny["encoder_embed_dim"], tiny["encoder_ffn_embed_dim"],
            tiny["encoder_attention_heads"]) == (2, 64, 128, 2)


def experiments_module(name):
    sys.path.insert(0, str(REPO / "experiments"))
    try:
        spec = importlib.util.spec_from_file_location(f"experiments_{name}", REPO / "experiments" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(REPO / "experiments"))


@pytest.mark.slow  # composes presets with hydra
@pytest.mark.parametrize("task", sorted(GLUE_TRAIN))
def test_glue_preset_is_the_studies_addrop_command(task):
    """experiments/commands.py's fairseq-train command for the glue study's AD-DROP run on the whole
    training set, applied as overrides on top of the preset, changes nothing (but the run's
    bookkeeping: --no-save, --log-format json, --user-dir's path)."""
    studies, commands = experiments_module("studies"), experiments_module("commands")
    flags, _ = studies.glue_methods(task)["addrop"]
    study_run = studies.Run("glue", task, "addrop", 1, flags)
    cmd = commands.command(study_run, Path("DATA"), {"train": GLUE_TRAIN[task]}, "MINILM", "cuda")
    assert cmd[:2] == ["fairseq-train", "DATA"]
    items, skip = [], {"--user-dir": 1, "--no-save": 0, "--log-format": 1}
    args = cmd[2:]
    i = 0
    while i < len(args):
        if args[i] in skip:
            i += 1 + skip[args[i]]
            continue
        items.append(args[i])
        i += 1
    preset = resolved(compose_preset("glue", task, given("glue", task)))
    overrides = to_overrides(raw("glue", task), items)
    study = resolved(compose_preset("glue", task, given("glue", task) + overrides))
    # --max-positions also lands in the HF model's config field that the task sets at build time
    assert study["model"].pop("max_positions") == 512 and preset["model"].pop("max_positions") is None
    assert study == preset
    total = math.ceil(GLUE_TRAIN[task] / 16) * 4
    assert preset["lr_scheduler"]["total_num_update"] == total
    assert preset["lr_scheduler"]["warmup_updates"] == int(0.06 * total)
    assert (preset["criterion"]["addrop_p"], preset["criterion"]["addrop_q"]) == studies.PAPER_PQ[task]
    assert preset["criterion"]["addrop_layers"] == studies.PAPER_LAYERS[task]


# ------------------------------------------------------------------------------ flags -> overrides


def test_flags_become_overrides_of_the_groups_that_own_them():
    preset = raw("wmt16", "en_ro_smoke")
    got = to_overrides(preset, ["--update-freq", "4", "--fp16", "--encoder-layers", "2", "--addrop-layers", "0,1",
                                "--lr", "0.002", "--adam-betas", "(0.9, 0.99)", "--max-source-positions", "256",
                                "task.eval_bleu=false", "--eval-bleu-args", '{"beam": 2}'])
    assert got == ["optimization.update_freq=[4]", "common.fp16=true", "model.encoder_layers=2",
                   "criterion.addrop_layers='0,1'", "optimization.lr=[0.002]", "optimizer.adam_betas='(0.9, 0.99)'",
                   "++model.max_source_positions=256", "++task.max_source_positions=256", "task.eval_bleu=false",
                   "task.eval_bleu_args='{\"beam\": 2}'"]
    cfg = resolved(compose_preset("wmt16", "en_ro_smoke", ["task.data=D"] + got))
    assert cfg["criterion"]["addrop_layers"] == "0,1" and cfg["optimizer"]["adam_betas"] == "(0.9, 0.99)"
    assert cfg["optimization"]["update_freq"] == [4] and cfg["common"]["fp16"] is True


def test_choosing_another_criterion_drops_the_keys_it_does_not_know():
    """The WMT script's --baseline-criterion stock: fairseq's own label-smoothed loss."""
    got = to_overrides(raw("wmt16", "en_ro"), ["--criterion", "label_smoothed_cross_entropy", "--report-accuracy"])
    assert got[-2:] == ["criterion._name=label_smoothed_cross_entropy", "++criterion.report_accuracy=true"]
    assert sorted(got[:-2]) == sorted(f"~criterion.{k}" for k in raw("wmt16", "en_ro")["criterion"]
                                      if k.startswith("addrop_"))
    crit = resolved(compose_preset("wmt16", "en_ro", ["task.data=D"] + got))["criterion"]
    assert crit["_name"] == "label_smoothed_cross_entropy" and crit["label_smoothing"] == 0.1
    assert not [k for k in crit if k.startswith("addrop_")]


@pytest.mark.parametrize(
    "items, message",
    [
        (["--no-such-flag", "1"], "--no-such-flag: not a flag of this preset's groups"),
        (["--max-epoch"], "--max-epoch needs a value"),
        (["--addrop-schedule", "sometimes"], "'sometimes' is not one of ['cross', 'always', 'never']"),
        (["max_epoch"], "neither a hydra override"),
    ],
)
def test_bad_flags_are_refused(items, message):
    with pytest.raises(FlagError, match=re.escape(message)):
        to_overrides(raw("conll2003", "ner"), items)


@pytest.mark.slow
def test_overrides_and_config_cli():
    proc = run_cli("addrop_fairseq.config.overrides", [Path(CONFIG_DIR) / "glue" / "rte.yaml", "--max-epoch", "2",
                                                       "model.hf_config_overrides='{}'"])
    assert proc.stdout.split() == ["optimization.max_epoch=2", "++model.hf_config_overrides='{}'"]
    proc = run_cli("addrop_fairseq.config.overrides", [Path(CONFIG_DIR) / "glue" / "rte.yaml", "--bogus"], check=False)
    assert proc.returncode == 2 and "--bogus" in proc.stderr
    assert run_cli("addrop_fairseq.config", ["glue"]).stdout.strip() == str(Path(CONFIG_DIR) / "glue")
    assert run_cli("addrop_fairseq.config", ["--user-dir"]).stdout.strip() == PLUGIN_DIR


# ------------------------------------------------------------------------------ fairseq-hydra-train


def hydra_train_cmd():
    exe = Path(sys.executable).parent / "fairseq-hydra-train"
    if exe.exists():
        return [str(exe)]
    return [shutil.which("fairseq-hydra-train")] if shutil.which("fairseq-hydra-train") else \
        [sys.executable, "-m", "fairseq_cli.hydra_train"]


@pytest.fixture(scope="module")
def ner_bin(tmp_path_factory, shared_data):
    from addrop_fairseq.tagging.sample import sample

    root = tmp_path_factory.mktemp("ner_preset")
    sample(shared_data / "conll2003" / "train.txt", root / "train.txt", 120)
    sample(shared_data / "conll2003" / "valid.txt", root / "valid.txt", 40)
    run_cli("addrop_fairseq.tagging.preprocess", ["--train", root / "train.txt", "--valid", root / "valid.txt",
                                                   "--destdir", root / "bin", "--subword", "sentencepiece",
                                                   "--sentencepiece-vocab-size", "500"])
    return root


@pytest.mark.slow
def test_ner_smoke_preset_trains_with_fairseq_hydra_train(ner_bin):
    """The preset as a user runs it, from the repository root: its common.user_dir
    (addrop_fairseq) is the plugin there; epoch 1 plain, epoch 2 AD-DROP."""
    save = ner_bin / "ckpt"
    before = {p.name for p in REPO.iterdir()}
    proc = subprocess.run(
        [*hydra_train_cmd(), "--config-dir", str(Path(CONFIG_DIR) / "conll2003"), "--config-name", "ner_smoke",
         f"task.data={ner_bin / 'bin'}", f"checkpoint.save_dir={save}", "dataset.max_tokens=400"],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=900,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    epochs = {int(m.group(1)): line for line in log.splitlines()
              for m in [re.search(r"\| INFO \| train \| epoch (\d+) \|", line)] if m}
    assert sorted(epochs) == [1, 2], log[-3000:]
    assert "| addrop_active 0 |" in epochs[1] and "| addrop_drop_frac 0 |" in epochs[1]
    assert "| addrop_active 1 |" in epochs[2]
    assert float(re.search(r"addrop_drop_frac ([0-9.]+)", epochs[2]).group(1)) > 0
    assert re.search(r"\| valid \| epoch 002 \|.*\| f1 [0-9.]+ \|", log)
    # what it wrote: the checkpoints, hydra's record of the composed config and the log, all
    # in the save dir; nothing in the directory it ran from
    assert (save / "checkpoint_best.pt").exists() and (save / "checkpoint_last.pt").exists()
    config = OmegaConf.load(save / ".hydra" / "config.yaml")
    assert config.criterion._name == "addrop_ce" and config.model.encoder_embed_dim == 64
    assert config.dataset.max_tokens == 400 and config.common.user_dir == "addrop_fairseq"
    assert "| train | epoch 002 |" in (save / "hydra_train.log").read_text()
    assert not {".hydra", "outputs", "hydra_train.log"} & ({p.name for p in REPO.iterdir()} - before)
