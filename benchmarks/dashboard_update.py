"""Time and size of one live-dashboard update for a 200-trial study with 20 reports per trial.

    python benchmarks/dashboard_update.py

Builds the study by hand (no training) in a temporary SQLite file, serves the dashboard
on 127.0.0.1 and asks for the study's data three times, then once with ``since`` (what an
open page asks when nothing changed).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.analysis._studies import additive, build_study  # noqa: E402
from tests.dashboard._servers import serving  # noqa: E402


def main() -> None:
    url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    build_study("big", n=200, fn=additive, storage=url, steps=20)
    with serving(url) as base:
        version = ""
        for i in range(3):
            start = time.perf_counter()
            body = urllib.request.urlopen(f"{base}/api/studies/big", timeout=300).read()
            print(f"full update {i}: {time.perf_counter() - start:.2f} s, {len(body) / 1e6:.2f} MB")
            version = json.loads(body)["version"]
        start = time.perf_counter()
        body = urllib.request.urlopen(f"{base}/api/studies/big?since={version}", timeout=300).read()
        print(f"unchanged: {time.perf_counter() - start:.3f} s, {len(body)} bytes")


if __name__ == "__main__":
    main()
