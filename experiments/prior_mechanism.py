#!/usr/bin/env python
"""Why dropping high-attribution keys collapses MiniLM in the prior experiment: what the prior
study's masks do to a model that has learned the task.

MiniLM fine-tuned on MRPC (FT, seed 1, the glue study's recipe and learning rate; its best
checkpoint), then, on every dev pair, the prior's mask (layer 0, gold-label attribution, rate 0.3,
q = 1) for each strategy: random (RD), high (AD-DROP's candidates), low. Measured in eval mode
(no dropout noise): the gold-label loss without and with the mask, how often the mask turns a
right prediction wrong, and which keys it drops ([CLS], [SEP], punctuation, other tokens).

    python experiments/prior_mechanism.py     # ~15 CPU-minutes -> experiments/results/prior_mechanism/mrpc.json

The checkpoint is cached in ``experiments/work/prior_mechanism/``; the JSON is what
``report.py`` reads for the prior section.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import glue
import studies
from commands import command
from paths import RESULTS, WORK, shared_data
from planning import tuned_lrs
from record import versions

HERE = Path(__file__).resolve().parent

RATE = 0.3  # the prior study's main dropping rate
STRATEGIES = {"random": ("rd", "high"), "high": ("ga", "high"), "low": ("ga", "low")}  # attribution, drop
CATEGORIES = ("[CLS]", "[SEP]", "punctuation", "other")


def category(token: str) -> str:
    if token in ("[CLS]", "[SEP]"):
        return token
    return "punctuation" if not any(c.isalnum() for c in token) else "other"


def key_drop_shares(mask, tokens):
    """{category: (sum over its keys of the share of (head, query) rows dropping the key, keys)}
    for one input's mask [H, T, S]."""
    per_key = mask.float().mean(dim=(0, 1))
    out = {}
    for k, tok in enumerate(tokens):
        share, n = out.get(category(tok), (0.0, 0))
        out[category(tok)] = (share + float(per_key[k]), n + 1)
    return out


def train_checkpoint(data: Path, work: Path, model_dir: str) -> Path:
    """FT on MRPC as the glue study trains it (seed 1), keeping its best checkpoint."""
    ckpt_dir = work / "prior_mechanism" / "checkpoints"
    best = ckpt_dir / "checkpoint_best.pt"
    if best.exists():
        return best
    r = studies.Run("prior_mechanism", "mrpc", "ft", 1, studies.FT,
                    lr=tuned_lrs(RESULTS).get("mrpc", studies.DEFAULT_LR))
    binned, sizes = glue.TASKS["mrpc"].prepare(data, "mrpc", r.train_size, work, r.dev_size, r.max_length, model_dir)
    cmd = command(r, binned, sizes, model_dir, "cpu")
    cmd[cmd.index("--no-save")] = "--no-epoch-checkpoints"
    cmd += ["--save-dir", str(ckpt_dir), "--no-last-checkpoints"]
    print(f"training FT on MRPC (seed 1, {r.epochs} epochs) for the measurement ...", flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, cwd=run.REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not best.exists():
        raise SystemExit(f"fairseq-train failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return best


def measure(checkpoint: Path, pairs, strategy: str) -> dict:
    """The strategy's mask on every pair: gold loss (nats) without and with it, flips, drop shares."""
    import torch

    from addrop_fairseq import explain

    attribution, drop = STRATEGIES[strategy]
    args = explain.get_parser().parse_args([
        "--checkpoint", str(checkpoint), "--text", "-", "--addrop-layers", "0", "--addrop-labels", "gold",
        "--addrop-p", str(RATE), "--addrop-q", "1", "--addrop-attribution", attribution, "--addrop-drop", drop])
    model, task, criterion, bpe = explain.load(args)
    model.eval()  # the mask's effect alone, without dropout's noise
    clean, masked, flipped, right = [], [], 0, 0
    dropped = {c: 0.0 for c in CATEGORIES}
    rows = {c: 0 for c in CATEGORIES}
    for i, (a, b, label) in enumerate(pairs):
        ids, tokens, _ = explain.encode(model, task, bpe, a, b)
        sample = explain.build_sample(task, criterion, ids, None, label)
        with torch.no_grad():
            loss0 = float(criterion.task_kind.loss(model, sample)[0])
        torch.manual_seed(i)  # RD's region
        loss1, _, _, masks = criterion.addrop_step(model, sample, keep=True)
        clean.append(loss0)
        masked.append(float(loss1.detach()))
        if loss0 < 0.6931:  # binary: gold probability above 1/2, a right prediction
            right += 1
            flipped += masked[-1] > 0.6931
        (_, mask), = masks.kept.values()  # [1, H, T, S], layer 0
        for c, (share, n) in key_drop_shares(mask[0], tokens).items():
            dropped[c] += share
            rows[c] += n
    return {"pairs": len(pairs), "gold_loss_clean": statistics.mean(clean), "gold_loss_masked": statistics.mean(masked),
            "delta_mean": statistics.mean(m - c for m, c in zip(masked, clean)),
            "delta_std": statistics.stdev(m - c for m, c in zip(masked, clean)),
            "right": right, "flipped": int(flipped),
            "drop_share": {c: dropped[c] / rows[c] for c in CATEGORIES if rows[c]}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--work", type=Path, default=WORK)
    p.add_argument("--data", type=Path, default=None, help="folder with glue/ (default ../shared/data)")
    p.add_argument("--pairs", type=int, default=None, help="the first N dev pairs (default: all)")
    p.add_argument("--force", action="store_true", help="measure again when the JSON exists (default: skip)")
    args = p.parse_args(argv)
    path = args.results / "prior_mechanism" / "mrpc.json"
    if path.exists() and not args.force:
        print(f"{path} exists: skipped (--force measures again)")
        return 0
    data = args.data or shared_data()
    model_dir = glue.minilm_dir()
    checkpoint = train_checkpoint(data, args.work, model_dir)
    pairs = glue.read_split(data / "glue", "mrpc", "dev")[:args.pairs]
    out = {"task": "mrpc", "rate": RATE, "layer": 0, "labels": "gold", "checkpoint": "FT, seed 1, best epoch",
           "versions": versions(), "strategies": {}}
    for s in STRATEGIES:
        out["strategies"][s] = measure(checkpoint, pairs, s)
        m = out["strategies"][s]
        print(f"{s}: gold loss {m['gold_loss_clean']:.3f} -> {m['gold_loss_masked']:.3f} nats, "
              f"{m['flipped']} of {m['right']} right predictions flipped", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
