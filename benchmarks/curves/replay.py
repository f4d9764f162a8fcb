"""Replay a recorded learning curve: a search that "trains" in milliseconds per trial.

:class:`ReplayModule` is a LightningModule whose only hyperparameter that matters is
``config``, an index into a curve table. Each epoch is one training batch (sleeping
``time_scale`` times the epoch's recorded seconds; 0 by default) and one validation
that logs the recorded value of that epoch. Every stopping policy, the
:class:`~frameworm_lightning.SearchRunner`, its storage and the halving promotions
(pause, checkpoint, resume) then run for real, on real curves::

    from frameworm_lightning import SearchRunner
    from frameworm_lightning.stopping import ASHA
    from benchmarks.curves.replay import ReplayModule, replay_space

    runner = SearchRunner(metric="val_error", n_trials=50, callbacks=[ASHA(1, 27)],
                          trainer_kwargs=REPLAY_TRAINER)
    runner.fit(ReplayModule, replay_space("digits-mlp"), model_kwargs={"table": "digits-mlp"})

Global step ``e + 1`` is the end of epoch ``e + 1`` (one batch per epoch), so a trial's
stored intermediate values are ``{e + 1: values[e]}``. :func:`replay_fn` does the same
for the function API (``train_fn(config, trial)``).
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.curves.table import Table, load_table
from frameworm_lightning import Integer, SearchSpace
from frameworm_lightning.study import Trial

__all__ = ["REPLAY_TRAINER", "ReplayModule", "replay_fn", "replay_space"]

#: Trainer arguments that keep a replayed trial to milliseconds of Lightning bookkeeping.
REPLAY_TRAINER: dict[str, Any] = {
    "accelerator": "cpu", "devices": 1, "num_sanity_val_steps": 0, "enable_progress_bar": False,
    "enable_model_summary": False, "logger": False,
}


@lru_cache(maxsize=16)
def _table(name: str) -> Table:
    return load_table(name)


def replay_space(table: str) -> SearchSpace:
    """The space of a table's configurations: their indices (a random draw of them is a
    random draw of the table's search space)."""
    return SearchSpace({"config": Integer(0, len(_table(table)) - 1)})


def _curve(table: str, config: int) -> tuple[Table, list[float], list[float]]:
    t = _table(table)
    if not isinstance(config, int) or not 0 <= config < len(t):
        raise ValueError(f"config must be an index of table {table!r} in [0, {len(t) - 1}], but got config={config!r}.")
    curve = t.curves[config]
    return t, curve.values, curve.seconds


class ReplayModule(pl.LightningModule):
    """Logs configuration ``config`` of table ``table``'s recorded curve, one epoch at a time.

    Args:
        table: a shipped table's name (``"digits-mlp"``) or a path to one.
        config: the configuration's position in the table.
        time_scale: sleep this share of each epoch's recorded seconds (0: none).

    Train it for at most the table's ``max_epochs``; a later epoch raises ``ValueError``.
    """

    def __init__(self, table: str = "digits-mlp", config: int = 0, time_scale: float = 0.0) -> None:
        super().__init__()
        if time_scale < 0:
            raise ValueError(f"time_scale must be >= 0, but got time_scale={time_scale!r}.")
        self.save_hyperparameters()
        t, self.values, self.seconds = _curve(str(table), config)
        self.metric = t.metric
        self.max_epochs = t.max_epochs
        # One parameter, so Lightning has something to optimise and checkpoint.
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def _epoch(self) -> int:
        epoch = self.current_epoch
        if epoch >= self.max_epochs:
            raise ValueError(f"table {self.hparams.table!r} records {self.max_epochs} epochs; epoch {epoch + 1} "
                             f"has no value: set max_epochs <= {self.max_epochs}.")
        return epoch

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        epoch = self._epoch()
        if self.hparams.time_scale:
            time.sleep(self.hparams.time_scale * self.seconds[epoch])
        return (self.weight * batch[0]).sum() * 0.0

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log(self.metric, self.values[self._epoch()], on_epoch=True, batch_size=1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)

    @staticmethod
    def _loader() -> DataLoader:
        return DataLoader(TensorDataset(torch.ones(1, 1)), batch_size=1)

    def train_dataloader(self) -> DataLoader:
        return self._loader()

    def val_dataloader(self) -> DataLoader:
        return self._loader()


def replay_fn(config: dict[str, Any], trial: Trial) -> dict[str, float]:
    """The function API's replay: ``config`` holds ``table`` and ``config`` (and optionally
    ``epochs``, default the table's budget, and ``time_scale``). Reports ``values[e]`` at
    step ``e + 1`` and returns ``{metric: value}`` of the last epoch reported; stops early
    once a policy has asked the trial to stop (``trial.should_prune()``)."""
    t, values, seconds = _curve(str(config["table"]), config["config"])
    epochs = int(config.get("epochs", t.max_epochs))
    scale = float(config.get("time_scale", 0.0))
    value = values[0]
    for e in range(min(epochs, t.max_epochs)):
        if scale:
            time.sleep(scale * seconds[e])
        value = values[e]
        trial.report(e + 1, value)
        if trial.should_prune():
            break
    return {t.metric: value}
