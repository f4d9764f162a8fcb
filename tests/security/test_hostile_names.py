"""Hostile names on SQLite and PostgreSQL: stored and read back exactly, or refused alike on both."""

from __future__ import annotations

import pytest

from frameworm_lightning import Categorical, StorageError, Study, TrialState

from . import _snapshot

QUOTES = "x'); DROP TABLE fw_studies; -- \"quoted\" \\ back`tick`"
EMOJI = "étude 🦄✨ 研究"


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'names.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.mark.parametrize("name", [QUOTES, EMOJI, "ü" * 255])
def test_quotes_emoji_and_255_characters_round_trip(url, name, study_name):
    name = f"{study_name}{name}"[:255]
    study = Study.create(name, {"choice": Categorical([QUOTES, EMOJI, "nul\x00inside"])}, metric=EMOJI + QUOTES[:20],
                         storage=url)
    for _ in range(3):
        trial = study.ask()
        trial.set_user_attr(QUOTES, EMOJI + "\x00")
        trial.fail(f"Traceback\nValueError: {trial.params['choice']}")
    again = Study.load(name, url)
    assert again.name == name and again.metric == EMOJI + QUOTES[:20]
    stored = again.trials
    assert sorted(t.params["choice"] for t in stored) == sorted([QUOTES, EMOJI, "nul\x00inside"])
    assert all(t.state is TrialState.FAILED and t.user_attrs == {QUOTES: EMOJI + "\x00"} for t in stored)
    # PostgreSQL text cannot hold NUL: error text keeps it escaped, on every backend alike.
    (nul,) = [t for t in stored if t.params["choice"] == "nul\x00inside"]
    assert nul.error.endswith("ValueError: nul\\x00inside") and nul.reason == "ValueError: nul\\x00inside"
    assert name in again.storage.study_names()


@pytest.mark.parametrize(("name", "metric", "message"), [
    ("n" * 100_000, "loss", r"study name is 100,000 characters long; at most 255 are stored on every backend"),
    ("a\x00b", "loss", r"study name 'a\\x00b' contains a NUL character"),
    ("ok", "m" * 256, r"metric is 256 characters long; at most 255"),
    ("ok", "lo\x00ss", r"metric 'lo\\x00ss' contains a NUL character"),
    ("ok", None, r"metric must be a non-empty string, but got metric=None"),
    ("ok", "", r"metric must be a non-empty string, but got metric=''"),
])
def test_names_no_backend_can_store_are_refused_before_writing(url, name, metric, message, tmp_path, study_name):
    first = Study.create(study_name, {"x": [1, 2]}, metric="loss", storage=url)
    first.ask().complete(1.0)
    first.storage.close()
    before = _snapshot.state(url, tmp_path)
    with pytest.raises(StorageError, match=message):
        Study.create(name if name != "ok" else study_name + "-new", {"x": [1, 2]}, metric=metric, storage=url)
    assert _snapshot.state(url, tmp_path) == before
    if name != "ok":
        with pytest.raises(StorageError, match=message):
            Study.load(name, url)
