"""argparse's private API that the plugin uses, pinned: if a Python release changes it, these
fail naming the module that relies on it, instead of a flag silently losing its check.

* ``parser._actions`` (the actions in the order added): ``criterions/site_criterion.py``
  (``add_args`` puts the option checks into the actions' types), ``config/overrides.py``
  (``group_options``: flag -> action) and ``explain.py`` (``add_criterion_options``);
* ``argparse._StoreTrueAction`` / ``_StoreFalseAction`` / ``_StoreConstAction``:
  ``config/overrides.py`` (``_flag_value``: a flag that takes no value);
* ``_ArgumentGroup._add_action``: ``explain.py`` (fairseq-train's ``--addrop-*`` actions moved
  into addrop-explain's parser)."""
import argparse

import pytest


def fresh_parser():
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("data")
    p.add_argument("--rate", type=float, default=0.5)
    p.add_argument("--on", action="store_true")
    p.add_argument("--off", action="store_false")
    p.add_argument("--const", action="store_const", const=7)
    return p


def test_actions_lists_every_added_action_in_order_with_its_flags_and_dest():
    p = fresh_parser()
    actions = getattr(p, "_actions", None)
    assert isinstance(actions, list), (
        "argparse.ArgumentParser._actions is no longer a list: site_criterion.add_args, "
        "config/overrides.group_options and explain.add_criterion_options read it")
    assert [(a.option_strings, a.dest) for a in actions] == [
        ([], "data"), (["--rate"], "rate"), (["--on"], "on"), (["--off"], "off"), (["--const"], "const")], (
        "ArgumentParser._actions no longer holds the added actions in order with option_strings "
        "and dest (positionals with none): config/overrides.group_options maps flags through it")


def test_setting_an_actions_type_after_it_was_added_changes_how_it_parses():
    """site_criterion.add_args wraps fairseq's types with the option checks this way."""
    p = fresh_parser()

    def checked(raw):
        value = float(raw)
        if value > 1:
            raise argparse.ArgumentTypeError(f"--rate must be <= 1, got {value}")
        return value

    rate = next(a for a in p._actions if a.dest == "rate")
    rate.type = checked
    assert p.parse_args(["d", "--rate", "0.25"]).rate == 0.25
    with pytest.raises(SystemExit):
        p.parse_args(["d", "--rate", "2"])  # a usage error, as fairseq-train reports it


@pytest.mark.parametrize("name, flag, stored", [
    ("_StoreTrueAction", "--on", True), ("_StoreFalseAction", "--off", False), ("_StoreConstAction", "--const", 7)])
def test_store_action_classes_take_no_value_and_store_their_const(name, flag, stored):
    cls = getattr(argparse, name, None)
    assert cls is not None, (
        f"argparse.{name} is gone: config/overrides._flag_value tells flags without a value by it")
    action = next(a for a in fresh_parser()._actions if flag in a.option_strings)
    assert isinstance(action, cls), f"argparse builds {flag} as {type(action).__name__}, not {name}"
    assert action.const == stored and action.nargs == 0, (
        f"argparse.{name}.const is not the stored value: config/overrides._flag_value returns it")


def test_an_action_moved_into_another_parsers_group_is_parsed_there_with_its_new_default():
    """explain.add_criterion_options: fairseq-train's actions, default None, in addrop-explain."""
    source = fresh_parser()
    target = argparse.ArgumentParser(add_help=False)
    group = target.add_argument_group("criterion options")
    assert hasattr(group, "_add_action"), (
        "argparse's argument groups lost _add_action: explain.add_criterion_options moves actions with it")
    for action in source._actions:
        if action.option_strings:
            action.default = None
            group._add_action(action)
    assert vars(target.parse_args([])) == {"rate": None, "on": None, "off": None, "const": None}
    assert vars(target.parse_args(["--rate", "0.1", "--on", "--const"])) == {
        "rate": 0.1, "on": True, "off": None, "const": 7}
    assert "--rate" in target.format_help(), "a moved action is missing from the new parser's help"
