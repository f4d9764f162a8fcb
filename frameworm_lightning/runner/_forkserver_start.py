"""The forkserver's last preload: importing it prepares the forkserver (:func:`~._forkserver.prepare_forkserver`).

Nothing else imports this module, so its import comes after every other preload, whatever
those import in turn.
"""

from __future__ import annotations

from frameworm_lightning.runner._forkserver import prepare_forkserver

prepare_forkserver()
