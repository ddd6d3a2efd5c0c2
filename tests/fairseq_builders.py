"""Build real fairseq tasks, models and criteria in-process from command-line style args."""
import random
from pathlib import Path

from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

import addrop_fairseq

addrop_fairseq.register()  # in case a test imported the package before fairseq


def write_dict(path: Path, n_symbols: int) -> None:
    path.write_text("".join(f"w{i} {1000 - i}\n" for i in range(n_symbols)))


def translation_dir(tmp: Path, n_symbols: int = 40) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    write_dict(tmp / "dict.src.txt", n_symbols)
    write_dict(tmp / "dict.tgt.txt", n_symbols)
    return tmp


def build(data_dir, extra, task="translation", arch="transformer"):
    """(cfg, task, model, criterion) exactly as fairseq-train would build them."""
    parser = options.get_training_parser()
    argv = [str(data_dir), "--task", task, "--arch", arch, *map(str, extra)]
    if task == "translation":
        argv += ["--source-lang", "src", "--target-lang", "tgt"]
    args = options.parse_args_and_arch(parser, argv)
    cfg = convert_namespace_to_omegaconf(args)
    t = tasks.setup_task(cfg.task)
    model = t.build_model(cfg.model)
    criterion = t.build_criterion(cfg.criterion)
    return cfg, t, model, criterion


TINY_TRANSFORMER = [
    "--encoder-layers", "2", "--decoder-layers", "2",
    "--encoder-embed-dim", "16", "--decoder-embed-dim", "16",
    "--encoder-ffn-embed-dim", "32", "--decoder-ffn-embed-dim", "32",
    "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
]


def translation_batch(task, bsz=3, src_len=7, tgt_len=6, seed=0):
    """A padded batch with different lengths per example (left-padded source, like fairseq)."""
    import torch

    rng = random.Random(seed)
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    pad, eos = src_dict.pad(), src_dict.eos()
    lo = src_dict.nspecial
    src = torch.full((bsz, src_len), pad, dtype=torch.long)
    prev = torch.full((bsz, tgt_len), tgt_dict.pad(), dtype=torch.long)
    tgt = torch.full((bsz, tgt_len), tgt_dict.pad(), dtype=torch.long)
    lengths = []
    for b in range(bsz):
        n = src_len - (b % 3)
        toks = [rng.randrange(lo, len(src_dict)) for _ in range(n - 1)] + [eos]
        src[b, src_len - n:] = torch.tensor(toks)  # left pad
        lengths.append(n)
        m = tgt_len - (b % 2) * 2
        t = [rng.randrange(lo, len(tgt_dict)) for _ in range(m - 1)] + [tgt_dict.eos()]
        tgt[b, :m] = torch.tensor(t)
        prev[b, :m] = torch.tensor([tgt_dict.eos()] + t[:-1])
    return {
        "id": torch.arange(bsz),
        "net_input": {
            "src_tokens": src,
            "src_lengths": torch.tensor(lengths),
            "prev_output_tokens": prev,
        },
        "target": tgt,
        "ntokens": int(tgt.ne(tgt_dict.pad()).sum()),
        "nsentences": bsz,
    }


def sentence_prediction_dir(tmp: Path, n_symbols: int = 40, n_labels: int = 2) -> Path:
    (tmp / "input0").mkdir(parents=True, exist_ok=True)
    (tmp / "label").mkdir(parents=True, exist_ok=True)
    write_dict(tmp / "input0" / "dict.txt", n_symbols)
    (tmp / "label" / "dict.txt").write_text("".join(f"{i} 1\n" for i in range(n_labels)))
    return tmp


def binarized_sentence_prediction(tmp: Path, run_cli, n_train: int = 24, n_valid: int = 8) -> Path:
    """A tiny binarized sentence_prediction data set (random symbols of ``sentence_prediction_dir``'s
    dictionary, random binary labels) through fairseq-preprocess: ``tmp / "bin"``."""
    data = sentence_prediction_dir(tmp / "dicts")
    rng = random.Random(0)
    symbols = [line.split()[0] for line in (data / "input0" / "dict.txt").read_text().splitlines()]
    for split, n in (("train", n_train), ("valid", n_valid)):
        (tmp / f"{split}.input0").write_text(
            "".join(" ".join(rng.choice(symbols) for _ in range(rng.randrange(3, 9))) + "\n" for _ in range(n)))
        (tmp / f"{split}.label").write_text("".join(f"{rng.randrange(2)}\n" for _ in range(n)))
    for name, d in (("input0", data / "input0" / "dict.txt"), ("label", data / "label" / "dict.txt")):
        run_cli("fairseq_cli.preprocess", ["--only-source", "--trainpref", tmp / f"train.{name}", "--validpref",
                                           tmp / f"valid.{name}", "--destdir", tmp / "bin" / name,
                                           "--srcdict", d, "--workers", "1"])
    return tmp / "bin"


TINY_ROBERTA = [
    "--encoder-layers", "2", "--encoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
    "--encoder-attention-heads", "2", "--max-positions", "32",
    "--init-token", "0", "--separator-token", "2",
]


def sentence_batch(task, bsz=4, length=9, n_classes=2, seed=0, regression=False):
    """Right-padded <s> ... </s> sentences of different lengths, like sentence_prediction's."""
    import torch

    rng = random.Random(seed)
    d = task.source_dictionary
    src = torch.full((bsz, length), d.pad(), dtype=torch.long)
    lengths = []
    for b in range(bsz):
        n = length - b % 3
        src[b, :n] = torch.tensor([d.bos()] + [rng.randrange(d.nspecial, len(d)) for _ in range(n - 2)] + [d.eos()])
        lengths.append(n)
    if regression:
        target = torch.tensor([rng.random() for _ in range(bsz)])
    else:
        target = torch.tensor([rng.randrange(n_classes) for _ in range(bsz)])
    return {
        "id": torch.arange(bsz),
        "net_input": {"src_tokens": src, "src_lengths": torch.tensor(lengths)},
        "target": target,
        "ntokens": sum(lengths),
        "nsentences": bsz,
    }


class DropoutTaps:
    """Test-local seam, independent of addrop_fairseq's: forces fairseq's explicit attention
    path on ``modules`` and taps, per head, ``dropout_module``'s input (``before=True``: the
    softmax probabilities) or its output (the probabilities after attention dropout), which
    ``replace[i]`` substitutes for module i."""

    def __init__(self, modules, before=False, replace=None):
        self.modules, self.before, self.replace, self.maps, self.handles = modules, before, replace or {}, {}, []

    def __enter__(self):
        for i, m in enumerate(self.modules):
            m.skip_embed_dim_check = True
            heads = m.num_heads
            if self.before:
                def pre(_mod, args, i=i, heads=heads):
                    self.maps[i] = args[0].view(-1, heads, *args[0].shape[1:])
                self.handles.append(m.dropout_module.register_forward_pre_hook(pre))
            else:
                def post(_mod, _args, out, i=i, heads=heads):
                    per_head = self.replace.get(i, out.view(-1, heads, *out.shape[1:]))
                    self.maps[i] = per_head
                    return per_head.reshape(out.shape)
                self.handles.append(m.dropout_module.register_forward_hook(post))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        for m in self.modules:
            m.skip_embed_dim_check = False
