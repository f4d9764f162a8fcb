"""A Fréchet distance for digits: torchmetrics' FID on a small digits classifier.

Inception-v3 features mean nothing on 8x8 digits (and its weights would have to be
downloaded), so the sample-quality score here is the same Fréchet distance computed on
the penultimate features of :class:`DigitsClassifier`, a small CNN that this module
trains reproducibly on scikit-learn's digits (fixed seed, a few seconds on CPU) and
ships as ``models/weights/digits_classifier.pt``. :func:`digits_fid` wraps it as
``torchmetrics.image.fid.FrechetInceptionDistance(feature=<module>)``.

Images go in as float tensors ``(N, 1, H, W)`` in [0, 1] (the scaling of
:class:`~models.data.DigitsDataModule`); any ``H = W`` is area-resized to 8x8 first.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from .data import NATIVE_SIZE, load_digits_tensors, split_indices

__all__ = [
    "DEFAULT_WEIGHTS",
    "DigitsClassifier",
    "DigitsFeatureExtractor",
    "digits_fid",
    "evaluate_classifier",
    "load_digits_classifier",
    "train_digits_classifier",
]

#: Where the shipped classifier weights live (inside the package, so wheels carry them).
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "digits_classifier.pt"
#: The recipe that produced the shipped weights; re-training with it reproduces them.
DEFAULT_RECIPE: dict[str, Any] = {"seed": 0, "epochs": 20, "lr": 3e-3, "batch_size": 64, "val_fraction": 0.2}


class DigitsClassifier(nn.Module):
    """A three-conv CNN for 8x8 digits; its 64 pooled features feed the Fréchet score.

    Example::

        >>> net = DigitsClassifier()
        >>> tuple(net(torch.rand(5, 1, 8, 8)).shape), tuple(net.features(torch.rand(5, 1, 8, 8)).shape)
        ((5, 10), (5, 64))
    """

    num_features: int = 64

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(32, self.num_features, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(self.num_features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(N, 64)`` of images ``(N, 1, 8, 8)`` in [0, 1]."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, 10)``."""
        return self.head(self.body(x))


def evaluate_classifier(model: DigitsClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of ``model`` on ``(images, labels)``, in [0, 1]."""
    model.eval()
    with torch.no_grad():
        return float((model(images).argmax(dim=1) == labels).float().mean())


def train_digits_classifier(
    seed: int = DEFAULT_RECIPE["seed"],
    epochs: int = DEFAULT_RECIPE["epochs"],
    lr: float = DEFAULT_RECIPE["lr"],
    batch_size: int = DEFAULT_RECIPE["batch_size"],
    val_fraction: float = DEFAULT_RECIPE["val_fraction"],
) -> tuple[DigitsClassifier, float]:
    """Train :class:`DigitsClassifier` reproducibly; return it with its held-out accuracy.

    Uses the same seeded split as ``DigitsDataModule(seed=seed, val_fraction=val_fraction)``
    and plain Adam; the global RNG is forked so calling this leaves it untouched. About
    five seconds on two CPU cores.

    >>> model, acc = train_digits_classifier(epochs=1)  # doctest: +SKIP
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    x, y = load_digits_tensors(NATIVE_SIZE)
    train_idx, val_idx = split_indices(len(x), val_fraction, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsClassifier()
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        xt, yt = x[train_idx], y[train_idx]
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(xt), generator=gen)
            for start in range(0, len(xt), batch_size):
                idx = order[start : start + batch_size]
                loss = F.cross_entropy(model(xt[idx]), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    acc = evaluate_classifier(model, x[val_idx], y[val_idx])
    return model.eval(), acc


def load_digits_classifier(path: str | Path | None = None, retrain_if_missing: bool = True) -> DigitsClassifier:
    """The shipped classifier (``models/weights/digits_classifier.pt``), in eval mode.

    If the file is missing and ``retrain_if_missing`` is true, re-train it with the
    shipped recipe (:data:`DEFAULT_RECIPE`) and try to save it there for next time.
    """
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    model = DigitsClassifier()
    if path.is_file():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(blob["state_dict"])
        return model.eval()
    if not retrain_if_missing:
        raise FileNotFoundError(f"no digits classifier weights at {str(path)!r}")
    model, acc = train_digits_classifier()
    try:
        save_digits_classifier(model, acc, path)
    except OSError:  # a read-only install still works, it just re-trains next time
        pass
    return model


def save_digits_classifier(model: DigitsClassifier, accuracy: float, path: str | Path = DEFAULT_WEIGHTS) -> Path:
    """Write ``model``'s weights with the recipe and held-out accuracy that produced them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "recipe": dict(DEFAULT_RECIPE),
        "heldout_accuracy": float(accuracy),
        "torch_version": str(torch.__version__),
        "created": time.strftime("%Y-%m-%d"),
    }
    torch.save(blob, path)
    return path


class DigitsFeatureExtractor(nn.Module):
    """The frozen classifier as a torchmetrics FID ``feature`` module.

    Takes float images ``(N, 1, H, W)`` in [0, 1], area-resizes them to 8x8 and returns
    the 64 penultimate features. It has ``num_features`` (so torchmetrics needs no dummy
    forward), no trainable parameters, and stays in eval mode when its owner is put in
    training mode (like torchmetrics' own ``NoTrainInceptionV3``).

    Example::

        >>> fx = DigitsFeatureExtractor()
        >>> tuple(fx(torch.rand(4, 1, 16, 16)).shape)
        (4, 64)
    """

    num_features: int = DigitsClassifier.num_features

    def __init__(self, classifier: DigitsClassifier | None = None) -> None:
        super().__init__()
        self.classifier = classifier if classifier is not None else load_digits_classifier()
        self.classifier.requires_grad_(False)
        self.classifier.eval()

    def train(self, mode: bool = True) -> DigitsFeatureExtractor:
        """Ignore ``mode``: the feature network is never trained."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 1:
            raise ValueError(f"expected images of shape (N, 1, H, W), got {tuple(images.shape)}")
        x = images.float().clamp(0.0, 1.0)
        if x.shape[-1] != NATIVE_SIZE or x.shape[-2] != NATIVE_SIZE:
            x = F.adaptive_avg_pool2d(x, NATIVE_SIZE)
        return self.classifier.features(x)


def digits_fid(classifier: DigitsClassifier | None = None, **kwargs: Any) -> FrechetInceptionDistance:
    """torchmetrics' ``FrechetInceptionDistance`` on :class:`DigitsFeatureExtractor` features.

    ``normalize=True`` makes torchmetrics pass float images through untouched, which is
    what the extractor expects. Other keyword arguments go to the metric.

    Example::

        >>> from models.data import load_digits_tensors
        >>> x, _ = load_digits_tensors()
        >>> fid = digits_fid()
        >>> fid.update(x[:800], real=True); fid.update(x[800:1600], real=False)
        >>> real_vs_real = float(fid.compute())
        >>> fid.reset(); fid.update(x[:800], real=True); fid.update(torch.rand(800, 1, 8, 8), real=False)
        >>> real_vs_real < float(fid.compute())
        True
    """
    kwargs.setdefault("normalize", True)
    return FrechetInceptionDistance(feature=DigitsFeatureExtractor(classifier), **kwargs)
