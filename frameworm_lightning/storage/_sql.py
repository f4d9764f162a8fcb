"""Trial storage on a real database through SQLAlchemy Core.

One implementation serves every backend:

* ``sqlite:///path/study.db`` — an embedded file (WAL journal, a busy timeout, every
  writing transaction ``BEGIN IMMEDIATE`` so claims are serialised across processes;
  reads take no lock and wait for no writer);
* ``postgresql://user@host/db`` — many machines; claims lock the study's row
  (``SELECT ... FOR UPDATE``) so numbering, budgets and claim keys stay atomic;
* ``None`` or ``"memory"`` — an in-memory SQLite database for tests and quick scripts
  (one process only).

Every state change is one transaction. Params and attributes are stored as JSON text.
A trial left ``RUNNING`` by a process that died is detected by its owner (same host:
the process is gone) or its heartbeat (another host: silent for ``heartbeat_timeout``),
stored ``FAILED`` with ``reason="interrupted"``, and its params re-enqueued.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError, SQLAlchemyError

from frameworm_lightning.exceptions import StorageError, StudyMismatchError
from frameworm_lightning.storage._url import SUPPORTED, masked_url, normalise_url
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["MAX_NAME_LENGTH", "MAX_PROCESS_DEATHS", "DuplicateClaimError", "Storage", "StudyRecord", "TrialHistory", "check_name", "current_owner", "open_storage"]

_SCHEMA_VERSION = 1
_READ_ONLY = "frameworm_read_only"  # execution option of a read transaction (_tx(read=True))

_log = logging.getLogger("frameworm_lightning.storage")

# Study names and metrics are ``VARCHAR(255)`` columns: the same limit on every backend,
# checked before anything is written (SQLite would store longer text, PostgreSQL refuse it).
MAX_NAME_LENGTH = 255
# A trial whose process died this many times (a segfault, an out-of-memory kill: it never
# stored an outcome) is failed instead of re-run first again: a crash loop ends.
MAX_PROCESS_DEATHS = 3

_metadata = sa.MetaData()

studies = sa.Table(
    "fw_studies",
    _metadata,
    sa.Column("study_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("metric", sa.String(255), nullable=False),
    sa.Column("mode", sa.String(8), nullable=False),
    sa.Column("space", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("user_attrs", sa.Text, nullable=False, default="{}"),
    sa.Column("schema_version", sa.Integer, nullable=False, default=_SCHEMA_VERSION),
)

trials = sa.Table(
    "fw_trials",
    _metadata,
    sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.Integer, sa.ForeignKey("fw_studies.study_id", ondelete="CASCADE"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("params", sa.Text, nullable=True),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("claim_key", sa.String(255), nullable=True),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("completed_at", sa.Float, nullable=True),
    sa.Column("heartbeat_at", sa.Float, nullable=True),
    sa.Column("owner", sa.String(255), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("user_attrs", sa.Text, nullable=False, default="{}"),
    sa.Column("system_attrs", sa.Text, nullable=False, default="{}"),
    sa.UniqueConstraint("study_id", "number", name="uq_fw_trial_number"),
    # NULL claim keys never collide (SQL semantics), so only grid/enqueued points are unique.
    sa.UniqueConstraint("study_id", "claim_key", name="uq_fw_trial_claim"),
    # Claims look for a study's waiting trials: without it, a walk over every trial of the study.
    sa.Index("ix_fw_trials_study_state", "study_id", "state"),
)

trial_values = sa.Table(
    "fw_trial_values",
    _metadata,
    sa.Column("trial_id", sa.Integer, sa.ForeignKey("fw_trials.trial_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("step", sa.Integer, primary_key=True),
    # NaN is stored as NULL (SQLite cannot hold NaN) and read back as NaN.
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("reported_at", sa.Float, nullable=False),
)


# Which waiting trial a claim takes first: re-runs (``retry_of``), then promotions
# (``promoted_from``), then the rest. System attributes are JSON written by ``_dumps``
# (``"key": value``; a quote inside a string value is escaped, so it cannot match).
_CLAIM_ORDER = sa.case(
    (trials.c.system_attrs.like('%"retry_of": %'), 0),
    (trials.c.system_attrs.like('%"promoted_from": %'), 1),
    else_=2,
)

# The study attribute that holds the identity of the sampler searching it.
SAMPLER_ATTR = "fw_sampler"


def _describe_sampler(identity: Mapping[str, Any]) -> str:
    """``GridSampler(grid_points=3, shuffle=False)`` from a stored sampler identity."""
    settings = ", ".join(f"{k}={v!r}" for k, v in identity.items() if k != "sampler" and v is not None)
    return f"{identity.get('sampler', '?')}({settings})"


class DuplicateClaimError(StorageError):
    """Another trial of the study already holds this claim key."""


def _dumps(obj: Any, ordered: bool = False) -> str:
    """JSON text; ``ordered`` keeps insertion order (a space's columns, a trial's params)."""
    return json.dumps(obj, sort_keys=not ordered, default=_json_default)


def _space_changes(stored: dict[str, Any], given: dict[str, Any]) -> str:
    """The keys whose spec differs, and those added or removed, in words."""
    changes = [f"{k!r} is stored as {_dumps(stored[k])} and given as {_dumps(given[k])}"
               for k in stored if k in given and stored[k] != given[k]]
    changes += [f"{k!r} is new" for k in given if k not in stored]
    changes += [f"{k!r} is gone" for k in stored if k not in given]
    return "; ".join(changes)


def _json_default(obj: Any) -> Any:
    # numpy scalars and paths reach us from user code and samplers.
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (Path, os.PathLike)):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"{obj!r} ({type(obj).__name__}) cannot be stored as JSON")


# System attributes that describe *what* a trial evaluates (its grid point, its scheduler
# bracket and rungs, the checkpoint it continues from, the trial it promotes) travel to a
# re-run of it; the ones that describe *a run* (its directory, its outcome) do not.
_CARRIED_PREFIXES = ("fw_",)
_CARRIED_KEYS = ("grid_index", "resume_checkpoint", "promoted_from", "enqueued", "sampler", "process_deaths")


def _carried_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if k in _CARRIED_KEYS or k.startswith(_CARRIED_PREFIXES)}


def _process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), so a recycled pid is not mistaken for the owner."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_namespace() -> str:
    """This process's kernel and PID namespace (Linux): pids are comparable only within one."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()[:8]
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return ""
    return f"{boot}-{namespace.strip('pid:[]')}"


def _new_token() -> str:
    return uuid.uuid4().hex[:12]


# A random name for this process, made again in a forked child: two workers never share one,
# even with the same hostname and pid (containers with host networking and their own pids).
_TOKEN = _new_token()


def _renew_token() -> None:
    global _TOKEN
    _TOKEN = _new_token()


os.register_at_fork(after_in_child=_renew_token)


def current_owner() -> str:
    """``host:pid:start:namespace:token`` naming this process as the owner of the trials it runs.

    The token alone identifies the process; the rest lets a worker in the same PID
    namespace tell at once that the owner's process is gone.
    """
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start_time(pid) or 0}:{_pid_namespace()}:{_TOKEN}"


def _owner_alive(owner: str | None) -> bool | None:
    """Whether the owning process still lives: True/False within this PID namespace, None elsewhere.

    ``None`` (another host, another container, an owner written by an older version)
    leaves the decision to the trial's heartbeat.
    """
    if not owner:
        return None
    try:
        host, pid_s, start, namespace, _token = owner.rsplit(":", 4)
        pid = int(pid_s)
    except ValueError:
        return None
    if host != socket.gethostname() or not namespace or namespace != _pid_namespace():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    actual = _process_start_time(pid)
    return actual is None or start == "0" or actual == start


@dataclass
class TrialHistory:
    """The trials of one study as last read by :meth:`Storage.read_history`, for incremental reads.

    A trial that can no longer change what a sampler sees (``COMPLETE``, ``PRUNED``, or
    ``FAILED`` and already requeued or interrupted) is kept and never read again; the
    others (waiting, running, a failure that ``retry_failed`` may still requeue) are read
    again each time, with every trial added since. Attributes set on a finished trial
    afterwards (checkpoint bookkeeping) are not seen: use :meth:`Storage.get_trials` for them.
    """

    study_id: int
    final: dict[int, FrozenTrial] = field(default_factory=dict)
    open: dict[int, FrozenTrial] = field(default_factory=dict)
    last_id: int = 0


def _is_final(trial: FrozenTrial) -> bool:
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state is TrialState.FAILED and (
        bool(trial.system_attrs.get("interrupted")) or trial.system_attrs.get("requeued_as") is not None
    )


@dataclass(frozen=True)
class StudyRecord:
    """A stored study's identity: its id, name, metric, mode and space spec."""

    study_id: int
    name: str
    metric: str
    mode: str
    space: dict[str, Any] = field(repr=False)
    user_attrs: dict[str, Any] = field(repr=False)
    created_at: float = field(repr=False)


def check_name(what: str, value: Any) -> str:
    """``value`` if it can name a study or metric on every backend, else a :class:`StorageError`."""
    if not isinstance(value, str) or not value:
        raise StorageError(f"{what} must be a non-empty string, but got {what}={value!r}.")
    if len(value) > MAX_NAME_LENGTH:
        raise StorageError(f"{what} is {len(value):,} characters long; at most {MAX_NAME_LENGTH} are stored "
                           f"on every backend (it starts {value[:40]!r}).")
    if "\x00" in value:
        raise StorageError(f"{what} {value!r} contains a NUL character, which PostgreSQL cannot store; remove it.")
    return value


def _storable_text(text: str | None) -> str | None:
    """Error text as PostgreSQL can store it: a NUL (from a user's exception message) is escaped."""
    return None if text is None else text.replace("\x00", "\\x00")


class Storage:
    """A study/trial database. Create it with :func:`open_storage`.

    Every public method is one transaction. Instances are safe to share between threads
    of one process; processes each open their own.

    ``create_tables=False`` opens a database that already has them without checking
    (a trial's process, whose search made them): the check takes SQLite's write lock,
    which the other trials' reports hold often.
    """

    def __init__(self, url: str = "memory", *, heartbeat_timeout: float = 120.0, create_tables: bool = True) -> None:
        #: The URL as given, password included: only ever passed to a database driver.
        self.secret_url = url
        #: The URL to show: its password, if any, masked (``masked_url``).
        self.url = masked_url(url)
        self.heartbeat_timeout = float(heartbeat_timeout)
        self._lock = threading.RLock()
        sa_url = normalise_url(url)
        self.is_memory = sa_url == "sqlite://"
        self.dialect = sa_url.split(":", 1)[0].split("+", 1)[0]
        try:
            self.engine = self._create_engine(sa_url)
            if create_tables or self.is_memory:
                self._create_schema()
        except StorageError:
            raise
        except ModuleNotFoundError as err:
            raise StorageError(
                f"cannot open storage {self.url!r}: the driver {err.name!r} is missing; "
                "install it with pip install 'frameworm-lightning[postgres]'."
            ) from None
        except (SQLAlchemyError, OSError) as err:
            raise StorageError(f"cannot open storage {self.url!r}: {self._describe(err)}") from None

    def _describe(self, err: BaseException) -> str:
        """A database error in words, with what to do about a corrupt SQLite file."""
        orig = getattr(err, "orig", None) or err
        text = " ".join(str(orig).split())
        if self.dialect == "sqlite" and any(s in text for s in ("malformed", "not a database", "corrupt")):
            return (f"the SQLite file is corrupt ({text}); restore it from a backup or point storage at another "
                    "file. Nothing was written to it.")
        return masked_url(text) if "://" in text else text

    # Engine set-up ------------------------------------------------------------------
    def _create_engine(self, sa_url: str) -> Engine:
        if self.dialect != "sqlite":
            return sa.create_engine(sa_url, pool_pre_ping=True, future=True)
        if self.is_memory:
            engine = sa.create_engine(
                "sqlite://", poolclass=sa.pool.StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            path = sa.engine.make_url(sa_url).database
            if path:
                parent = Path(path).expanduser().resolve().parent
                try:
                    parent.mkdir(parents=True, exist_ok=True)
                except OSError as err:
                    raise StorageError(f"cannot create the folder {str(parent)!r} for storage {self.url!r}: {err}") from None
                if not os.access(parent, os.W_OK):
                    raise StorageError(f"storage {self.url!r} cannot be written: no write permission on {str(parent)!r}.")
            engine = sa.create_engine(sa_url, connect_args={"timeout": 60, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
            cur = dbapi_conn.cursor()
            if not self.is_memory:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # IMMEDIATE takes the write lock up front: read-then-write claims cannot interleave.
            # A read (_tx(read=True)) takes none: in WAL mode it reads the last commit, and
            # waits for no writer (it waited up to SQLite's busy timeout for one before).
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(_READ_ONLY) else "BEGIN IMMEDIATE")

        return engine

    def _create_schema(self) -> None:
        for attempt in range(5):
            try:
                _metadata.create_all(self.engine, checkfirst=True)
                for index in trials.indexes:  # added after the tables: a database created before lacks them
                    index.create(self.engine, checkfirst=True)
                return
            except (IntegrityError, OperationalError, sa.exc.ProgrammingError):
                # Another process created the tables at the same moment; try again.
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    @contextmanager
    def _tx(self, *, read: bool = False) -> Iterator[Connection]:
        """One transaction; ``read``: one that writes nothing (on SQLite it then takes no lock)."""
        with self._lock:
            try:
                with self.engine.connect() as conn:
                    if read:
                        conn.execution_options(**{_READ_ONLY: True})
                    with conn.begin():
                        yield conn
            except (IntegrityError, DuplicateClaimError):
                raise
            except DatabaseError as err:
                raise StorageError(f"storage {self.url!r}: {self._describe(err)}") from None

    def _lock_study(self, conn: Connection, study_id: int) -> None:
        if self.dialect == "postgresql":
            conn.execute(sa.select(studies.c.study_id).where(studies.c.study_id == study_id).with_for_update())

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Storage({self.url!r})"

    @contextmanager
    def shareable(self) -> Iterator[Storage]:
        """This storage, or for an in-memory one a copy other processes can open.

        The in-memory database is copied whole to a temporary SQLite file (SQLite's backup
        API) for the block, then copied back, so this storage sees every trial the other
        processes stored.
        """
        if not self.is_memory:
            yield self
            return
        folder = Path(tempfile.mkdtemp(prefix="frameworm-shared-"))
        path = folder / "study.db"
        with self._lock:  # no transaction may run while the database is copied
            raw = self.engine.raw_connection()
            try:
                dst = sqlite3.connect(path)
                raw.driver_connection.backup(dst)  # type: ignore[union-attr]
                dst.close()
            finally:
                raw.close()
        shared = Storage(f"sqlite:///{path}", heartbeat_timeout=self.heartbeat_timeout)
        try:
            yield shared
        finally:
            shared.close()
            with self._lock:
                src = sqlite3.connect(path)
                raw = self.engine.raw_connection()
                try:
                    src.backup(raw.driver_connection)  # type: ignore[arg-type]
                finally:
                    raw.close()
                    src.close()
            shutil.rmtree(folder, ignore_errors=True)

    # Studies --------------------------------------------------------------------------
    def create_or_load_study(
        self, name: str, metric: str, mode: str, space: Mapping[str, Any], *, check_space: bool = True,
        sampler: Mapping[str, Any] | None = None, allow_sampler_change: bool = False,
        by: tuple[str, str] = ("search", "study_name"),
    ) -> StudyRecord:
        """Create a study, or load the stored one of that name after checking it matches.

        ``sampler`` is the sampler's identity (``Sampler.identity()``), kept in the study's
        ``fw_sampler`` attribute: resuming a study that has trials with another one is
        refused unless ``allow_sampler_change``, which then stores the new identity.
        ``by`` names, for a mismatch's message, what opens the study and its argument
        that names it (a stopping callback's run: ``("run", "study= name")``).

        Raises:
            StorageError: ``name`` or ``metric`` is not a string of 1 to 255 characters
                without NUL (checked before anything is written).
            StudyMismatchError: the stored study has another metric, mode, space or sampler.
        """
        check_name("study name", name)
        check_name("metric", metric)
        if mode not in ("min", "max"):
            raise StorageError(f"mode must be 'min' or 'max', but got mode={mode!r}.")
        for _ in range(3):
            record = self.load_study(name)
            if record is not None:
                problems = []
                who, argument = by
                if record.metric != metric:
                    problems.append(f"metric {record.metric!r} is stored, this {who} uses {metric!r}")
                if record.mode != mode:
                    problems.append(f"mode {record.mode!r} is stored, this {who} uses {mode!r}")
                given = json.loads(_dumps(space))
                if check_space and record.space != given:
                    problems.append(f"the search space changed: {_space_changes(record.space or {}, given)}")
                if problems:
                    raise StudyMismatchError(
                        f"study {name!r} in {self.url!r} does not match this {who}: " + "; ".join(problems)
                        + f". Use another {argument}, or the original settings to resume."
                    )
                if sampler is not None:
                    record = self._check_sampler(record, json.loads(_dumps(sampler)), allow_sampler_change)
                return record
            try:
                with self._tx() as conn:
                    conn.execute(
                        studies.insert().values(
                            name=name, metric=metric, mode=mode, space=_dumps(space, ordered=True), created_at=time.time(),
                            user_attrs=_dumps({} if sampler is None else {SAMPLER_ATTR: sampler}),
                            schema_version=_SCHEMA_VERSION,
                        )
                    )
            except IntegrityError:
                continue  # created concurrently by another process: load it
        record = self.load_study(name)
        if record is None:
            raise StorageError(f"study {name!r} could not be created in {self.url!r}.")
        return record

    def _check_sampler(self, record: StudyRecord, sampler: dict[str, Any], allow_change: bool) -> StudyRecord:
        stored = record.user_attrs.get(SAMPLER_ATTR)
        if stored == sampler:
            return record
        if stored is not None and not allow_change:
            with self._tx() as conn:
                has_trials = conn.execute(
                    sa.select(trials.c.trial_id).where(trials.c.study_id == record.study_id).limit(1)
                ).first() is not None
            if has_trials:
                raise StudyMismatchError(
                    f"study {record.name!r} in {self.url!r} was searched with {_describe_sampler(stored)}, "
                    f"this search uses {_describe_sampler(sampler)}: resuming would mix their points; use another "
                    "study_name, the stored sampler, or allow_sampler_change=True (SearchRunner(..., "
                    "allow_sampler_change=True), GridSearch/RandomSearch/BayesianSearch, Study.create, or "
                    "search.allow_sampler_change in a config) to go on with the new one."
                )
        self.set_study_attr(record.study_id, SAMPLER_ATTR, sampler)
        return StudyRecord(record.study_id, record.name, record.metric, record.mode, record.space,
                           {**record.user_attrs, SAMPLER_ATTR: sampler}, record.created_at)

    def load_study(self, name: str) -> StudyRecord | None:
        """The stored study of that name, or ``None``."""
        check_name("study name", name)
        with self._tx(read=True) as conn:
            row = conn.execute(sa.select(studies).where(studies.c.name == name)).mappings().first()
        if row is None:
            return None
        return StudyRecord(row["study_id"], row["name"], row["metric"], row["mode"], json.loads(row["space"]),
                           json.loads(row["user_attrs"] or "{}"), row["created_at"])

    def study_names(self) -> list[str]:
        """Names of every stored study."""
        with self._tx(read=True) as conn:
            return [r[0] for r in conn.execute(sa.select(studies.c.name).order_by(studies.c.study_id))]

    def set_study_attr(self, study_id: int, key: str, value: Any) -> None:
        """Set one user attribute of a study."""
        with self._tx() as conn:
            raw = conn.execute(sa.select(studies.c.user_attrs).where(studies.c.study_id == study_id)).scalar_one()
            attrs = json.loads(raw or "{}")
            attrs[key] = value
            conn.execute(studies.update().where(studies.c.study_id == study_id).values(user_attrs=_dumps(attrs)))

    # Reading trials -------------------------------------------------------------------
    def get_trials(self, study_id: int, states: tuple[TrialState, ...] | None = None, *,
                   known_values: dict[int, dict[int, float]] | None = None) -> list[FrozenTrial]:
        """Every trial of the study, ordered by number, with its intermediate values.

        Rows (states, attributes) are always read afresh. With ``known_values``, the
        intermediate values of trials that were finished at an earlier call with the same
        dict are taken from it (a finished trial's reports never change) and only the
        others' are read; this call's finished trials are added to it. Stopping policies
        and a study's ``trials`` read this way at every check, so their cost no longer
        grows with every value every trial ever reported.
        """
        known = known_values if known_values is not None else {}
        with self._tx(read=True) as conn:
            q = sa.select(trials).where(trials.c.study_id == study_id).order_by(trials.c.number)
            if states:
                q = q.where(trials.c.state.in_([s.value for s in states]))
            rows = conn.execute(q).mappings().all()
            missing = [r["trial_id"] for r in rows if r["trial_id"] not in known]
            values: dict[int, dict[int, float]] = {i: {} for i in missing}
            if len(missing) > 500 or (missing and len(missing) == len(rows)):  # most of the study: one join
                queries = [sa.select(trial_values).join(trials, trials.c.trial_id == trial_values.c.trial_id)
                           .where(trials.c.study_id == study_id)]
            else:  # bounded IN lists: SQLite caps bound parameters
                queries = [sa.select(trial_values).where(trial_values.c.trial_id.in_(missing[i:i + 500]))
                           for i in range(0, len(missing), 500)]
            for vq in queries:
                for v in conn.execute(vq.order_by(trial_values.c.step)).mappings():
                    if v["trial_id"] in values:
                        values[v["trial_id"]][v["step"]] = math.nan if v["value"] is None else v["value"]
        out = []
        for r in rows:
            tid = r["trial_id"]
            trial = self._frozen(r, dict(known[tid]) if tid in known else values[tid])
            if known_values is not None and tid not in known and trial.state.is_finished:
                known_values[tid] = values[tid]
            out.append(trial)
        return out

    def read_history(self, history: TrialHistory) -> list[FrozenTrial]:
        """Every trial of ``history``'s study, ordered by number, reading only what may have changed.

        New trials are those with an id above any seen: every insert of a study's trial
        happens while its row is locked (SQLite: one writer at a time), so ids are
        committed in increasing order and none appears below one already read. After the
        first read, rows are looked up by primary key only (a ``study_id`` condition would
        make the database walk the study's index, every trial of it), and other studies'
        rows met on the way are skipped once.
        """
        with self._tx(read=True) as conn:
            if history.last_id == 0:
                changed = trials.c.study_id == history.study_id
            else:
                changed = trials.c.trial_id > history.last_id
                if history.open:
                    changed = sa.or_(changed, trials.c.trial_id.in_(sorted(history.open)))
            rows = conn.execute(sa.select(trials).where(changed)).mappings().all()
            history.last_id = max([history.last_id, *(r["trial_id"] for r in rows)])
            rows = [r for r in rows if r["study_id"] == history.study_id]
            values: dict[int, dict[int, float]] = {r["trial_id"]: {} for r in rows}
            ids = sorted(values)
            for start in range(0, len(ids), 500):  # bounded IN lists: SQLite caps bound parameters
                vq = sa.select(trial_values).where(trial_values.c.trial_id.in_(ids[start:start + 500]))
                for v in conn.execute(vq.order_by(trial_values.c.step)).mappings():
                    values[v["trial_id"]][v["step"]] = math.nan if v["value"] is None else v["value"]
            history.open = {}
            for r in rows:
                trial = self._frozen(r, values[r["trial_id"]])
                (history.final if _is_final(trial) else history.open)[r["trial_id"]] = trial
            return sorted([*history.final.values(), *history.open.values()], key=lambda t: t.number)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        """One trial by its database id."""
        with self._tx(read=True) as conn:
            row = conn.execute(sa.select(trials).where(trials.c.trial_id == trial_id)).mappings().first()
            if row is None:
                raise StorageError(f"no trial with id {trial_id} in {self.url!r}.")
            vals = {
                v["step"]: (math.nan if v["value"] is None else v["value"])
                for v in conn.execute(
                    sa.select(trial_values).where(trial_values.c.trial_id == trial_id).order_by(trial_values.c.step)
                ).mappings()
            }
        return self._frozen(row, vals)

    @staticmethod
    def _frozen(row: Mapping[str, Any], values: dict[int, float]) -> FrozenTrial:
        return FrozenTrial(
            number=row["number"],
            state=TrialState(row["state"]),
            params=json.loads(row["params"]) if row["params"] else {},
            value=row["value"],
            intermediate_values=values,
            started_at=row["started_at"],
            completed_at=row["completed_at"],
            error=row["error"],
            reason=row["reason"],
            user_attrs=json.loads(row["user_attrs"] or "{}"),
            system_attrs=json.loads(row["system_attrs"] or "{}"),
            trial_id=row["trial_id"],
            claim_key=row["claim_key"],
        )

    # Claiming trials ------------------------------------------------------------------
    @staticmethod
    def _budget_used(conn: Connection, study_id: int) -> int:
        """Trials that count against ``n_trials``: finished or in flight, not interrupted or requeued."""
        used = conn.execute(
            sa.select(sa.func.count()).select_from(trials).where(
                trials.c.study_id == study_id,
                trials.c.state.not_in([TrialState.WAITING.value, TrialState.FAILED.value]),
            )
        ).scalar_one()
        for (attrs_raw,) in conn.execute(
            sa.select(trials.c.system_attrs).where(trials.c.study_id == study_id,
                                                   trials.c.state == TrialState.FAILED.value)
        ):
            attrs = json.loads(attrs_raw or "{}")
            if not (attrs.get("interrupted") or attrs.get("requeued_as") is not None):
                used += 1
        return int(used)

    @staticmethod
    def _next_number(conn: Connection, study_id: int) -> int:
        top = conn.execute(sa.select(sa.func.max(trials.c.number)).where(trials.c.study_id == study_id)).scalar()
        return 0 if top is None else int(top) + 1

    def budget_used(self, study_id: int) -> int:
        """How many trials count against the study's trial budget now."""
        with self._tx(read=True) as conn:
            return self._budget_used(conn, study_id)

    def claim_trial(self, study_id: int, owner: str, budget: int | None) -> tuple[FrozenTrial | None, bool]:
        """Atomically claim the next trial for ``owner``.

        Waiting trials go first, in this order: re-runs of interrupted (or retried) trials,
        then promotions a scheduler queued (ASHA promotes whenever one is due before it
        starts a new configuration), then the others (enqueued configurations), each by
        number.

        Returns ``(trial, from_queue)``: an enqueued (``WAITING``) trial switched to
        ``RUNNING`` with its params (``from_queue=True``), else a new ``RUNNING`` trial with
        a fresh number and no params yet, for the sampler to fill. ``(None, False)`` when
        the budget of ``budget`` trials is used up.
        """
        now = time.time()
        with self._tx() as conn:
            self._lock_study(conn, study_id)
            if budget is not None and self._budget_used(conn, study_id) >= budget:
                return None, False
            waiting = conn.execute(
                sa.select(trials.c.trial_id)
                .where(trials.c.study_id == study_id, trials.c.state == TrialState.WAITING.value)
                .order_by(_CLAIM_ORDER, trials.c.number)
                .limit(1)
            ).scalar()
            if waiting is not None:
                conn.execute(
                    trials.update().where(trials.c.trial_id == waiting).values(
                        state=TrialState.RUNNING.value, owner=owner, started_at=now, heartbeat_at=now
                    )
                )
                trial_id, from_queue = waiting, True
            else:
                result = conn.execute(
                    trials.insert().values(
                        study_id=study_id, number=self._next_number(conn, study_id), state=TrialState.RUNNING.value,
                        owner=owner, started_at=now, heartbeat_at=now, user_attrs="{}", system_attrs="{}",
                    )
                )
                trial_id, from_queue = result.inserted_primary_key[0], False
        return self.get_trial(trial_id), from_queue

    def set_trial_params(
        self, trial_id: int, params: Mapping[str, Any], claim_key: str | None = None,
        system_attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Store the sampled params of a claimed trial.

        Raises:
            DuplicateClaimError: another trial already holds ``claim_key``.
        """
        try:
            with self._tx() as conn:
                raw = conn.execute(sa.select(trials.c.system_attrs).where(trials.c.trial_id == trial_id)).scalar_one()
                attrs = {**json.loads(raw or "{}"), **dict(system_attrs or {})}
                conn.execute(
                    trials.update().where(trials.c.trial_id == trial_id).values(
                        params=_dumps(dict(params), ordered=True), claim_key=claim_key, system_attrs=_dumps(attrs)
                    )
                )
        except IntegrityError:
            raise DuplicateClaimError(f"claim key {claim_key!r} is already held by another trial.") from None

    def delete_trial(self, trial_id: int) -> None:
        """Remove a reserved trial that never got params (the sampler had nothing left)."""
        with self._tx() as conn:
            conn.execute(trial_values.delete().where(trial_values.c.trial_id == trial_id))
            conn.execute(trials.delete().where(trials.c.trial_id == trial_id, trials.c.params.is_(None)))

    def enqueue(self, study_id: int, params: Mapping[str, Any], *, claim_key: str | None = None,
                skip_if_exists: bool = True, system_attrs: Mapping[str, Any] | None = None) -> FrozenTrial | None:
        """Add a ``WAITING`` trial with given params, evaluated before any sampled one.

        With ``skip_if_exists`` a config that is already stored (waiting, running,
        complete, pruned, or failed by its own error) is not enqueued again, so re-running a
        script does not repeat its warm start; a failed one runs again only through
        ``retry_failed`` (:meth:`requeue_failed`), like any other failed trial.
        """
        payload = _dumps(dict(params), ordered=True)
        with self._tx() as conn:
            self._lock_study(conn, study_id)
            if skip_if_exists:
                existing = conn.execute(
                    sa.select(trials.c.trial_id).where(
                        trials.c.study_id == study_id,
                        trials.c.params == payload,
                        trials.c.state.in_([s.value for s in (TrialState.WAITING, TrialState.RUNNING,
                                                                 TrialState.COMPLETE, TrialState.PRUNED,
                                                                 TrialState.FAILED)]),
                    )
                ).first()
                if existing is not None:
                    return None
            result = conn.execute(
                trials.insert().values(
                    study_id=study_id, number=self._next_number(conn, study_id), state=TrialState.WAITING.value,
                    params=payload, claim_key=claim_key, user_attrs="{}",
                    system_attrs=_dumps({"enqueued": True, **dict(system_attrs or {})}),
                )
            )
            trial_id = result.inserted_primary_key[0]
        return self.get_trial(trial_id)

    # Updating trials ------------------------------------------------------------------
    def report(self, trial_id: int, step: int, value: float) -> None:
        """Store (or overwrite) the intermediate value at ``step`` and refresh the heartbeat."""
        v = float(value)
        now = time.time()
        with self._tx() as conn:
            key = {"trial_id": trial_id, "step": int(step)}
            updated = conn.execute(
                trial_values.update().where(trial_values.c.trial_id == trial_id, trial_values.c.step == int(step))
                .values(value=None if math.isnan(v) else v, reported_at=now)
            ).rowcount
            if not updated:
                conn.execute(trial_values.insert().values(**key, value=None if math.isnan(v) else v, reported_at=now))
            conn.execute(trials.update().where(trials.c.trial_id == trial_id).values(heartbeat_at=now))

    def heartbeat(self, trial_id: int) -> bool:
        """Tell other workers this trial's process is alive; ``False`` (and nothing written) when the trial
        no longer runs: it finished, or another worker stored it interrupted and took its params over."""
        with self._tx() as conn:
            return conn.execute(
                trials.update().where(trials.c.trial_id == trial_id, trials.c.state == TrialState.RUNNING.value)
                .values(heartbeat_at=time.time())
            ).rowcount > 0

    def set_trial_attr(self, trial_id: int, key: str, value: Any, *, system: bool = False) -> None:
        """Set one user (or system) attribute of a trial."""
        col = trials.c.system_attrs if system else trials.c.user_attrs
        with self._tx() as conn:
            raw = conn.execute(sa.select(col).where(trials.c.trial_id == trial_id)).scalar_one()
            attrs = json.loads(raw or "{}")
            attrs[key] = value
            conn.execute(trials.update().where(trials.c.trial_id == trial_id).values({col.name: _dumps(attrs)}))

    def finish_trial(
        self, trial_id: int, state: TrialState, *, value: float | None = None, error: str | None = None,
        reason: str | None = None, system_attrs: Mapping[str, Any] | None = None, owner: str | None = None,
    ) -> bool:
        """Move a ``RUNNING`` trial to a finished state; returns ``False`` if it was not running.

        Only a running trial can finish, so a trial is stored ``PRUNED`` (or anything
        else) exactly once even when several ranks or a watchdog race to finish it.
        When ``owner`` (the finishing process, :func:`current_owner`) owned the trial and
        another process has meanwhile marked it interrupted and requeued it, the late
        result is dropped and logged as an error naming the trial that took it over.
        """
        if not state.is_finished:
            raise ValueError(f"finish_trial needs a finished state, but got {state!r}.")
        if value is not None and not math.isfinite(value):
            raise ValueError(f"a finished trial's value must be finite, but got {value!r}.")
        with self._tx() as conn:
            row = conn.execute(
                sa.select(trials.c.state, trials.c.system_attrs, trials.c.owner, trials.c.number,
                          trials.c.study_id, trials.c.error).where(trials.c.trial_id == trial_id)
            ).first()
            if row is None:
                return False
            if row[0] != TrialState.RUNNING.value:
                if owner is not None and row[2] == owner:
                    self._log_takeover(conn, row, owner, state)
                return False
            attrs = {**json.loads(row[1] or "{}"), **dict(system_attrs or {})}
            conn.execute(
                trials.update().where(trials.c.trial_id == trial_id).values(
                    state=state.value, value=value, error=_storable_text(error), reason=_storable_text(reason),
                    completed_at=time.time(), system_attrs=_dumps(attrs),
                )
            )
        return True

    @staticmethod
    def _log_takeover(conn: Connection, row: Any, owner: str, state: TrialState) -> None:
        """Log a finished result that arrives after another process interrupted and requeued its trial."""
        attrs = json.loads(row[1] or "{}")
        by = attrs.get("interrupted_by")
        if not attrs.get("interrupted") or by == owner:
            return  # finished twice by its own process (a signal, a rank race): not a takeover
        new_number = attrs.get("requeued_as")
        rerun = conn.execute(
            sa.select(trials.c.state, trials.c.owner).where(trials.c.study_id == row[4], trials.c.number == new_number)
        ).first() if new_number is not None else None
        where = (f"its params were requeued as trial {new_number} ({rerun[0]}, owner {rerun[1] or 'none yet'})"
                 if rerun is not None else "its params were not requeued")
        _log.error(
            "trial %s of owner %s was taken over: %s stored it %s, and %s; this process's %s result is dropped. "
            "Raise the storage's heartbeat_timeout if trials run long without reporting.",
            row[3], owner, by or "another process", row[5] or "interrupted", where, state.value,
        )

    # Recovery -------------------------------------------------------------------------
    def _requeue(self, conn: Connection, study_id: int, row: Mapping[str, Any], attrs: dict[str, Any],
                 link: str) -> int | None:
        """Enqueue a copy of ``row``'s params, moving its claim key to the copy."""
        if not row["params"]:
            return None
        number = self._next_number(conn, study_id)
        conn.execute(trials.update().where(trials.c.trial_id == row["trial_id"]).values(claim_key=None))
        conn.execute(
            trials.insert().values(
                study_id=study_id, number=number, state=TrialState.WAITING.value, params=row["params"],
                claim_key=row["claim_key"], user_attrs="{}",
                system_attrs=_dumps({link: row["number"], **_carried_attrs(attrs)}),
            )
        )
        return number

    def recover_interrupted(self, study_id: int) -> list[int]:
        """Fail trials whose process died while ``RUNNING`` and re-enqueue their params.

        A trial is dead when its owner process on this host is gone, or when its
        heartbeat is older than ``heartbeat_timeout`` (owners on other hosts). Returns
        the numbers of the trials marked interrupted.
        """
        now = time.time()
        done: list[int] = []
        with self._tx() as conn:
            self._lock_study(conn, study_id)
            rows = conn.execute(
                sa.select(trials).where(trials.c.study_id == study_id, trials.c.state == TrialState.RUNNING.value)
            ).mappings().all()
            for row in rows:
                alive = _owner_alive(row["owner"])
                stale = row["heartbeat_at"] is None or now - row["heartbeat_at"] > self.heartbeat_timeout
                if alive is True or (alive is None and not stale):
                    continue
                why = "its process is gone" if alive is False else f"no heartbeat for {now - (row['heartbeat_at'] or now):.0f}s"
                if self._interrupt_row(conn, study_id, row, f"{why} (owner {row['owner']})", died=True):
                    done.append(row["number"])
        return done

    def _interrupt_row(self, conn: Connection, study_id: int, row: Mapping[str, Any], why: str,
                       died: bool = False) -> bool:
        """Store ``row`` interrupted and requeue its params; ``died``: its process is gone
        without a word (counted: the :data:`MAX_PROCESS_DEATHS`-th death fails it instead)."""
        attrs = json.loads(row["system_attrs"] or "{}")
        if not row["params"]:
            # Reserved but never sampled: nothing ran, nothing to keep.
            conn.execute(trial_values.delete().where(trial_values.c.trial_id == row["trial_id"]))
            conn.execute(trials.delete().where(trials.c.trial_id == row["trial_id"]))
            return False
        deaths = [*attrs.get("process_deaths", []), row["number"]] if died else attrs.get("process_deaths", [])
        attrs["process_deaths"] = deaths
        if len(deaths) >= MAX_PROCESS_DEATHS:
            numbers = ", ".join(str(n) for n in deaths)
            conn.execute(
                trials.update().where(trials.c.trial_id == row["trial_id"]).values(
                    state=TrialState.FAILED.value, completed_at=time.time(),
                    reason=f"its process died {len(deaths)} times (trials {numbers}); not re-run",
                    error=_storable_text(f"its process died {len(deaths)} times (trials {numbers}), the last time: "
                                         f"{why}; run it again with retry_failed=True"),
                    system_attrs=_dumps(attrs),
                )
            )
            return True
        new_number = self._requeue(conn, study_id, row, attrs, "retry_of")
        attrs.update(interrupted=True, requeued_as=new_number, interrupted_by=current_owner())
        conn.execute(
            trials.update().where(trials.c.trial_id == row["trial_id"]).values(
                state=TrialState.FAILED.value, completed_at=time.time(), reason="interrupted",
                error=_storable_text(f"interrupted: {why}"), system_attrs=_dumps(attrs),
            )
        )
        return True

    def interrupt_trial(self, trial_id: int, why: str) -> bool:
        """Store a ``RUNNING`` trial as interrupted (not its own fault) and requeue its params."""
        with self._tx() as conn:
            row = conn.execute(sa.select(trials).where(trials.c.trial_id == trial_id)).mappings().first()
            if row is None or row["state"] != TrialState.RUNNING.value:
                return False
            self._lock_study(conn, row["study_id"])
            return self._interrupt_row(conn, row["study_id"], row, why)

    def requeue_failed(self, study_id: int) -> list[int]:
        """Re-enqueue the params of trials that failed by their own error (``retry_failed``)."""
        done: list[int] = []
        with self._tx() as conn:
            self._lock_study(conn, study_id)
            rows = conn.execute(
                sa.select(trials).where(trials.c.study_id == study_id, trials.c.state == TrialState.FAILED.value)
            ).mappings().all()
            for row in rows:
                attrs = json.loads(row["system_attrs"] or "{}")
                if attrs.get("interrupted") or attrs.get("requeued_as") is not None:
                    continue
                fresh = {k: v for k, v in attrs.items() if k != "process_deaths"}  # a retry counts deaths anew
                new_number = self._requeue(conn, study_id, row, fresh, "retry_of")
                if new_number is None:
                    continue
                attrs["requeued_as"] = new_number
                conn.execute(
                    trials.update().where(trials.c.trial_id == row["trial_id"]).values(system_attrs=_dumps(attrs))
                )
                done.append(row["number"])
        return done


def open_storage(storage: str | Storage | None = None, **kwargs: Any) -> Storage:
    """Open a storage from a URL (``sqlite:///...``, ``postgresql://...``, ``"memory"``) or pass one through.

    Example:
        >>> s = open_storage("memory")
        >>> s.study_names()
        []
    """
    if isinstance(storage, Storage):
        return storage
    if storage is None:
        return Storage("memory", **kwargs)
    if not isinstance(storage, str):
        raise StorageError(f"storage must be a URL string or a Storage, but got {storage!r}.")
    if "://" not in storage and storage not in ("memory", ":memory:"):
        raise StorageError(f"storage {masked_url(storage)!r} is not a database URL; use {SUPPORTED}.")
    return Storage(storage, **kwargs)


def read_storage(storage: str | Storage) -> Storage:
    """:func:`open_storage` for reading what a search stored: a SQLite file that does not
    exist is an error (never created, as opening it to write would).

    Raises:
        StorageError: the SQLite file is missing, or the storage cannot be opened.
    """
    if isinstance(storage, str) and storage.startswith("sqlite:///"):
        database = sa.engine.make_url(storage).database
        if database and database != ":memory:" and not Path(database).expanduser().is_file():
            raise StorageError(f"no database at {database!r} (from {masked_url(storage)!r}); point the storage URL at "
                               "the file a search wrote (its storage= or search.storage).")
    return open_storage(storage)
