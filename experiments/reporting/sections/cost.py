"""Study ``cost``: seconds per update relative to FT, one run at a time (the paper's Table 7)."""
from dataclasses import dataclass, field
from typing import Dict

import studies
from stats import fmt

from ..common import Section
from ..load import Data

STUDIES = ("cost",)
NAMES = {  # method -> (README's short name, RESULTS.md's long name)
    "ft": ("FT", "FT"), "ga_all": ("GA all layers", "GA, all 6 layers"), "ga_first": ("GA first layer", "GA, first layer"),
    "aa_all": ("AA all layers", "AA (attention weights), all layers"),
    "rd_all": ("RD all layers", "RD (random region: no attribution pass), all layers"),
    "iga_first": ("IGA first layer", "IGA, first layer"), "rdrop": ("R-Drop", "R-Drop (two passes + KL)"),
}
IG_STEPS_DEFAULT = 20  # addrop_ce's --addrop-ig-steps default (a test pins it to the criterion's)


@dataclass
class Cost(Section):
    by_method: Dict[str, dict] = field(default_factory=dict)  # method -> its run (the last one read)

    def seconds_per_update(self, method: str) -> float:
        r = self.by_method[method]
        return r["train_wall"] / max(1, r["updates"])


def cost_name(r: dict, long: bool) -> str:
    """The method's name; IGA's with its step count m, read from the command (the criterion's
    default when the command does not set it)."""
    name = NAMES.get(r["method"], (r["method"], r["method"]))[long]
    if r["method"].startswith("iga"):
        cmd = r.get("command", [])
        m = cmd[cmd.index("--addrop-ig-steps") + 1] if "--addrop-ig-steps" in cmd else f"{IG_STEPS_DEFAULT} (the default)"
        name += f", m = {m}" if long else f" (m = {m.split()[0]})"
    return name


def build(data: Data, rel: str, done: dict) -> Cost:
    runs = data.study(*STUDIES)
    out = Cost(by_method={r["method"]: r for r in runs})
    if not runs:
        return out
    ft = next((r for r in runs if r["method"] == "ft"), None)
    lines = ["## cost: seconds per update relative to FT (Table 7 analogue)", "",
             f"MRPC, MiniLM, batch {studies.BATCH}, {studies.COST_UPDATES} updates each with AD-DROP on every "
             "update (p = 0.5, q = 0.8), one run at a time; train_wall / updates from fairseq's log; peak "
             "resident memory of the training process.", "",
             "| method | s / update | × FT | peak RSS MiB | × FT |", "|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: r["train_wall"] / max(1, r["updates"])):
        spu = r["train_wall"] / max(1, r["updates"])
        ratio = spu / (ft["train_wall"] / max(1, ft["updates"])) if ft else None
        mem = r["peak_rss_mb"] / ft["peak_rss_mb"] if ft else None
        lines.append(f"| {cost_name(r, long=True)} | {spu:.2f} | {fmt(ratio, 2)} | {r['peak_rss_mb']:.0f} | {fmt(mem, 2)} |")
    out.lines = lines + [""]
    return out
