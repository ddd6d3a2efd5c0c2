#!/usr/bin/env bash
# Installs what is missing (torch==2.13.0 first, then this package with its test extras)
# and runs the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
exec "${PYTHON:-python3}" -m pytest -q "$@"
