#!/usr/bin/env bash
# Installs what is missing (torch==2.13.0 first, then this package with its test extras)
# and runs the whole test suite, one pytest worker per core (pytest-xdist; each test file
# stays on one worker, so its module fixtures are built once). Extra arguments go to pytest;
# PYTEST_WORKERS=0 runs everything in this process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
exec "${PYTHON:-python3}" -m pytest -q -n "${PYTEST_WORKERS:-auto}" --dist loadfile "$@"
