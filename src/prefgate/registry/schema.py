"""The registry database: how a connection is opened, write transactions, and the ordered schema migrations.

Every connection runs in autocommit mode (`isolation_level=None`) so that transactions are exactly the
ones written here: `write()` is `BEGIN IMMEDIATE ... COMMIT` (the write lock is taken at BEGIN, so two
writers never both read a state and then both write on it), `read()` is one deferred transaction (one
consistent snapshot). WAL lets readers run while a writer holds the lock; `busy_timeout` makes a writer
wait up to 30 s for the lock instead of failing.

Migrations are an ordered list; migration N brings the schema from version N-1 to N. The table
`schema_version` holds one row per applied migration. Opening a database applies the missing ones in one
immediate transaction (so 20 processes opening a fresh database apply each migration exactly once).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prefgate.errors import InputError
from prefgate.reportio import now

BUSY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Migration:
    name: str
    statements: tuple[str, ...]  # executed one by one inside the migration's transaction


_V1 = Migration("initial schema", (
    """CREATE TABLE datasets (
        fingerprint   TEXT PRIMARY KEY CHECK (length(fingerprint) = 64),
        path          TEXT NOT NULL,            -- where it was first seen
        n_records     INTEGER NOT NULL CHECK (n_records >= 0),
        audit_verdict TEXT CHECK (audit_verdict IN ('pass', 'warn', 'fail')),  -- latest known, from a run
        first_seen    TEXT NOT NULL
    )""",
    """CREATE TABLE runs (
        run_id                TEXT PRIMARY KEY,
        run_dir               TEXT NOT NULL,    -- absolute, where it was added from
        status                TEXT NOT NULL CHECK (status IN ('completed', 'aborted')),
        created               TEXT NOT NULL,
        base_model            TEXT NOT NULL,
        loss_type             TEXT NOT NULL,
        loss                  TEXT NOT NULL,    -- JSON: the loss block with every hyperparameter
        config                TEXT NOT NULL,    -- JSON: the whole resolved training config
        audit_verdict         TEXT CHECK (audit_verdict IN ('pass', 'warn', 'fail')),
        audit_override_reason TEXT,
        prefgate_version      TEXT NOT NULL,
        git_commit            TEXT,
        final_metrics         TEXT NOT NULL,    -- JSON
        n_artifacts           INTEGER NOT NULL, -- rows this run has in `artifacts` (a consistency check)
        manifest              TEXT NOT NULL,    -- canonical JSON of manifest.json
        manifest_sha256       TEXT NOT NULL,    -- of `manifest`
        added                 TEXT NOT NULL,
        added_by              TEXT NOT NULL
    )""",
    """CREATE TABLE run_datasets (
        run_id      TEXT NOT NULL REFERENCES runs (run_id),
        role        TEXT NOT NULL CHECK (role IN ('train', 'eval')),
        fingerprint TEXT NOT NULL REFERENCES datasets (fingerprint),
        path        TEXT NOT NULL,
        n_records   INTEGER NOT NULL,
        PRIMARY KEY (run_id, role)
    )""",
    """CREATE TABLE artifacts (
        run_id TEXT NOT NULL REFERENCES runs (run_id),
        name   TEXT NOT NULL,                   -- relative to the run folder, as in the manifest
        path   TEXT NOT NULL,                   -- absolute, at add time
        sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
        size   INTEGER NOT NULL,
        PRIMARY KEY (run_id, name)
    )""",
    """CREATE TABLE evals (
        sha256            TEXT PRIMARY KEY CHECK (length(sha256) = 64),  -- of the report file's bytes
        run_id            TEXT NOT NULL REFERENCES runs (run_id),
        path              TEXT NOT NULL,
        model             TEXT NOT NULL,        -- JSON: the report's model (a string or a block)
        suite_path        TEXT,
        suite_fingerprint TEXT NOT NULL,
        overall           TEXT NOT NULL,        -- JSON
        categories        TEXT NOT NULL,        -- JSON
        created           TEXT,
        added             TEXT NOT NULL
    )""",
    "CREATE INDEX evals_by_run ON evals (run_id)",
    """CREATE TABLE gates (
        id                INTEGER PRIMARY KEY,
        sha256            TEXT NOT NULL UNIQUE CHECK (length(sha256) = 64),  -- of the gate file's bytes
        path              TEXT NOT NULL,
        decision          TEXT NOT NULL CHECK (decision IN ('promote', 'block')),
        reasons           TEXT NOT NULL,        -- JSON list
        baseline_sha256   TEXT,
        candidate_sha256  TEXT,
        suite_fingerprint TEXT,
        report            TEXT NOT NULL,        -- the whole gate report, JSON
        created           TEXT,
        added             TEXT NOT NULL
    )""",
    "CREATE INDEX gates_by_candidate ON gates (candidate_sha256)",
    "CREATE INDEX gates_by_baseline ON gates (baseline_sha256)",
    """CREATE TABLE alias_history (
        id                    INTEGER PRIMARY KEY,
        alias                 TEXT NOT NULL,
        seq                   INTEGER NOT NULL CHECK (seq >= 1),  -- 1, 2, 3, ... per alias
        action                TEXT NOT NULL CHECK (action IN ('promote', 'rollback')),
        run_id                TEXT NOT NULL REFERENCES runs (run_id),   -- the holder from this row on
        previous_run_id       TEXT REFERENCES runs (run_id),            -- the holder before it
        parent_id             INTEGER REFERENCES alias_history (id),    -- the row a rollback returns to
        gate_id               INTEGER REFERENCES gates (id),
        baseline_eval_sha256  TEXT,
        candidate_eval_sha256 TEXT,
        forced                INTEGER NOT NULL DEFAULT 0 CHECK (forced IN (0, 1)),
        overridden            TEXT,             -- with forced: the refusal that was overridden
        reason                TEXT,
        actor                 TEXT NOT NULL,
        at                    TEXT NOT NULL,
        UNIQUE (alias, seq),
        CHECK (forced = 0 OR reason IS NOT NULL)
    )""",
    """CREATE TABLE aliases (
        name       TEXT PRIMARY KEY,
        run_id     TEXT NOT NULL REFERENCES runs (run_id),
        history_id INTEGER NOT NULL UNIQUE REFERENCES alias_history (id)  -- the row that made this holder
    )""",
))

MIGRATIONS: tuple[Migration, ...] = (_V1,)
SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: Path, migrations: Sequence[Migration] = MIGRATIONS) -> sqlite3.Connection:
    """Open (creating if needed) the database at `path` in WAL mode and bring its schema up to date.

    A file SQLite cannot open or read as a database (random bytes, a folder, a truncated copy) is an
    InputError naming it; a database busy past the timeout is not (it is nobody's bad input)."""
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.DatabaseError as err:
        raise _not_a_registry(path, err) from None
    try:
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            _use_wal(conn)
            conn.execute("PRAGMA synchronous = FULL")  # a committed promotion survives a power cut too
            conn.execute("PRAGMA foreign_keys = ON")
            current_version(conn)  # the first read of the schema: where a file that is no database fails
        except sqlite3.DatabaseError as err:
            if any(word in str(err) for word in ("locked", "busy", "could not switch")):
                raise
            raise _not_a_registry(path, err) from None
        migrate(conn, migrations)  # a failing migration is prefgate's bug: it keeps its traceback
    except BaseException:
        conn.close()
        raise
    return conn


def _not_a_registry(path: Path, err: sqlite3.DatabaseError) -> InputError:
    return InputError(f"cannot open the registry database (SQLite: {err}); move the file away or point "
                      "$PREFGATE_HOME elsewhere", where=str(path))


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL (persistent in the file). Switching needs a moment alone with a fresh file, and SQLite
    does not always wait for it, so racing first openers retry until the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            mode = None
        if mode == "wal":
            return
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError(f"could not switch the registry database to WAL (mode {mode})")
        time.sleep(0.01)


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One immediate transaction: the write lock is held from BEGIN; any exception rolls everything back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def read(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One read transaction: every query inside sees the same snapshot."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def current_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if not exists:
        return 0
    return conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply the migrations the database lacks, in order, in one immediate transaction; the new version."""
    if _check_version(conn, migrations) == len(migrations):
        return len(migrations)
    with write(conn):  # re-read under the lock: another process may have migrated meanwhile
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                      "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)")
        version = _check_version(conn, migrations)
        for number, migration in enumerate(migrations[version:], start=version + 1):
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version, name, applied) VALUES (?, ?, ?)",
                         (number, migration.name, now()))
    return len(migrations)


def _check_version(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> int:
    version = current_version(conn)
    if version > len(migrations):
        db = conn.execute("PRAGMA database_list").fetchone()[2]
        raise InputError(f"the registry has schema version {version} but this prefgate knows versions up to "
                         f"{len(migrations)}; upgrade prefgate", where=db)
    return version
