"""A fairseq dictionary that maps one-to-one onto a HuggingFace tokenizer's ids.

fairseq's ``Dictionary.load`` always puts ``<s> <pad> </s> <unk>`` at indices 0-3 and the
file's symbols after them, so the indices cannot simply *be* the HF ids (BERT's pad is 0,
its [CLS] 101; Marian's pad is the last id). The dictionary written by
``addrop-hf-preprocess`` is instead a fixed bijection:

* fairseq's four specials stand for the tokenizer's roles: ``<s>`` = bos (or [CLS]),
  ``<pad>`` = pad, ``</s>`` = eos (or [SEP]), ``<unk>`` = unk;
* then every other HF id in increasing order, written as its token string, except the
  mask token, written ``<mask>`` (what ``sentence_prediction`` / RoBERTa add), and tokens a
  ``dict.txt`` cannot hold (whitespace, empty, spelled like a fairseq special), written
  ``<hf:ID>``.

:class:`VocabMap` turns fairseq indices into HF ids (model inputs) and HF logits into
fairseq-ordered logits (model outputs). Symbols a task appends after the tokenizer's
vocabulary (``<mask>`` when the tokenizer has none, ``madeupword`` padding) and a role the
tokenizer lacks (Marian has no bos) have no HF id: as inputs they become unk, as outputs they
get a logit 100 below the row's maximum (probability < e^-100, never predicted, finite so
that label smoothing stays finite).
"""
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
MASK = "<mask>"
_ESCAPED = re.compile(r"^<hf:(\d+)>$")
EXTRA_LOGIT_MARGIN = 100.0


class DictionaryMismatch(ValueError):
    """The data's dictionary is not the one this tokenizer's vocabulary gives."""


# files a saved tokenizer consists of (at least one is there after tokenizer.save_pretrained)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "source.spm",
                   "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")


def load_tokenizer(model_dir: str, **kwargs):
    """AutoTokenizer from a local directory, or a ValueError naming what is missing.

    transformers builds a default (near-empty) tokenizer for a directory without tokenizer
    files instead of failing, so their presence is checked first.
    """
    from . import _compat

    tf = _compat.transformers()
    if not os.path.isdir(model_dir):
        check_model_dir(model_dir)
    have = sorted(os.listdir(model_dir))
    problem = None
    if not any(f in have for f in TOKENIZER_FILES):
        problem = f"none of {', '.join(TOKENIZER_FILES)}"
    else:
        try:
            return tf.AutoTokenizer.from_pretrained(model_dir, local_files_only=True, **kwargs)
        except Exception as e:
            problem = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    raise ValueError(
        f"--hf-model-dir {model_dir}: no usable tokenizer there ({problem}); files: {have}. "
        "Save it next to the model with tokenizer.save_pretrained(DIR)"
    )


def check_model_dir(model_dir: str) -> None:
    if not model_dir:
        raise ValueError("--hf-model-dir is required: a local directory saved with save_pretrained()")
    if not os.path.isdir(model_dir):
        raise ValueError(f"--hf-model-dir {model_dir}: not a directory (no hub access is assumed)")
    if not os.path.exists(os.path.join(model_dir, "config.json")):
        raise ValueError(f"--hf-model-dir {model_dir}: no config.json (save the model with save_pretrained(DIR))")


def role_ids(tokenizer) -> Dict[str, Optional[int]]:
    """fairseq special symbol -> the tokenizer id playing that role (None if it has none)."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    roles = {"<s>": bos, "<pad>": tokenizer.pad_token_id, "</s>": eos, "<unk>": tokenizer.unk_token_id}
    missing = [f"{k} ({what})" for k, what in zip(FAIRSEQ_SPECIALS, ("bos/cls", "pad", "eos/sep", "unk"))
               if roles[k] is None and k != "<s>"]
    if missing:
        raise ValueError(
            f"tokenizer {type(tokenizer).__name__} has no token for fairseq's {', '.join(missing)}: "
            "a fairseq dictionary needs pad, eos (or sep) and unk"
        )
    return roles


def id_to_token(tokenizer) -> Dict[int, str]:
    return {i: t for t, i in tokenizer.get_vocab().items()}


def _writable(token: str) -> bool:
    return bool(token) and not any(c.isspace() for c in token) and token not in FAIRSEQ_SPECIALS \
        and token != MASK and not _ESCAPED.match(token) and not token.startswith("#fairseq:")


def dictionary_symbols(tokenizer) -> List[Tuple[int, str]]:
    """(HF id, symbol) of every dict.txt line, in order (the specials are implicit)."""
    roles = set(i for i in role_ids(tokenizer).values() if i is not None)
    mask_id = tokenizer.mask_token_id
    out = []
    for i, tok in sorted(id_to_token(tokenizer).items()):
        if i in roles:
            continue
        if i == mask_id:
            out.append((i, MASK))
        elif _writable(tok):
            out.append((i, tok))
        else:
            out.append((i, f"<hf:{i}>"))
    return out


def write_dictionary(tokenizer, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for _, sym in dictionary_symbols(tokenizer):
            f.write(f"{sym} 1\n")


def build_dictionary(tokenizer):
    """The fairseq Dictionary ``write_dictionary`` + ``Dictionary.load`` give."""
    from fairseq.data import Dictionary

    d = Dictionary()
    for _, sym in dictionary_symbols(tokenizer):
        d.add_symbol(sym, 1)
    return d


class VocabMap:
    """fairseq indices <-> HF ids for one dictionary and one tokenizer.

    ``to_hf[i]``: the HF id fed to the model for fairseq index ``i``;
    ``out_index[i]``: which HF logit becomes fairseq logit ``i`` (``extra`` marks the
    fairseq symbols without an HF id).
    """

    def __init__(self, dictionary, tokenizer, n_logits: Optional[int] = None, what: str = "dictionary",
                 model_dir: str = ""):
        roles = role_ids(tokenizer)
        expected = dictionary_symbols(tokenizer)
        self.what = what
        n_special = len(FAIRSEQ_SPECIALS)
        got = list(dictionary.symbols)
        for idx, name in enumerate(FAIRSEQ_SPECIALS):
            if idx >= len(got) or got[idx] != name:
                raise DictionaryMismatch(f"{what}: index {idx} is not {name}: not a fairseq Dictionary layout")
        hint = (f"make the data with addrop-hf-preprocess --model-dir {model_dir or 'DIR'} "
                "(the dictionary must come from the same tokenizer as the model)")
        if len(got) < n_special + len(expected):
            raise DictionaryMismatch(
                f"{what} has {len(got) - n_special} symbols after the specials but the tokenizer in "
                f"{model_dir or 'the model directory'} has {len(expected)}: {hint}"
            )
        for k, (hf_id, sym) in enumerate(expected):
            if got[n_special + k] != sym:
                raise DictionaryMismatch(
                    f"{what}: index {n_special + k} is {got[n_special + k]!r} but the tokenizer in "
                    f"{model_dir or 'the model directory'} gives {sym!r} (HF id {hf_id}) there: {hint}"
                )
        unk = roles["<unk>"]
        to_hf, out_index = [], []
        claimed = set()
        for idx in range(len(got)):
            if idx < n_special:
                hf_id = roles[FAIRSEQ_SPECIALS[idx]]
            elif idx < n_special + len(expected):
                hf_id = expected[idx - n_special][0]
            elif got[idx] == MASK and tokenizer.mask_token_id is not None:
                hf_id = tokenizer.mask_token_id
            else:
                hf_id = None
            to_hf.append(unk if hf_id is None else hf_id)
            out_index.append(hf_id)
        # outputs: an HF id feeds one fairseq index only (eos before bos when they coincide)
        order = [2, 1, 3] + list(range(n_special, len(got))) + [0]
        for idx in order:
            hf_id = out_index[idx]
            if hf_id is None or hf_id in claimed:
                out_index[idx] = None
                continue
            claimed.add(hf_id)
        self.model_dir = model_dir
        self.extra = [i for i, h in enumerate(out_index) if h is None]
        self.to_hf = torch.tensor(to_hf, dtype=torch.long)
        self.out_index = torch.tensor([0 if h is None else h for h in out_index], dtype=torch.long)
        self.roles = roles
        self.size = len(got)
        self.identity = False
        if n_logits is not None:
            self.check_model_size(n_logits)

    def check_model_size(self, n_logits: int) -> None:
        """The model's vocabulary must hold every id; an identity mapping skips the reordering."""
        max_id = int(self.to_hf.max())
        if max_id >= n_logits:
            raise DictionaryMismatch(
                f"{self.what}: the tokenizer's id {max_id} is beyond the model's vocabulary of {n_logits}: "
                f"tokenizer and model in {self.model_dir or 'the model directory'} do not match"
            )
        self.identity = (
            not self.extra and n_logits == self.size
            and bool(torch.equal(self.to_hf, torch.arange(self.size)))
        )


def to_fairseq_logits(logits: Tensor, out_index: Tensor, extra: Optional[Tensor]) -> Tensor:
    """[..., V_hf] -> [..., V_fairseq]; symbols without an HF id get max - 100."""
    out = logits.index_select(-1, out_index)
    if extra is not None and extra.numel():
        low = logits.detach().amax(dim=-1, keepdim=True) - EXTRA_LOGIT_MARGIN
        out = out.index_copy(-1, extra, low.expand(*low.shape[:-1], extra.numel()).to(out.dtype))
    return out


def symbols_to_ids(symbols: Sequence[str], tokenizer, vocab: Optional[Dict[str, int]] = None) -> List[int]:
    """fairseq symbol strings (as ``Dictionary.string`` writes them) -> HF ids."""
    roles = role_ids(tokenizer)
    vocab = vocab if vocab is not None else tokenizer.get_vocab()
    unk = roles["<unk>"]
    ids = []
    for sym in symbols:
        if sym in roles:
            if roles[sym] is not None:
                ids.append(roles[sym])
            continue
        if sym == "<<unk>>":  # Dictionary.string(escape_unk=True)
            ids.append(unk)
            continue
        if sym == MASK and tokenizer.mask_token_id is not None:
            ids.append(tokenizer.mask_token_id)
            continue
        m = _ESCAPED.match(sym)
        if m:
            ids.append(int(m.group(1)))
            continue
        ids.append(vocab.get(sym, unk))
    return ids


def ids_to_symbols(ids: Sequence[int], tokenizer, id2tok: Optional[Dict[int, str]] = None) -> List[str]:
    """HF ids -> the fairseq symbols of the dictionary ``write_dictionary`` writes."""
    named = role_ids(tokenizer)
    roles = {}
    for sym in ("<s>", "<unk>", "<pad>", "</s>"):  # later wins: eos over bos when they coincide
        if named[sym] is not None:
            roles[named[sym]] = sym
    id2tok = id2tok if id2tok is not None else id_to_token(tokenizer)
    out = []
    for i in ids:
        if i in roles:
            out.append(roles[i])
        elif i == tokenizer.mask_token_id:
            out.append(MASK)
        else:
            tok = id2tok.get(i)
            out.append(tok if tok is not None and _writable(tok) else f"<hf:{i}>")
    return out
