"""A module that signals the search process, for the tests of what a stopped search prints."""

from __future__ import annotations

import os
import signal
import time

from ._modules import Regression


class SignalsTheSearch(Regression):
    """Sends ``signum`` to the search process (``pid``) in its second epoch, then waits to be stopped."""

    def __init__(self, lr: float = 0.05, signum: int = int(signal.SIGINT), pid: int = 0) -> None:
        super().__init__(lr=lr)

    def on_train_epoch_end(self) -> None:
        if self.current_epoch == 1:
            os.kill(self.hparams.pid, self.hparams.signum)
            if self.hparams.pid != os.getpid():  # a worker process: the search stops it
                time.sleep(60)
