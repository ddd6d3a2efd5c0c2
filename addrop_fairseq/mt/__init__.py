"""Machine-translation helpers for the WMT16 scripts (``scripts/wmt16_*.sh``).

:mod:`addrop_fairseq.mt.wmt16` is run by the shell scripts as a plain file
(``python addrop_fairseq/mt/wmt16.py SUBCOMMAND ...``) so that each step does not pay for
importing fairseq; it imports only the standard library, ``sentencepiece`` and ``sacrebleu``.
"""
