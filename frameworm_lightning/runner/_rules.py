"""When a finished trial ends the whole search, in every execution path.

Each path (inline, worker processes, pull workers, the function API) calls
:func:`search_error` after each finished trial and raises what it returns:

* a trial that failed because the search is set up wrongly, while no trial of the
  study has yet completed or been pruned, ends the search: every other trial would fail
  the same way. Two such failures are marked by the trial that hit them (the
  ``fw_fatal`` system attribute, set by ``execute_trial`` and ``evaluate_function``):

  - the monitored metric was never logged: :class:`MetricNotFoundError`, listing what was;
  - a configuration error (Lightning's ``MisconfigurationException``, a ``TypeError`` or
    ``ValueError``) before the first training batch, or a ``train_fn`` result that is not a
    number (``"when"``: ``"its first result"``): :class:`TrialFailed` with that error;

* with ``stop_on_error``, any failure (not an interruption): :class:`TrialFailed`.

A later trial that fails for its own reasons (after others trained) never stops the search
unless ``stop_on_error``.

Example:
    >>> from frameworm_lightning import Real, Study
    >>> study = Study.create("rules", {"x": Real(0, 1)}, metric="loss")
    >>> t = study.ask()
    >>> t.set_system_attr(FATAL_ATTR, {"kind": "metric", "metric": "loss", "available": ["val_loss"]})
    >>> _ = t.fail("KeyError: loss")
    >>> print(search_error(study, t.snapshot()))
    metric 'loss' was never logged; logged metrics: val_loss. Log it with self.log('loss', ...) or pick one of those.
"""

from __future__ import annotations

from frameworm_lightning.exceptions import FramewormError, MetricNotFoundError, TrialFailed
from frameworm_lightning.study import Study
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["FATAL_ATTR", "search_error"]

FATAL_ATTR = "fw_fatal"


def search_error(study: Study, frozen: FrozenTrial, stop_on_error: bool = False) -> FramewormError | None:
    """The error that ends the search now that ``frozen`` finished, or ``None`` to go on."""
    if frozen.state is not TrialState.FAILED or frozen.interrupted:
        return None
    fatal = frozen.system_attrs.get(FATAL_ATTR)
    if isinstance(fatal, dict) and not study.trials_in(TrialState.COMPLETE, TrialState.PRUNED):
        if fatal.get("kind") == "metric":
            return MetricNotFoundError(str(fatal.get("metric")), fatal.get("available") or (), str(fatal.get("fix") or ""))
        summary = " ".join(str(fatal.get("error")).split())
        when = fatal.get("when") or "before its first training step"
        return TrialFailed(frozen.number, f"{frozen.error or ''}\n{summary} ({when}: every trial would fail the same "
                           "way, so the search stopped)")
    if stop_on_error:
        return TrialFailed(frozen.number, frozen.error or "")
    return None
