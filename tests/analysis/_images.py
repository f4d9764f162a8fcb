"""Checks that a PNG is a real, non-blank picture, and the Chromium that draws them."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def assert_non_blank_png(data: bytes | Path, min_size: tuple[int, int] = (200, 150)) -> np.ndarray:
    """Decode ``data`` as PNG and check it has a sensible size and real content; returns its pixels."""
    raw = data.read_bytes() if isinstance(data, Path) else data
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    image = Image.open(io.BytesIO(raw))
    image.verify()  # a truncated or corrupt file raises here
    image = Image.open(io.BytesIO(raw)).convert("RGB")
    width, height = image.size
    assert width >= min_size[0] and height >= min_size[1], image.size
    pixels = np.asarray(image, dtype=float)
    background = np.median(pixels.reshape(-1, 3), axis=0)
    drawn = np.abs(pixels - background).sum(axis=2) > 30
    assert drawn.mean() > 0.01, f"only {drawn.mean():.2%} of the pixels differ from the background"
    rgb = pixels.astype(np.uint32)
    colours = len(np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]))
    assert colours >= 4, f"only {colours} distinct colours"
    return pixels


def chromium_path() -> str | None:
    """Debian's Chromium, where installed."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def require_chromium() -> str:
    """The Chromium binary; a test without it is skipped locally and fails in CI (``CI=true``)."""
    path = chromium_path()
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("Chromium is required in CI (Debian: apt-get install chromium); .ci/run installs it.")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); CI always runs this test")
    return path
