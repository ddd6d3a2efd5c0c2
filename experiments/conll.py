"""CoNLL-2003 NER data for the studies: a fixed subset of the training sentences, the whole
dev set, binarized for MiniLM (``hf_token_classifier``, its WordPiece tokenizer) or for the
from-scratch ``transformer_tagger`` (a sentencepiece model trained on the subset's words);
cached in the work folder. The CoNLL files are read as they are (``-DOCSTART-`` lines,
IOB1/IOB2 detected by the plugin's reader)."""
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from splits import HELDOUT, subsample

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class NerTask:
    name: str
    model: str  # "minilm" (hf_token_classifier) or "tagger" (transformer_tagger_small, from scratch)
    metric: str = "f1"  # seqeval entity F1 on the dev set
    extra_metrics: Tuple[str, ...] = ("precision", "recall")
    family: str = "ner"
    lr_grid: Tuple[float, ...] = (2e-5, 5e-5, 1e-4, 2e-4, 5e-4)  # 5e-4 added after MiniLM peaked at 2e-4
    sec_per_update: float = 0.6  # MiniLM, 16 sentences, 1 thread
    train_total: int = 14041  # CoNLL-2003 training sentences: a run on all of them (--dry-run estimate)

    def fairseq_args(self, model_dir: str) -> Tuple[str, ...]:
        if self.model == "minilm":
            return ("--task", "sequence_tagging", "--arch", "hf_token_classifier", "--hf-model-dir", model_dir,
                    "--max-positions", "512")
        return ("--task", "sequence_tagging", "--arch", "transformer_tagger_small", "--max-positions", "256")

    def prepare(self, data: Path, key: str, n_train: Optional[int], work: Path, n_dev: Optional[int],
                max_length: int, model_dir: str) -> Tuple[Path, dict]:
        """Binarized subset under ``work`` (skipped when there); returns (data-bin, sizes)."""
        from addrop_fairseq.tagging.conll import read_conll

        src = data / "conll2003"
        tag = f"{key}-train{n_train or 'all'}-dev{n_dev or 'all'}"
        out = work / "data" / tag
        binned = out / "bin"
        train_all = read_conll(src / "train.txt", gold=True).sentences
        dev_all = read_conll(src / "valid.txt", gold=True).sentences
        n = len(train_all) if n_train is None else min(n_train, len(train_all))
        m = len(dev_all) if n_dev is None else min(n_dev, len(dev_all))
        sizes = {"train": n, "dev": m, "dev_total": len(dev_all)}
        if (binned / "done").exists():
            return binned, sizes
        out.mkdir(parents=True, exist_ok=True)
        train_txt, dev_txt, held_txt = out / "train.txt", out / "valid.txt", out / "test.txt"
        _write(src / "train.txt", train_txt, subsample(range(len(train_all)), n))
        _write(src / "valid.txt", dev_txt, list(range(m)))
        cmd = [sys.executable, "-m", "addrop_fairseq.tagging.preprocess", "--train", str(train_txt),
               "--valid", str(dev_txt), "--destdir", str(binned)]
        held = subsample(range(len(train_all)), HELDOUT, skip=n)
        if held:  # training sentences outside the subset, the data's "test" split (not CoNLL's test set)
            _write(src / "train.txt", held_txt, held)
            cmd += ["--test", str(held_txt)]
        if self.model == "minilm":
            cmd += ["--subword", "hf", "--hf-model-dir", model_dir]
        else:
            cmd += ["--subword", "sentencepiece", "--sentencepiece-vocab-size", "4000"]
        _run(cmd)
        (binned / "heldout").write_text(f"{len(held)}\n")
        (binned / "done").write_text("ok\n")
        return binned, sizes

    def prepare_heldout(self, data: Path, key: str, n_train: Optional[int], binned: Path, max_length: int,
                        model_dir: str) -> int:
        """The held-out split AttendOut scores its nets on: ``prepare`` wrote it (``HELDOUT``
        training sentences outside the subset, as the data's ``test`` split); its size."""
        return int((binned / "heldout").read_text())


def _write(src: Path, dst: Path, indices) -> None:
    """The chosen sentences of ``src``, lines verbatim (all columns), a blank line after each."""
    from addrop_fairseq.tagging.conll import read_conll

    conll = read_conll(src, gold=True)
    with open(dst, "w", encoding="utf-8") as f:
        for i in indices:
            f.write("".join(conll.lines[k - 1].rstrip() + "\n" for k in conll.sentences[i].lines) + "\n")


def _run(cmd):
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


TASKS = {
    "ner": NerTask("CoNLL-2003 (MiniLM)", "minilm"),
    "ner_scratch": NerTask("CoNLL-2003 (tagger from scratch)", "tagger", lr_grid=(5e-4, 1e-3, 2e-3),
                           sec_per_update=0.15),
}
