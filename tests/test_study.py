"""Study: resuming a stored study with another sampler."""

from __future__ import annotations

import pytest

from frameworm_lightning import GridSampler, Integer, RandomSampler, Study, StudyMismatchError, TrialState


def _run(study: Study, budget: int | None) -> list[dict]:
    ran = []
    while (trial := study.ask(budget=budget)) is not None:
        ran.append(trial.params)
        trial.complete(float(trial.params["x"]))
    return ran


SPACE = {"x": Integer(0, 5)}


def test_resume_with_another_sampler_is_refused(storage_url, study_name):
    # The case: 3 random trials, then a grid of 6 points counted 3 of them as spent.
    random = Study.create(study_name, SPACE, metric="loss", sampler=RandomSampler(seed=0), storage=storage_url)
    _run(random, 3)
    grid = GridSampler()
    with pytest.raises(StudyMismatchError, match=r"RandomSampler.*GridSampler.*allow_sampler_change=True"):
        Study.create(study_name, SPACE, metric="loss", sampler=grid, storage=storage_url)
    # Opting in is allowed, and the new sampler becomes the stored one.
    study = Study.create(study_name, SPACE, metric="loss", sampler=grid, storage=storage_url,
                         allow_sampler_change=True)
    _run(study, 9)
    assert len(study.trials_in(TrialState.COMPLETE)) == 9
    Study.create(study_name, SPACE, metric="loss", sampler=GridSampler(), storage=storage_url)


def test_resume_with_another_grid_resolution_is_refused(storage_url, study_name):
    space = {"x": Integer(0, 8)}
    coarse = Study.create(study_name, space, metric="loss", sampler=GridSampler(grid_points=3), storage=storage_url)
    first = _run(coarse, 2)
    with pytest.raises(StudyMismatchError, match=r"grid_points.*3.*5"):
        Study.create(study_name, space, metric="loss", sampler=GridSampler(grid_points=5), storage=storage_url)
    # The same grid resumes and finishes without repeating a point.
    again = Study.create(study_name, space, metric="loss", sampler=GridSampler(grid_points=3), storage=storage_url)
    rest = _run(again, None)
    points = [p["x"] for p in first + rest]
    assert len(points) == len(set(points)) == 3


def test_same_sampler_settings_resume(storage_url, study_name):
    Study.create(study_name, SPACE, metric="loss", sampler=RandomSampler(seed=0), storage=storage_url)
    # The seed of a random sampler does not decide which points run: a resume may change it.
    Study.create(study_name, SPACE, metric="loss", sampler=RandomSampler(seed=1), storage=storage_url)


def test_changing_sampler_before_any_trial_is_allowed(storage_url, study_name):
    Study.create(study_name, SPACE, metric="loss", sampler=RandomSampler(), storage=storage_url)
    study = Study.create(study_name, SPACE, metric="loss", sampler=GridSampler(), storage=storage_url)
    assert len(_run(study, None)) == 6
