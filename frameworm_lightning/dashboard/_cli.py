"""``frameworm-search dashboard``: serve the live dashboard of a storage.

A subcommand of its own parser: it needs no model, data or search config, only a
storage URL, so it does not go through LightningCLI.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from frameworm_lightning.dashboard._app import serve

__all__ = ["main", "parser"]


def parser(prog: str = "frameworm-search dashboard") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Serve a live, read-only web dashboard of the studies in a storage.")
    p.add_argument("--storage", required=True, help="the storage URL: sqlite:///runs/frameworm.db or postgresql://...")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to bind (default 127.0.0.1, this machine only; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=8080, help="the port (default 8080)")
    p.add_argument("--refresh", type=float, default=2.0, help="seconds between a page's updates (default 2)")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    serve(args.storage, args.host, args.port, refresh=args.refresh)
