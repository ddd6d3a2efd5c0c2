#!/usr/bin/env bash
# Installs what is missing (torch==2.13.0 first, then this package with its test extras)
# and runs the whole test suite, one pytest worker per core, at most 4 (pytest-xdist; each test file
# stays on one worker, so its module fixtures are built once). Extra arguments go to pytest;
# PYTEST_WORKERS=0 runs everything in this process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
cores=$(nproc 2>/dev/null || echo 2)
workers=${PYTEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}  # at most 4: each worker holds its own models in memory
exec "${PYTHON:-python3}" -m pytest -q -n "$workers" --dist loadfile "$@"
