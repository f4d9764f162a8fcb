#!/usr/bin/env bash
# Run the test suite from a fresh clone: creates .venv, installs the project, runs pytest.
# PostgreSQL tests use FRAMEWORM_TEST_POSTGRES_URL, or start a server via scripts/postgres.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
python -m pytest "$@"
