"""End to end on slices of ../shared/data/conll2003: the script in --smoke size (which runs
fairseq-train with addrop_ce: baseline never, AD-DROP cross), the tag CLI (``addrop-tag``,
:mod:`addrop_fairseq.tagging.cli`) on a held-out slice and its input errors, and fine-tuning
a (tiny, random) pretrained fairseq RoBERTa."""
import re
import subprocess

import pytest
import seqeval.metrics
import torch

from addrop_fairseq.tagging import cli as tag_cli
from addrop_fairseq.tagging.conll import read_conll
from addrop_fairseq.tagging.sample import sample
from conftest import REPO, cli_env, run_cli

# slow: starts subprocesses (fairseq/HF CLIs, fresh interpreters)
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
ONE_THREAD = cli_env(OMP_NUM_THREADS="1")
TINY = ["--encoder-layers", "2", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--encoder-attention-heads", "2"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("ner")
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "conll2003_ner.sh"), "--smoke", "--data",
         str(shared_data / "conll2003"), "--out", str(out)],
        env=cli_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out, proc.stdout


def epoch_lines(log, kind):
    return {int(m.group(1)): line for line in log.splitlines()
            for m in [re.search(rf"\| {kind} \| epoch (\d+) \|", line)] if m}


def test_script_smoke_prints_comparison_table(smoke):
    out, stdout = smoke
    rows = re.findall(r"^(baseline|addrop)\s+1\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+\d+$", stdout, re.M)
    assert [r[0] for r in rows] == ["baseline", "addrop"], stdout
    assert "AD-DROP - baseline F1:" in stdout
    for variant, f1, p, r in rows:  # the table holds what the tag CLI reported for that run
        report = (out / variant / "seed1" / "dev.report.txt").read_text()
        assert f"precision {p} recall {r} f1 {f1}" in report
        assert (out / variant / "seed1" / "checkpoint_best.pt").exists()


def test_addrop_run_is_plain_then_addrop_and_baseline_plain(smoke):
    out, _ = smoke
    addrop = (out / "addrop" / "seed1" / "train.log").read_text()
    assert "'addrop_schedule': cross" in addrop and "'_name': 'addrop_ce'" in addrop
    train = epoch_lines(addrop, "train")
    assert sorted(train) == [1, 2]
    assert "addrop_active 0 |" in train[1] and "addrop_drop_frac 0 |" in train[1]
    assert "addrop_active 1 |" in train[2]
    # dropped / valid over epoch 2, at the script's p = q = 0.3: per row of n valid keys the
    # candidates number n - floor(0.7 n) (>= 0.3 n; all n where attributions tie, e.g. rows
    # of positions the loss ignores), each dropped with probability q, so p*q <= frac <= q
    # up to sampling noise (thousands of valid positions: sd < 0.01)
    frac = float(re.search(r"addrop_drop_frac ([0-9.]+)", train[2]).group(1))
    assert 0.3 * 0.3 - 0.02 <= frac <= 0.3 + 0.02, train[2]
    valid = epoch_lines(addrop, "valid")
    assert all(re.search(r"\| f1 [0-9.]+ \|", valid[e]) for e in (1, 2))
    baseline = epoch_lines((out / "baseline" / "seed1" / "train.log").read_text(), "train")
    assert all("addrop_active 0 |" in baseline[e] for e in (1, 2))
    # the dev F1 the tag CLI reports for the best checkpoint is the best valid F1 of training
    best = max(float(re.search(r"\| f1 ([0-9.]+) \|", valid[e]).group(1)) for e in (1, 2))
    report = (out / "addrop" / "seed1" / "dev.report.txt").read_text()
    assert float(re.search(r" f1 ([0-9.]+) \|", report).group(1)) == pytest.approx(best, abs=0.006)


@pytest.fixture(scope="module")
def held_out(smoke, shared_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("held")
    sample(shared_data / "conll2003" / "valid.txt", d / "held.txt", 40, skip=100)  # not in train/dev slices
    return d / "held.txt"


def test_tag_cli_on_held_out_slice(smoke, held_out, tmp_path):
    out, _ = smoke
    pred_file = tmp_path / "pred.txt"
    proc = run_cli("addrop_fairseq.tagging.cli",
                   ["--checkpoint", out / "addrop" / "seed1" / "checkpoint_best.pt",
                    "--data", out / "data-bin", "--input", held_out, "--output", pred_file], env=ONE_THREAD)
    src = held_out.read_text().splitlines()
    got = pred_file.read_text().splitlines()
    assert len(got) == len(src)
    gold, pred, g, p = [], [], [], []
    for a, b in zip(src, got):
        if not a.strip():
            assert b == ""
            gold.append(g), pred.append(p)
            g, p = [], []
            continue
        assert b.startswith(a + " ") and len(b.split()) == len(a.split()) + 1
        g.append(b.split()[-2]), p.append(b.split()[-1])
    assert len(gold) == 40
    assert all(t == "O" or t[:2] in ("B-", "I-") for s in pred for t in s)
    # the printed report is seqeval's, on what was written
    assert "micro avg" in proc.stdout and "PER" in proc.stdout
    f1 = float(re.search(r"f1 ([0-9.]+) \|", proc.stdout).group(1))
    assert f1 == pytest.approx(100 * seqeval.metrics.f1_score(gold, pred), abs=0.006)


def last_column(path):
    """Per sentence, the last column of a CoNLL file."""
    sents = [[]]
    for line in path.read_text().splitlines():
        if line.strip():
            sents[-1].append(line.split()[-1])
        elif sents[-1]:
            sents.append([])
    return [s for s in sents if s]


def test_tag_cli_iob1_and_tokens_only(smoke, held_out, tmp_path, capsys):
    out, _ = smoke
    ckpt, data = out / "addrop" / "seed1" / "checkpoint_best.pt", out / "data-bin"
    from addrop_fairseq.tagging import schemes
    from addrop_fairseq.tagging.conll import write_sentences

    sents = read_conll(held_out).sentences
    iob1 = tmp_path / "iob1.txt"
    write_sentences(iob1, [[[w, t] for w, t in zip(s.tokens, schemes.iob2_to_iob1(s.tags))] for s in sents])
    r1 = tag_cli.run(["--checkpoint", str(ckpt), "--data", str(data), "--input", str(iob1), "--output", str(tmp_path / "o1")])
    r2 = tag_cli.run(["--checkpoint", str(ckpt), "--data", str(data), "--input", str(held_out), "--output", str(tmp_path / "o2")])
    assert r1 == r2  # same entities, same scores, whichever scheme the gold is in
    p1, p2 = last_column(tmp_path / "o1"), last_column(tmp_path / "o2")
    assert [schemes.iob2_to_iob1(s) for s in p2] == p1  # written in each input's own scheme
    assert all(schemes.iob1_to_iob2(s) == s for s in p2)  # valid IOB2
    words = tmp_path / "words.txt"
    words.write_text("\n\n".join("\n".join(s.tokens) for s in sents) + "\n")
    capsys.readouterr()  # drop the reports printed above
    assert tag_cli.run(["--checkpoint", str(ckpt), "--data", str(data), "--input", str(words), "--output", "-"]) is None
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert [line.split()[0] for line in lines] == [w for s in sents for w in s.tokens]
    assert [line.split()[1] for line in lines] == [t for s in p2 for t in s]


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("EU NNP B-ORG\nrejects VBZ O\nGerman JJ B-NP B-MISC\n", 3, "expected 3 columns (as on line 1), found 4"),
        ("EU B-ORG\nrejects O\n\n\nGerman B-MISC\n", 4, "empty sentence"),
        ("EU B-ORG\nrejects O\n\nGerman B-FOO\n", 4, "unknown gold tag 'B-FOO'"),
        ("EU B-ORG\nrejects NNP\n", 2, "'NNP' is not O, B-TYPE or I-TYPE"),
    ],
)
def test_tag_cli_errors_name_the_line(smoke, tmp_path, capsys, text, line, message):
    out, _ = smoke
    bad = tmp_path / "bad.txt"
    bad.write_text(text)
    with pytest.raises(SystemExit) as e:
        tag_cli.run(["--checkpoint", str(out / "addrop" / "seed1" / "checkpoint_best.pt"),
                     "--data", str(out / "data-bin"), "--input", str(bad), "--output", str(tmp_path / "o")])
    assert f"{bad}:{line}:" in str(e.value.code) and message in str(e.value.code)
    assert not (tmp_path / "o").exists()


def test_roberta_tagger_fine_tunes_a_pretrained_fairseq_roberta(smoke, tmp_path):
    """A tiny random RoBERTa 'pretrained' by fairseq's masked_lm on the same pieces, then
    fine-tuned with --restore-file and AD-DROP on every update."""
    out, _ = smoke
    data = out / "data-bin"
    run_cli("fairseq_cli.train", [data / "tokens", "--task", "masked_lm", "--criterion", "masked_lm",
                                  "--arch", "roberta", *TINY, "--tokens-per-sample", "256", "--optimizer", "adam",
                                  "--lr", "1e-4", "--max-tokens", "2048", "--max-update", "1",
                                  "--save-dir", tmp_path / "pre", "--no-epoch-checkpoints"], env=ONE_THREAD)
    pretrained = tmp_path / "pre" / "checkpoint_last.pt"
    proc = run_cli("fairseq_cli.train", [
        data, "--user-dir", REPO / "addrop_fairseq", "--task", "sequence_tagging", "--prepend-bos",
        "--append-eos", "--add-mask-symbol", "--max-positions", "256", "--arch", "roberta_tagger", *TINY,
        "--restore-file", pretrained, "--reset-optimizer", "--reset-dataloader", "--reset-meters",
        "--reset-lr-scheduler", "--criterion", "addrop_ce", "--addrop-schedule", "always",
        "--optimizer", "adam", "--lr", "1e-4", "--max-tokens", "2048", "--max-update", "2",
        "--save-dir", tmp_path / "ft", "--no-epoch-checkpoints", "--no-last-checkpoints",
        "--best-checkpoint-metric", "f1", "--maximize-best-checkpoint-metric", "--log-format", "simple"],
        env=ONE_THREAD)
    log = proc.stdout + proc.stderr
    assert f"Loaded checkpoint {pretrained}" in log
    assert "addrop_active 1 |" in epoch_lines(log, "train")[1]
    # the fine-tuned tagger reloads for prediction (<s> ... </s> framing, first pieces only)
    scores = tag_cli.run(["--checkpoint", str(tmp_path / "ft" / "checkpoint_best.pt"), "--data", str(data),
                       "--input", str(out / "slices" / "valid.txt"), "--output", str(tmp_path / "pred.txt")])
    assert set(scores) == {"precision", "recall", "f1", "word_acc"}
    assert len((tmp_path / "pred.txt").read_text().splitlines()) == len(
        (out / "slices" / "valid.txt").read_text().splitlines())

    # what --restore-file does, in-process: every encoder weight comes from the checkpoint
    from fairseq import checkpoint_utils

    from fairseq_builders import build

    cfg, task, model, _ = build(data, ["--criterion", "addrop_ce", *TINY, "--prepend-bos", "--append-eos",
                                       "--add-mask-symbol", "--max-positions", "256"],
                                task="sequence_tagging", arch="roberta_tagger")
    state = checkpoint_utils.load_checkpoint_to_cpu(str(pretrained))["model"]
    head = {k: v.clone() for k, v in model.tagging_head.state_dict().items()}
    model.load_state_dict(state, strict=True, model_cfg=cfg.model)
    mine = model.state_dict()
    encoder_keys = [k for k in state if k.startswith("encoder.sentence_encoder.")]
    assert len(encoder_keys) > 10
    for k in encoder_keys:
        assert torch.equal(mine[k], state[k]), k
    for k, v in head.items():  # the new head is kept as initialised
        assert torch.equal(mine["tagging_head." + k], v)
