"""Hand-written mutation testing: would the unit tests notice these bugs?

Each mutant is one exact text replacement in one source file (masks, attribution, schedule,
the options' checks, the criterion). The script makes one private COPY of the repository in a
temporary directory (the files ``git ls-files`` lists -- tracked, and untracked non-ignored
ones -- as they are in the working tree now); for each mutant it edits the file in the copy, runs a pytest
selection there, and puts the file back. The live tree is never written to.

    python benchmarks/mutation_check.py --list            # the mutants, numbered
    python benchmarks/mutation_check.py                   # all of them (slow)
    python benchmarks/mutation_check.py --only 3 --only 14,21
    python benchmarks/mutation_check.py --mutants-tests tests/test_masks.py -k threshold --timeout 300

Outcomes: ``killed`` (the selection failed: the bug is caught, the first failing test is
named), ``survived`` (every selected test passed: a gap in the tests, or an equivalent
mutant), ``timeout`` (counted as killed), ``stale`` (the original snippet is no longer in
the file -- the code changed; update or drop the mutant), ``ambiguous`` (the snippet occurs
more than once). The unmutated selection is run first (``--no-baseline`` skips it): a
selection that fails on clean code would "kill" every mutant.

Exit status: 0 when no mutant survived, 1 when some did, 2 when the baseline fails.
No dependency beyond the project's test requirements (pytest).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TESTS = ["tests/test_masks.py", "tests/test_attribution.py", "tests/test_criterion.py",
                 "tests/test_faithful.py"]


@dataclass
class Mutant:
    file: str  # relative to the repository root
    original: str  # exact snippet, must occur once in the file
    replacement: str
    description: str


M = "addrop_fairseq/masks.py"
A = "addrop_fairseq/attribution.py"
S = "addrop_fairseq/schedule.py"
C = "addrop_fairseq/criterions/addrop_ce.py"
E = "addrop_fairseq/engine.py"
TK = "addrop_fairseq/task_kinds.py"
SC = "addrop_fairseq/criterions/site_criterion.py"
AO = "addrop_fairseq/attendout_maths.py"
AOC = "addrop_fairseq/criterions/attendout.py"
O = "addrop_fairseq/options.py"

MUTANTS: List[Mutant] = [
    # ------------------------------------------------------------------ masks (Eq. 6-7)
    Mutant(M, "prod = n.to(torch.float64) * (1.0 - float(p))", "prod = n.to(torch.float64) * float(p)",
           "threshold index k = int(n p) instead of int(n (1 - p)): region of ~(1-p) n keys"),
    Mutant(M, "torch.floor(prod + 1e-9)", "torch.floor(prod)",
           "no epsilon in the floor: n=10, p=0.9 gives k=0 (float rounding)"),
    Mutant(M, "return valid & (scores >= thresh), filled, n", "return valid & (scores > thresh), filled, n",
           ">= -> > at the threshold: the k-th key (and ties) not a candidate"),
    Mutant(M, "if strategy == \"high\":", "if True:",
           "strategy ignored in the candidate region ('low' behaves as 'high')"),
    Mutant(M, "filled = torch.where(valid, scores, big)", "filled = scores",
           "invalid (padding/causal) keys sorted among the valid ones"),
    Mutant(M, "return valid & (scores < thresh), torch.where(valid, -scores, big), n",
           "return valid & (scores <= thresh), torch.where(valid, -scores, big), n",
           "'low' strategy: keys at the threshold are candidates too (< -> <=)"),
    Mutant(M, "    thresh = thresh.masked_fill(k >= n, float(\"nan\"))\n", "",
           "p = 0 (k == n) still yields candidates"),
    Mutant(M, "drop = candidates & (u < q)", "drop = candidates & (u > q)",
           "u < q -> u > q: candidates dropped with probability 1 - q"),
    Mutant(M, "return _keep_one_in_place(drop, filled, n)", "return drop",
           "keep-one-per-row disabled: a row may lose all its keys"),
    Mutant(M, "restore = filled.argmin(dim=-1, keepdim=True)", "restore = filled.argmax(dim=-1, keepdim=True)",
           "keep-one restores the wrong key (argmin -> argmax)"),
    Mutant(O, "if not (0.0 <= value <= 1.0) or math.isnan(value):", "if not (0.0 < value <= 1.0) or math.isnan(value):",
           "check_rate rejects a rate of 0"),
    Mutant(M, "return torch.finfo(dtype).min", "return float(\"-inf\")",
           "drop fill value -inf (NaN rows when a row is fully masked)"),
    # ------------------------------------------------------------------ schedule (Algorithm 1)
    Mutant(S, "return epoch % 2 == 0", "return epoch % 2 == 1",
           "cross-tuning: AD-DROP on odd epochs instead of even ones"),
    Mutant(S, "    if period > 0:\n        return (num_updates // period) % 2 == 1\n", "",
           "--addrop-cross-period ignored (always alternates by epoch)"),
    Mutant(S, "return (num_updates // period) % 2 == 1", "return (num_updates // period) % 2 == 0",
           "cross period: first period is AD-DROP instead of plain"),
    Mutant(S, "        return True\n    if schedule == \"never\":\n        return False",
           "        return True\n    if schedule == \"never\":\n        return True",
           "schedule 'never' drops"),
    # the schedule's options are checked with the others, in options.ADDROP_CHECKS
    Mutant(O, "\"addrop_cross_period\": at_least(0),", "\"addrop_cross_period\": at_least(1),",
           "--addrop-cross-period's check rejects the default period 0"),
    Mutant(O, "\"addrop_cross_period\": at_least(0),", "\"addrop_cross_period\": at_least(-10),",
           "--addrop-cross-period's check accepts a negative period"),
    # ------------------------------------------------------------------ attribution (Eq. 3-5, 8-10)
    Mutant(A, "return -F.mse_loss(", "return F.mse_loss(",
           "regression target sign flipped (attributes the loss, not minus the loss)"),
    Mutant(A, "return picked.masked_fill(~real, 0.0).sum()", "return picked.sum()",
           "token target counts padding positions"),
    Mutant(A, "return scores.argmax(dim=-1)", "return scores.argmin(dim=-1)",
           "pseudo labels are the arg-min class"),
    Mutant(A, "scores[..., list(excluded)] = float(\"-inf\")", "pass",
           "pseudo labels may be an excluded (special) class"),
    Mutant(A, "return logits.gather(-1, labels.view(-1, 1)).sum()", "return logits.sum()",
           "classification target: every logit instead of the label's"),
    Mutant(A, "torch.cat([a * (k / steps) for k in ks])",
           "torch.cat([a * ((k - 1) / steps) for k in ks])",
           "integrated gradients: left Riemann sum (alpha from 0, never 1)"),
    Mutant(A, "out[i] = a.float() * total / steps", "out[i] = total / steps",
           "integrated gradients without the A factor (mean gradient only)"),
    Mutant(A, "grads = iter(torch.autograd.grad(target, live, allow_unused=True, retain_graph=retain_graph))",
           "grads = iter(torch.autograd.grad(target, live[:1], allow_unused=True, retain_graph=retain_graph)"
           " + (None,) * (len(live) - 1))",
           "one-call gradients: the first map only, zeros for the others"),
    Mutant(A, "_, maps = forward(None, point=\"softmax\")", "_, maps = forward(None)",
           "AA: the maps after attention dropout instead of the attention weights"),
    # ------------------------------------------------------------------ criterion (addrop_ce)
    Mutant(E, "DropMasks(attributions, self.p, self.q, self.options.addrop_drop, keep=keep)",
           "DropMasks(attributions, self.q, self.p, self.options.addrop_drop, keep=keep)",
           "the engine passes p and q swapped"),
    Mutant(E, "DropMasks(attributions, self.p, self.q, self.options.addrop_drop, keep=keep)",
           "DropMasks(attributions, self.p, self.q, keep=keep)",
           "the engine ignores --addrop-drop (always 'high')"),
    Mutant(M, "self.valid += valid.sum()", "self.valid += valid.numel()",
           "drop fraction denominator counts every position, padding included"),
    Mutant(C, "if not model.training or not self.addrop_now()", "if not self.addrop_now()",
           "AD-DROP also in validation / inference (model.eval())"),
    Mutant(E, "labels = kind.labels(prediction, gold=gold)",
           "labels = kind.labels(prediction, gold=False)", "--addrop-labels gold ignored"),
    Mutant(SC, "        self.epoch = epoch\n", "",
           "begin_epoch does not advance the schedule's clock"),
    Mutant(M, "attribution, self.attributions[index] = self.attributions[index], None",
           "attribution = self.attributions[len(self.attributions) - 1 - index]",
           "each map gets another layer's attribution (reversed order)"),
    Mutant(C, "metrics.log_scalar(\"addrop_drop_frac\", frac, valid, round=4)",
           "metrics.log_scalar(\"addrop_drop_frac\", frac, steps, round=4)",
           "drop fraction averaged per step instead of weighted by valid positions"),
    Mutant(M, "attribution, self.attributions[index] = self.attributions[index], None",
           "attribution, self.attributions[index] = random_region(valid), None",
           "the masks ignore the attribution and draw a random region"),
    Mutant(M, "            attribution = random_region(valid, self.generator)\n",
           "            raise RuntimeError('RD')\n",
           "RD raises on every step"),
    Mutant(E, "with sites.masking(selected, drop, kind.query_valid(batch, selected)):",
           "with sites.masking(selected, drop):",
           "padded decoder rows counted and dropped in encoder-decoder attention"),
    Mutant(M, "                return torch.zeros_like(valid)\n",
           "                attribution = random_region(valid)\n",
           "a layer skipped by LayerDrop in pass 1 still gets a (random) mask in pass 2"),
    Mutant(A, "        if not any(m is not None and m.dtype in LOW_PRECISION for m in maps):\n",
           "        if True:\n",
           "half-precision attribution not loss-scaled (gradients underflow to tied zeros)"),
    Mutant(A, "            out[i] = a.float() * total / steps\n",
           "            out[i] = a.float() * total / steps / (1 + i)\n",
           "per-layer IGA: later layers scaled wrongly"),
    # ------------------------------------------------------------------ AttendOut's regularizers (attendout_maths.py)
    Mutant(AO, "return torch.where(rows & valid, torch.zeros((), dtype=scores.dtype, device=scores.device), scores)",
           "return torch.where(rows, torch.zeros((), dtype=scores.dtype, device=scores.device), scores)",
           "uniform rows attend padding too"),
    Mutant(AO, "drop = valid & (torch.rand(scores.shape, generator=generator, device=scores.device) < p)",
           "drop = torch.rand(scores.shape, generator=generator, device=scores.device) < p",
           "scores dropout removes padding / future keys too"),
    Mutant(AO, "    return uniform_rows(out, valid, emptied)\n", "    return out\n",
           "an emptied row is not made uniform over its valid keys (Eq. 4)"),
    Mutant(AO, "return min(1.0, max(0.0, start + slope * update / per))", "return min(1.0, start + slope * update / per)",
           "scheduled rate not clipped at 0"),
    # ------------------------------------------------------------------ AttendOut (attendout.py, criterion)
    # (logit - noise > 0 would be equivalent: the difference of two Gumbels is symmetric)
    Mutant(AO, "noise = gumbel(logits.shape, generator, logits.device) - gumbel(logits.shape, generator, logits.device)",
           "noise = gumbel(logits.shape, generator, logits.device)",
           "one Gumbel instead of a difference: not Bernoulli(sigmoid(logit))"),
    Mutant(AO, "return -((rewards.detach() - baseline) * log_likelihoods).sum()",
           "return ((rewards.detach() - baseline) * log_likelihoods).sum()",
           "REINFORCE ascends the wrong way"),
    Mutant(AOC, "rewards = example_losses(self.task_kind, d_net, batch) - example_losses(self.task_kind, self.anet, batch)",
           "rewards = example_losses(self.task_kind, self.anet, batch) - example_losses(self.task_kind, d_net, batch)",
           "reward sign: A-Net rewarded for losing"),
    Mutant(AOC, "source, target = (self.anet, d_net) if attacker_won else (d_net, self.anet)",
           "source, target = (d_net, self.anet) if attacker_won else (self.anet, d_net)",
           "both nets restart from the loser"),
    Mutant(AOC, "            return ao.remove_scores(scores, valid, drops[i][:, None] & valid)\n",
           "            return scores\n", "A-Net never gets G-Net's masks"),
    Mutant(AOC, "        self.g_opt.step()\n", "", "G-Net never updated"),
]


# ---------------------------------------------------------------------------- the copy


def repo_files(repo: Path) -> List[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=repo, capture_output=True, check=True).stdout
    return sorted({p for p in out.decode("utf-8", "surrogateescape").split("\0") if p})


def copy_repo(repo: Path, dest: Path) -> int:
    """Plain copy of the working tree's files (a tracked file deleted in the tree is skipped)."""
    n = 0
    for rel in repo_files(repo):
        src = repo / rel
        if not src.exists() and not src.is_symlink():
            continue
        if src.is_dir() and not src.is_symlink():  # a nested repository / submodule entry
            continue
        dst = dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
        n += 1
    return n


def run_env(repo: Path, copy: Path) -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no stale .pyc after a file is put back
    env["PYTHONPATH"] = os.pathsep.join([str(copy), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    shared = repo.parent / "shared" / "data"  # the tests read ../shared/data beside the repo
    if "ADDROP_SHARED_DATA" not in env and shared.is_dir():
        env["ADDROP_SHARED_DATA"] = str(shared)
    return env


def check_imports_copy(copy: Path, env: dict) -> None:
    where = subprocess.run([sys.executable, "-c", "import addrop_fairseq; print(addrop_fairseq.__file__)"],
                           cwd=copy, env=env, capture_output=True, text=True)
    path = where.stdout.strip()
    if where.returncode != 0 or not Path(path).resolve().is_relative_to(copy.resolve()):
        sys.exit(f"the copy does not import its own addrop_fairseq (got {path!r}):\n{where.stderr[-2000:]}")


def run_tests(copy: Path, tests: List[str], extra: List[str], env: dict, timeout: float):
    """(status, seconds, first failing test or error line)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider", *tests, *extra]
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.time() - t0, f"> {timeout:.0f}s"
    seconds = time.time() - t0
    text = proc.stdout + proc.stderr
    if proc.returncode == 0:
        return "passed", seconds, ""
    if proc.returncode == 5:
        return "no tests", seconds, "no test collected"
    first = next((l for l in text.splitlines() if l.startswith(("FAILED ", "ERROR "))), None)
    if first is None:
        first = next((l for l in reversed(text.splitlines()) if l.strip()), "")
    return "failed", seconds, first.strip()


# ---------------------------------------------------------------------------- main


def parse_only(values: Optional[List[str]]) -> Optional[List[int]]:
    if not values:
        return None
    picked = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if not part:
                continue
            i = int(part)
            if not 1 <= i <= len(MUTANTS):
                raise SystemExit(f"--only: mutant {i} out of range 1..{len(MUTANTS)} (see --list)")
            picked.append(i)
    return sorted(set(picked))


#: the tests of a file the default selection does not reach, run first for its mutants
TESTS_OF = {AO: ["tests/test_attendout.py", "tests/test_attention_regularizer.py"],
            AOC: ["tests/test_attendout_criterion.py"]}


def default_tests(repo: Path, mutant: Optional[Mutant] = None) -> List[str]:
    extra = sorted(str(p.relative_to(repo)) for p in (repo / "tests").glob("test_criterion_*.py"))
    own = TESTS_OF.get(mutant.file, []) if mutant is not None else []
    return own + [t for t in DEFAULT_TESTS + extra if t not in own]


def short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=REPO, help="repository to copy (default: this one)")
    ap.add_argument("--mutants-tests", nargs="+", metavar="PATH",
                    help="pytest selection run per mutant (default: tests/test_masks.py tests/test_attribution.py "
                         "tests/test_criterion.py tests/test_faithful.py tests/test_criterion_*.py; AttendOut's "
                         "mutants run their own test files first)")
    ap.add_argument("-k", dest="keyword", help="pytest -k expression added to the selection")
    ap.add_argument("--workers", type=int, default=0, help="pytest-xdist workers per run (default 0: one process)")
    ap.add_argument("--only", action="append", metavar="N[,N...]", help="run only these mutants (1-based, see --list)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per pytest run (default 900)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the run on unmutated code")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    ap.add_argument("--list", action="store_true", help="print the mutants and whether each still applies")
    ap.add_argument("--out", type=Path, help="also write the result (score, survivors, table) to this Markdown file")
    args = ap.parse_args(argv)

    repo = args.repo.resolve()
    only = parse_only(args.only)
    chosen = [(i, m) for i, m in enumerate(MUTANTS, 1) if only is None or i in only]

    if args.list:
        for i, m in chosen:
            text = (repo / m.file).read_text(encoding="utf-8") if (repo / m.file).exists() else ""
            state = {0: "stale", 1: "ok"}.get(text.count(m.original), "ambiguous")
            print(f"{i:3d}  {state:9s} {m.file:40s} {m.description}")
        return 0

    # the commit the copy was made from (the tree may move on while the mutants run)
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    tests = args.mutants_tests or default_tests(repo)
    extra = (["-k", args.keyword] if args.keyword else []) + (["-n", str(args.workers)] if args.workers else [])
    tmp = Path(tempfile.mkdtemp(prefix="addrop_mutants_"))
    copy = tmp / repo.name
    try:
        n = copy_repo(repo, copy)
        env = run_env(repo, copy)
        check_imports_copy(copy, env)
        print(f"copy: {n} files of {repo} in {copy}")
        print(f"tests: {' '.join(tests + extra)} (-x -q, timeout {args.timeout:.0f}s per mutant; "
              "AttendOut's mutants run their own files first)")
        sys.stdout.flush()
        if not args.no_baseline:
            status, seconds, first = run_tests(copy, tests, extra, env, args.timeout)
            print(f"baseline (no mutant): {status} in {seconds:.1f}s {first}")
            if status != "passed":
                print("the selection does not pass on unmutated code: every mutant would look killed")
                return 2

        rows = []
        for i, m in chosen:
            path = copy / m.file
            original = path.read_text(encoding="utf-8") if path.exists() else ""
            count = original.count(m.original)
            if count != 1:
                rows.append((i, m, "stale" if count == 0 else "ambiguous", 0.0, f"snippet found {count} times"))
            else:
                path.write_text(original.replace(m.original, m.replacement, 1), encoding="utf-8")
                try:
                    status, seconds, first = run_tests(copy, args.mutants_tests or default_tests(repo, m), extra, env,
                                                       args.timeout)
                finally:
                    path.write_text(original, encoding="utf-8")
                outcome = {"passed": "survived", "failed": "killed", "timeout": "timeout"}.get(status, status)
                rows.append((i, m, outcome, seconds, first))
            r = rows[-1]
            print(f"  [{i}] {r[2]} ({r[3]:.1f}s) {m.description}")
            sys.stdout.flush()
    finally:
        if args.keep:
            print(f"kept: {copy}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    lines = [f"| {'#':>3} | {'file':27} | {'mutant':62} | {'result':9} | {'s':>6} | caught by",
             f"|{'-' * 5}|{'-' * 29}|{'-' * 64}|{'-' * 11}|{'-' * 8}|{'-' * 10}"]
    for i, m, outcome, seconds, first in rows:
        lines.append(f"| {i:3d} | {short(m.file.replace('addrop_fairseq/', ''), 27):27} | {short(m.description, 62):62} "
                     f"| {outcome:9} | {seconds:6.1f} | {short(first, 90) if outcome in ('killed', 'timeout') else first}")
    counts = {k: sum(r[2] == k for r in rows) for k in ("killed", "timeout", "survived", "stale", "ambiguous", "no tests")}
    live = counts["killed"] + counts["timeout"] + counts["survived"]
    caught = counts["killed"] + counts["timeout"]
    score = f"{caught} of {live} caught ({100.0 * caught / live:.0f}%)" if live else "n/a"
    survivors = [f"{i} ({m.description})" for i, m, outcome, _, _ in rows if outcome == "survived"]
    summary = ("  ".join(f"{k} {v}" for k, v in counts.items() if v) + f"  -- mutation score: {score}"
               + (f"; survived: {'; '.join(survivors)}" if survivors else ""))
    print()
    print("\n".join(lines))
    print()
    print(summary)
    if args.out is not None:
        command = " ".join(["python", "benchmarks/mutation_check.py", *(argv if argv is not None else sys.argv[1:])])
        args.out.write_text(
            "# Mutation check\n\nWritten by `benchmarks/mutation_check.py --out` (see CONTRIBUTING.md): "
            f"`{command}` on commit {commit} (and the working tree's changes then), {time.strftime('%Y-%m-%d')}.\n\n"
            f"**{summary}**\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
        print(f"written: {args.out}")
    return 1 if counts["survived"] else 0


if __name__ == "__main__":
    sys.exit(main())
