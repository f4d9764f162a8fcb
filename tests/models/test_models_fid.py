"""The Fréchet score: a real torchmetrics FID on the shipped digits classifier's features."""

from __future__ import annotations

import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from models import DigitsDataModule, DigitsFeatureExtractor, digits_fid
from models.data import load_digits_tensors, split_indices
from models.fid import DEFAULT_WEIGHTS, evaluate_classifier, load_digits_classifier


def _fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    metric = digits_fid()
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def test_real_vs_real_is_far_below_real_vs_noise(digits_val):
    dm = DigitsDataModule()
    dm.setup("fit")
    train = dm.train_dataset.tensors[0][:359]
    g = torch.Generator().manual_seed(0)
    real_vs_real = _fid(train, digits_val)
    real_vs_noise = _fid(train, torch.rand(359, 1, 8, 8, generator=g))
    real_vs_blur = _fid(train, torch.nn.functional.avg_pool2d(digits_val, 3, 1, 1))
    assert isinstance(digits_fid(), FrechetInceptionDistance)
    assert real_vs_real >= 0.0
    assert 10 * real_vs_real < real_vs_noise
    assert 2 * real_vs_real < real_vs_blur  # blurred digits score clearly worse than real ones


def test_feature_extractor_is_frozen_and_stays_in_eval_mode():
    fx = DigitsFeatureExtractor()
    fx.train()
    assert not fx.training and not fx.classifier.training
    assert not any(p.requires_grad for p in fx.parameters())
    assert fx.num_features == 64
    assert fx(torch.rand(3, 1, 8, 8)).shape == (3, 64)
    assert fx(torch.rand(3, 1, 32, 32)).shape == (3, 64)  # resized to 8x8 first


def test_shipped_weights_classify_held_out_digits():
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size < 300_000
    x, y = load_digits_tensors()
    _, val = split_indices(len(x), 0.2, seed=0)  # held out when the weights were trained
    assert evaluate_classifier(load_digits_classifier(), x[val], y[val]) > 0.95


def test_missing_weights_are_retrained_reproducibly(tmp_path):
    path = tmp_path / "clf.pt"
    model = load_digits_classifier(path)  # missing: trains with the shipped recipe and saves
    assert path.is_file()
    x, y = load_digits_tensors()
    _, val = split_indices(len(x), 0.2, seed=0)
    assert evaluate_classifier(model, x[val], y[val]) > 0.95
    again = load_digits_classifier(path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
