"""Analysis of a study: the trial table, parameter importance, plots and an HTML report.

Every function takes a :class:`~frameworm_lightning.Study` (a live one or one read back
with ``Study.load``) or a :class:`~frameworm_lightning.SearchResult`. Needs the
``analysis`` extra (pandas, plotly, scikit-learn); saving plots as PNG/SVG/PDF also
needs the ``export`` extra (kaleido, with a Chrome or Chromium on the machine).

Example:
    >>> from frameworm_lightning import Real, Study
    >>> from frameworm_lightning import analysis
    >>> study = Study.create("a", {"x": Real(0, 1), "y": Real(0, 1)}, metric="loss", storage="memory")
    >>> while (t := study.ask(budget=8)) is not None:
    ...     _ = t.complete(t.params["x"])
    >>> analysis.trials_dataframe(study).shape[0]
    8
"""

try:
    import pandas  # noqa: F401
    import plotly  # noqa: F401
    import sklearn  # noqa: F401
except ModuleNotFoundError as err:  # pragma: no cover - depends on the installation
    raise ModuleNotFoundError(
        f"frameworm_lightning.analysis needs {err.name!r}; install it with "
        "pip install 'frameworm-lightning[analysis]'.", name=err.name,
    ) from None

from frameworm_lightning.analysis._frame import best_trial, complete_trials, top_k, top_trials, trials_dataframe
from frameworm_lightning.analysis._importance import ForestANOVA, importance_table, param_importance
from frameworm_lightning.analysis._plots import (
    PLOT_KINDS,
    Curve,
    contour_data,
    edf_data,
    history_data,
    learning_curves,
    plot,
    plot_contour,
    plot_curves,
    plot_edf,
    plot_history,
    plot_importance,
    plot_parallel,
    plot_slice,
    robust_range,
    save_figure,
)
from frameworm_lightning.analysis._report import REPORT_KINDS, render_report, save_plots, write_report

__all__ = [
    "PLOT_KINDS",
    "REPORT_KINDS",
    "Curve",
    "ForestANOVA",
    "best_trial",
    "complete_trials",
    "contour_data",
    "edf_data",
    "history_data",
    "importance_table",
    "learning_curves",
    "param_importance",
    "plot",
    "plot_contour",
    "plot_curves",
    "plot_edf",
    "plot_history",
    "plot_importance",
    "plot_parallel",
    "plot_slice",
    "render_report",
    "robust_range",
    "save_figure",
    "save_plots",
    "top_k",
    "top_trials",
    "trials_dataframe",
    "write_report",
]
