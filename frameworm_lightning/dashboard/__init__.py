"""A live web dashboard over a study storage: ``frameworm-search dashboard --storage URL``.

It lists the studies of a SQLite or PostgreSQL storage and shows, per study, the trial
counts, the trial table, the optimisation history, the learning curves (updating while
a search runs elsewhere), parameter importance, and each trial's params, state, reason
and logs folder. It only reads the storage. Needs the ``dashboard`` extra (Starlette and
uvicorn, with the ``analysis`` extra's plotly, pandas and scikit-learn).

Example:
    >>> from frameworm_lightning.dashboard import create_app
    >>> app = create_app("memory")
    >>> sorted(route.path for route in app.routes)[:2]
    ['/', '/api/studies']
"""

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401

    import frameworm_lightning.analysis  # noqa: F401 - names the analysis extra when missing
except ModuleNotFoundError as err:  # pragma: no cover - depends on the installation
    raise ModuleNotFoundError(
        f"frameworm_lightning.dashboard needs {err.name!r}; install it with "
        "pip install 'frameworm-lightning[dashboard]'.", name=err.name,
    ) from None

from frameworm_lightning.dashboard._app import create_app, serve
from frameworm_lightning.dashboard._data import read_storage, study_summaries

__all__ = ["create_app", "read_storage", "serve", "study_summaries"]
