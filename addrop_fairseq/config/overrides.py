"""fairseq-train flags -> hydra overrides of a preset (the scripts' flag pass-through).

    python -m addrop_fairseq.config.overrides PRESET.yaml [ITEM ...]

prints one hydra override per line, for ``fairseq-hydra-train --config-dir ... --config-name
...``. Each ITEM is either

* a hydra override (``key=value``, ``+key=value``, ``~key``): printed as it is, but as
  ``++key=value`` (add or override) when it sets a key of ``model``, ``task``, ``criterion``,
  ``optimizer``, ``lr_scheduler``... that the preset does not (hydra refuses a plain one);
* ``--arch``, ``--task``, ``--criterion``, ``--optimizer``, ``--lr-scheduler`` (``--bpe``,
  ``--tokenizer``, ``--scoring``) NAME: ``GROUP._name=NAME`` (see below);
* another fairseq-train flag with its value, if it takes one (``--update-freq 4``, ``--fp16``):
  printed as ``group.key=value`` (``++group.key=value`` as above) for every config group that
  owns the flag given the preset's choices (its ``task``, ``model``, ``criterion``,
  ``optimizer``, ``lr_scheduler``, ... and any ``GROUP._name=`` item before it), as
  fairseq-train hands a flag's value to every group with that field; groups whose field only
  interpolates another (``optimizer.lr``) are left to follow.

``GROUP._name=CHOICE`` also deletes (``~GROUP.key``) the keys of that group which CHOICE does
not know, e.g. ``criterion._name=label_smoothed_cross_entropy`` drops the preset's ``addrop_*``.
An unknown flag or a flag without its value stops with an error naming it.
"""
import argparse
import sys
from typing import Dict, List, Optional, Sequence

from omegaconf import OmegaConf

# FairseqConfig groups chosen by ``_name`` (the others are fixed dataclasses), and the flags
# that choose them
CHOICE_GROUPS = ("model", "task", "criterion", "optimizer", "lr_scheduler", "scoring", "bpe", "tokenizer")
CHOICE_FLAGS = {"--arch": "model", "--task": "task", "--criterion": "criterion", "--optimizer": "optimizer",
                "--lr-scheduler": "lr_scheduler", "--scoring": "scoring", "--bpe": "bpe", "--tokenizer": "tokenizer"}


class FlagError(ValueError):
    pass


def register_plugin() -> None:
    """Register the plugin's tasks, models and criteria with fairseq (imported here first)."""
    import fairseq  # noqa: F401

    import addrop_fairseq

    register = getattr(addrop_fairseq, "register", None)  # idempotent
    if register is not None:
        register()


def _group_dataclass(group: str, name: Optional[str]):
    """The dataclass of a fixed group, or of ``name`` in a choice group (None: legacy model or none)."""
    from fairseq.dataclass.configs import FairseqConfig

    if group not in CHOICE_GROUPS:
        return FairseqConfig.__dataclass_fields__[group].type
    if name is None:
        return None
    if group == "task":
        from fairseq.tasks import TASK_DATACLASS_REGISTRY

        return TASK_DATACLASS_REGISTRY.get(name)
    if group == "model":
        from fairseq.models import ARCH_MODEL_NAME_REGISTRY, MODEL_DATACLASS_REGISTRY

        return MODEL_DATACLASS_REGISTRY.get(ARCH_MODEL_NAME_REGISTRY.get(name, name))
    from fairseq.registry import REGISTRIES

    return REGISTRIES[group]["dataclass_registry"].get(name) if group in REGISTRIES else None


def group_options(group: str, name: Optional[str]) -> Dict[str, argparse.Action]:
    """{option string: argparse action} of the flags ``group`` owns (``name``: its choice);
    a positional field (a task's ``data``) under its name."""
    from fairseq.dataclass.utils import gen_parser_from_dataclass

    parser = argparse.ArgumentParser(add_help=False)
    dc = _group_dataclass(group, name)
    if dc is not None:
        gen_parser_from_dataclass(parser, dc())
    elif group == "model" and name is not None:
        from fairseq.models import ARCH_MODEL_REGISTRY

        if name not in ARCH_MODEL_REGISTRY:
            raise FlagError(f"model._name={name}: no such fairseq model or architecture")
        ARCH_MODEL_REGISTRY[name].add_args(parser)  # a legacy (argparse) model: its own flags
    return {s: a for a in parser._actions for s in (a.option_strings or [a.dest])}


def _interpolated(action: argparse.Action) -> bool:
    return isinstance(action.default, str) and action.default.startswith("${")


def hydra_value(value) -> str:
    """A Python value as a hydra override value (strings quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    return "'" + str(value).replace("'", "\\'") + "'"


def _flag_value(flag: str, action: argparse.Action, items: List[str], i: int):
    """(value, next index) for ``flag`` at ``items[i - 1]``."""
    takes = lambda j: j < len(items) and not items[j].startswith("--")  # noqa: E731
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction)):
        return action.const, i
    if action.nargs == "?":
        if not takes(i):
            return action.const, i
    elif action.nargs not in (None, 1):
        raise FlagError(f"{flag}: flags with several values are not supported here; give a hydra override")
    if not takes(i):
        raise FlagError(f"{flag} needs a value")
    raw = items[i]
    if callable(action.type):
        value = action.type(raw)
    else:  # untyped (e.g. a field whose default interpolates another): a number stays a number
        try:
            value = float(raw) if any(c in raw for c in ".eEn") else int(raw)
        except ValueError:
            value = raw
    if action.choices is not None and value not in action.choices:
        raise FlagError(f"{flag}: {raw!r} is not one of {list(action.choices)}")
    return value, i + 1


def to_overrides(preset: dict, items: Sequence[str]) -> List[str]:
    """Hydra overrides for ``items`` (overrides and fairseq-train flags) given the preset's config."""
    from fairseq.dataclass.configs import FairseqConfig

    register_plugin()

    groups = [g for g in FairseqConfig.__dataclass_fields__ if g != "_name"]
    present = {g: dict(preset.get(g) or {}) for g in groups}
    names = {g: present[g].get("_name") for g in CHOICE_GROUPS}
    cache: Dict[tuple, Dict[str, argparse.Action]] = {}

    def options(g):
        key = (g, names.get(g))
        if key not in cache:
            cache[key] = group_options(g, names.get(g))
        return cache[key]

    out: List[str] = []
    i, items = 0, list(items)
    while i < len(items):
        item = items[i]
        i += 1
        if item in CHOICE_FLAGS:  # --arch NAME = model._name=NAME, ...
            if i >= len(items) or items[i].startswith("--"):
                raise FlagError(f"{item} needs a value")
            item, i = f"{CHOICE_FLAGS[item]}._name={items[i]}", i + 1
        if not item.startswith("--"):
            if "=" not in item and not item.startswith("~"):
                raise FlagError(f"{item!r}: neither a hydra override (key=value) nor a --flag")
            key, _, value = item.lstrip("+~").partition("=")
            group, _, field = key.partition(".")
            if field == "_name" and group in CHOICE_GROUPS and value:
                names[group] = value = value.strip("'\"")
                known = {a.dest for a in options(group).values()}
                out += [f"~{group}.{k}" for k in present[group] if k != "_name" and k not in known]
                present[group] = {k: v for k, v in present[group].items() if k == "_name" or k in known}
            elif group in present and field:
                if item.startswith("~"):
                    present[group].pop(field, None)
                else:
                    if not item.startswith("+") and group in CHOICE_GROUPS and field not in present[group]:
                        item = "++" + item  # a key the preset does not set: hydra must add it
                    present[group][field] = value
            out.append(item)
            continue
        owners = [(g, options(g)[item]) for g in groups if item in options(g)]
        if not owners:
            raise FlagError(
                f"{item}: not a flag of this preset's groups (task {names['task']}, model {names['model']}, "
                f"criterion {names['criterion']}, optimizer {names['optimizer']}, lr_scheduler "
                f"{names['lr_scheduler']}); give a hydra override (group.key=value) instead"
            )
        concrete = [(g, a) for g, a in owners if not _interpolated(a)] or owners
        value, i = _flag_value(item, concrete[0][1], items, i)
        for g, action in concrete:
            add = "++" if g in CHOICE_GROUPS and action.dest not in present[g] else ""
            out.append(f"{add}{g}.{action.dest}={hydra_value(value)}")
            present[g][action.dest] = value
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    try:
        preset = OmegaConf.to_container(OmegaConf.load(argv[0]), resolve=False)
        for line in to_overrides(preset, argv[1:]):
            print(line)
    except (FlagError, OSError) as e:
        print(f"addrop_fairseq.config.overrides: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
