"""AD-DROP for fairseq.

Used as ``fairseq-train --user-dir addrop_fairseq --criterion addrop_ce ...``. Importing the
package registers the criterion, tasks and models with fairseq. The maths
(:mod:`addrop_fairseq.masks`, :mod:`addrop_fairseq.attribution`,
:mod:`addrop_fairseq.schedule`) imports no fairseq and can be used on its own.
"""

__version__ = "0.1.0"

try:  # the fairseq glue; the pure maths stays importable without fairseq
    import fairseq  # noqa: F401
except ImportError:  # pragma: no cover - exercised only without fairseq
    pass
else:
    from . import criterions, models, tasks  # noqa: F401
    from .safe_loading import allow_fairseq_checkpoints

    # fairseq pickles its config into checkpoints; torch >= 2.6 loads weights only by default.
    # Allowlist exactly what fairseq checkpoints hold, keeping safe loading on (resuming with
    # --user-dir, generating, tagging); see safe_loading.py.
    allow_fairseq_checkpoints()
