"""The report: RESULTS.md, figures/*.png and the README's "Does it work?" block from the run
JSONs (``python experiments/report.py``).

- ``load.py``: reads ``results/`` once into a ``Data`` (runs, majority floors, prior_mechanism);
- ``sections/``: one module per study section (``sections/__init__.py`` lists them in order and
  says how to add one); each returns its RESULTS.md lines, its figures, and its rows and verdicts
  as data;
- ``common.py``: what sections share (paired differences, the comparison table, learning curves,
  verdicts against AD-DROP); ``names.py``: method names and task order;
- ``figures.py``: every plot;
- ``readme.py``: formats the sections' results into the README's short lead and docs/evidence.md
  (no verdict of its own);
- ``main.py``: builds the sections once and writes the three outputs.

Sibling modules of ``experiments/`` (``studies``, ``tasks``, ``stats``) are imported by their
plain names: the directory of a script run as ``python experiments/X.py`` is on ``sys.path``,
and the tests' conftest puts ``experiments/`` there once.
"""
from .load import Data, load  # noqa: F401
from .main import build, main, render, results_text, write_figures  # noqa: F401
from .readme import README_BEGIN, README_END, block as readme_block, evidence_text, lead as readme_lead, update_readme  # noqa: F401
