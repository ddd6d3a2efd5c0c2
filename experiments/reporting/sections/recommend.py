"""The p, q to recommend for small-data classification, from the ``sensitivity`` map and the
``confirm`` study's fresh seeds (reads no study of its own: the two sections' results)."""
import statistics
from dataclasses import dataclass, field
from typing import List, Optional

import selection
from stats import MIN_SEEDS_FOR_VERDICT, mean_std, p_text, verdict
from tasks import TASKS

from ..common import Comparison, Section, ahead
from ..load import Data

STUDIES = ()


@dataclass
class Recommend(Section):
    sentences: List[str] = field(default_factory=list)  # one per task on the map


def build(data: Data, rel: str, done: dict) -> Recommend:
    """By a rule fixed before the grid was complete: the map's best cross-tuning cell if the fresh
    seeds of study ``confirm`` say it helps (paired, p < 0.05); otherwise no cell has shown a gain,
    and the defaults p = q = 0.3 stay. "Sensible" for the defaults: within FT's seed-to-seed spread
    of the best cell on the map."""
    out = Recommend(sentences=recommendations(done["sensitivity"].cells, done["confirm"].comparison))
    if out.sentences:
        out.lines = ["### Recommended p and q", "", "Rule, fixed before the grid was complete: the map's best cross-tuning "
                     "cell if the confirm study says it helps on fresh seeds (paired, p < 0.05), otherwise the "
                     "plugin's defaults p = q = 0.3 stay; the defaults are sensible if they lie within FT's "
                     "seed-to-seed spread of the best cell.", ""] + [f"- {x}" for x in out.sentences] + [""]
    return out


def recommendations(cells: dict, confirm: Optional[Comparison]) -> List[str]:
    """One sentence per task of the sensitivity map (``cells``), judged by the confirm study's
    paired differences (``confirm``, None before it has run)."""
    lines = []
    for t, c in cells.items():
        cross = {(p, q): v for (s, p, q), v in c.scores.items() if s == "cross"}
        best = selection.best_cell(cross)  # the cell study confirm judges
        if best is None:
            continue
        default = (0.3, 0.3)
        rank = 1 + sum(v > cross[default] for v in cross.values())
        gap = cross[best] - cross[default]
        ft_sd = statistics.stdev(c.ft_by_seed.values()) if len(c.ft_by_seed) > 1 else None
        spread = (f"{gap:.1f} below the best cell, " + ("within" if gap <= ft_sd else "more than")
                  + f" FT's seed-to-seed spread (std {ft_sd:.1f} over {len(c.ft_by_seed)} seeds)") if ft_sd else f"{gap:.1f} below the best cell"
        place = f"the defaults p = q = 0.3 rank {rank} of {len(cross)} cells with cross-tuning on the map, {spread}"
        diffs = confirm.diffs(t, "addrop_best") if confirm else []
        name, cell = TASKS[t].name, f"p = {best[0]:g}, q = {best[1]:g}"
        if len(diffs) < MIN_SEEDS_FOR_VERDICT:
            lines.append(f"{name}: recommendation pending: study confirm has not judged the best cell ({cell}) "
                         f"on {MIN_SEEDS_FOR_VERDICT} fresh seeds yet; {place}.")
        elif verdict(diffs) == "helps":
            lines.append(f"{name}: recommended p, q for small-data classification: {cell} with cross-tuning, the map's "
                         f"best cell, ahead of FT on fresh seeds (Δ {mean_std(diffs)}, {ahead(diffs)}, {p_text(diffs)}); "
                         f"{place}.")
        else:
            lines.append(f"{name}: no (p, q) has shown a gain over FT: the map's best cell ({cell}) is "
                         f"{verdict(diffs)} on fresh seeds (Δ {mean_std(diffs)}, {ahead(diffs)}, {p_text(diffs)}), "
                         f"and a ranking made on one seed does not tell cells apart, so the defaults stay; {place}.")
    return lines
