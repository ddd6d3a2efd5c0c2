"""The tools that read a trained checkpoint (``addrop-explain``, ``addrop-tag``), in-process on
a tiny tagger checkpoint: what a user gets wrong ends in one ``error: ...`` line naming the
option or the file (no traceback), and ``addrop-explain`` offers the criterion's own
``--addrop-*`` options, derived from ``ADDropCriterionConfig`` (help text included)."""
import dataclasses
import os
import shlex

import pytest
import torch
from omegaconf import OmegaConf

from addrop_fairseq import explain
from addrop_fairseq.criterions.addrop_ce import ADDropCriterionConfig
from addrop_fairseq.tagging import cli as tag_cli
from fairseq_builders import build
from test_tagging_pseudo_labels import TINY, tiny_tagging_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    """A checkpoint of an untrained transformer_tagger with addrop_ce options, as fairseq saves one."""
    root = tmp_path_factory.mktemp("tagger")
    data = tiny_tagging_data(root)
    cfg, _, model, _ = build(data, ["--criterion", "addrop_ce", "--addrop-p", "0.4", *TINY],
                             task="sequence_tagging", arch="transformer_tagger_small")
    state = {"args": None, "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
             "model": model.state_dict(), "extra_state": {},
             "optimizer_history": [{"criterion_name": "ADDropCriterion", "optimizer_name": "Adam",
                                    "lr_scheduler_state": {}, "num_updates": 0}]}
    torch.save(state, root / "checkpoint.pt")
    return root


def error_line(tool, argv):
    """The message a tool exits with (what the user sees after ``error: ``)."""
    with pytest.raises(SystemExit) as e:
        tool(list(map(str, argv)))
    message = str(e.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


def test_explain_refuses_empty_text(tagger, tmp_path):
    args = ["--checkpoint", tagger / "checkpoint.pt", "--out", tmp_path / "x.png"]
    for empty in ("", "  "):
        assert error_line(explain.main, [*args, "--text", empty]).startswith("error: --text is empty")
    summary = explain.work(explain.get_parser().parse_args(list(map(str, [*args, "--text", "EU rejects German"]))))
    assert len(summary["prediction"]) == 3  # one tag per word: the tagger itself is fine


def test_tag_names_the_line_that_is_not_utf8(tagger, tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("EU B-ORG\nrejects O\n\nM\u00fcller B-PER\n".encode("latin-1"))
    message = error_line(tag_cli.run, ["--checkpoint", tagger / "checkpoint.pt", "--input", bad,
                                       "--output", tmp_path / "o.txt"])
    assert message.startswith(f"error: {bad}:4: not UTF-8 (byte 0xfc at column 2)")
    assert not (tmp_path / "o.txt").exists()


def tool_runs(checkpoint, tmp_path):
    """Each tool, on ``checkpoint`` and a valid input."""
    conll = tmp_path / "in.txt"
    conll.write_text("EU B-ORG\nrejects O\n", encoding="utf-8")
    return [(explain.main, ["--checkpoint", checkpoint, "--text", "EU rejects", "--out", tmp_path / "x.png"]),
            (tag_cli.run, ["--checkpoint", checkpoint, "--input", conll, "--output", tmp_path / "o.txt"])]


def test_missing_checkpoint_is_one_line(tmp_path):
    gone = tmp_path / "gone.pt"
    for tool, argv in tool_runs(gone, tmp_path):
        assert error_line(tool, argv) == f"error: --checkpoint {gone}: no such file"


class RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_refused_checkpoint_is_one_line_naming_the_global(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"args": None, "cfg": RunsCommand(f"touch {shlex.quote(str(marker))}"), "model": {}}, evil)
    for tool, argv in tool_runs(evil, tmp_path):
        message = error_line(tool, argv)
        assert message.startswith(f"error: --checkpoint {evil}: Weights only load failed: ")
        assert "GLOBAL posix.system" in message and "safe_loading.py" in message
    assert not marker.exists()


def test_unreadable_checkpoint_is_one_line(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    for tool, argv in tool_runs(junk, tmp_path):
        assert error_line(tool, argv).startswith(f"error: --checkpoint {junk}: not a checkpoint torch can read (")


def test_explain_offers_every_criterion_option_with_its_help():
    """Derived from the criterion's config: a new --addrop-* field shows up here by itself; only
    the options that choose which updates are AD-DROP's are left out (one update is drawn)."""
    offered = {a.dest: a for a in explain.get_parser()._actions if a.dest.startswith("addrop_")}
    fields = {f.name: f for f in dataclasses.fields(ADDropCriterionConfig) if f.name.startswith("addrop_")}
    assert set(fields) - set(offered) == set(explain.NOT_FOR_ONE_STEP) == {"addrop_schedule", "addrop_cross_period"}
    assert set(offered) <= set(fields)
    for name, action in offered.items():
        assert action.help == fields[name].metadata["help"], name
        assert action.default is None, name  # unset: the checkpoint's value
    assert offered["addrop_labels"].choices == ["pseudo", "gold"]


def test_explain_options_reach_the_criterion_over_the_checkpoints(tagger):
    def criterion(*flags):
        args = explain.get_parser().parse_args(["--checkpoint", str(tagger / "checkpoint.pt"), "--text", "EU",
                                                *flags])
        return explain.load(args)[2].cfg

    trained = criterion()
    assert (trained.addrop_p, trained.addrop_ig_batch, trained.addrop_schedule) == (0.4, 1, "always")
    changed = criterion("--addrop-ig-batch", "3", "--addrop-attribution", "iga", "--addrop-q", "0.5")
    assert (changed.addrop_p, changed.addrop_ig_batch, changed.addrop_attribution, changed.addrop_q) == \
        (0.4, 3, "iga", 0.5)
