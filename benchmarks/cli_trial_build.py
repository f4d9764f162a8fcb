"""What building a trial through LightningCLI costs ``frameworm-search`` per trial.

Each trial of a CLI search is built by the CLI class itself, ``SearchCLI(args=config,
run=False)`` (``frameworm_lightning/cli/_trial_config.py``): LightningCLI parses the
trial's config, applies its argument links, seeds and instantiates the model, the
datamodule, the optimizer and the CLI's own (unused) Trainer. Run from the repository root::

    python benchmarks/cli_trial_build.py            # the median of 20 builds, after a first one

The config is the CLI tests' tiny model and data (``tests/cli/tiny.py``), so the figure is
the CLI's own cost, not the model's.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cli"))  # tiny.TinyModel

from frameworm_lightning.cli import SearchCLI  # noqa: E402
from frameworm_lightning.cli._trial_config import CLICall  # noqa: E402

CONFIG = {
    "model": {"class_path": "tiny.TinyModel"},
    "data": {"class_path": "tiny.TinyData"},
    "trainer": {"max_epochs": 1, "accelerator": "cpu"},
    "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}},
    "seed_everything": 0,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=20)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    call = CLICall(SearchCLI, (), {})
    call.on(dict(CONFIG))  # the first: docstrings parsed, classes imported
    for name in ("lightning.pytorch", "lightning.fabric"):  # as in a trial: no per-build info lines
        logging.getLogger(name).setLevel(logging.WARNING)
    times = []
    for _ in range(args.builds):
        start = time.perf_counter()
        call.on(dict(CONFIG))
        times.append(time.perf_counter() - start)
    print(f"one trial's build through LightningCLI: median {statistics.median(times) * 1000:.0f} ms, "
          f"min {min(times) * 1000:.0f} ms ({args.builds} builds)")


if __name__ == "__main__":
    main()
