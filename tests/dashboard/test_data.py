"""What the dashboard reads from storage: the counts of a study's trials."""

from __future__ import annotations

from frameworm_lightning.dashboard import study_summaries
from frameworm_lightning.dashboard._app import _counts_html
from frameworm_lightning.dashboard._data import counts
from tests.analysis._studies import build_study


def test_an_interrupted_trial_is_counted_apart_from_the_failed_ones() -> None:
    # It was counted failed, though its params run again first on resume (the search prints it INTERRUPTED).
    study = build_study("stopped", n=6, prune_every=None, fail=(2,))
    study.ask(budget=7).interrupt("the search was stopped by SIGINT")
    c = counts(study.trials)
    assert (c["COMPLETE"], c["FAILED"], c["INTERRUPTED"], c["WAITING"], c["total"]) == (5, 1, 1, 1, 8)
    assert 'interrupted <b id="count-interrupted">1</b>' in _counts_html(c)
    assert 'failed <b id="count-failed">1</b>' in _counts_html(c)
    (summary,) = study_summaries(study.storage)
    assert summary["counts"]["INTERRUPTED"] == 1
