"""Raw data -> fairseq binarized data whose dictionary maps one-to-one onto a HF tokenizer's ids.

The ``addrop-hf-preprocess`` command (also ``python -m addrop_fairseq.hf.preprocess``, or the
old ``python -m addrop_fairseq.hf_preprocess``):

    addrop-hf-preprocess --model-dir DIR --task translation --src en --tgt ro \\
        --trainpref raw/train --validpref raw/valid --testpref raw/test --destdir data-bin/enro
    addrop-hf-preprocess --model-dir DIR --task sentence_prediction \\
        --trainpref raw/train --validpref raw/dev --destdir data-bin/rte [--regression]
    addrop-hf-preprocess --model-dir DIR --task sequence_tagging \\
        --trainpref conll/train.txt --validpref conll/valid.txt --destdir data-bin/conll

Inputs per task:

* translation: ``PREF.SRC`` / ``PREF.TGT``, one sentence a line. Sources are encoded as the
  tokenizer encodes inputs, targets as it encodes ``text_target`` (Marian: the target
  sentencepiece model), both with the tokenizer's special tokens and ending in ``</s>``.
  Writes what ``fairseq-preprocess`` writes: ``SPLIT.SRC-TGT.{SRC,TGT}.{bin,idx}``,
  ``dict.SRC.txt``, ``dict.TGT.txt``.
* sentence_prediction: ``PREF.input0`` [, ``PREF.input1``] and ``PREF.label``. Each
  (pair of) sentence(s) is encoded exactly as ``tokenizer(s1, s2)`` does ([CLS] a [SEP] b
  [SEP] for BERT, <s> a </s></s> b </s> for RoBERTa) into ``input0/``; labels go to
  ``label/`` (a label dictionary, or ``SPLIT.label`` floats with ``--regression``). Train
  with ``--task sentence_prediction`` *without* ``--init-token``/``--separator-token``.
* sequence_tagging: CoNLL files (``PREF`` is the file itself; tag in the last column,
  IOB1 or IOB2). This is the tagging pipeline, ``addrop-tagging-preprocess --subword hf
  --hf-model-dir DIR`` (:mod:`addrop_fairseq.tagging.preprocess`): words are split by the
  tokenizer (``is_split_into_words``), the word's tag on its first piece, into the
  ``tokens/``, ``tags/``, ``tagging.json`` layout that ``--task sequence_tagging`` and
  ``addrop-tag`` read. Train with ``--task sequence_tagging --prepend-bos --append-eos``
  (the tokenizer's [CLS]/<s> and [SEP]/</s>).

The dictionary is fairseq's four specials (standing for the tokenizer's bos/cls, pad,
eos/sep, unk) followed by every other tokenizer id in order (see
:mod:`addrop_fairseq.hf.vocab`); the models refuse data made with another tokenizer.
"""
import argparse
import json
import logging
import os
from collections import Counter
from typing import Dict, List, Sequence

import torch

from ..command_line import run_command

logger = logging.getLogger("addrop_fairseq.hf.preprocess")
TASKS = ("translation", "sentence_prediction", "sequence_tagging")
SPLITS = (("train", "trainpref"), ("valid", "validpref"), ("test", "testpref"))


def get_parser():
    p = argparse.ArgumentParser(prog="addrop-hf-preprocess", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True, help="local HF model directory with its tokenizer")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--trainpref", help="training prefix (sequence_tagging: the CoNLL file)")
    p.add_argument("--validpref", help="validation prefix (comma-separated for several)")
    p.add_argument("--testpref", help="test prefix (comma-separated for several)")
    p.add_argument("--destdir", required=True, help="output directory")
    p.add_argument("--src", "--source-lang", dest="src", help="source language suffix (translation)")
    p.add_argument("--tgt", "--target-lang", dest="tgt", help="target language suffix (translation)")
    p.add_argument("--regression", action="store_true", help="sentence_prediction labels are floats")
    p.add_argument("--max-length", type=int, default=None,
                   help="translation / sentence_prediction: truncate with the tokenizer to this many "
                        "tokens, specials included (default: keep all; fairseq skips or refuses longer ones)")
    p.add_argument("--tag-scheme", default="auto", choices=["auto", "iob1", "iob2"],
                   help="sequence_tagging: scheme of the input tags (stored as IOB2)")
    return p


def _prefixes(args):
    for split, attr in SPLITS:
        value = getattr(args, attr)
        if not value:
            continue
        for k, pref in enumerate(value.split(",")):
            yield (split if k == 0 else f"{split}{k}"), pref


def _read(path: str) -> List[str]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: input file not found")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def binarize(path_prefix: str, items: Sequence[Sequence[int]], vocab_size: int) -> None:
    from fairseq.data import indexed_dataset

    builder = indexed_dataset.make_builder(path_prefix + ".bin", impl="mmap", vocab_size=vocab_size)
    for item in items:
        builder.add_item(torch.tensor(list(item), dtype=torch.int32))
    builder.finalize(path_prefix + ".idx")


class Encoder:
    """HF ids -> fairseq indices of the dictionary of :mod:`.vocab`."""

    def __init__(self, tokenizer):
        from . import vocab

        self.tokenizer = tokenizer
        self.dictionary = vocab.build_dictionary(tokenizer)
        roles = vocab.role_ids(tokenizer)
        self.h2f: Dict[int, int] = {}
        for idx, sym in enumerate(vocab.FAIRSEQ_SPECIALS):
            if roles[sym] is not None:
                self.h2f.setdefault(roles[sym], idx)
        for k, (hf_id, _) in enumerate(vocab.dictionary_symbols(tokenizer)):
            self.h2f[hf_id] = len(vocab.FAIRSEQ_SPECIALS) + k
        self.eos = self.dictionary.eos()
        self.unk = self.dictionary.unk()
        self.n_unk = 0
        self.n_tokens = 0

    def fairseq_ids(self, hf_ids: Sequence[int], end_with_eos: bool = False) -> List[int]:
        out = [self.h2f.get(i, self.unk) for i in hf_ids]
        if end_with_eos and (not out or out[-1] != self.eos):
            out.append(self.eos)
        self.n_tokens += len(out)
        self.n_unk += sum(1 for i in out if i == self.unk)
        return out

    def write_dict(self, path: str) -> None:
        from . import vocab

        vocab.write_dictionary(self.tokenizer, path)


def _truncation(args) -> Dict:
    """The tokenizer's own truncation (longest first for pairs, specials kept), if asked for."""
    return {"truncation": True, "max_length": args.max_length} if args.max_length else {}


# ------------------------------------------------------------------------------ tasks


def translation(args, tokenizer, enc: Encoder) -> Dict:
    if not (args.src and args.tgt):
        raise SystemExit("--task translation needs --src and --tgt")
    os.makedirs(args.destdir, exist_ok=True)
    for lang in (args.src, args.tgt):
        enc.write_dict(os.path.join(args.destdir, f"dict.{lang}.txt"))
    stats = {}
    for split, pref in _prefixes(args):
        src = _read(f"{pref}.{args.src}")
        tgt = _read(f"{pref}.{args.tgt}")
        if len(src) != len(tgt):
            raise ValueError(f"{pref}: {len(src)} {args.src} lines but {len(tgt)} {args.tgt} lines")
        trunc = _truncation(args)
        src_ids = tokenizer(src, add_special_tokens=True, **trunc)["input_ids"] if src else []
        tgt_ids = tokenizer(text_target=tgt, add_special_tokens=True, **trunc)["input_ids"] if tgt else []
        base = os.path.join(args.destdir, f"{split}.{args.src}-{args.tgt}")
        for lang, rows in ((args.src, src_ids), (args.tgt, tgt_ids)):
            items = [enc.fairseq_ids(r, end_with_eos=True) for r in rows]
            binarize(f"{base}.{lang}", items, len(enc.dictionary))
        stats[split] = {"sentences": len(src)}
        logger.info("%s: %d sentence pairs from %s.{%s,%s}", split, len(src), pref, args.src, args.tgt)
    return stats


def sentence_prediction(args, tokenizer, enc: Encoder) -> Dict:
    from fairseq.data import Dictionary

    for sub in ("input0", "label"):
        os.makedirs(os.path.join(args.destdir, sub), exist_ok=True)
    enc.write_dict(os.path.join(args.destdir, "input0", "dict.txt"))
    data = {}
    for split, pref in _prefixes(args):
        s1 = _read(f"{pref}.input0")
        s2 = _read(f"{pref}.input1") if os.path.exists(f"{pref}.input1") else None
        labels = _read(f"{pref}.label")
        if len(labels) != len(s1) or (s2 is not None and len(s2) != len(s1)):
            raise ValueError(f"{pref}: input0/input1/label line counts differ")
        pairs = (s1, s2) if s2 is not None else (s1,)
        encoded = tokenizer(*pairs, add_special_tokens=True, **_truncation(args))["input_ids"]
        data[split] = ([enc.fairseq_ids(r) for r in encoded], labels)
    stats = {}
    if args.regression:
        for split, (items, labels) in data.items():
            for i, v in enumerate(labels):
                try:
                    float(v)
                except ValueError:
                    raise ValueError(f"{split} label line {i + 1}: {v!r} is not a number (--regression)") from None
            with open(os.path.join(args.destdir, "label", f"{split}.label"), "w") as f:
                f.write("".join(v.strip() + "\n" for v in labels))
    else:
        label_dict = Dictionary()
        counts = Counter(v.strip() for _, labels in data.values() for v in labels)
        for name, n in sorted(counts.items()):
            label_dict.add_symbol(name, n)
        label_dict.finalize(threshold=-1, nwords=-1, padding_factor=1)
        label_dict.save(os.path.join(args.destdir, "label", "dict.txt"))
        for split, (_, labels) in data.items():
            items = [[label_dict.index(v.strip()), label_dict.eos()] for v in labels]
            binarize(os.path.join(args.destdir, "label", split), items, len(label_dict))
        stats["num_classes"] = len(label_dict) - label_dict.nspecial
        stats["labels"] = label_dict.symbols[label_dict.nspecial:]
    for split, (items, _) in data.items():
        binarize(os.path.join(args.destdir, "input0", split), items, len(enc.dictionary))
        stats[split] = {"sentences": len(items)}
        logger.info("%s: %d examples", split, len(items))
    return stats


def sequence_tagging(args, tokenizer, enc: Encoder) -> Dict:
    """The tagging pipeline itself (:mod:`addrop_fairseq.tagging.preprocess`) with ``--subword hf``."""
    from fairseq.data import Dictionary

    from ..tagging import preprocess as tagging_preprocess

    argv = ["--destdir", args.destdir, "--tag-scheme", args.tag_scheme, "--subword", "hf",
            "--hf-model-dir", args.model_dir]
    for option, value in (("--train", args.trainpref), ("--valid", args.validpref), ("--test", args.testpref)):
        if value:
            argv += [option, value]
    meta = tagging_preprocess.preprocess(tagging_preprocess.get_parser().parse_args(argv))
    for stats in meta["splits"].values():
        enc.n_tokens += stats.get("pieces", 0)
        enc.n_unk += stats.get("unk", 0)
    tag_dict = Dictionary.load(os.path.join(args.destdir, "tags", "dict.txt"))
    return {"splits": meta["splits"], "tags": tag_dict.symbols[tag_dict.nspecial:]}


def preprocess(args) -> Dict:
    from . import vocab

    if not args.trainpref and not args.validpref and not args.testpref:
        raise SystemExit("nothing to do: give --trainpref, --validpref and/or --testpref")
    tokenizer = vocab.load_tokenizer(args.model_dir)
    if getattr(tokenizer, "separate_vocabs", False):
        raise SystemExit(f"{args.model_dir}: separate source/target vocabularies are not supported")
    enc = Encoder(tokenizer)
    os.makedirs(args.destdir, exist_ok=True)
    stats = {"translation": translation, "sentence_prediction": sentence_prediction,
             "sequence_tagging": sequence_tagging}[args.task](args, tokenizer, enc)
    meta = {
        "model_dir": os.path.abspath(args.model_dir),
        "tokenizer": type(tokenizer).__name__,
        "task": args.task,
        "dictionary_size": len(enc.dictionary),
        "tokens": enc.n_tokens,
        "unk": enc.n_unk,
        "stats": stats,
    }
    with open(os.path.join(args.destdir, "hf_preprocess.json"), "w") as f:
        json.dump(meta, f, indent=1)
    logger.info("dictionary: %d symbols (the tokenizer's %d ids); %d tokens, %d unk",
                len(enc.dictionary), len(tokenizer.get_vocab()), enc.n_tokens, enc.n_unk)
    return meta


def main(argv=None):
    run_command(get_parser(), preprocess, argv)


if __name__ == "__main__":
    main()
