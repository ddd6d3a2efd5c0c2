"""Timing harness shared by the step-overhead benchmarks: variants against a baseline.

A shared machine's load comes and goes; timing one variant after another would charge
that drift to whichever ran at the wrong moment. So :func:`run_round_robin` runs every
variant once per repetition, in an order rotated at every repetition, and keeps one time
per variant and repetition. :func:`print_ratio_table` then reports per variant the median
and inter-quartile range, the ratio of medians to the baseline, and the median (and IQR)
of the per-repetition ratios, which pair times taken under the same load.
"""
import os
import statistics
import sys
from collections import defaultdict
from typing import Callable, Dict, List, Optional, Sequence, Tuple

Times = Dict[str, List[float]]  # seconds per variant, one per timed repetition


# ---------------------------------------------------------------------------- CPU memory (Linux)


def proc_status_bytes(field: str) -> int:
    """A ``/proc/self/status`` field in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise KeyError(field)


def malloc_trim() -> None:
    """Return glibc's freed heap memory to the OS (no-op where unavailable)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as printed next to the timings ("nan" where unknown)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return " ".join(f"{x:.2f}" for x in load)


def run_round_robin(timed_step: Callable[[str], float], variants: Sequence[str], warmup: int, steps: int,
                    progress: bool = False) -> Times:
    """``warmup`` untimed then ``steps`` timed repetitions; each runs ``timed_step(v)`` (seconds)
    once per variant, starting one variant further along the list every repetition."""
    variants = list(variants)
    times: Times = defaultdict(list)
    for rep in range(warmup + steps):
        k = rep % len(variants)
        for v in variants[k:] + variants[:k]:
            t = timed_step(v)
            if rep >= warmup:
                times[v].append(t)
        if progress:
            done = ", ".join(f"{v} {times[v][-1] * 1e3:.0f}" for v in variants if times[v])
            print(f"[{'warm-up' if rep < warmup else 'rep'} {rep + 1}/{warmup + steps}] {done}",
                  file=sys.stderr, flush=True)
    return times


def quartiles(xs: Sequence[float]) -> Tuple[float, float, float]:
    """(first quartile, median, third quartile); a single value for all three if only one."""
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def median_ratio(times: Times, variant: str, base: str = "plain") -> float:
    """Median time of ``variant`` / median time of ``base`` (what the summary lines print)."""
    return statistics.median(times[variant]) / statistics.median(times[base])


def print_ratio_table(times: Times, variants: Sequence[str], base: str = "plain",
                      columns: Sequence[Tuple[str, Dict[str, str]]] = (), note: str = "",
                      load_at_end: Optional[str] = None) -> None:
    """One row per variant: median and IQR (ms), ratio of medians to ``base`` and the paired
    ratio (median [IQR] of per-repetition ratios); ``-`` where ``base`` was not timed.

    ``columns``: more (title, {variant: text}) columns, e.g. memory; ``note`` goes in the
    closing line, with the load average measured when the timing ended (``load_at_end``).
    """
    widths = [max(10, len(title) + 2) for title, _ in columns]
    header = (f"{'variant':<22}{'median ms':>10}{'IQR ms':>16}{'ratio':>7}{'paired [IQR]':>20}"
              + "".join(f"{title:>{w}}" for (title, _), w in zip(columns, widths)))
    print()
    print(header)
    print("-" * len(header))
    has_base = bool(times.get(base))
    for v in variants:
        ts = times[v]
        q1, med, q3 = quartiles([t * 1e3 for t in ts])
        ratio = paired = "-"
        if has_base:
            ratio = f"{median_ratio(times, v, base):.2f}"
            pq1, pmed, pq3 = quartiles([t / b for t, b in zip(ts, times[base])])
            paired = f"{pmed:.2f} [{pq1:.2f}-{pq3:.2f}]"
        extra = "".join(f"{cells.get(v, '-'):>{w}}" for (_, cells), w in zip(columns, widths))
        print(f"{v:<22}{med:>10.1f}{f'{q1:.1f}-{q3:.1f}':>16}{ratio:>7}{paired:>20}{extra}")
    parts = [f"ratio = median / median of {base}", "paired = median of per-repetition ratios"]
    if note:
        parts.append(note)
    parts.append(f"load average at end {load_at_end if load_at_end is not None else load_average()}")
    print(f"({'; '.join(parts)})")
