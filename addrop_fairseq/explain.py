"""Draw what AD-DROP does to one input (the ``addrop-explain`` command).

    addrop-explain --checkpoint runs/mrpc/checkpoint_best.pt \\
        --text "The cat sat on the mat." --text-pair "A cat was sitting on a mat." \\
        --layer 0 --head 0 --out explain.png

For a ``sentence_prediction`` or ``sequence_tagging`` checkpoint (fairseq models and the
``hf_*`` wrappers alike), one AD-DROP step on the input exactly as ``--criterion addrop_ce``
runs it in training: train mode, pass 1 and the attribution, Eq. 6-7's masks drawn after
``torch.manual_seed(--seed)``, pass 2. The criterion's options are the checkpoint's when it
was trained with ``addrop_ce`` (the defaults otherwise), changed by the ``--addrop-*`` flags
given here; the schedule is always on (an explanation of an AD-DROP update).

Writes the PNG (for one layer and head: the attention map of the model in eval mode, the
attribution, the dropped positions; tokens on both axes) and, next to it, a JSON with the
tokens, the prediction and the dropped (head, query, key) positions of every masked layer.
A ``sequence_tagging`` input is the words separated by spaces. Translation is not supported
(its attribution needs a target sentence).
"""
import argparse
import json
import os
from pathlib import Path
from typing import Dict, List, Optional

from .command_line import checkpoint_parser, load_checkpoint, run_command

# one AD-DROP update is drawn: the options that say which updates are AD-DROP's do not apply
NOT_FOR_ONE_STEP = ("addrop_schedule", "addrop_cross_period")


def get_parser():
    p = checkpoint_parser("addrop-explain", __doc__, "a sentence_prediction or sequence_tagging checkpoint")
    p.add_argument("--text", required=True, help="the sentence (sequence_tagging: words separated by spaces)")
    p.add_argument("--text-pair", help="the second sentence of a pair (sentence_prediction)")
    p.add_argument("--sentencepiece-model", help="fairseq models: the sentencepiece model the data was "
                                                   "encoded with, when the checkpoint records no --bpe")
    p.add_argument("--label", help="the gold label (class name, a number for regression, or one tag per "
                                   "word); needed for --addrop-labels gold and for regression")
    p.add_argument("--layer", type=int, default=0, help="layer to draw (default 0)")
    p.add_argument("--head", type=int, default=0, help="head to draw (default 0)")
    p.add_argument("--seed", type=int, default=1, help="torch seed before the step (dropout and Eq. 7's draws)")
    p.add_argument("--out", default="explain.png", help="the PNG to write (a folder: explain.png in it); "
                                                       "the JSON goes next to it")
    add_criterion_options(p.add_argument_group("criterion options (default: the checkpoint's addrop_ce options)"))
    return p


def add_criterion_options(group) -> None:
    """The criterion's ``--addrop-*`` options, as fairseq-train parses them (type, choices, help,
    all from ``ADDropCriterionConfig``), but NOT_FOR_ONE_STEP; unset: None (the checkpoint's)."""
    from fairseq.dataclass.utils import gen_parser_from_dataclass

    from .criterions.addrop_ce import ADDropCriterionConfig
    from .criterions.site_criterion import checked_type
    from .options import ADDROP_CHECKS, flag_of

    fairseq_train = argparse.ArgumentParser(add_help=False)
    gen_parser_from_dataclass(fairseq_train, ADDropCriterionConfig(), delete_default=True)
    for action in fairseq_train._actions:
        if action.dest.startswith("addrop_") and action.dest not in NOT_FOR_ONE_STEP:
            action.default = None
            if action.dest in ADDROP_CHECKS:  # a bad value is a usage error, as in fairseq-train
                action.type = checked_type(action.type or str, ADDROP_CHECKS[action.dest], flag_of(action.dest))
            group._add_action(action)


def criterion_flags(args) -> List[str]:
    """The ``addrop_*`` fields :func:`add_criterion_options` added, in their order."""
    return [k for k in vars(args) if k.startswith("addrop_")]


# ---------------------------------------------------------------------------- loading


def load(args):
    """(model, task, criterion, bpe) from the checkpoint, the criterion with the flags applied."""
    from .criterions.addrop_ce import ADDropCriterion, ADDropCriterionConfig

    model, cfg, task = load_checkpoint(args.checkpoint, args.data)
    name = cfg.task._name
    if name not in ("sentence_prediction", "sequence_tagging"):
        raise ValueError(f"{args.checkpoint}: task {name!r}; addrop-explain draws sentence_prediction "
                         "and sequence_tagging models")
    crit = ADDropCriterionConfig()
    trained = cfg.criterion if cfg.criterion is not None else {}
    for f in ADDropCriterionConfig.__dataclass_fields__:
        if f in trained and f != "sentence_avg":
            setattr(crit, f, trained[f])
    crit.sentence_avg = bool(cfg.optimization.sentence_avg)
    if "regression_target" in cfg.task:
        crit.regression_target = bool(cfg.task.regression_target)
    for f in criterion_flags(args):
        value = getattr(args, f)
        if value is not None:
            setattr(crit, f, value)
    crit.addrop_schedule = "always"
    from fairseq.data import encoders

    if args.sentencepiece_model:
        bpe = encoders.build_bpe(argparse.Namespace(bpe="sentencepiece", sentencepiece_model=args.sentencepiece_model))
    else:
        bpe = encoders.build_bpe(cfg.bpe) if cfg.get("bpe") is not None else None
    return model, task, ADDropCriterion(crit, task), bpe


# ---------------------------------------------------------------------------- the input


def encode(model, task, bpe, text: str, pair: Optional[str]):
    """(src tokens [T], display tokens, labelled positions [T] or None) as the data has them."""
    import torch

    if hasattr(task, "encode_words"):
        if pair:
            raise ValueError("--text-pair: a sequence_tagging model reads one sentence")
        words = text.split()
        ids, first = task.encode_words(words)
        return ids.long(), [task.source_dictionary[i] for i in ids], first
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:  # hf_sequence_classifier: as addrop-hf-preprocess encodes a pair
        from .hf.preprocess import Encoder

        hf_ids = tokenizer(*((text, pair) if pair else (text,)), add_special_tokens=True)["input_ids"]
        ids = Encoder(tokenizer).fairseq_ids(hf_ids)
        return torch.tensor(ids), tokenizer.convert_ids_to_tokens(hf_ids), None
    # fairseq sentence_prediction: [init] A </s> [sep] B </s>, with the checkpoint's BPE if any
    d = task.source_dictionary

    def line(s):
        return d.encode_line(bpe.encode(s) if bpe else s, append_eos=True, add_if_not_exist=False).long().tolist()

    ids = ([task.cfg.init_token] if task.cfg.init_token is not None else []) + line(text)
    if pair:
        ids += ([task.cfg.separator_token] if task.cfg.separator_token is not None else []) + line(pair)
    return torch.tensor(ids), [d[i] for i in ids], None


def longest_input(model, task) -> Optional[int]:
    """The most tokens the model reads (the task's and the model's limits), None if neither says."""
    limits = []
    for limit in (task.max_positions(), model.max_positions()):
        if isinstance(limit, int) and limit > 0:
            limits.append(limit)
    return min(limits) if limits else None


def output_path(out: str) -> Path:
    """``--out``: a folder (one that exists, or any path ending in /) gets ``explain.png`` in it,
    a name without a suffix gets ``.png`` (what matplotlib would write)."""
    if out.endswith(("/", os.sep)) or os.path.isdir(out):
        return Path(out) / "explain.png"
    path = Path(out)
    return path if path.suffix else path.with_suffix(".png")


def build_sample(task, criterion, ids, labelled, label: Optional[str]):
    """A batch of one, as the task's collater makes it (the target: --label, else a placeholder
    that pseudo labels never read)."""
    import torch

    kind = criterion.task_kind.name
    needs_label = kind == "regression" or criterion.addrop.options.addrop_labels == "gold"
    if needs_label and label is None:
        raise ValueError("--label is needed for " + ("a regression model" if kind == "regression"
                                                      else "--addrop-labels gold"))
    if kind == "token":
        tags = task.target_dictionary
        n_words = int(labelled.sum())
        names = label.split() if label is not None else [tags[tags.nspecial]] * n_words
        if len(names) != n_words:
            raise ValueError(f"--label: {len(names)} tags for {n_words} words")
        unknown = [t for t in names if tags.index(t) < tags.nspecial]
        if unknown:
            raise ValueError(f"--label: unknown tag(s) {unknown}; the model's tags are {tags.symbols[tags.nspecial:]}")
        target = torch.full_like(ids, tags.pad())
        target[labelled] = torch.tensor([tags.index(t) for t in names])
        ntokens = n_words
    elif kind == "regression":
        target = torch.tensor([float(label)])
        ntokens = len(ids)
    else:
        labels = task.label_dictionary
        name = label if label is not None else labels[labels.nspecial]
        if labels.index(name) < labels.nspecial:
            raise ValueError(f"--label: unknown class {name!r}; the model's classes are {labels.symbols[labels.nspecial:]}")
        target = torch.tensor([labels.index(name) - labels.nspecial])
        ntokens = len(ids)
    return {"id": torch.tensor([0]), "nsentences": 1, "ntokens": ntokens,
            "net_input": {"src_tokens": ids[None], "src_lengths": torch.tensor([len(ids)])},
            "target": target[None] if kind == "token" else target}


# ---------------------------------------------------------------------------- the step


def explain(model, task, criterion, sample, seed: int) -> Dict:
    """Run one AD-DROP step as training does and return, per masked site, its eval-mode
    attention map, its attribution and its drop mask ([H, T, S] each), and the prediction."""
    import torch

    from . import sites

    model.train()
    torch.manual_seed(seed)
    _, _, _, drop = criterion.addrop_step(model, sample, keep=True)
    selected = criterion.sites
    model.eval()
    with torch.no_grad(), sites.recording(selected, point="softmax") as rec:
        prediction = criterion.task_kind.predict(model, sample)
    probs = rec.result()
    out = []
    for i, site in enumerate(selected):
        if i not in drop.kept:
            continue
        attribution, mask = drop.kept[i]
        out.append({"site": site, "probs": probs[i][0].float(), "attribution": attribution[0].detach().float(),
                    "drop": mask[0]})
    return {"sites": out, "prediction": prediction, "drop_fracs": drop_fracs(drop)}


def drop_fracs(drop) -> Dict[str, float]:
    """The step's ``addrop_drop_frac`` and ``addrop_drop_frac_attributed`` (over the query rows
    whose attribution is not all zero: the drop that can reach the output), as training logs them."""
    def frac(dropped, valid):
        return round(float(dropped) / float(valid), 4) if float(valid) else 0.0

    return {"addrop_drop_frac": frac(drop.dropped, drop.valid),
            "addrop_drop_frac_attributed": frac(drop.dropped_attributed, drop.valid_attributed)}


def describe_prediction(task, criterion, prediction, labelled) -> object:
    kind = criterion.task_kind.name
    if kind == "regression":
        return float(prediction.output.view(-1)[0])
    if kind == "classification":
        labels = task.label_dictionary
        return labels[int(prediction.output.argmax(-1)[0]) + labels.nspecial]
    from .tagging import decode

    return decode.word_tags(decode.predict_ids(prediction.output, task.target_dictionary.nspecial),
                            labelled[None], task.target_dictionary)[0]


def draw(site: Dict, tokens: List[str], head: int, path: Path, title: str) -> None:
    try:
        import matplotlib
    except ImportError:
        raise ValueError("addrop-explain draws with matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs, attr, drop = (site[k][head].numpy() for k in ("probs", "attribution", "drop"))
    n = len(tokens)
    fig, axes = plt.subplots(1, 3, figsize=(3 * max(4.0, 0.32 * n + 1.5), max(4.0, 0.32 * n + 1.5)))
    lim = float(abs(attr).max()) or 1.0
    panels = [("attention (eval mode)", probs, "viridis", 0.0, float(probs.max()) or 1.0),
              ("attribution (pass 1)", attr, "RdBu_r", -lim, lim),
              (f"dropped: {int(drop.sum())} of {int((probs > 0).sum())}", drop.astype(float), "Reds", 0.0, 1.0)]
    for ax, (name, img, cmap, lo, hi) in zip(axes, panels):
        im = ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(n), tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(n), tokens, fontsize=7)
        ax.set_xlabel("key")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    axes[0].set_ylabel("query")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def work(args) -> Dict:
    if not args.text.split():
        raise ValueError("--text is empty: give the sentence to explain (sequence_tagging: its words)")
    out = output_path(args.out)
    model, task, criterion, bpe = load(args)
    ids, tokens, labelled = encode(model, task, bpe, args.text, args.text_pair)
    limit = longest_input(model, task)
    if limit is not None and len(ids) > limit:
        given = "--text and --text-pair" if args.text_pair else "--text"
        raise ValueError(f"{given}: {len(ids)} tokens, the model reads at most {limit}: give a shorter text "
                         "(AD-DROP's masks are drawn on the whole input, so it is not truncated)")
    sample = build_sample(task, criterion, ids, labelled, args.label)
    result = explain(model, task, criterion, sample, args.seed)
    chosen = [s for s in result["sites"] if s["site"].layer == args.layer]
    if not chosen:
        masked = sorted({s["site"].layer for s in result["sites"]})
        raise ValueError(f"--layer {args.layer}: AD-DROP masks layers {masked} of this model "
                         "(see --addrop-layers / --addrop-attention)")
    site = chosen[0]
    heads = site["probs"].size(0)
    if not 0 <= args.head < heads:
        raise ValueError(f"--head {args.head}: layer {args.layer} has heads 0-{heads - 1}")
    cfg = criterion.addrop.options
    prediction = describe_prediction(task, criterion, result["prediction"], labelled)
    draw(site, tokens, args.head, out,
         f"{site['site'].name}, head {args.head} | {cfg.addrop_attribution}, {cfg.addrop_labels} labels, "
         f"drop {cfg.addrop_drop}, p={cfg.addrop_p:g} q={cfg.addrop_q:g}, seed {args.seed} | prediction: {prediction}")
    summary = {
        "checkpoint": str(args.checkpoint), "tokens": tokens, "prediction": prediction,
        "layer": args.layer, "head": args.head, "seed": args.seed,
        "options": {f: getattr(cfg, f) for f in criterion_flags(args)},
        **result["drop_fracs"],
        "sites": [{"name": s["site"].name, "kind": s["site"].kind, "layer": s["site"].layer,
                   "dropped": s["drop"].nonzero().tolist()} for s in result["sites"]],
    }
    out.with_suffix(".json").write_text(json.dumps(summary, separators=(",", ":")) + "\n", encoding="utf-8")
    fracs = result["drop_fracs"]
    print(f"{out}: layer {args.layer} head {args.head}, {int(site['drop'][args.head].sum())} positions dropped; "
          f"prediction {prediction}; all masks in {out.with_suffix('.json')}")
    print(f"dropped over all masked maps: {fracs['addrop_drop_frac']:.4f} (addrop_drop_frac); over the query rows "
          f"whose attribution is not all zero: {fracs['addrop_drop_frac_attributed']:.4f} (addrop_drop_frac_attributed)")
    return summary


def main(argv=None) -> None:
    run_command(get_parser(), work, argv)


if __name__ == "__main__":
    main()
