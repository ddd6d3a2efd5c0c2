"""``python -m addrop_fairseq.config [SETUP | --user-dir]``: see :mod:`addrop_fairseq.config`."""
import sys

from . import PLUGIN_DIR, config_dir, presets


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv in (["-h"], ["--help"]):
        print(__doc__)
    elif argv == ["--user-dir"]:
        print(PLUGIN_DIR)
    elif len(argv) == 1:
        try:
            print(config_dir(argv[0]))
        except FileNotFoundError as e:
            print(f"addrop_fairseq.config: {e}", file=sys.stderr)
            return 2
    elif not argv:
        for setup, names in presets().items():
            print(f"{setup:<10} --config-dir {config_dir(setup)}  --config-name {' | '.join(names)}")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
