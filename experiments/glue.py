"""GLUE data for the studies: read the TSVs as they are, subsample training sets, binarize
with MiniLM's tokenizer (``addrop_fairseq``'s HF preprocessing), cached in the work folder.

Labels are written as integers so that fairseq's sentence_prediction maps them back for
F1 / MCC (``label_dict.string`` -> ``int``): RTE entailment = 0, not_entailment = 1 (the GLUE
convention); MRPC, CoLA, SST-2 keep their 0/1; STS-B keeps its float score (regression).
MNLI keeps its label names (accuracy only; the HANS evaluation maps them by name).

MNLI and QQP are slices of GLUE's training sets beside the GLUE folder (``../shared/data/mnli``,
``qqp``: ``{train,dev}.json``, disjoint); each names the out-of-distribution set a model trained
on it is scored on once after training (``OodSet``: HANS for MNLI, PAWS-Wiki test for QQP).
"""
import csv
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from splits import HELDOUT, subsample

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class OodSet:
    """An out-of-distribution test set, scored with ``addrop-evaluate`` (its flags below)."""

    name: str
    path: str  # under ../shared/data
    label_column: str
    group_column: Optional[str] = None
    label_map: Optional[str] = None  # MODEL_LABEL=TEST_LABEL,...
    text_columns: str = "sentence1,sentence2"

    def evaluate_args(self, data: Path) -> Tuple[str, ...]:
        return ("--input", str(data / self.path), "--text-columns", self.text_columns, "--label-column",
                self.label_column, *(("--group-column", self.group_column) if self.group_column else ()),
                *(("--label-map", self.label_map) if self.label_map else ()))


# HANS's own evaluation: an MNLI model's neutral and contradiction both count as non-entailment
HANS = OodSet("hans", "hans/hans_eval_30k.tsv", "gold_label", "heuristic",
              "neutral=non-entailment,contradiction=non-entailment")
# PAWS-Wiki's labeled test stands in for PAWS-X English test (not reachable here); 1 = paraphrase, as QQP's 1
PAWS = OodSet("paws", "paws/test.tsv", "label")


@dataclass(frozen=True)
class GlueTask:
    name: str
    metric: str  # the headline metric fairseq logs on the dev set
    extra_metrics: Tuple[str, ...]  # also recorded
    num_classes: int
    flags: Tuple[str, ...]  # criterion flags for the GLUE metric

    sec_per_update: float  # MiniLM, batch 16, 1 thread (the --dry-run estimate)
    family: str = "glue"
    lr_grid: Tuple[float, ...] = (2e-5, 5e-5, 1e-4, 2e-4)  # 2e-4 added after MRPC peaked at 1e-4
    ood: Tuple[OodSet, ...] = ()  # scored once on the best dev checkpoint after training

    @property
    def regression(self) -> bool:
        return self.num_classes == 1

    def fairseq_args(self, model_dir: str) -> Tuple[str, ...]:
        """fairseq-train's task, model and metric flags."""
        return ("--task", "sentence_prediction", "--num-classes", str(self.num_classes), "--max-positions", "512",
                "--arch", "hf_sequence_classifier", "--hf-model-dir", model_dir, *self.flags,
                *(("--regression-target",) if self.regression else ()))

    def prepare(self, data: Path, key: str, n_train: Optional[int], work: Path, n_dev: Optional[int],
                max_length: int, model_dir: str) -> Tuple[Path, dict]:
        return prepare(data / "glue", key, n_train, work, n_dev, max_length, model_dir)

    def prepare_heldout(self, data: Path, key: str, n_train: Optional[int], binned: Path, max_length: int,
                        model_dir: str) -> int:
        return prepare_heldout(data / "glue", key, n_train, binned, max_length, model_dir)


TASKS = {
    "rte": GlueTask("RTE", "accuracy", (), 2, (), 2.4),
    "mrpc": GlueTask("MRPC", "f1", ("accuracy", "acc_and_f1"), 2, ("--report-acc-and-f1",), 1.8),
    "cola": GlueTask("CoLA", "mcc", ("accuracy",), 2, ("--report-mcc",), 0.5),
    "stsb": GlueTask("STS-B", "pearson", ("spearman", "pearson_and_spearman"), 1, ("--report-pearson-and-spearman",), 1.2),
    "sst2": GlueTask("SST-2", "accuracy", (), 2, (), 0.7),
    # sec_per_update: MNLI pairs are about RTE's length, shorter than MRPC's; QQP's questions shorter still
    "mnli": GlueTask("MNLI", "accuracy", (), 3, (), 1.5, family="ood", ood=(HANS,)),
    "qqp": GlueTask("QQP", "accuracy", (), 2, (), 1.0, family="ood", ood=(PAWS,)),
}
JSON_TASKS = ("mnli", "qqp")  # ../shared/data/<task>/{train,dev}.json, beside the glue folder


def _rows(path: Path, header: bool) -> List[List[str]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    rows = [r for r in rows if r]
    return rows[1:] if header else rows


def read_split(data: Path, task: str, split: str) -> List[Tuple[str, Optional[str], str]]:
    """(sentence 1, sentence 2 or None, label) for every row of ``split`` (train or dev); ``data``
    is the GLUE folder (the JSON slices lie beside it)."""
    if task in JSON_TASKS:
        import json

        rows = json.loads((data.parent / task / f"{split}.json").read_text(encoding="utf-8"))
        return [(r["text_a"], r["text_b"], r["label"]) for r in rows.values()]
    folder = data / TASKS[task].name
    path = folder / f"{split}.tsv"
    if task == "cola":  # no header: source, label, original label, sentence
        return [(r[3], None, r[1]) for r in _rows(path, header=False)]
    rows = _rows(path, header=True)
    if task == "rte":
        return [(r[1], r[2], {"entailment": "0", "not_entailment": "1"}[r[3]]) for r in rows]
    if task == "mrpc":
        return [(r[3], r[4], r[0]) for r in rows]
    if task == "stsb":
        return [(r[7], r[8], r[9]) for r in rows]
    if task == "sst2":
        return [(r[0].strip(), None, r[1]) for r in rows]
    raise ValueError(f"unknown GLUE task {task!r}; known: {sorted(TASKS)}")


def prepare_heldout(data: Path, task: str, n_train: Optional[int], binned: Path, max_length: int,
                    model_dir: Optional[str] = None) -> int:
    """Binarize ``HELDOUT`` training rows outside the training subset as the data's ``test``
    split (GLUE's test labels are not public; this is not GLUE's test set), so a method that
    scores itself during training (AttendOut) need not look at the dev set we report. Only
    ``test.*`` files are added to ``binned``; skipped when there. Returns the number of rows."""
    rows = read_split(data, task, "train")
    if n_train is None or n_train >= len(rows):
        return 0
    held = subsample(rows, HELDOUT, skip=n_train)
    if (binned / "heldout-done").exists():
        return len(held)
    tmp = binned.parent / "heldout"
    raw = tmp / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    pair = held[0][1] is not None
    train = subsample(rows, n_train)
    for split, part in (("train", train), ("test", held)):  # train: the same dictionaries as binned's
        (raw / f"{split}.input0").write_text("".join(r[0] + "\n" for r in part), encoding="utf-8")
        if pair:
            (raw / f"{split}.input1").write_text("".join(r[1] + "\n" for r in part), encoding="utf-8")
        (raw / f"{split}.label").write_text("".join(r[2] + "\n" for r in part), encoding="utf-8")
    cmd = [sys.executable, "-m", "addrop_fairseq.hf.preprocess", "--model-dir", model_dir or minilm_dir(),
           "--task", "sentence_prediction", "--max-length", str(max_length), "--trainpref", str(raw / "train"),
           "--testpref", str(raw / "test"), "--destdir", str(tmp / "bin")]
    if TASKS[task].regression:
        cmd.append("--regression")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    for sub in ("input0", "label"):
        a, b = tmp / "bin" / sub / "dict.txt", binned / sub / "dict.txt"

        def symbols(path):  # the indices (the counts differ: other rows)
            return [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines()]

        if a.exists() and symbols(a) != symbols(b):
            raise RuntimeError(f"{task}: the held-out split's {sub} dictionary differs from the data's")
        for f in (tmp / "bin" / sub).glob("test.*"):
            (binned / sub / f.name).write_bytes(f.read_bytes())
    (binned / "heldout-done").write_text(f"{len(held)}\n")
    return len(held)


def majority_reference(data: Path, task: str, n_train: Optional[int]) -> Optional[dict]:
    """What predicting the training subset's most frequent label for every dev example scores,
    in the task's metric (percent, as fairseq logs it): the floor a fine-tuned model must beat.
    F1 counts label 1 as positive (MRPC's paraphrase, as fairseq's ``--report-acc-and-f1``);
    a constant prediction has MCC 0. None for regression (a constant has no Pearson)."""
    spec = TASKS[task]
    if spec.regression:
        return None
    train = subsample(read_split(data, task, "train"), n_train)
    dev = read_split(data, task, "dev")
    train_counts, dev_counts = Counter(r[2] for r in train), Counter(r[2] for r in dev)
    label = min(train_counts, key=lambda k: (-train_counts[k], k))
    share = dev_counts[label] / len(dev)
    scores = {"accuracy": 100 * share, "mcc": 0.0,
              "f1": 100 * 2 * share / (1 + share) if label == "1" else 0.0}
    return {"task": task, "metric": spec.metric, "score": round(scores[spec.metric], 2), "label": label,
            "train_size": len(train), "train_counts": dict(sorted(train_counts.items())),
            "dev_size": len(dev), "dev_counts": dict(sorted(dev_counts.items()))}


def minilm_dir() -> str:
    from addrop_fairseq.command_line import minilm_dir  # not installed: one line naming the command

    return minilm_dir()


def prepare(data: Path, task: str, n_train: Optional[int], work: Path, n_dev: Optional[int] = None,
            max_length: int = 128, model_dir: Optional[str] = None) -> Tuple[Path, dict]:
    """Binarized ``task`` (train: ``n_train`` rows of the fixed shuffle; dev: all, or the first
    ``n_dev``) under ``work``; returns (data-bin folder, sizes). Skipped when already there."""
    tag = f"{task}-train{n_train or 'all'}-dev{n_dev or 'all'}-len{max_length}"
    out = work / "data" / tag
    binned = out / "bin"
    train = subsample(read_split(data, task, "train"), n_train)
    dev = read_split(data, task, "dev")[:n_dev] if n_dev else read_split(data, task, "dev")
    sizes = {"train": len(train), "dev": len(dev), "dev_total": len(read_split(data, task, "dev"))}
    if (binned / "done").exists():
        return binned, sizes
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    pair = train[0][1] is not None
    for split, rows in (("train", train), ("valid", dev)):
        (raw / f"{split}.input0").write_text("".join(r[0] + "\n" for r in rows), encoding="utf-8")
        if pair:
            (raw / f"{split}.input1").write_text("".join(r[1] + "\n" for r in rows), encoding="utf-8")
        (raw / f"{split}.label").write_text("".join(r[2] + "\n" for r in rows), encoding="utf-8")
    cmd = [sys.executable, "-m", "addrop_fairseq.hf.preprocess", "--model-dir", model_dir or minilm_dir(),
           "--task", "sentence_prediction", "--max-length", str(max_length),
           "--trainpref", str(raw / "train"), "--validpref", str(raw / "valid"), "--destdir", str(binned)]
    if TASKS[task].regression:
        cmd.append("--regression")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    (binned / "done").write_text("ok\n")
    return binned, sizes
