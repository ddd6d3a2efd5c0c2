"""Alias kept for scripts: ``python -m addrop_fairseq.tag`` = ``addrop-tag`` (:mod:`.tagging.cli`)."""
from .tagging.cli import main, run  # noqa: F401
if __name__ == "__main__": main()  # noqa: E701
