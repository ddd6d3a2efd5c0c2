"""Every task a study can name: GLUE (``glue.py``), CoNLL-2003 NER (``conll.py``) and WMT16
translation (``wmt.py``). Each
says how to prepare its data (``prepare``), which fairseq-train flags select its task, model
and metric (``fairseq_args``), its dev metric, its learning-rate grid and a rough CPU cost
per update for ``--dry-run``."""
import conll
import glue
import wmt

TASKS = {**glue.TASKS, **conll.TASKS, **wmt.TASKS}
