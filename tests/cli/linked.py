"""A ``SearchCLI`` subclass with argument links, as LightningCLI apps write them (``tests/cli``).

``python linked.py search -c search.yaml`` searches :class:`LinkedModel`, whose
``batch_size`` jsonargparse links from ``data.init_args.batch_size`` when it parses the
config and whose ``train_size`` it links from the built datamodule's ``train_size`` when it
instantiates the classes: the model must receive each trial's values, as ``fit`` would
give them.
"""

from __future__ import annotations

from typing import Any

import torch

from tiny import TinyData, TinyModel

from frameworm_lightning.cli import SearchCLI


class SizedData(TinyData):
    """:class:`tiny.TinyData` that says how many points it trains on."""

    @property
    def train_size(self) -> int:
        return self.n * 3 // 4


class LinkedModel(TinyModel):
    """:class:`tiny.TinyModel` told the batch size and the training set's size.

    What ``__init__`` received is kept in the ``received`` buffer, so in every checkpoint.
    """

    def __init__(self, lr: float = 0.1, batch_size: int = 0, train_size: int = 0) -> None:
        super().__init__(lr=lr)
        self.save_hyperparameters()
        self.register_buffer("received", torch.tensor([batch_size, train_size]))


class LinkedCLI(SearchCLI):
    def add_arguments_to_parser(self, parser: Any) -> None:
        super().add_arguments_to_parser(parser)
        parser.link_arguments("data.init_args.batch_size", "model.init_args.batch_size")
        parser.link_arguments("data.train_size", "model.init_args.train_size", apply_on="instantiate")


if __name__ == "__main__":
    LinkedCLI()
