"""IOB1 / IOB2 tag schemes: validation, detection and lossless conversion.

Data is stored and models are trained in IOB2 (every entity starts with ``B-``); the
original CoNLL-2003 release uses IOB1 (``B-`` only between two adjacent entities of the
same type). Both describe the same entities, so converting keeps seqeval's scores.
"""
from typing import List, Optional, Sequence

SCHEMES = ("iob1", "iob2")


class TagError(ValueError):
    """A tag that is neither ``O`` nor ``B-TYPE`` / ``I-TYPE``; ``index`` is its position."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


def split_tag(tag: str):
    """("B"|"I"|"O", type or None); raises ValueError for anything else."""
    if tag == "O":
        return "O", None
    if len(tag) > 2 and tag[0] in "BI" and tag[1] == "-":
        return tag[0], tag[2:]
    raise ValueError(f"tag {tag!r} is not O, B-TYPE or I-TYPE")


def check_tags(tags: Sequence[str]) -> None:
    for i, tag in enumerate(tags):
        try:
            split_tag(tag)
        except ValueError as e:
            raise TagError(str(e), i) from None


def _starts_with_i(tags: Sequence[str]) -> bool:
    """True if some ``I-X`` opens an entity (previous tag O or of another type): IOB1 only."""
    prev = "O"
    for tag in tags:
        pos, typ = split_tag(tag)
        if pos == "I" and split_tag(prev)[1] != typ:
            return True
        prev = tag
    return False


def detect_scheme(sentences: Sequence[Sequence[str]]) -> str:
    """iob1 if any entity starts with ``I-``, else iob2 (for such files both read the same)."""
    return "iob1" if any(_starts_with_i(tags) for tags in sentences) else "iob2"


def resolve_scheme(scheme: str, sentences: Sequence[Sequence[str]]) -> str:
    if scheme == "auto":
        return detect_scheme(sentences)
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; choose from auto, {', '.join(SCHEMES)}")
    return scheme


def _retag_entity_starts(tags: Sequence[str], position: str, new: str) -> List[str]:
    """A ``position`` tag (B or I) whose type does not continue the previous tag's becomes ``new``."""
    out, prev_type = [], None
    for tag in tags:
        pos, typ = split_tag(tag)
        if pos == position and prev_type != typ:
            tag = f"{new}-{typ}"
        out.append(tag)
        prev_type = typ
    return out


def iob1_to_iob2(tags: Sequence[str]) -> List[str]:
    """IOB1 starts an entity with I- unless it follows one of its type; IOB2 always with B-."""
    return _retag_entity_starts(tags, "I", "B")


def iob2_to_iob1(tags: Sequence[str]) -> List[str]:
    return _retag_entity_starts(tags, "B", "I")


def to_iob2(tags: Sequence[str], scheme: str) -> List[str]:
    check_tags(tags)
    return iob1_to_iob2(tags) if scheme == "iob1" else list(tags)


def from_iob2(tags: Sequence[str], scheme: Optional[str]) -> List[str]:
    return iob2_to_iob1(tags) if scheme == "iob1" else list(tags)
