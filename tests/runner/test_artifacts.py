"""What a search leaves beside its storage: the trial folders' owner, configs, checkpoints."""

from __future__ import annotations

import pytest

from frameworm_lightning import RandomSampler, SearchRunner, Study, StudyMismatchError, TrialState

from ._modules import LineData, Regression

FAST = {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1, "enable_progress_bar": False,
        "enable_model_summary": False, "logger": False}


def search(root, storage, n_trials=1, study_name="same"):
    return SearchRunner(metric="val_loss", mode="min", sampler=RandomSampler(seed=0), n_trials=n_trials,
                        storage=storage, root_dir=root, study_name=study_name, trainer_kwargs=FAST, quiet=True)


def test_a_study_in_other_storage_is_refused_trial_folders_another_study_wrote(tmp_path):
    # Both wrote runs/same/trial_0000: the second silently replaced the first's checkpoint and config.
    root = tmp_path / "runs"
    first = search(root, f"sqlite:///{tmp_path / 'a.db'}").fit(Regression, {"lr": (0.01, 0.1)}, LineData)
    folder = root / "same" / "trial_0000"
    config = (folder / "config.yaml").read_text()
    ckpt = (folder / "checkpoints" / "best.ckpt").read_bytes()
    other = f"sqlite:///{tmp_path / 'b.db'}"
    with pytest.raises(StudyMismatchError, match=r"trial folders of another study named 'same'.*a\.db.*"
                                                 r"pass another root_dir or study_name"):
        search(root, other).fit(Regression, {"lr": (0.01, 0.1)}, LineData)
    assert (folder / "config.yaml").read_text() == config
    assert (folder / "checkpoints" / "best.ckpt").read_bytes() == ckpt
    assert Study.load("same", storage=other).trials == []  # refused before any trial ran
    # Another study name or root_dir is fine; so is resuming the first study from its own storage.
    search(root, other, study_name="other").fit(Regression, {"lr": (0.01, 0.1)}, LineData)
    search(tmp_path / "elsewhere", other).fit(Regression, {"lr": (0.01, 0.1)}, LineData)
    resumed = search(root, f"sqlite:///{tmp_path / 'a.db'}", n_trials=2).fit(Regression, {"lr": (0.01, 0.1)}, LineData)
    assert [t.state for t in resumed.trials] == [TrialState.COMPLETE] * 2
    assert resumed.trials[0].params == first.trials[0].params
    assert (root / "same" / "trial_0001" / "config.yaml").is_file()


def test_an_in_memory_search_may_reuse_its_folders_but_not_a_stored_studys(tmp_path):
    root = tmp_path / "runs"
    for _ in range(2):  # a throwaway study each time: it claims nothing
        search(root, "memory").fit(Regression, {"lr": (0.01, 0.1)}, LineData)
    search(root, f"sqlite:///{tmp_path / 'a.db'}").fit(Regression, {"lr": (0.01, 0.1)}, LineData)
    with pytest.raises(StudyMismatchError, match="pass another root_dir or study_name"):
        search(root, "memory").fit(Regression, {"lr": (0.01, 0.1)}, LineData)
