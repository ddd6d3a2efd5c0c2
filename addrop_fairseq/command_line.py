"""What every command-line tool of the plugin does around its work: fairseq-style logging,
parse the arguments, and turn an expected error into ``error: ...`` with exit status 1."""
import logging
import sys


def run_command(parser, work, argv=None, errors=(ValueError, FileNotFoundError)):
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO)
    args = parser.parse_args(argv)
    try:
        return work(args)
    except errors as e:
        sys.exit(f"error: {e}")
