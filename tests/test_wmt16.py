"""scripts/wmt16_en_ro.sh and scripts/wmt16_tr_en.sh end to end (issue 4).

Real data: slices of newsdev2016 from ../shared/data (train / valid / test cut from it), the
scripts in --local --smoke mode, both runs (baseline = addrop_ce --addrop-schedule never,
AD-DROP = cross-tuning). The printed BLEU must be sacrebleu's score recomputed here from the
written hypotheses and the references of the slice.
"""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import sacrebleu

from addrop_fairseq.mt import wmt16

REPO = Path(__file__).resolve().parents[1]
CEDILLA = str.maketrans({"ș": "ş", "ț": "ţ", "Ș": "Ş", "Ț": "Ţ"})

# lines of newsdev2016 (0-based, end exclusive) used as train / valid / test
# (37 test lines: not a multiple of 8, see --required-batch-size-multiple in wmt16_common.sh and
# dataset.required_batch_size_multiple in the presets)
SLICES = {"train": (0, 300), "valid": (300, 330), "test": (330, 367)}


def run_script(name, *args, timeout=900):
    env = dict(os.environ)
    env.pop("PYTHON", None)
    return subprocess.run(
        ["bash", str(REPO / "scripts" / name), *map(str, args)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


def make_slices(src_dir, out_dir, src, tgt, cedilla_train=False):
    """Cut train/valid/test from newsdev2016. With cedilla_train, Romanian training lines
    (and one test reference) are rewritten with the legacy cedilla letters."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for lang in (src, tgt):
        lines = wmt16.read_lines(src_dir / f"newsdev2016.{lang}")
        for split, (a, b) in SLICES.items():
            part = lines[a:b]
            if cedilla_train and lang == "ro" and split == "train":
                part = [line.translate(CEDILLA) if i % 2 else line for i, line in enumerate(part)]
            if cedilla_train and lang == "ro" and split == "test":
                i = next(i for i, line in enumerate(part) if line.translate(CEDILLA) != line)
                part[i] = part[i].translate(CEDILLA)
            wmt16.write_lines(out_dir / f"{split}.{lang}", part)
    return out_dir


def table_rows(stdout):
    """{run: (bleu, chrf, ratio)} from the printed Markdown table."""
    rows = {}
    for m in re.finditer(r"^\| (baseline|addrop) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", stdout, re.M):
        rows[m.group(1)] = tuple(float(x) for x in m.groups()[1:])
    return rows


def check_scores(stdout, out, data, tgt):
    refs = wmt16.read_lines(data / f"test.{tgt}")
    rows = table_rows(stdout)
    assert set(rows) == {"baseline", "addrop"}, stdout[-3000:]
    saved = json.loads((out / "eval" / "results.json").read_text(encoding="utf-8"))
    md = (out / "eval" / "results.md").read_text(encoding="utf-8")
    for run, (bleu, chrf, ratio) in rows.items():
        hyp_path = out / "eval" / f"{run}.hyp.{tgt}"
        hyps = wmt16.read_lines(hyp_path)
        assert len(hyps) == len(refs)
        expect = sacrebleu.corpus_bleu(hyps, [refs])
        assert bleu == round(expect.score, 2)
        assert chrf == round(sacrebleu.corpus_chrf(hyps, [refs]).score, 2)
        assert ratio == round(expect.sys_len / expect.ref_len, 3)
        assert saved["runs"][run]["bleu"] == bleu
        assert saved["runs"][run]["hyp"] == str(hyp_path.resolve())
        assert f"| {run} | {bleu:.2f} |" in md
    assert saved["signatures"]["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert "BLEU signature: `nrefs:1" in stdout


def check_logs(stdout, out):
    # the baseline never drops, the AD-DROP run drops in epoch 2 (cross-tuning: 1 plain, 2 AD-DROP)
    base = (out / "logs" / "train.baseline.log").read_text()
    addrop = (out / "logs" / "train.addrop.log").read_text()
    assert re.search(r"train \| epoch 002 \|.*addrop_active 0 ", base), base[-2000:]
    assert re.search(r"train \| epoch 001 \|.*addrop_active 0 ", addrop), addrop[-2000:]
    assert re.search(r"train \| epoch 002 \|.*addrop_active 1 ", addrop), addrop[-2000:]
    # training is fairseq-hydra-train on the preset with the plugin as common.user_dir;
    # evaluation is stock fairseq-generate, given --user-dir only for torch's weights-only
    # loading to accept fairseq's checkpoint (addrop_fairseq/safe_loading.py)
    cmds = [l for l in stdout.splitlines() if l.startswith("  $ ")]
    train_cmds = [c for c in cmds if "fairseq-hydra-train" in c or "fairseq_cli.hydra_train" in c]
    gen_cmds = [c for c in cmds if "fairseq-generate" in c or "fairseq_cli.generate" in c]
    assert len(train_cmds) == 2
    assert all("--config-name" in c and "_smoke" in c and "common.user_dir=" in c for c in train_cmds)
    # each save dir keeps the composed config (hydra's .hydra/config.yaml)
    for run, schedule in (("baseline", "never"), ("addrop", "cross")):
        config = (out / "checkpoints" / run / ".hydra" / "config.yaml").read_text()
        assert "_name: addrop_ce" in config and f"addrop_schedule: {schedule}" in config
    assert len(gen_cmds) == 2 and all("--user-dir" in c for c in gen_cmds)


# ------------------------------------------------------------------------------- EN-RO


@pytest.fixture(scope="module")
def en_ro(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("wmt16_en_ro")
    data = make_slices(shared_data / "wmt16_en_ro", root / "data", "en", "ro", cedilla_train=True)
    out = root / "out"
    proc = run_script("wmt16_en_ro.sh", "--local", data, "--out", out, "--smoke", "--workers", "1")
    return data, out, proc


@pytest.mark.slow
def test_en_ro_end_to_end_bleu_is_sacrebleu(en_ro):
    data, out, proc = en_ro
    stdout = ok(proc)
    check_scores(stdout, out, data, "ro")
    check_logs(stdout, out)


@pytest.mark.slow
def test_en_ro_romanian_normalised_in_training_only(en_ro):
    data, out, proc = en_ro
    ok(proc)
    train = (out / "data" / "norm" / "train.ro").read_text(encoding="utf-8")
    assert not set("şţŞŢ") & set(train)
    assert train.splitlines() == [wmt16.normalise_line(l, "ro") for l in wmt16.read_lines(data / "train.ro")]
    # the reference the scores use is byte-for-byte the given file, cedilla line included
    ref = out / "data" / "raw" / "test.ro"
    assert ref.read_bytes() == (data / "test.ro").read_bytes()
    assert set("şţŞŢ") & set(ref.read_text(encoding="utf-8"))
    assert json.loads((out / "eval" / "results.json").read_text())["ref"] == str(ref.resolve())


@pytest.mark.slow
def test_en_ro_rerun_skips_every_step(en_ro):
    data, out, first = en_ro
    ok(first)
    stdout = ok(run_script("wmt16_en_ro.sh", "--local", data, "--out", out, "--smoke"))
    for step in ["data", "normalise", "spm", "encode", "binarise", "train baseline",
                 "train addrop", "generate baseline", "generate addrop", "score"]:
        assert re.search(rf"^\[wmt16 en-ro\] skip {step}: .* exists$", stdout, re.M), (step, stdout)
    assert "] step " not in stdout
    assert table_rows(stdout) == table_rows(first.stdout)


@pytest.mark.slow
def test_en_ro_resumes_a_half_finished_run(en_ro, tmp_path):
    """Deleting a step's output redoes that step (and only it): here, scoring."""
    data, out, first = en_ro
    ok(first)
    (out / "eval" / "results.json").unlink()
    stdout = ok(run_script("wmt16_en_ro.sh", "--local", data, "--out", out, "--smoke"))
    assert "skip generate addrop" in stdout and "step 8/8" in stdout
    assert table_rows(stdout) == table_rows(first.stdout)


# ------------------------------------------------------------------------------- TR-EN


@pytest.mark.slow
def test_tr_en_end_to_end_bleu_is_sacrebleu(tmp_path, shared_data):
    data = make_slices(shared_data / "wmt16_tr_en", tmp_path / "data", "tr", "en")
    out = tmp_path / "out"
    # --no-eval-bleu: the EN-RO test covers in-training BLEU; this keeps the suite short
    stdout = ok(run_script("wmt16_tr_en.sh", "--local", data, "--out", out, "--smoke",
                           "--workers", "1", "--no-eval-bleu"))
    check_scores(stdout, out, data, "en")
    check_logs(stdout, out)
    # Turkish s-cedilla is a letter of its own: no Romanian mapping on Turkish text
    assert (out / "data" / "norm" / "train.tr").read_text(encoding="utf-8").count("ş") > 0


# ------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing", r"missing file: .*/valid\.ro"),
        ("mismatch", r"line-count mismatch: .*/train\.en has 300 lines, .*/train\.ro has 299"),
        ("empty", r"/test\.en: 1 empty line\(s\), at line 7"),
        ("nodir", r"data directory not found"),
    ],
)
@pytest.mark.slow
def test_bad_local_data_fails_fast(tmp_path, shared_data, damage, message):
    data = make_slices(shared_data / "wmt16_en_ro", tmp_path / "data", "en", "ro")
    if damage == "missing":
        (data / "valid.ro").unlink()
    elif damage == "mismatch":
        wmt16.write_lines(data / "train.ro", wmt16.read_lines(data / "train.ro")[:-1])
    elif damage == "empty":
        lines = wmt16.read_lines(data / "test.en")
        lines[6] = "   "
        wmt16.write_lines(data / "test.en", lines)
    elif damage == "nodir":
        data = tmp_path / "nowhere"
    proc = run_script("wmt16_en_ro.sh", "--local", data, "--out", tmp_path / "out", "--smoke")
    assert proc.returncode == 2
    assert re.search(message, proc.stderr), proc.stderr
    assert "ERROR" in proc.stderr
    assert not (tmp_path / "out" / "data-bin").exists()


@pytest.mark.slow
def test_bad_option_fails_fast(tmp_path):
    proc = run_script("wmt16_tr_en.sh", "--out", tmp_path / "o", "--runs", "baseline,dropout")
    assert proc.returncode == 2 and "--runs: baseline and/or addrop" in proc.stderr
    proc = run_script("wmt16_tr_en.sh", "--out")
    assert proc.returncode == 2 and "--out needs a value" in proc.stderr
    # extra fairseq flags are turned into hydra overrides before any step; unknown ones stop it
    proc = run_script("wmt16_tr_en.sh", "--out", tmp_path / "o", "--smoke", "--", "--update-freq", "2", "--no-such-flag", "1")
    assert proc.returncode == 2 and "--no-such-flag: not a flag of this preset's groups" in proc.stderr
    assert "step 1/8" not in proc.stdout


# ------------------------------------------------------------------------------- helpers


def test_romanian_normalisation_maps_cedilla_only_for_romanian():
    assert wmt16.normalise_line("Şi ţara îşi  Ţine", "ro") == "Și țara își Ține"
    assert wmt16.normalise_line("Işık ve şeker", "tr") == "Işık ve şeker"
    # decomposed s + combining cedilla is composed first, then mapped
    assert wmt16.normalise_line("s\u0327i", "ro") == "și"


def test_read_lines_splits_on_newline_only(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes("a\u2028b\r\nc\rd\n\u0085e".encode("utf-8"))
    assert wmt16.read_lines(p) == ["a\u2028b", "c\rd", "\u0085e"]


def test_extract_hyps_orders_by_id_and_requires_all(tmp_path):
    gen = tmp_path / "gen.txt"
    gen.write_text("S-1\tx\nD-1\t-0.5\tsecond\nH-0\t-0.1\tfirst\nD-0\t-0.1\tfirst\nD-2\t-1.0\t\n")
    assert wmt16.extract_hyps(gen, 3) == ["first", "second", ""]
    with pytest.raises(wmt16.DataError, match="expected hypotheses 0..3"):
        wmt16.extract_hyps(gen, 4)


def test_download_train_unpacks_and_concatenates(tmp_path, shared_data, monkeypatch):
    """The download step, offline: the same archive layouts as the real sources (a WMT tgz
    with a folder, an OPUS moses zip), served from file:// URLs."""
    import tarfile
    import zipfile

    en = wmt16.read_lines(shared_data / "wmt16_en_ro" / "newsdev2016.en")[:30]
    ro = wmt16.read_lines(shared_data / "wmt16_en_ro" / "newsdev2016.ro")[:30]
    src = tmp_path / "src"
    wmt16.write_lines(src / "training-parallel-ep-v8" / "europarl-v8.ro-en.en", en[:20] + [""])
    wmt16.write_lines(src / "training-parallel-ep-v8" / "europarl-v8.ro-en.ro", ro[:20] + ["x"])
    wmt16.write_lines(src / "training-parallel-ep-v8" / "europarl-v8.fi-en.en", ["other"])
    with tarfile.open(tmp_path / "ep.tgz", "w:gz") as t:
        t.add(src / "training-parallel-ep-v8", arcname="training-parallel-ep-v8")
    with zipfile.ZipFile(tmp_path / "st.zip", "w") as z:
        z.writestr("SETIMES.en-ro.en", "\n".join(en[20:]) + "\n")
        z.writestr("SETIMES.en-ro.ro", "\n".join(ro[20:]) + "\n")
        z.writestr("README", "x")
    real = wmt16.TRAIN_CORPORA[("en", "ro")]
    monkeypatch.setitem(wmt16.TRAIN_CORPORA, ("en", "ro"), [
        (real[0][0], (tmp_path / "ep.tgz").as_uri(), real[0][2], real[0][3]),
        (real[1][0], (tmp_path / "st.zip").as_uri(), real[1][2], real[1][3]),
    ])
    out = tmp_path / "raw"
    assert wmt16.download_train(out, "en", "ro", tmp_path / "cache") == 30  # the empty pair dropped
    assert wmt16.read_lines(out / "train.en") == en
    assert wmt16.read_lines(out / "train.ro") == ro
    # a second call reuses the cached archives
    assert wmt16.download_train(out, "en", "ro", tmp_path / "cache") == 30
    assert wmt16.corpora_for("tr", "en")[0][1].endswith("/OPUS-SETIMES/v2/moses/en-tr.txt.zip")
