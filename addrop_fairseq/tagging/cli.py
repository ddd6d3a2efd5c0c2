"""Tag a CoNLL file with a trained ``sequence_tagging`` checkpoint (the ``addrop-tag`` command).

    addrop-tag --checkpoint runs/ner/addrop/checkpoint_best.pt \\
        --data data-bin/conll2003 --input dev.txt --output dev.pred.txt

(also ``python -m addrop_fairseq.tagging.cli``, or the old ``python -m addrop_fairseq.tag``).
Any ``sequence_tagging`` checkpoint: ``transformer_tagger``, ``roberta_tagger``, and
``hf_token_classifier`` on data from ``addrop-hf-preprocess --task sequence_tagging``
(words split by the HF tokenizer recorded in the data directory).

Writes the input back line for line with the predicted tag as an added last column
(``-DOCSTART-`` lines get ``O``), in the input's tag scheme (IOB1 or IOB2; IOB2 for a file
without gold tags unless ``--tag-scheme`` says otherwise), always a valid sequence of that
scheme (a predicted entity opening with ``I-X`` is written as seqeval reads it). Every token is tagged as given,
unknown words included. When the last column holds gold tags, prints seqeval's report
(per entity type and micro average). Malformed input stops with an error naming the line.
"""
import sys
from typing import List, Optional

from .. import command_line as cli
from . import schemes
from .conll import read_conll, with_column


def get_parser():
    p = cli.checkpoint_parser("addrop-tag", __doc__, "a checkpoint of fairseq-train --task sequence_tagging")
    p.add_argument("--input", required=True, help="CoNLL file to tag (token first, optional gold tag last)")
    p.add_argument("--output", default="-", help="where to write the tagged file ('-': stdout)")
    p.add_argument("--tag-scheme", default="auto", choices=["auto", *schemes.SCHEMES],
                   help="scheme of the gold tags and of the written predictions")
    p.add_argument("--no-gold", action="store_true", help="the last column is not a gold tag")
    p.add_argument("--batch-size", type=cli.positive_int, default=64, help="sentences per forward pass")
    p.add_argument("--cpu", action="store_true", help="run on CPU even if CUDA is available")
    return p


class InputError(ValueError):
    pass


def gold_iob2(conll, scheme: str, tag_dict) -> List[List[str]]:
    """The gold tags in IOB2, each checked against the model's tag set (errors name the line)."""
    gold = []
    for sent in conll.sentences:
        tags = schemes.to_iob2(sent.tags, scheme)
        for tag, line in zip(tags, sent.lines):
            if tag_dict.index(tag) < tag_dict.nspecial:
                known = ", ".join(tag_dict.symbols[tag_dict.nspecial:])
                raise InputError(f"{conll.path}:{line}: unknown gold tag {tag!r}; the model's tags are {known}")
        gold.append(tags)
    return gold


def predict(task, model, conll, batch_size: int, device) -> List[List[str]]:
    import torch
    from fairseq.data import data_utils

    limit = min(p for p in (task.max_positions(), model.max_positions()) if p)
    encoded = []
    for sent in conll.sentences:
        ids, first = task.encode_words(sent.tokens)
        if len(ids) > limit:
            raise InputError(
                f"{conll.path}:{sent.lines[0]}: sentence of {len(ids)} pieces is longer than the "
                f"model's {limit} positions"
            )
        encoded.append((ids, first))
    pad = task.source_dictionary.pad()
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    out = [None] * len(encoded)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            tokens = data_utils.collate_tokens([encoded[i][0] for i in idx], pad)
            labelled = data_utils.collate_tokens([encoded[i][1].long() for i in idx], 0).bool()
            net_input = {"src_tokens": tokens.to(device), "src_lengths": labelled.new_tensor(
                [len(encoded[i][0]) for i in idx], dtype=torch.long).to(device)}
            for i, tags in zip(idx, task.predict(model, net_input, labelled.to(device))):
                out[i] = tags
    return out


def report(gold, pred, stream) -> dict:
    from seqeval.metrics import classification_report

    from .metrics import entity_counts, prf

    counts = entity_counts(gold, pred)
    p, r, f = prf(counts["ner_tp"], counts["ner_pred"], counts["ner_gold"])
    print(classification_report(gold, pred, digits=4, zero_division=0), file=stream)
    acc = counts["ner_correct"] / max(counts["ner_words"], 1)
    print(f"entity-level (seqeval) precision {100 * p:.2f} recall {100 * r:.2f} f1 {100 * f:.2f} | "
          f"word accuracy {100 * acc:.2f} | {len(gold)} sentences", file=stream)
    return {"precision": p, "recall": r, "f1": f, "word_acc": acc}


def load(checkpoint: str, data):
    model, cfg, task = cli.load_checkpoint(checkpoint, data)
    if not hasattr(task, "encode_words"):
        raise InputError(f"{checkpoint} was not trained with --task sequence_tagging (task: {cfg.task._name})")
    try:
        task.splitter  # the data's word splitter (e.g. the HF tokenizer directory it names)
    except ValueError as e:
        raise InputError(str(e)) from None
    return model, task


def read_input(path: str, gold: Optional[bool]):
    """The CoNLL input; text that is not UTF-8 is an error naming its first such line."""
    try:
        return read_conll(path, gold=gold)
    except UnicodeDecodeError:
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise InputError(f"{path}:{number}: not UTF-8 (byte {line[e.start]:#04x} at column "
                                     f"{e.start + 1}); convert the file, e.g. iconv -f latin1 -t utf-8") from None
        raise


def run(argv=None) -> Optional[dict]:
    """Tag (see the module docstring); returns the scores when the input has gold tags."""
    return cli.run_command(get_parser(), work, argv)


def work(args) -> Optional[dict]:
    cli.check_input_file(args.input, "--input")
    if args.output != "-":
        cli.check_output_file(args.output, "--output")  # before the work, not after tagging everything
    conll = read_input(args.input, gold=False if args.no_gold else None)
    if not conll.sentences:
        raise InputError(f"{args.input}: no sentences")
    scheme = args.tag_scheme
    if conll.gold:
        scheme = schemes.resolve_scheme(scheme, [s.tags for s in conll.sentences])
    elif scheme == "auto":
        scheme = "iob2"
    import torch

    model, task = load(args.checkpoint, args.data)
    gold = gold_iob2(conll, scheme, task.target_dictionary) if conll.gold else None
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    model.to(device).eval()
    # valid IOB2 (an entity opening with I-X becomes B-X): seqeval reads the same entities
    pred = [schemes.iob1_to_iob2(p) for p in predict(task, model, conll, args.batch_size, device)]
    lines = with_column(conll, [schemes.from_iob2(p, scheme) for p in pred])
    if args.output == "-":
        sys.stdout.write("\n".join(lines) + "\n")
        info = sys.stderr
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        info = sys.stdout
    if gold is not None:
        return report(gold, pred, info)
    return None


def main(argv=None) -> None:
    """The command (``addrop-tag``): exit status 0 on success, an error message otherwise."""
    run(argv)


if __name__ == "__main__":
    main()
