"""Alias kept for scripts: ``python -m addrop_fairseq.hf_preprocess`` = ``addrop-hf-preprocess`` (:mod:`.hf.preprocess`)."""
from .hf.preprocess import main  # noqa: F401
if __name__ == "__main__": main()  # noqa: E701
