"""A ``SearchCLI`` with an optimizer and an LR scheduler of one class each, as LightningCLI's docs add
them (``parser.add_optimizer_args(torch.optim.Adam)``): their sections hold the arguments, no
``class_path`` (``tests/cli``)."""

from __future__ import annotations

from typing import Any

import torch

from frameworm_lightning.cli import SearchCLI


class FixedOptimizerCLI(SearchCLI):
    def add_arguments_to_parser(self, parser: Any) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_optimizer_args(torch.optim.Adam)
        parser.add_lr_scheduler_args(torch.optim.lr_scheduler.ExponentialLR)


if __name__ == "__main__":
    FixedOptimizerCLI()
