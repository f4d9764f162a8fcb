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


class _Recorder(RandomSampler):
    """A random sampler that keeps the history each ask was given."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.seen: list[list] = []

    def ask(self, context):
        self.seen.append(list(context.trials))
        return super().ask(context)


def test_ask_history_is_never_stale_across_processes(tmp_path, study_name):
    # Two Study objects on one SQLite file stand for two worker processes. Every history the
    # sampler of one is given must equal what storage holds at that moment, whatever the
    # other did to its trials in between (reports, completion, interruption, requeues).
    import random

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    recorder = _Recorder()
    asker = Study.create(study_name, SPACE, metric="loss", sampler=recorder, storage=url)
    other = Study.create(study_name, SPACE, metric="loss", sampler=RandomSampler(seed=1), storage=url)
    bystander = Study.create(f"{study_name}-2", SPACE, metric="loss", storage=url)  # trials of another study
    rng = random.Random(0)
    running, checked = [], 0
    for step in range(60):
        action = rng.choice(["ask", "report", "complete", "fail", "prune", "interrupt", "retry", "enqueue"])
        if action == "ask" or not running:
            running.append(other.ask())
            bystander.ask().complete(0.0)
        elif action == "report":
            rng.choice(running).report(step, rng.random())
        elif action == "enqueue":
            other.enqueue({"x": rng.randrange(6)}, skip_if_exists=False)
        elif action == "retry":
            other.recover(retry_failed=True)
        else:
            trial = running.pop(rng.randrange(len(running)))
            {"complete": lambda: trial.complete(rng.random()), "fail": lambda: trial.fail("boom"),
             "prune": lambda: trial.prune("slow"), "interrupt": lambda: trial.interrupt("lost")}[action]()
        asked = len(recorder.seen)
        mine = asker.ask()
        running.append(mine)
        if len(recorder.seen) == asked:
            continue  # an enqueued point: the sampler was not asked
        checked += 1
        expected = [t for t in asker.trials if t.trial_id != mine.trial_id]
        got = recorder.seen[-1]
        # The trial just asked is the one being sampled: storage holds it without params then.
        assert [t.number for t in got] == [t.number for t in expected], step
        for seen, now in zip(got, expected):
            assert (seen.state, seen.params, seen.value, seen.intermediate_values, seen.claim_key,
                    seen.system_attrs) == (now.state, now.params, now.value, now.intermediate_values,
                                           now.claim_key, now.system_attrs), (step, action, now.number)
    assert checked > 30


def test_loading_from_a_sqlite_file_that_does_not_exist_says_so_and_creates_nothing(tmp_path):
    # Study.load("vae", "sqlite:///run/vae.db") (for runs/) created run/vae.db, then said "stored studies: none".
    from frameworm_lightning import StorageError

    missing = tmp_path / "run" / "vae.db"
    with pytest.raises(StorageError, match=rf"no database at '{missing}' \(from 'sqlite:///{missing}'\); point the "
                                           r"storage URL at the file a search wrote"):
        Study.load("vae", f"sqlite:///{missing}")
    assert not (tmp_path / "run").exists()
