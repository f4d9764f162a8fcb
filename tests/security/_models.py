"""What the security tests build: the tiny module and datamodule of ``tests/analysis``, and a probe."""

from __future__ import annotations

from analysis._tiny import Tiny, TinyData

__all__ = ["QUIET", "PayloadProbe", "Tiny", "TinyData"]


QUIET = {"max_epochs": 1, "limit_train_batches": 1, "limit_val_batches": 1, "enable_progress_bar": False,
         "enable_model_summary": False}


class PayloadProbe(Tiny):
    """Records, from inside a worker, the mode and contents of the payload file it was started with."""

    def __init__(self, lr: float = 0.1) -> None:
        super().__init__(lr)
        import json
        import os
        import sys
        from pathlib import Path

        import sqlalchemy as sa

        payload = Path(sys.argv[-1])
        if payload.name == "trial.pkl":
            password = sa.engine.make_url(os.environ["FRAMEWORM_STORAGE_URL"]).password or ""
            probe = {"mode": oct(payload.stat().st_mode & 0o777), "has_password": bool(password),
                     "holds_password": password.encode() in payload.read_bytes()}
            (payload.parent / "probe.json").write_text(json.dumps(probe))
