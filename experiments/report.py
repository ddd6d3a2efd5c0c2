#!/usr/bin/env python
"""RESULTS.md and figures/*.png from the stored run JSONs; nothing typed by hand.

    python experiments/report.py                       # experiments/results -> experiments/RESULTS.md
    python experiments/report.py --results DIR --out DIR

Deterministic: the same JSONs give the same RESULTS.md, byte for byte. Every verdict is
``stats.verdict`` on the per-seed paired differences (same seed, same data). The work is done by
the ``reporting`` package beside this script (one module per study section: see
``reporting/sections/__init__.py``).
"""
import sys

from reporting import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__.split("\n")[0]))
