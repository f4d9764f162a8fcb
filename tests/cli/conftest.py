"""Drive ``frameworm-search`` as a user would: a YAML file, a subprocess, its output.

The searched module is :mod:`tiny` (this folder is put on the subprocess's
``PYTHONPATH``): one linear layer on 64 points, so a trial takes well under a second
and the cost of a test is mostly starting Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@dataclass
class Run:
    """A finished command: exit code, stdout, stderr."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.startswith("error:")]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("FRAMEWORM_DEBUG", None)
    env["PYTHONWARNINGS"] = "ignore"
    env["COLUMNS"] = "200"
    return env


def command() -> list[str]:
    """The console script when installed, else ``python -m frameworm_lightning.cli``."""
    script = shutil.which("frameworm-search", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "frameworm_lightning.cli"]


def run_cli(*args: str, cwd: Path, timeout: float = 180, script: str | None = None) -> Run:
    """Run the command to its end (``script``: as :func:`start_cli`)."""
    return start_cli(*args, cwd=cwd, script=script).wait(timeout)


class Started:
    """A command started in the background; :meth:`wait` gives its :class:`Run`."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self._run: Run | None = None

    def wait(self, timeout: float = 180) -> Run:
        if self._run is None:
            out, err = self.proc.communicate(timeout=timeout)
            self._run = Run(self.proc.returncode, out, err)
        return self._run


def start_cli(*args: str, cwd: Path, script: str | None = None) -> Started:
    """Start the command without waiting (several cases can start up side by side).

    ``script``: a file of this folder that runs a ``SearchCLI`` of its own, run as
    ``python <script> <args>`` in place of ``frameworm-search``.
    """
    cmd = [sys.executable, str(HERE / script)] if script else command()
    proc = subprocess.Popen([*cmd, *args], cwd=cwd, env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return Started(proc)


def search_config(tmp: Path, **search: Any) -> dict[str, Any]:
    """A search over :class:`tiny.TinyModel`: 3 Sobol trials of one epoch, stored under ``tmp``."""
    section: dict[str, Any] = {
        "metric": "val_loss",
        "mode": "min",
        "n_trials": 3,
        "sampler": {"class_path": "frameworm_lightning.SobolSampler", "init_args": {"seed": 1}},
        "space": {
            "model.init_args.lr": {"type": "real", "low": 1.0e-3, "high": 0.5, "log": True},
            "model.init_args.hidden": [2, 4, 8],
        },
        "storage": f"sqlite:///{tmp / 'study.db'}",
        "root_dir": str(tmp / "runs"),
    }
    section.update(search)
    return {
        "model": {"class_path": "tiny.TinyModel", "init_args": {"lr": 0.1}},
        "data": {"class_path": "tiny.TinyData"},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "log_every_n_steps": 1},
        "search": section,
    }


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


