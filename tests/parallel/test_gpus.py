"""GPU slots: fractions and whole GPUs over the visible devices, leases returned."""

from __future__ import annotations

import math

import pytest

from frameworm_lightning.runner._gpus import GpuPool, validate_gpus_per_trial, visible_gpus


@pytest.mark.parametrize(
    ("gpus_per_trial", "devices", "leases"),
    [
        (0.5, ["0", "1"], ["0", "1", "0", "1"]),  # spread before sharing
        (1, ["0", "1"], ["0", "1"]),
        (2, ["0", "1", "2", "3"], ["0,1", "2,3"]),
        (0.25, ["3"], ["3", "3", "3", "3"]),
        (1 / 3, ["0"], ["0", "0", "0"]),
        (0.4, ["0"], ["0", "0"]),  # 0.2 of the GPU stays unused
        (3, ["0", "1", "2", "3"], ["0,1,2"]),
    ],
)
def test_pool_hands_out_its_capacity_then_nothing(gpus_per_trial: float, devices: list[str], leases: list[str]) -> None:
    pool = GpuPool(gpus_per_trial, devices=devices)
    assert pool.capacity == len(leases)
    got = [pool.acquire() for _ in leases]
    assert [lease.visible for lease in got] == leases
    assert pool.acquire() is None
    pool.release(got[0])
    again = pool.acquire()
    assert again is not None and again.visible == leases[0]
    assert again.env() == {"CUDA_VISIBLE_DEVICES": leases[0]}


def test_release_of_none_is_ignored() -> None:
    pool = GpuPool(1, devices=["0"])
    pool.release(None)
    assert pool.capacity == 1 and pool.acquire() is not None


@pytest.mark.parametrize("value", [None, 0, 0.5, 1, 2, 4.0])
def test_valid_gpus_per_trial(value: float | None) -> None:
    assert validate_gpus_per_trial(value) == value


@pytest.mark.parametrize("value", [-1, 1.5, "1", True, math.nan, math.inf])
def test_invalid_gpus_per_trial_names_the_value(value: object) -> None:
    with pytest.raises(ValueError, match="gpus_per_trial"):
        validate_gpus_per_trial(value)  # type: ignore[arg-type]


def test_pool_errors() -> None:
    with pytest.raises(ValueError, match="no GPU is visible"):
        GpuPool(0.5, devices=[])
    with pytest.raises(ValueError, match="needs 2 GPUs but only 1"):
        GpuPool(2, devices=["0"])
    with pytest.raises(ValueError, match="> 0"):
        GpuPool(0, devices=["0"])


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []
