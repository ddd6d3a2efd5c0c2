"""The run JSONs, read once: ``load(results)`` gives a ``Data`` that every section queries.

Runs live at ``results/STUDY/TASK/METHOD/seedN.json`` (run.py writes them). Only the studies a
registered section reads (``sections.STUDIES_READ``) are reported: the runs of any other study
(one still under way, whose section is not written yet) are set aside in ``Data.ignored`` and
change nothing in RESULTS.md, the figures or the README.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Dict, List, Optional

from tasks import TASKS


@dataclass
class Data:
    runs: List[dict]  # in file order (study, task, method, seed)
    references: Dict[str, dict] = field(default_factory=dict)  # majority-class floors per GLUE task
    mechanism: Optional[dict] = None  # prior_mechanism.py's measurement
    ignored: Dict[str, int] = field(default_factory=dict)  # study -> runs no section reads

    def study(self, *names: str, family: Optional[str] = None) -> List[dict]:
        """The runs of the studies ``names`` (file order), of one task family if given."""
        return [r for r in self.runs if r["study"] in names and (family is None or TASKS[r["task"]].family == family)]


def load_runs(results: Path) -> List[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("*/*/*/seed*.json"))]


def load_references(results: Path) -> Dict[str, dict]:
    """Majority-class floors per GLUE task (``results/reference/TASK.json``, run.py writes them)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((results / "reference").glob("*.json"))}


def load_mechanism(results: Path) -> Optional[dict]:
    """``experiments/prior_mechanism.py``'s measurement, when it has run."""
    path = results / "prior_mechanism" / "mrpc.json"
    return json.loads(path.read_text()) if path.exists() else None


def load(results: Path, studies: Optional[Collection[str]] = None) -> Data:
    """Everything the report reads from ``results``; with ``studies``, runs of other studies are
    set aside (counted in ``ignored``)."""
    runs = load_runs(results)
    kept = [r for r in runs if studies is None or r["study"] in studies]
    ignored: Dict[str, int] = {}
    for r in runs:
        if studies is not None and r["study"] not in studies:
            ignored[r["study"]] = ignored.get(r["study"], 0) + 1
    return Data(kept, load_references(results), load_mechanism(results), ignored)
