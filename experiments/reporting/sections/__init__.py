"""The report's sections, in RESULTS.md's order: one module each.

A section module has
- ``STUDIES``: the study folders (``results/STUDY/``) it reports; the loader sets aside the runs
  of any study no section names, so a study under way changes nothing until its section exists;
- ``build(data, rel, done) -> Section``: from ``data`` (``load.Data``; ``data.study(*STUDIES)``
  gives its runs), its RESULTS.md lines (figures linked as ``{rel}/NAME.png``), its ``Figure``s,
  and the rows and verdicts it computed, as fields of its ``Section`` subclass, for the README
  writer (``readme.py``) to format; ``done`` holds the sections built before it, by name.

To add a section: write ``sections/NAME.py`` as above and add ``"NAME"`` to ``ORDER`` where it
should appear in RESULTS.md; to say something in the README, format its result in ``readme.py``.
"""
import importlib

ORDER = ("protocol", "registered", "ood", "tune", "glue", "hf_trainer", "epochs", "epochs_confirm", "ner", "mt", "ablation", "sensitivity", "confirm", "recommend",
         "prior", "cost")
SECTIONS = {name: importlib.import_module(f"{__name__}.{name}") for name in ORDER}
STUDIES_READ = frozenset(study for module in SECTIONS.values() for study in module.STUDIES)
