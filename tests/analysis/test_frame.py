"""Trials as a DataFrame, the best trial and the top k, on live and stored studies."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from frameworm_lightning import SearchResult, Study, TrialState
from frameworm_lightning.analysis import best_trial, top_k, top_trials, trials_dataframe

from ._studies import SPACE, build_study, paused_and_promoted


def test_one_row_per_trial_with_params_state_value_duration_steps_reason() -> None:
    study = build_study(n=12)
    frame = trials_dataframe(study)
    assert list(frame["number"]) == list(range(12))
    for key in SPACE:
        assert f"params_{key}" in frame
    for column in ("state", "value", "duration", "steps", "last_step", "reason", "error",
                   "datetime_start", "datetime_complete", "checkpoint_path", "trial_dir"):
        assert column in frame
    by_number = frame.set_index("number")
    # Trial 3 is pruned after 4 reports (3 % 5 + 1), at global step 40.
    assert by_number.loc[3, "state"] == "PRUNED"
    assert by_number.loc[3, "steps"] == 4 and by_number.loc[3, "last_step"] == 40
    assert by_number.loc[3, "reason"].startswith("median rule")
    assert by_number.loc[5, "state"] == "FAILED" and "ValueError" in by_number.loc[5, "reason"]
    assert math.isnan(by_number.loc[5, "value"])
    assert by_number.loc[0, "state"] == "COMPLETE" and pd.isna(by_number.loc[0, "reason"])
    assert by_number.loc[0, "steps"] == 5 and by_number.loc[0, "last_step"] == 50
    assert (frame["duration"] >= 0).all()
    assert frame["params_depth"].dtype.kind == "i" and frame["steps"].dtype.kind == "i"
    # Values are the stored ones and params are exact Python values.
    for t in study.trials:
        row = by_number.loc[t.number]
        assert row["params_depth"] == t.params["depth"] and row["params_act"] == t.params["act"]
        if t.state is TrialState.COMPLETE:
            assert row["value"] == t.value



def test_a_complete_trial_a_policy_finished_early_keeps_its_reason() -> None:
    study = Study.create("finished", {"x": [0.0, 1.0]}, metric="val_loss")
    early = study.ask()
    early.request_finish("reached the largest resource, 9 epochs")
    early.complete(0.5)
    study.ask().complete(0.7)
    reasons = trials_dataframe(study).set_index("number")["reason"]
    assert reasons[0] == "reached the largest resource, 9 epochs" and pd.isna(reasons[1])

def test_states_filter_and_user_attrs() -> None:
    study = build_study(n=10)
    first = study.trials[0]
    study.storage.set_trial_attr(first.trial_id, "note", "hello")
    frame = trials_dataframe(study, states=(TrialState.PRUNED,))
    assert set(frame["state"]) == {"PRUNED"}
    assert trials_dataframe(study).set_index("number").loc[0, "user_attrs_note"] == "hello"


@pytest.mark.parametrize("mode", ["min", "max"])
def test_top_k_is_sorted_best_first_and_agrees_with_the_study(mode: str) -> None:
    study = build_study(n=20, mode=mode)
    top = top_trials(study, 5)
    values = [t.value for t in top]
    assert values == sorted(values, reverse=(mode == "max"))
    assert top[0].number == study.best_trial.number == best_trial(study).number
    frame = top_k(study, 5)
    assert list(frame["number"]) == [t.number for t in top]
    assert set(frame["state"]) == {"COMPLETE"}


def test_top_k_validates_k() -> None:
    study = build_study(n=4)
    with pytest.raises(ValueError, match="k=0"):
        top_trials(study, 0)


def test_empty_study_gives_an_empty_frame_and_no_best() -> None:
    study = Study.create("empty", SPACE, storage="memory")
    assert trials_dataframe(study).empty
    assert best_trial(study) is None
    assert top_k(study, 3).empty


def test_result_and_stored_study_give_the_same_table(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = build_study("stored", n=12, storage=url)
    live = SearchResult(study)
    reread = SearchResult(Study.load("stored", url))
    a, b = live.to_dataframe(), reread.to_dataframe()
    # A stored space comes back with its keys sorted, so compare column by column.
    assert set(a.columns) == set(b.columns)
    pd.testing.assert_frame_equal(a, b[a.columns])
    assert list(reread.top(3)["number"]) == [t.number for t in top_trials(study, 3)]
    with pytest.raises(TypeError, match="Study or a SearchResult"):
        trials_dataframe([1, 2])  # type: ignore[arg-type]


def test_a_paused_trial_names_the_trial_it_was_promoted_to() -> None:
    # Stored PRUNED, a paused-then-promoted trial read as one stopped for good: nothing in the
    # table said that its configuration went on (as trial 1 here).
    frame = trials_dataframe(paused_and_promoted()).set_index("number")
    assert list(frame["state"]) == ["PRUNED", "COMPLETE", "PRUNED"]
    assert frame.loc[0, "promoted_to"] == 1 and pd.isna(frame.loc[0, "promoted_from"])
    assert frame.loc[1, "promoted_from"] == 0 and pd.isna(frame.loc[1, "promoted_to"])
    assert pd.isna(frame.loc[2, "promoted_to"]) and pd.isna(frame.loc[2, "promoted_from"])
    assert str(frame["promoted_to"].dtype) == "Int64"
