#!/usr/bin/env python
"""What an AD-DROP training step costs next to a plain one (fairseq transformer, translation).

One process builds a real fairseq translation task and transformer (default 6+6 layers,
d=256, 4 heads, ffn 1024) and one synthetic batch (64 sentences x 32 tokens, lengths
75-100 % of the maximum), then times one training step -- ``criterion(model, sample)`` +
``loss.backward()``, no optimizer update -- for each variant on the same model and batch:

* ``plain``: fairseq's stock ``label_smoothed_cross_entropy``;
* ``addrop_off``: ``addrop_ce --addrop-schedule never`` (must cost what ``plain`` costs);
* ``addrop_<method>`` (default ``ga``): ``addrop_ce --addrop-schedule always``, all layers,
  encoder-self + decoder-self, the attribution of ``--attribution``: GA is one
  ``torch.autograd.grad`` call over all recorded maps;
* ``addrop_<method>_eager`` (default: ``addrop_ga_eager``): the same criterion with pass 2's
  attention forced eager (``sites.pass2_attention("eager")``); without the suffix pass 2 runs
  through fused ``scaled_dot_product_attention`` (docs/cost.md);
* ``addrop_ga_per_layer``: GA with one ``autograd.grad(retain_graph=True)`` call per map,
  as the original AD-DROP code does (the package's attribution ``ga_per_layer``);
* ``addrop_aa`` / ``addrop_rd``: the AA (attention weights, no-grad first pass) and RD
  (random region, no first pass) ablations, for reference;
* ``addrop_iga_first`` (in the default variants): per-layer integrated gradients, Eq. 3,
  with ``--ig-steps`` m on the first layer's maps only (paper Table 7: x15), printed as
  ``iga_first_vs_plain``; ``addrop_iga`` (ask for it in ``--variants``) does every selected
  map: 1 + (maps x m) forward passes per step (paper: x99-x126 with all layers). Any
  ``addrop_<method>_first`` restricts ``<method>`` to layer 0 the same way.

Variants run round-robin (``benchmarks/harness.py``): each repetition runs every variant
once, in an order rotated at every repetition, so load on a shared machine hits all of them
alike. After ``--warmup`` repetitions, ``--steps`` repetitions are kept; the table shows per
variant the median step time, its inter-quartile range, the ratio of medians to ``plain``,
and the median of the per-repetition ratios (variant / plain of the same repetition) with
its IQR.

Memory (unless ``--no-memory``): each variant runs alone in a fresh subprocess (same model,
batch and seed): one untimed step, then ``--memory-steps`` measured steps.

* CPU: before the measured steps the freed heap is handed back to the OS (``malloc_trim``)
  and the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``); ``peak`` is then the
  process's peak resident set size during the measured steps (``VmHWM``: interpreter,
  fairseq, model and batch included) and ``step`` is that peak minus the resident set size
  just before them, i.e. the memory the training step made the process hold at its peak
  (activations and saved tensors of both passes, attribution maps, masks, parameter
  gradients, allocator slack). Without ``clear_refs`` it falls back to ``ru_maxrss`` (setup
  included). The memory ratio is taken on ``step``.
* CUDA: ``peak`` is ``torch.cuda.max_memory_allocated()`` over the measured steps, ``step``
  that minus ``torch.cuda.memory_allocated()`` before them (tensors only, no cache slack).

``--breakdown`` additionally times the phases of the AD-DROP step (pass-1 forward, the
``autograd.grad`` call(s), mask generation, pass-2 forward, backward) by wrapping the
functions the criterion calls, and ``--profile`` prints a torch.profiler operator table of
the AD-DROP step. The summary lines are ``<method>_all_layers_vs_plain = X.XX`` for the
main variant (the ratio of medians), e.g. ``ga_all_layers_vs_plain = X.XX``, then
``<method>_vs_plain = X.XX`` for every other AD-DROP variant (``iga_vs_plain``, ...).

``--dtype bf16`` / ``fp16`` runs each step under ``torch.autocast``. ``--model bert-base`` (or
``bert-small``) times a random-init BERT (12 layers, hidden 768, 12 heads, batch 32 x 128)
through ``ADDropTrainer`` instead: plain, AD-DROP with fused and with eager pass 2
(``benchmarks/hf_bench.py``).

Example (2 CPU cores)::

    python benchmarks/step_overhead.py --threads 2 --steps 20
    python benchmarks/step_overhead.py --threads 2 --breakdown 5 --variants plain,MAIN
    python benchmarks/step_overhead.py --device cuda --steps 50
    python benchmarks/step_overhead.py --model bert-base --device cuda --dtype bf16 --steps 20
"""
import argparse
import contextlib
import gc
import logging
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from fairseq import optim, options, tasks  # noqa: E402
from fairseq.data import LanguagePairDataset  # noqa: E402
from fairseq.dataclass.utils import convert_namespace_to_omegaconf  # noqa: E402

import addrop_fairseq  # noqa: E402

addrop_fairseq.register()
from addrop_fairseq import attribution, masks, sites  # noqa: E402

import harness  # noqa: E402  (benchmarks/harness.py, beside this script)


# ---------------------------------------------------------------------------- setup

REFERENCE_VARIANTS = ("plain", "addrop_off", "MAIN", "MAIN_eager", "addrop_ga_per_layer", "addrop_aa", "addrop_rd",
                      "addrop_iga_first")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


ATTN_REG = {"attn_reg_scores": "scores-dropout", "attn_reg_layerdrop": "layerdrop"}


def variant_names(args):
    main = f"addrop_{args.attribution}"
    names = []
    for v in args.variants.split(","):
        v = v.strip()
        v = main if v == "MAIN" else main + "_eager" if v == "MAIN_eager" else v
        if v and v not in names:
            names.append(v)
    if "plain" not in names:
        names.insert(0, "plain")
    return names


def criterion_args(variant, args):
    if variant.endswith("_eager"):  # the same criterion; pass 2's attention forced eager in Bench.step
        variant = variant[: -len("_eager")]
    if variant == "plain":
        return ["--criterion", "label_smoothed_cross_entropy"]
    common = [
        "--criterion", "addrop_ce",
        "--addrop-p", args.p, "--addrop-q", args.q,
        "--addrop-layers", args.addrop_layers,
        "--addrop-attention", args.addrop_attention,
    ]
    if variant == "addrop_off":
        return common + ["--addrop-schedule", "never"]
    if variant == "attendout":  # no dropout step within the timed steps: the per-update game cost
        return ["--criterion", "attendout", "--attendout-steps", "1000000", "--attendout-layers", args.addrop_layers,
                "--optimizer", "adam", "--lr", "1e-4"]
    if variant in ATTN_REG:
        return ["--criterion", "attention_regularizer", "--attn-reg", ATTN_REG[variant], "--attn-reg-p", "0.1",
                "--attn-reg-layers", args.addrop_layers]
    if not variant.startswith("addrop_"):
        raise ValueError(f"unknown variant {variant!r}")
    method = variant[len("addrop_"):]
    if method.endswith("_first"):  # the paper's Table 7 "first layer only" rows (IGA‡)
        method = method[: -len("_first")]
        common[common.index("--addrop-layers") + 1] = "0"
    attribution.get_attribution(method)  # fail early with the known names
    return common + ["--addrop-schedule", "always", "--addrop-attribution", method,
                     "--addrop-ig-steps", args.ig_steps]


def model_args(args):
    enc = args.encoder_layers if args.encoder_layers is not None else args.layers
    dec = args.decoder_layers if args.decoder_layers is not None else args.layers
    ffn = args.ffn or 4 * args.dim
    return [
        "--encoder-layers", enc, "--decoder-layers", dec,
        "--encoder-embed-dim", args.dim, "--decoder-embed-dim", args.dim,
        "--encoder-ffn-embed-dim", ffn, "--decoder-ffn-embed-dim", ffn,
        "--encoder-attention-heads", args.heads, "--decoder-attention-heads", args.heads,
        "--dropout", args.dropout, "--label-smoothing", args.label_smoothing,
        "--max-source-positions", max(1024, args.length + 2),
        "--max-target-positions", max(1024, args.length + 2),
        "--seed", args.seed,
    ]


def parse_fairseq(data_dir, extra):
    parser = options.get_training_parser()
    argv = [str(data_dir), "--task", "translation", "--arch", "transformer",
            "--source-lang", "src", "--target-lang", "tgt", *map(str, extra)]
    return convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, argv))


def write_dicts(data_dir: Path, vocab: int) -> None:
    for lang in ("src", "tgt"):
        (data_dir / f"dict.{lang}.txt").write_text(
            "".join(f"w{i} {100000 - i}\n" for i in range(vocab))
        )


def make_batch(task, bsz, length, seed, device):
    """Left-padded source, right-padded target; lengths uniform in [0.75 L, L]."""
    g = torch.Generator().manual_seed(seed)
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    lo_len = max(2, (3 * length + 3) // 4)
    src = torch.full((bsz, length), src_dict.pad(), dtype=torch.long)
    tgt = torch.full((bsz, length), tgt_dict.pad(), dtype=torch.long)
    prev = torch.full((bsz, length), tgt_dict.pad(), dtype=torch.long)
    src_lengths = []
    for b in range(bsz):
        n = int(torch.randint(lo_len, length + 1, (1,), generator=g))
        toks = torch.randint(src_dict.nspecial, len(src_dict), (n,), generator=g)
        toks[-1] = src_dict.eos()
        src[b, length - n:] = toks
        src_lengths.append(n)
        m = int(torch.randint(lo_len, length + 1, (1,), generator=g))
        t = torch.randint(tgt_dict.nspecial, len(tgt_dict), (m,), generator=g)
        t[-1] = tgt_dict.eos()
        tgt[b, :m] = t
        prev[b, 0] = tgt_dict.eos()
        prev[b, 1:m] = t[:-1]
    sample = {
        "id": torch.arange(bsz),
        "net_input": {
            "src_tokens": src,
            "src_lengths": torch.tensor(src_lengths),
            "prev_output_tokens": prev,
        },
        "target": tgt,
        "ntokens": int(tgt.ne(tgt_dict.pad()).sum()),
        "nsentences": bsz,
    }

    def to(x):
        if torch.is_tensor(x):
            return x.to(device)
        if isinstance(x, dict):
            return {k: to(v) for k, v in x.items()}
        return x

    return to(sample)


def as_dataset(task, sample):
    """The batch's sentences as a real split: AttendOut loads its scoring split before the first
    update; no dropout step (where it is read) falls within the timed steps."""
    src_pad, tgt_pad = task.source_dictionary.pad(), task.target_dictionary.pad()
    src = [row[row.ne(src_pad)].cpu() for row in sample["net_input"]["src_tokens"]]
    tgt = [row[row.ne(tgt_pad)].cpu() for row in sample["target"]]
    return LanguagePairDataset(src, [len(s) for s in src], task.source_dictionary,
                               tgt, [len(t) for t in tgt], task.target_dictionary)


class Bench:
    """The model, the batch and one criterion per variant."""

    def __init__(self, args, variants):
        self.args = args
        self.device = torch.device(args.device)
        self._tmp = tempfile.TemporaryDirectory(prefix="addrop_bench_")
        data = Path(self._tmp.name)
        write_dicts(data, args.vocab)
        torch.manual_seed(args.seed)
        cfg = parse_fairseq(data, model_args(args) + criterion_args("plain", args))
        self.task = tasks.setup_task(cfg.task)
        self.model = self.task.build_model(cfg.model).to(self.device)
        self.model.train()
        self.sample = make_batch(self.task, args.batch, args.length, args.seed, self.device)
        self.criteria = {}
        for v in variants:
            vcfg = parse_fairseq(data, model_args(args) + criterion_args(v, args))
            crit = self.task.build_criterion(vcfg.criterion).to(self.device)
            if v == "attendout":
                self.task.datasets.setdefault(vcfg.criterion.attendout_eval, as_dataset(self.task, self.sample))
            if hasattr(crit, "prepare"):
                crit.prepare(self.model)  # install the seams now, as begin_epoch does
            if v == "attendout":  # what fairseq's trainer tells it: a train step begins, an update ends
                crit.begin_train_step(0, False)
                self.fairseq_optimizer = optim.build_optimizer(vcfg.optimizer, list(self.model.parameters()))
            self.criteria[v] = crit
        self.n_params = sum(p.numel() for p in self.model.parameters())

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def step(self, variant):
        self.model.zero_grad(set_to_none=True)
        dtype = DTYPES[self.args.dtype]
        with sites.pass2_attention("eager" if variant.endswith("_eager") else "auto"), \
                torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss, _, _ = self.criteria[variant](self.model, self.sample)
        loss.backward()
        if variant == "attendout":  # A-Net's optimizer step, taken when fairseq's update ends
            self.criteria[variant].end_update(self.fairseq_optimizer, 0)

    def timed_step(self, variant):
        clock = time.process_time if self.args.clock == "cpu" else time.perf_counter
        self.sync()
        t0 = clock()
        self.step(variant)
        self.sync()
        return clock() - t0


# ---------------------------------------------------------------------------- memory


_proc_status_bytes = harness.proc_status_bytes
malloc_trim = harness.malloc_trim
reset_peak_rss = harness.reset_peak_rss


def memory_probe(args):
    """Run one variant alone (this is a fresh subprocess) and print its memory as JSON."""
    variant = args.probe
    bench = Bench(args, [variant])
    out = {"variant": variant}
    # one step first: lazily allocated workspaces, and code pages touched once (libtorch
    # kernels), are then in place before the measurement
    bench.step(variant)
    bench.model.zero_grad(set_to_none=True)
    gc.collect()
    if bench.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        for _ in range(args.memory_steps):
            bench.step(variant)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        out.update(kind="CUDA max_memory_allocated", peak=peak, step=peak - before)
    else:
        malloc_trim()  # hand the freed heap back, so "step" is what the steps make us hold
        before = _proc_status_bytes("VmRSS")
        if reset_peak_rss():  # the peak then covers the steps only, not imports / setup
            kind = "CPU peak RSS of the steps (VmHWM after resetting it)"
        else:
            kind = "CPU peak RSS of the process (ru_maxrss; setup included)"
        for _ in range(args.memory_steps):
            bench.step(variant)
        if kind.startswith("CPU peak RSS of the steps"):
            peak = _proc_status_bytes("VmHWM")
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        out.update(kind=kind, peak=peak, step=peak - before)
    print("MEMORY " + json.dumps(out), flush=True)


def measure_memory(argv, variants, threads):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    results = {}
    for v in variants:
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), *argv, "--probe", v],
            capture_output=True, text=True, env=env,
        )
        lines = [l for l in proc.stdout.splitlines() if l.startswith("MEMORY ")]
        if proc.returncode != 0 or not lines:
            print(f"memory probe for {v} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}",
                  file=sys.stderr)
            continue
        results[v] = json.loads(lines[-1][len("MEMORY "):])
    return results


# ---------------------------------------------------------------------------- phases


class PhaseTimer:
    """Wall time of the AD-DROP step's phases, by wrapping what the criterion calls.

    Wrapped: ``criterion.attribute`` (pass 1 + attribution), ``attribution.gradients`` and
    ``torch.autograd.grad`` inside it (the gradient call(s)), ``masks.addrop_drop_mask``
    (mask generation, which runs inside pass 2's forward), ``criterion.task_kind.loss`` (pass
    2 forward incl. masks) and ``loss.backward``. Nothing in the package is edited.
    """

    def __init__(self, bench):
        self.bench = bench
        self.acc = defaultdict(float)

    def _wrap(self, name, fn):
        def wrapped(*a, **k):
            self.bench.sync()
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.bench.sync()
                self.acc[name] += time.perf_counter() - t0

        return wrapped

    @contextlib.contextmanager
    def installed(self, crit):
        saved = (masks.addrop_drop_mask, torch.autograd.grad)
        masks.addrop_drop_mask = self._wrap("masks", masks.addrop_drop_mask)
        torch.autograd.grad = self._wrap("autograd.grad", torch.autograd.grad)
        crit_patched = hasattr(crit, "attribute")
        if crit_patched:
            crit.attribute = self._wrap("pass 1 + attribution", crit.attribute)
        outputs = getattr(crit, "task_kind", None)
        loss_fn = outputs.loss if outputs is not None else None
        if loss_fn is not None:
            outputs.loss = self._wrap("pass 2 fwd (incl. masks)", loss_fn)
        try:
            yield
        finally:
            masks.addrop_drop_mask, torch.autograd.grad = saved
            if crit_patched:
                del crit.attribute
            if loss_fn is not None:
                outputs.loss = loss_fn

    def run(self, variant, steps):
        crit = self.bench.criteria[variant]
        per_step = defaultdict(list)
        with self.installed(crit):
            for i in range(steps + 1):
                self.acc.clear()
                b = self.bench
                b.model.zero_grad(set_to_none=True)
                b.sync()
                t0 = time.perf_counter()
                loss, _, _ = crit(b.model, b.sample)
                b.sync()
                t1 = time.perf_counter()
                loss.backward()
                b.sync()
                t2 = time.perf_counter()
                if i == 0:
                    continue  # warm-up
                rec = dict(self.acc)
                rec["criterion forward total"] = t1 - t0
                rec["backward"] = t2 - t1
                rec["step"] = t2 - t0
                for k, v in rec.items():
                    per_step[k].append(v)
        return {k: statistics.median(v) for k, v in per_step.items()}


def print_breakdown(bench, variants, steps):
    print(f"\nphase breakdown (median over {steps} steps each, ms; phases nest: "
          "autograd.grad is inside pass 1, masks inside pass 2):")
    order = ["pass 1 + attribution", "autograd.grad", "pass 2 fwd (incl. masks)", "masks",
             "criterion forward total", "backward", "step"]
    rows = {v: PhaseTimer(bench).run(v, steps) for v in variants}
    head = f"{'phase':<26}" + "".join(f"{v:>22}" for v in variants)
    print(head)
    print("-" * len(head))
    for ph in order:
        if not any(ph in r for r in rows.values()):
            continue
        print(f"{ph:<26}" + "".join(
            f"{rows[v][ph] * 1e3:>22.1f}" if ph in rows[v] else f"{'-':>22}" for v in variants))


def print_profile(bench, variant, steps, top):
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU]
    if bench.device.type == "cuda":
        acts.append(ProfilerActivity.CUDA)
    bench.step(variant)
    with profile(activities=acts) as prof:
        for _ in range(steps):
            bench.step(variant)
        bench.sync()
    key = "self_cuda_time_total" if bench.device.type == "cuda" else "self_cpu_time_total"
    print(f"\ntorch.profiler, {variant}, {steps} steps, top {top} ops by self time:")
    print(prof.key_averages().table(sort_by=key, row_limit=top))


# ---------------------------------------------------------------------------- main


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=6, help="encoder and decoder layers")
    p.add_argument("--encoder-layers", type=int, default=None)
    p.add_argument("--decoder-layers", type=int, default=None)
    p.add_argument("--dim", type=int, default=256, help="embedding dim")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=None, help="ffn dim (default 4*dim)")
    p.add_argument("--vocab", type=int, default=8000, help="source and target dictionary size")
    p.add_argument("--batch", type=int, default=64, help="sentences per batch")
    p.add_argument("--length", type=int, default=32, help="max source/target length (tokens)")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--attribution", default="ga", help="attribution method of the main variant")
    p.add_argument("--addrop-layers", default="all")
    p.add_argument("--addrop-attention", default="encoder-self,decoder-self")
    p.add_argument("--ig-steps", type=int, default=20, help="m of the addrop_iga variant (per-layer IGA)")
    p.add_argument("--p", type=float, default=0.3)
    p.add_argument("--q", type=float, default=0.3)
    p.add_argument("--variants", default=",".join(REFERENCE_VARIANTS),
                   help="comma-separated; MAIN = addrop_<--attribution>; any addrop_<method>")
    p.add_argument("--steps", type=int, default=20, help="timed repetitions (each runs all variants)")
    p.add_argument("--warmup", type=int, default=3, help="untimed repetitions first")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32",
                   help="autocast dtype of the step (fp32: none)")
    p.add_argument("--model", choices=("transformer", "bert-base", "bert-small"), default="transformer",
                   help="transformer: the fairseq model above; bert-*: a random-init BERT through ADDropTrainer "
                   "(benchmarks/hf_bench.py: plain, AD-DROP fused and eager pass 2; --device, --dtype, --steps, "
                   "--warmup, --memory-steps, --threads apply)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: perf_counter; cpu: this process's CPU time (process_time), "
                   "robust to other jobs' load, meaningful on CPU with --threads 1")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument("--progress", action="store_true", help="per-repetition times on stderr")
    p.add_argument("--memory-steps", type=int, default=3)
    p.add_argument("--breakdown", type=int, default=0, metavar="N",
                   help="also time the phases of plain and AD-DROP steps over N steps")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also print a torch.profiler table of N AD-DROP steps")
    p.add_argument("--profile-top", type=int, default=25)
    p.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    return p


def quiet():
    warnings.filterwarnings("ignore", category=UserWarning)
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("fairseq", "hydra"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv=None):
    quiet()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    if args.probe:
        memory_probe(args)
        return
    if args.model != "transformer":
        import hf_bench

        hf_bench.run(args.model[len("bert-"):], args.device, args.dtype, args.steps, args.warmup,
                     0 if args.no_memory else args.memory_steps, progress=args.progress, clock=args.clock)
        return

    variants = variant_names(args)
    main_variant = f"addrop_{args.attribution}"
    bench = Bench(args, variants)
    print(
        f"fairseq transformer {bench.model.encoder.layers.__len__()}+"
        f"{bench.model.decoder.layers.__len__()} layers, dim {args.dim}, {args.heads} heads, "
        f"ffn {args.ffn or 4 * args.dim}, vocab {args.vocab}, {bench.n_params / 1e6:.1f}M params; "
        f"batch {args.batch} x {args.length} ({bench.sample['ntokens']} target tokens); "
        f"device {args.device}, {threads} threads; torch {torch.__version__}"
    )
    print(f"dtype {args.dtype} (autocast); *_eager: pass 2's attention eager instead of fused")
    print(f"AD-DROP: p={args.p} q={args.q}, layers {args.addrop_layers}, "
          f"attention {args.addrop_attention}; step = criterion forward + loss.backward()")
    print(f"{args.warmup} warm-up + {args.steps} timed round-robin repetitions, "
          f"{'CPU' if args.clock == 'cpu' else 'wall'} time; "
          f"load average at start {harness.load_average()}")

    times = harness.run_round_robin(bench.timed_step, variants, args.warmup, args.steps, args.progress)
    load_end = harness.load_average()

    mem = {}
    mem_kind = ""
    if not args.no_memory:
        probe_argv = [a for a in argv]
        mem = measure_memory(probe_argv, variants, threads)
        if mem:
            mem_kind = next(iter(mem.values()))["kind"]

    plain_mem = mem.get("plain", {}).get("step")
    memory_columns = [
        ("peak MiB", {v: f"{m['peak'] / 2**20:.0f}" for v, m in mem.items()}),
        ("step MiB", {v: f"{m['step'] / 2**20:.0f}" for v, m in mem.items()}),
        ("mem ratio", {v: f"{m['step'] / plain_mem:.2f}" for v, m in mem.items() if plain_mem}),
    ]
    harness.print_ratio_table(
        times, variants, "plain", memory_columns, load_at_end=load_end,
        note=f"memory: {mem_kind or 'not measured'}, one subprocess per variant, "
             "step = peak - RSS/allocated before the steps",
    )

    if args.breakdown:
        print_breakdown(bench, [v for v in ("plain", main_variant, "addrop_ga_per_layer")
                                if v in variants], args.breakdown)
    if args.profile:
        print_profile(bench, main_variant, args.profile, args.profile_top)

    if main_variant in times:
        print(f"{args.attribution}_all_layers_vs_plain = {harness.median_ratio(times, main_variant):.2f}")
    for v in variants:
        if v.startswith("addrop_") and v not in (main_variant, "addrop_off"):
            print(f"{v[len('addrop_'):]}_vs_plain = {harness.median_ratio(times, v):.2f}")
        if v == "attendout" or v in ATTN_REG:  # attendout: A-Net's forward, backward and Adam step included
            print(f"{v}_vs_plain = {harness.median_ratio(times, v):.2f}")


if __name__ == "__main__":
    main()
