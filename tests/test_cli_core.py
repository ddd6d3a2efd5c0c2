"""End to end with fairseq's real CLI on real data (slices of ../shared/data)."""
import csv
import re
import socket
import subprocess
import sys

import pytest
import sacrebleu
import sentencepiece as spm

from conftest import REPO, cli_env, run_cli

pytestmark = pytest.mark.slow  # starts subprocesses (fairseq/HF CLIs, fresh interpreters)

PLUGIN = str(REPO / "addrop_fairseq")
TINY = [
    "--arch", "transformer", "--encoder-layers", "2", "--decoder-layers", "2",
    "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
    "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
    "--encoder-attention-heads", "2", "--decoder-attention-heads", "2", "--share-all-embeddings",
]
COMMON = [
    "--optimizer", "adam", "--lr", "0.001", "--max-tokens", "2000", "--seed", "1",
    "--log-format", "simple", "--log-interval", "5", "--no-progress-bar", "--num-workers", "0",
    "--no-epoch-checkpoints",
]
ADDROP = ["--criterion", "addrop_ce", "--label-smoothing", "0.1", "--addrop-p", "0.3", "--addrop-q", "0.3", "--addrop-layers", "all"]


def epoch_lines(log: str):
    """{epoch: the 'train | epoch N | ...' summary as a dict of floats}."""
    out = {}
    for m in re.finditer(r"\| train \| epoch (\d+) \| (.*)", log):
        fields = dict(kv.strip().rsplit(" ", 1) for kv in m.group(2).split(" | ") if " " in kv.strip())
        out[int(m.group(1))] = {k: float(v) for k, v in fields.items() if re.fullmatch(r"[-\d.e]+", v)}
    return out


def sentencepiece(lines, prefix, vocab_size):
    text = prefix.with_suffix(".txt")
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(prefix), vocab_size=vocab_size,
        character_coverage=1.0, minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_file=f"{prefix}.model")


@pytest.fixture(scope="module")
def enro(tmp_path_factory, shared_data):
    """newsdev2016 EN-RO: 300 train / 40 valid / 30 test pairs, sentencepiece, binarized."""
    root = tmp_path_factory.mktemp("enro")
    src = shared_data / "wmt16_en_ro" / "newsdev2016"
    en = src.with_suffix(".en").read_text(encoding="utf-8").splitlines()
    ro = src.with_suffix(".ro").read_text(encoding="utf-8").splitlines()
    sp = sentencepiece(en[:300] + ro[:300], root / "spm", 600)
    splits = {"train": (0, 300), "valid": (300, 340), "test": (340, 370)}
    for split, (a, b) in splits.items():
        for lang, lines in (("en", en), ("ro", ro)):
            (root / f"{split}.{lang}").write_text(
                "".join(" ".join(sp.encode(l, out_type=str)) + "\n" for l in lines[a:b]), encoding="utf-8"
            )
    (root / "test.ref.ro").write_text("\n".join(ro[340:370]) + "\n", encoding="utf-8")
    run_cli("fairseq_cli.preprocess", [
        "--source-lang", "en", "--target-lang", "ro", "--joined-dictionary", "--workers", "1",
        "--trainpref", root / "train", "--validpref", root / "valid", "--testpref", root / "test",
        "--destdir", root / "bin",
    ])
    return root


@pytest.fixture(scope="module")
def enro_trained(enro):
    save = enro / "ckpt"
    proc = run_cli("fairseq_cli.train", [
        enro / "bin", "--user-dir", PLUGIN, "--task", "translation", *TINY, *COMMON, *ADDROP,
        "--addrop-attention", "encoder-self,decoder-self", "--max-epoch", "2", "--save-dir", save,
    ])
    return save, proc.stdout + proc.stderr


def test_cross_tuning_epochs_from_the_log(enro_trained):
    _, log = enro_trained
    epochs = epoch_lines(log)
    assert epochs[1]["addrop_active"] == 0 and epochs[1]["addrop_drop_frac"] == 0
    assert epochs[2]["addrop_active"] == 1
    assert 0.05 < epochs[2]["addrop_drop_frac"] < 0.15  # about p * q = 0.09
    assert epochs[2]["loss"] < epochs[1]["loss"]


def test_checkpoint_generates_without_user_dir_and_scores(enro, enro_trained, tmp_path):
    save, _ = enro_trained
    # without the plugin nothing allowlists fairseq's pickled config for torch's weights-only
    # loading: a trusted checkpoint of our own, so full loading for this one command
    env = cli_env(TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    env.pop("PYTHONPATH")  # no plugin on the path either
    proc = run_cli("fairseq_cli.generate", [
        enro / "bin", "--path", save / "checkpoint_last.pt", "--gen-subset", "test", "--beam", "2",
        "--max-tokens", "4000", "--remove-bpe", "sentencepiece", "--max-len-b", "50",
        # fairseq >= 0.12.3 drops a last batch that is not a multiple of this (default 8)
        "--required-batch-size-multiple", "1", "--scoring", "sacrebleu",
    ], cwd=tmp_path, env=env)
    lines = {kind: {int(m.group(1)): m.group(2) for m in re.finditer(rf"^{kind}-(\d+)\t(?:\S+\t)?(.*)$", proc.stdout, re.M)}
             for kind in ("H", "D", "T")}
    hyps, targets = lines["H"], lines["T"]
    refs = (enro / "test.ref.ro").read_text(encoding="utf-8").splitlines()
    ids = list(range(len(refs)))
    assert sorted(hyps) == sorted(lines["D"]) == sorted(targets) == ids
    # stock fairseq-generate's own score (sacrebleu on its detokenized hypotheses and the
    # references it decoded from the binarized test set) is sacrebleu recomputed on its output
    reported = re.search(r"Generate test with beam=2: BLEU = ([\d.]+) ", proc.stdout)
    assert reported, proc.stdout[-3000:]
    recomputed = sacrebleu.corpus_bleu([lines["D"][i] for i in ids], [[targets[i] for i in ids]])
    assert float(reported.group(1)) == pytest.approx(recomputed.score, abs=0.006)
    # those references are the raw test lines, sentencepiece-decoded back
    assert sum(targets[i] == refs[i] for i in ids) >= len(ids) - 3
    bleu = sacrebleu.corpus_bleu([hyps[i] for i in ids], [refs])
    assert bleu.sys_len > 0


def test_resume_continues_with_a_plain_epoch(enro, enro_trained, tmp_path):
    save, _ = enro_trained
    resumed = tmp_path / "ckpt"
    resumed.mkdir()
    (resumed / "checkpoint_last.pt").write_bytes((save / "checkpoint_last.pt").read_bytes())
    proc = run_cli("fairseq_cli.train", [
        enro / "bin", "--user-dir", PLUGIN, "--task", "translation", *TINY, *COMMON, *ADDROP,
        "--max-epoch", "4", "--save-dir", resumed,
    ])
    log = proc.stdout + proc.stderr
    # fairseq reports the epoch it resumes into
    assert re.search(r"loaded checkpoint .*\(epoch 3 @ \d+ updates\)", log, re.IGNORECASE)
    epochs = epoch_lines(log)
    assert sorted(epochs) == [3, 4]
    assert epochs[3]["addrop_active"] == 0 and epochs[4]["addrop_active"] == 1


def test_user_dir_example_registers_its_own_attribution(enro, tmp_path):
    proc = run_cli("fairseq_cli.train", [
        enro / "bin", "--user-dir", REPO / "user_dir", "--task", "translation", *TINY, *COMMON, *ADDROP,
        "--addrop-attribution", "grad_x_attn", "--addrop-schedule", "always", "--max-epoch", "1",
        "--save-dir", tmp_path, "--no-save",
    ])
    epochs = epoch_lines(proc.stdout + proc.stderr)
    assert epochs[1]["addrop_active"] == 1 and epochs[1]["addrop_drop_frac"] > 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_training(enro, tmp_path):
    port = free_port()
    procs = []
    for rank in (0, 1):
        args = [
            enro / "bin", "--user-dir", PLUGIN, "--task", "translation", *TINY, *COMMON, *ADDROP,
            "--max-epoch", "2", "--save-dir", tmp_path / "ckpt", "--no-save", "--cpu",
            "--distributed-world-size", "2", "--distributed-rank", str(rank),
            "--distributed-backend", "gloo", "--distributed-init-method", f"tcp://127.0.0.1:{port}",
            "--distributed-no-spawn", "--ddp-backend", "legacy_ddp", "--device-id", "0",
        ]
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "fairseq_cli.train", *map(str, args)], cwd=REPO, env=cli_env(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    logs = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        logs.append(out)
        assert p.returncode == 0, out[-4000:]
    epochs = epoch_lines(logs[0])
    assert epochs[1]["addrop_active"] == 0 and epochs[2]["addrop_active"] == 1
    # rank 1 logs warnings only; it exited 0, and rank 0's gradient all-reduces needed it
    # in every update of both epochs
    assert re.search(r"training on 2 devices", logs[0]) and "distributed init (rank 0)" in logs[0]


@pytest.fixture(scope="module")
def rte(tmp_path_factory, shared_data):
    """GLUE RTE: 200 train / 60 dev pairs, sentencepiece, sentence_prediction layout."""
    root = tmp_path_factory.mktemp("rte")
    rows = {}
    for split, n in (("train", 200), ("dev", 60)):
        with open(shared_data / "glue" / "RTE" / f"{split}.tsv", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            rows[split] = [r for _, r in zip(range(n), reader)]
    sp = sentencepiece([r["sentence1"] for r in rows["train"]] + [r["sentence2"] for r in rows["train"]], root / "spm", 800)
    for split, out in (("train", "train"), ("dev", "valid")):
        for col, name in (("sentence1", "input0"), ("sentence2", "input1")):
            (root / f"{out}.{name}").write_text(
                "".join(" ".join(sp.encode(r[col], out_type=str)) + "\n" for r in rows[split]), encoding="utf-8")
        (root / f"{out}.label").write_text("".join(r["label"] + "\n" for r in rows[split]))
    run_cli("fairseq_cli.preprocess", ["--only-source", "--trainpref", root / "train.input0", "--validpref",
                                       root / "valid.input0", "--destdir", root / "bin/input0", "--workers", "1"])
    run_cli("fairseq_cli.preprocess", ["--only-source", "--trainpref", root / "train.input1", "--validpref",
                                       root / "valid.input1", "--destdir", root / "bin/input1", "--workers", "1",
                                       "--srcdict", root / "bin/input0/dict.txt"])
    run_cli("fairseq_cli.preprocess", ["--only-source", "--trainpref", root / "train.label", "--validpref",
                                       root / "valid.label", "--destdir", root / "bin/label", "--workers", "1"])
    return root


def test_roberta_sentence_prediction_on_rte(rte, tmp_path):
    save = tmp_path / "ckpt"
    proc = run_cli("fairseq_cli.train", [
        rte / "bin", "--user-dir", PLUGIN, "--task", "sentence_prediction", "--arch", "roberta",
        "--encoder-layers", "2", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--encoder-attention-heads", "2", "--max-positions", "512", "--num-classes", "2",
        "--required-batch-size-multiple", "1",
        "--init-token", "0", "--separator-token", "2", "--criterion", "addrop_ce",
        "--addrop-p", "0.6", "--addrop-q", "0.7", "--addrop-layers", "0",
        "--optimizer", "adam", "--lr", "1e-4", "--batch-size", "16", "--max-epoch", "2", "--seed", "1",
        "--log-format", "simple", "--log-interval", "5", "--no-progress-bar", "--num-workers", "0",
        "--save-dir", save, "--no-epoch-checkpoints", "--best-checkpoint-metric", "accuracy",
        "--maximize-best-checkpoint-metric",
    ])
    log = proc.stdout + proc.stderr
    epochs = epoch_lines(log)
    assert epochs[1]["addrop_active"] == 0 and epochs[2]["addrop_active"] == 1
    assert 0.2 < epochs[2]["addrop_drop_frac"] < 0.6  # about p * q = 0.42 in layer 0
    assert re.search(r"valid on 'valid' subset \| .*accuracy [\d.]+", log)
    # a stock fairseq checkpoint: RobertaModel loads it without the plugin
    env = cli_env(TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")  # plugin-free: no allowlist, see above
    env.pop("PYTHONPATH")
    code = (
        "import sys, torch\n"
        "from fairseq.models.roberta import RobertaModel\n"
        f"m = RobertaModel.from_pretrained({str(save)!r}, 'checkpoint_last.pt', {str(rte / 'bin')!r},\n"
        f"    bpe='sentencepiece', sentencepiece_model={str(rte / 'spm.model')!r})\n"
        "m.eval()\n"
        "toks = m.encode('A cat sat on the mat.', 'A cat sat.')\n"
        "print(m.predict('sentence_classification_head', toks).shape)\n"
        "assert 'addrop' not in type(m.model.encoder.sentence_encoder.layers[0].self_attn).__name__.lower()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "torch.Size([1, 2])" in out.stdout
