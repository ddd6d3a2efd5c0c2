"""Reading CoNLL files as they are, and writing them back with an added column.

A file is one token per line, whitespace-separated columns (``token [POS chunk ...] TAG``,
the tag last when gold tags are present), a blank line between sentences and
``-DOCSTART-`` lines between documents. Every problem is reported with its line number.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from .schemes import split_tag

DOCSTART = "-DOCSTART-"


class ConllError(ValueError):
    """A malformed input file; the message names the file and line."""


@dataclass
class Sentence:
    tokens: List[str]
    tags: Optional[List[str]]  # gold tags as written in the file, None without gold
    lines: List[int]  # 1-based line number of each token


@dataclass
class ConllFile:
    path: str
    lines: List[str]  # the raw lines, without line endings
    sentences: List[Sentence] = field(default_factory=list)
    ncols: int = 0
    first_token_line: int = 0
    gold: bool = False


def is_blank(line: str) -> bool:
    return not line.strip()


def read_conll(path, gold: Optional[bool] = True) -> ConllFile:
    """Parse ``path``; ``gold`` means the last column is a tag (``O``, ``B-X``, ``I-X``);
    ``gold=None``: tags if the file has two columns or more (``ConllFile.gold`` says).

    Errors (:class:`ConllError`): a line whose column count differs from the first token
    line's, an empty sentence (two blank lines in a row inside the file), a malformed tag,
    a token-only file read with ``gold=True``.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.splitlines()
    out = ConllFile(str(path), lines)
    tokens, tags, numbers = [], [], []
    last = max((i for i, line in enumerate(lines) if not is_blank(line)), default=-1)

    def close():
        if tokens:
            out.sentences.append(Sentence(list(tokens), list(tags) if gold else None, list(numbers)))
            tokens.clear(), tags.clear(), numbers.clear()

    prev_blank = True  # blank lines before the first sentence are padding, not sentences
    seen_text = False
    for i, line in enumerate(lines):
        lineno = i + 1
        if is_blank(line):
            if prev_blank and seen_text and i < last:
                raise ConllError(f"{path}:{lineno}: empty sentence (a second blank line in a row)")
            close()
            prev_blank = True
            continue
        seen_text = True
        prev_blank = False
        cols = line.split()
        if cols[0] == DOCSTART:
            close()
            continue
        if not out.ncols:
            out.ncols = len(cols)
            out.first_token_line = lineno
            if gold is None:
                gold = out.ncols >= 2
            if gold and out.ncols < 2:
                raise ConllError(
                    f"{path}:{lineno}: expected a token and a tag column, found 1 column "
                    "(for a file without gold tags, read it without gold)"
                )
        elif len(cols) != out.ncols:
            raise ConllError(
                f"{path}:{lineno}: expected {out.ncols} columns (as on line "
                f"{out.first_token_line}), found {len(cols)}: {line.strip()!r}"
            )
        if gold:
            try:
                split_tag(cols[-1])
            except ValueError as e:
                raise ConllError(f"{path}:{lineno}: {e}") from None
            tags.append(cols[-1])
        tokens.append(cols[0])
        numbers.append(lineno)
    close()
    out.gold = bool(gold)
    return out


def with_column(conll: ConllFile, predictions: Sequence[Sequence[str]], docstart_tag: str = "O") -> List[str]:
    """The file's lines with one more column: the sentence's predicted tags, in order.

    ``-DOCSTART-`` lines get ``docstart_tag`` so every non-blank line keeps one column
    count; blank lines stay blank. The separator is a tab if the line uses tabs.
    """
    if len(predictions) != len(conll.sentences):
        raise ValueError(f"{len(predictions)} predicted sentences for {len(conll.sentences)}")
    added = {}
    for sent, pred in zip(conll.sentences, predictions):
        if len(pred) != len(sent.tokens):
            raise ValueError(f"line {sent.lines[0]}: {len(pred)} tags for {len(sent.tokens)} tokens")
        added.update(zip(sent.lines, pred))
    out = []
    for i, line in enumerate(conll.lines):
        if is_blank(line):
            out.append("")
            continue
        line = line.rstrip()
        sep = "\t" if "\t" in line else " "
        out.append(f"{line}{sep}{added.get(i + 1, docstart_tag)}")
    return out


def write_sentences(path, sentences: Sequence[Sequence[Sequence[str]]]) -> None:
    """Write rows of columns as a CoNLL file (blank line after every sentence)."""
    with open(path, "w", encoding="utf-8") as f:
        for rows in sentences:
            for row in rows:
                f.write(" ".join(row) + "\n")
            f.write("\n")
