"""Score a sentence-classification checkpoint on a labelled file (the ``addrop-evaluate``
command): accuracy overall, per gold label and per group (e.g. HANS's heuristic), for test sets
whose labels differ from the model's through a label map (HANS: an MNLI model's neutral and
contradiction both count as non-entailment, as in HANS's own evaluation).

    addrop-evaluate --checkpoint checkpoints/checkpoint_best.pt --input hans_eval_30k.tsv \\
        --text-columns sentence1,sentence2 --label-column gold_label --group-column heuristic \\
        --label-map neutral=non-entailment,contradiction=non-entailment --output hans.json

Any ``--task sentence_prediction`` checkpoint of ``hf_sequence_classifier`` (data made by
``addrop-hf-preprocess --task sentence_prediction``): the input is tokenized as that command
tokenized the training data (the model's HF tokenizer, a pair as ``tokenizer(a, b)``,
truncated to ``--max-length``). Input: a TSV with a header row (CRLF accepted; no quoting: a
quote is text) or JSON (a list of objects, or an object of objects such as GLUE slices'
``{"0": {"text_a": ..., "text_b": ..., "label": ...}}``). Every row is scored: a row with an
empty text or label, or a label the model cannot predict after the map, stops the command
with an error naming it before the model runs.
"""
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .command_line import (
    check_input_file,
    check_output_file,
    checkpoint_parser,
    load_checkpoint,
    positive_int,
    run_command,
)


class InputError(ValueError):
    pass


def read_rows(path: str) -> List[Dict[str, str]]:
    """The rows of a TSV (header row first) or JSON file as dicts of strings; each row knows
    where it came from (``_where``: ``file:line`` or ``file[key]``) for error messages."""
    p = Path(path)
    check_input_file(path, "--input")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        line = p.read_bytes()[: e.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not UTF-8 ({e.reason})") from None
    if p.suffix == ".json":
        data = json.loads(text)
        items = list(data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else [])
        if not items or not all(isinstance(row, dict) for _, row in items):
            raise InputError(f"{path}: not a list or object of rows (objects of column: value)")
        return [{**{k: str(v) for k, v in row.items()}, "_where": f"{path}[{key!r}]"} for key, row in items]
    lines = text.splitlines()
    if not lines:
        raise InputError(f"{path}: empty file")
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader)
    rows = []
    for n, fields in enumerate(reader, start=2):
        if not fields:
            continue
        if len(fields) != len(header):
            raise InputError(f"{path}:{n}: {len(fields)} fields, the header has {len(header)}")
        rows.append({**dict(zip(header, fields)), "_where": f"{path}:{n}"})
    return rows


def parse_label_map(spec: Optional[str]) -> Dict[str, str]:
    """``"neutral=non-entailment,contradiction=non-entailment"`` -> {model label: test label}."""
    out = {}
    for item in filter(None, (spec or "").split(",")):
        if "=" not in item:
            raise InputError(f"--label-map: {item!r} is not MODEL_LABEL=TEST_LABEL")
        a, b = (x.strip() for x in item.split("=", 1))
        out[a] = b
    return out


def examples(rows: List[Dict[str, str]], text_columns: Sequence[str], label_column: str,
             group_column: Optional[str], labels: Sequence[str]) -> List[dict]:
    """(texts, gold, group) per row, every field checked (errors name the row and column)."""
    wanted = [*text_columns, label_column, *([group_column] if group_column else [])]
    out = []
    for row in rows:
        missing = [c for c in wanted if c not in row]
        if missing:
            known = sorted(k for k in row if k != "_where")
            raise InputError(f"{row['_where']}: no column(s) {missing}; the file has {known}")
        for c in (*text_columns, label_column):
            if not row[c].strip():
                raise InputError(f"{row['_where']}: empty {c!r}")
        gold = row[label_column].strip()
        if gold not in labels:
            raise InputError(f"{row['_where']}: gold label {gold!r} is not one the model can predict "
                             f"(its labels after --label-map: {sorted(set(labels))})")
        out.append({"texts": [row[c] for c in text_columns], "gold": gold,
                    "group": row[group_column].strip() if group_column else None})
    return out


def load(checkpoint: str, data: Optional[str]):
    """(model, task, head name) of a sentence_prediction checkpoint of a HF classifier."""
    model, cfg, task = load_checkpoint(checkpoint, data)
    if not hasattr(task, "label_dictionary") or getattr(cfg.task, "regression_target", False):
        raise InputError(f"{checkpoint}: not a --task sentence_prediction classifier (task: {cfg.task._name})")
    if not hasattr(model, "tokenizer"):
        raise InputError(f"{checkpoint}: model {cfg.model._name} is not a HuggingFace classifier (hf_sequence_classifier)")
    head = getattr(cfg.criterion, "classification_head_name", None) or "sentence_classification_head"
    return model, task, head


def predict_logits(model, task, head: str, texts: List[List[str]], max_length: int, batch_size: int, device):
    """The model's logits [N, classes] for each example, in input order (batches of similar
    lengths, longest first)."""
    import torch
    from fairseq.data import data_utils

    from .hf.preprocess import Encoder

    enc = Encoder(model.tokenizer)
    hf_ids = model.tokenizer(*zip(*texts), add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
    ids = [torch.tensor(enc.fairseq_ids(row), dtype=torch.long) for row in hf_ids]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    out = [None] * len(ids)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            tokens = data_utils.collate_tokens([ids[i] for i in idx], task.source_dictionary.pad()).to(device)
            lengths = torch.tensor([len(ids[i]) for i in idx], device=device)
            logits, _ = model(tokens, lengths, features_only=True, classification_head_name=head)
            for i, row in zip(idx, logits.float().cpu()):
                out[i] = row
            if (start // batch_size) % 50 == 49:
                print(f"  {start + len(idx)}/{len(order)} examples", file=sys.stderr, flush=True)
    return torch.stack(out)


def accuracy(hits: List[bool]) -> dict:
    return {"n": len(hits), "accuracy": 100.0 * sum(hits) / len(hits)}


def score(gold: Sequence[str], pred: Sequence[str], groups: Sequence[Optional[str]]) -> dict:
    """Accuracy (percent) overall, per gold label, per group and per group and gold label."""
    hits = [g == p for g, p in zip(gold, pred)]
    by = defaultdict(list)
    for hit, g, grp in zip(hits, gold, groups):
        by[("label", g)].append(hit)
        if grp is not None:
            by[("group", grp)].append(hit)
            by[("group_label", f"{grp}/{g}")].append(hit)
    out = {**accuracy(hits), "predicted": {p: pred.count(p) for p in sorted(set(pred))}}
    for kind in ("label", "group", "group_label"):
        keys = sorted(k for t, k in by if t == kind)
        if keys:
            out[f"by_{kind}"] = {k: accuracy(by[(kind, k)]) for k in keys}
    return out


def text_columns(spec: str) -> List[str]:
    """``--text-columns``: one column, or two for a pair (the tokenizer reads no more)."""
    names = [c.strip() for c in spec.split(",")]
    if not 1 <= len(names) <= 2 or not all(names):
        raise InputError(f"--text-columns {spec!r}: give one column, or two (comma-separated) for a pair")
    return names


def evaluate(args) -> dict:
    import torch

    columns = text_columns(args.text_columns)
    if args.output:
        check_output_file(args.output, "--output")
    label_map = parse_label_map(args.label_map)
    rows = read_rows(args.input)[: args.limit]
    if not rows:
        raise InputError(f"{args.input}: no rows")
    model, task, head = load(args.checkpoint, args.data)
    model_labels = task.label_dictionary.symbols[task.label_dictionary.nspecial:]
    unknown = sorted(set(label_map) - set(model_labels))
    if unknown:
        raise InputError(f"--label-map: {unknown} are not labels of the model ({model_labels})")
    mapped = [label_map.get(x, x) for x in model_labels]
    exs = examples(rows, columns, args.label_column, args.group_column, mapped)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    model.to(device).eval()
    max_length = args.max_length or model.max_positions()
    logits = predict_logits(model, task, head, [e["texts"] for e in exs], max_length, args.batch_size, device)
    labels = task.label_dictionary
    raw = [labels[k + labels.nspecial] for k in logits.argmax(-1).tolist()]
    result = {"checkpoint": args.checkpoint, "input": args.input, "label_map": label_map,
              **score([e["gold"] for e in exs], [label_map.get(p, p) for p in raw], [e["group"] for e in exs])}
    print(f"{args.input}: accuracy {result['accuracy']:.2f} on {result['n']} examples")
    for kind in ("by_label", "by_group", "by_group_label"):
        for key, s in result.get(kind, {}).items():
            print(f"  {key:<40} {s['accuracy']:6.2f}  ({s['n']})")
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return result


def get_parser():
    p = checkpoint_parser("addrop-evaluate", __doc__, "a checkpoint of fairseq-train --task sentence_prediction")
    p.add_argument("--input", required=True, help="labelled TSV (header row) or JSON file to score")
    p.add_argument("--text-columns", default="sentence1,sentence2", help="one column, or two for a pair")
    p.add_argument("--label-column", default="label")
    p.add_argument("--group-column", default=None, help="also report accuracy per value of this column")
    p.add_argument("--label-map", default=None,
                   help="MODEL_LABEL=TEST_LABEL,... for labels the test set names differently")
    p.add_argument("--max-length", type=positive_int, default=None,
                   help="truncate inputs to this many tokens, as the training data was (default: the model's limit)")
    p.add_argument("--limit", type=positive_int, default=None, help="score only the first N rows (a quick check)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--output", default=None, help="write the scores as JSON here")
    p.add_argument("--cpu", action="store_true", help="run on CPU even if CUDA is available")
    return p


def run(argv=None) -> dict:
    """Score (see the module docstring); returns the scores."""
    return run_command(get_parser(), evaluate, argv, errors=(InputError, FileNotFoundError, ValueError))


def main(argv=None) -> None:
    """The command (``addrop-evaluate``): exit status 0 on success, an error message otherwise
    (the console script exits with what this returns: the scores would be an exit status 1)."""
    run(argv)


if __name__ == "__main__":
    main()
