"""How a setting is chosen from finished runs: FT's learning rate (study ``tune``; the protocol
study's rate search), AD-DROP's (p, q) (the sensitivity map; the protocol study's cell search
and its widening). Each reads finished runs' JSON dicts and chooses nothing until its whole
search has run. Each choice is then judged on fresh seeds that played no part in making it
(studies ``confirm``, the protocol's fresh phase, ``ood``, ``demo``, ``registered``), so the
winner's luck in the selection does not count as its gain."""
import math
from typing import Dict, List, Optional, Tuple

import studies
from tasks import TASKS

# a protocol winner at the grid's upper edge adds the cells beyond it (the paper's range ends at 0.9)
PROTOCOL_EDGE = {0.6: 0.9, 0.7: 0.9}


def tune_score(run: dict) -> Optional[float]:
    """What a tune run is judged on, higher is better: its best-epoch dev score; for translation,
    whose score is BLEU on the test block (not a set to choose on, and at 0-1 BLEU on these
    slices no signal either), minus its lowest dev loss (what checkpoint_best is chosen on)."""
    if TASKS[run["task"]].family == "mt":
        losses = [e["valid_loss"] for e in run["epochs"] if "valid_loss" in e]
        return -min(losses) if losses else None
    return run["best"]["score"]


def chosen_lr(task: str, tune_runs: List[dict]) -> Optional[float]:
    """The learning rate of the task's best tune run, once its whole grid has run (else None)."""
    score = {r["lr"]: tune_score(r) for r in tune_runs if r["task"] == task}
    if not all(any(math.isclose(lr, x) for x in score) for lr in TASKS[task].lr_grid):
        return None
    return max(score, key=score.get)


def best_cell(by_pq: Dict[Tuple[float, float], float]) -> Optional[Tuple[float, float]]:
    """The (p, q) of the best score on a complete ``SENSITIVITY_GRID``² (ties: the first in grid
    order); None while the grid is incomplete, so a partial map chooses nothing."""
    grid = [(p, q) for p in studies.SENSITIVITY_GRID for q in studies.SENSITIVITY_GRID]
    if any(pq not in by_pq for pq in grid):
        return None
    return max(grid, key=lambda pq: (by_pq[pq], -grid.index(pq)))


def protocol_lr(task: str, done: List[dict]) -> Optional[float]:
    """FT's rate: the best mean best-epoch dev score over ``PROTOCOL_FT_SEEDS`` (ties: the lower
    rate); None until all 9 runs have finished."""
    scores: Dict[float, List[float]] = {}
    for r in done:
        if r["task"] == task and r["method"].startswith("ft_lr"):
            scores.setdefault(r["lr"], []).append(r["best"]["score"])
    complete = {lr: sum(v) / len(v) for lr, v in scores.items() if len(v) == len(studies.PROTOCOL_FT_SEEDS)}
    if not all(any(math.isclose(lr, x) for x in complete) for lr in studies.PROTOCOL_LRS):
        return None
    return max(sorted(complete), key=lambda lr: complete[lr])


def protocol_cells(task: str, done: List[dict]) -> Dict[Tuple[float, float], float]:
    """AD-DROP's search so far: (p, q) -> best-epoch dev score of seed ``PROTOCOL_SEARCH_SEED``."""
    return {(float(r["meta"]["p"]), float(r["meta"]["q"])): r["best"]["score"] for r in done
            if r["task"] == task and r["method"].startswith("addrop_p")}


def protocol_grid(cells: Dict[Tuple[float, float], float]) -> List[Tuple[float, float]]:
    """The cells to search: the 3 x 3 grid, and once it has run, if its best cell sits at the
    grid's upper edge (p 0.6 or q 0.7), the cells next to it beyond that edge (one widening)."""
    grid = list(studies.PROTOCOL_GRID)
    if any(c not in cells for c in grid):
        return grid
    p, q = max(grid, key=lambda c: (cells[c], -grid.index(c)))
    ps = [p] + ([PROTOCOL_EDGE[p]] if p in PROTOCOL_EDGE else [])
    qs = [q] + ([PROTOCOL_EDGE[q]] if q in PROTOCOL_EDGE else [])
    return grid + [(a, b) for a in ps for b in qs if (a, b) not in grid]


def protocol_cell(task: str, done: List[dict]) -> Optional[Tuple[float, float]]:
    """AD-DROP's chosen (p, q): the best seed-1 score over the whole search, widening included
    (ties: the first in search order); None until every cell has run."""
    cells = protocol_cells(task, done)
    grid = protocol_grid(cells)
    if any(c not in cells for c in grid):
        return None
    return max(grid, key=lambda c: (cells[c], -grid.index(c)))


def protocol_search(task: str, done: List[dict]) -> studies.ProtocolSearch:
    """Where the task's protocol search stands, for ``studies.protocol`` to plan from."""
    mine = [r for r in done if r["task"] == task]
    return studies.ProtocolSearch(protocol_lr(task, mine), protocol_grid(protocol_cells(task, mine)),
                                  protocol_cell(task, mine))


def protocol_choice(task: str, done: List[dict]) -> Optional[studies.Choice]:
    """(FT's rate, AD-DROP's (p, q)) the protocol study chose for ``task``; None until both are."""
    mine = [r for r in done if r["task"] == task]
    lr, cell = protocol_lr(task, mine), protocol_cell(task, mine)
    return None if lr is None or cell is None else (lr, cell)
