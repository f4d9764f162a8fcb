"""Secrets in storage URLs reach no file, no message and no output; worker payloads are private."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from frameworm_lightning import SearchRunner, StorageError, Study, TrialState, open_storage
from frameworm_lightning.runner._payload import write_private
from frameworm_lightning.storage import masked_url

from ._models import QUIET, PayloadProbe, TinyData

SECRET = "Pa55-" + uuid.uuid4().hex  # unique, so finding it anywhere means it leaked


def with_password(url: str) -> str:
    return sa.engine.make_url(url).set(password=SECRET).render_as_string(hide_password=False)


def files_holding(root: Path, secret: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://alice:s3cret@db/studies", "postgresql://alice:***@db/studies"),
    ("postgresql+psycopg://alice:p%40ss@db:5432/s?sslmode=require", "postgresql+psycopg://alice:***@db:5432/s?sslmode=require"),
    ("mysql://root:hunter2@db/x", "mysql://root:***@db/x"),
    ("weird://u:hunter2@/no", "weird://u:***@/no"),
    ("sqlite:///runs/study.db", "sqlite:///runs/study.db"),
    ("postgresql://alice@db/studies", "postgresql://alice@db/studies"),
    ("memory", "memory"),
])
def test_masked_url_hides_only_the_password(url, shown):
    assert masked_url(url) == shown


def test_errors_and_reprs_never_show_the_password():
    url = f"postgresql://alice:{SECRET}@127.0.0.1:9/nowhere"  # nothing listens on port 9
    with pytest.raises(StorageError) as err:
        open_storage(url)
    assert SECRET not in str(err.value) and "alice:***@127.0.0.1:9" in str(err.value)
    with pytest.raises(StorageError) as err:
        open_storage(f"mysql://root:{SECRET}@db/x")
    assert SECRET not in str(err.value)
    with pytest.raises(StorageError) as err:
        open_storage(f"no-scheme:{SECRET}@db")
    assert SECRET not in str(err.value)


def test_a_private_file_is_0600_even_over_an_older_file(tmp_path):
    path = tmp_path / "trial.pkl"
    path.write_bytes(b"old")
    path.chmod(0o644)
    write_private(path, b"new")
    assert path.read_bytes() == b"new" and oct(path.stat().st_mode & 0o777) == "0o600"


@pytest.mark.slow
def test_a_search_with_a_password_in_its_url_leaks_it_nowhere(postgres_url, tmp_path, capfd):
    url = with_password(postgres_url)
    name = f"secret-{uuid.uuid4().hex[:8]}"
    runner = SearchRunner(metric="val_loss", n_trials=2, storage=url, study_name=name, root_dir=str(tmp_path / "runs"),
                          executor="process", trainer_kwargs=QUIET)
    result = runner.fit(PayloadProbe, {"lr": [0.1, 0.2]}, datamodule=TinyData)
    assert [t.state for t in result.trials] == [TrialState.COMPLETE] * 2, [t.error for t in result.trials]
    print(result, result.study, result.study.storage)
    out, err = capfd.readouterr()
    assert SECRET not in out + err
    assert files_holding(tmp_path, SECRET) == []
    for trial in result.trials:
        folder = Path(trial.system_attrs["trial_dir"])
        probe = json.loads((folder / "probe.json").read_text())
        assert probe == {"mode": "0o600", "has_password": True, "holds_password": False}
        assert not (folder / "trial.pkl").exists(), "the payload is removed when the trial ends"
    Study.load(name, url).storage.close()


@pytest.mark.slow
def test_the_cli_shows_the_storage_url_without_its_password(postgres_url, tmp_path):
    from tests.cli.conftest import run_cli, search_config, write_config

    config = search_config(tmp_path, storage=with_password(postgres_url), study_name=f"cli-{uuid.uuid4().hex[:8]}",
                           n_trials=2)
    path = write_config(tmp_path / "search.yaml", config)  # the user's own file: the one place it belongs
    searched = run_cli("search", "-c", str(path), cwd=tmp_path)
    assert searched.returncode == 0, searched.stderr[-2000:]
    listed = run_cli("trials", "-c", str(path), cwd=tmp_path)
    output = searched.stdout + searched.stderr + listed.stdout + listed.stderr
    assert SECRET not in output
    assert ":***@" in searched.stdout, "the summary names the storage, masked"
    assert files_holding(tmp_path / "runs", SECRET) == []
