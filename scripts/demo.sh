#!/usr/bin/env bash
# A real search from a fresh clone: creates .venv, installs the project, searches an MLP on
# scikit-learn's digits for a few minutes on 2 CPU cores, and prints the best config.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
python examples/digits_search.py "$@"
