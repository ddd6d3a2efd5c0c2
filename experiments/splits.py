"""The one rule every study's training subset follows: a fixed shuffle (seed 0), its first ``n``
rows in file order, so every run of every study sees the same subset; the rows after them are
outside it (AttendOut's held-out split)."""
import random
from typing import Optional, Sequence

HELDOUT = 200  # training rows outside the subset: the split AttendOut scores its nets on


def subsample(rows: Sequence, n: Optional[int], seed: int = 0, skip: int = 0) -> list:
    """Rows ``skip .. skip + n`` of a fixed shuffle, in file order (``skip`` = the training
    subset's size gives rows outside it); ``n`` None or past the end with ``skip`` 0: every row."""
    if n is None or skip + n >= len(rows) and skip == 0:
        return list(rows)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [rows[i] for i in sorted(order[skip:skip + n])]
