# Sourced by the other scripts: make .venv and install the project with its test extras.
# torch is pinned first: a CPU-only machine has that wheel locally, and PyPI serves the
# CUDA build of the same version to GPU machines.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
source .venv/bin/activate
if ! python -c "import frameworm_lightning, lightning, gpytorch, pytest, optuna" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.installed ]; then
  python -m pip install -q --upgrade pip
  python -m pip install -q "torch==2.13.0"
  python -m pip install -q -e ".[dev]"
  touch .venv/.installed
fi
