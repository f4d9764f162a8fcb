"""A real search in a few minutes on 2 CPU cores: an MLP on scikit-learn's digits.

    python examples/digits_search.py            # or: bash scripts/demo.sh
    bash scripts/demo.sh --n-trials 4 --epochs 1  # the short run CI makes on every clean clone

It searches the learning rate, width, dropout and batch size of a small classifier with
the Bayesian sampler (GPyTorch) and median pruning, stores every trial in
``runs/digits/frameworm.db`` (run it again and it resumes), and prints the best config.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import lightning.pytorch as pl
from frameworm_lightning import (
    BayesianSampler, Categorical, Integer, MedianStopping, RandomSampler, Real, Sampler, SearchRunner, SobolSampler,
)
from models import DigitsDataModule


class DigitsMLP(pl.LightningModule):
    """A two-layer MLP classifier of 8x8 digit images; logs ``val_loss`` and ``val_acc``."""

    def __init__(self, lr: float = 1e-3, hidden: int = 64, dropout: float = 0.1, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(-1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def sampler_for(name: str, seed: int) -> Sampler:
    if name == "bayes":
        return BayesianSampler(seed=seed, n_initial_points=6)
    return SobolSampler(seed=seed) if name == "sobol" else RandomSampler(seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-trials", type=int, default=20,
                        help="the study's trial budget, stored trials included (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per trial (default: %(default)s)")
    parser.add_argument("--sampler", choices=["bayes", "sobol", "random"], default="bayes",
                        help="the sampler (default: %(default)s); each has its own study")
    parser.add_argument("--no-pruning", action="store_true", help="no median pruning: every trial runs all its epochs")
    parser.add_argument("--root-dir", default="runs/digits",
                        help="where the study (frameworm.db) and the trials are written (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's and the trials' seed (default: %(default)s)")
    parser.add_argument("--n-jobs", type=int, default=1,
                        help="trials at once, each in a worker process when above 1 (default: %(default)s)")
    args = parser.parse_args()

    space = {
        "lr": Real(1e-4, 3e-2, log=True),
        "hidden": Integer(16, 256, log=True),
        "dropout": Real(0.0, 0.5),
        "data.batch_size": Categorical([32, 64, 128]),
    }
    runner = SearchRunner(
        metric="val_loss",
        mode="min",
        sampler=sampler_for(args.sampler, args.seed),
        n_trials=args.n_trials,
        trainer_kwargs={"max_epochs": args.epochs, "enable_progress_bar": False, "enable_model_summary": False},
        root_dir=args.root_dir,
        study_name=f"digits-{args.sampler}",
        callbacks=[] if args.no_pruning else [MedianStopping(monitor="val_loss", grace_steps=40, min_trials=4)],
        seed=args.seed,
        n_jobs=args.n_jobs,
    )
    result = runner.fit(DigitsMLP, space, datamodule=DigitsDataModule)
    best = result.best_trial
    print()
    print(f"best val_loss {result.best_score:.4f} (trial {best.number} of {len(result.trials)})")
    print("best config:", result.best_params)
    print("best checkpoint:", result.best_checkpoint)


if __name__ == "__main__":
    main()
