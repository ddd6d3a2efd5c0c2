"""AD-DROP for fairseq.

Used as ``fairseq-train --user-dir addrop_fairseq --criterion addrop_ce ...``. Importing the
package registers the criterion, tasks and models with fairseq. The maths
(:mod:`addrop_fairseq.masks`, :mod:`addrop_fairseq.attribution`,
:mod:`addrop_fairseq.schedule`) imports no fairseq and can be used on its own.
"""

import os

__version__ = "0.1.0"

# fairseq 0.12 pickles its config (argparse.Namespace, omegaconf) into checkpoints, which
# torch >= 2.6 refuses to load by default; fairseq cannot resume or generate otherwise.
# Set only if the user has not chosen: the plugin is loaded by fairseq-train before resuming.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

try:  # the fairseq glue; the pure maths stays importable without fairseq
    import fairseq  # noqa: F401
except ImportError:  # pragma: no cover - exercised only without fairseq
    pass
else:
    from . import criterions, models, tasks  # noqa: F401
