"""Engines and sessions for SQLite (embedded default) and PostgreSQL (production).

The schema is owned by Alembic (`migrate`); nothing calls `create_all`, so a database built by
the tests is the same as one built in production.
"""

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cache
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from arrears.files import create_private_file, private_directory

__all__ = [
    "BULK_CACHE_MIB",
    "BUSY_TIMEOUT",
    "SchemaBehind",
    "SchemaTooNew",
    "WriterBusy",
    "bounded_writer",
    "bulk_cache",
    "database_file",
    "get_engine",
    "indexes_built_after",
    "is_busy",
    "migrate",
    "one_writer",
    "read_only",
    "require_schema",
    "schema_revisions",
    "session_scope",
]

_MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x6172726561726D  # "arrearm": not the run lock, which a cycle holds while it migrates
BUSY_TIMEOUT = 30.0  # seconds SQLite waits for its write lock, unless `bounded_writer` asks less


def database_file(url: str) -> Path | None:
    """The file behind a SQLite URL (None for in-memory or server databases)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


@cache
def get_engine(url: str) -> Engine:
    """One engine per URL per process; SQLite gets WAL so readers never wait for the cycle.

    A SQLite file that does not exist yet is made here, whoever asks (the CLI, the webhook server
    run alone, a worker): borrowers' names and numbers, so its directory 0700 and the file 0600
    from its first byte (SQLite gives its -wal and -shm files the database's own mode), and never
    through a symlink planted at its path (`create_private_file` raises OSError)."""
    path = database_file(url)
    if path is not None and not path.exists():
        private_directory(path.parent)
        create_private_file(path)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # hide_parameters: a driver's error names its statement's parameters (a borrower's number, name,
    # address) in its text, which reaches quarantine rows, logs and Prefect's failed states in the UI.
    engine = create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
    return engine


def _sqlite_pragmas(dbapi_connection: object, record: Any) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
    cursor.close()
    record.info["arrears_busy_timeout_ms"] = int(BUSY_TIMEOUT * 1000)
    # We issue BEGIN ourselves (below); pysqlite's own deferred BEGIN would let two shards read,
    # then both try to write, and one fail at once with "database is locked" instead of waiting.
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]


def _sqlite_begin_immediate(connection: Connection) -> None:
    options = connection.get_execution_options()
    readonly = options.get("arrears_readonly", False)
    if not readonly:
        # The wait for the write lock: `bounded_writer`'s, or back to the default on a pooled
        # connection it shortened. Set only when it changes: most transactions cost nothing more.
        wait_ms = int(options.get("arrears_busy_timeout_ms", BUSY_TIMEOUT * 1000))
        info = connection.connection.info
        if info.get("arrears_busy_timeout_ms") != wait_ms:
            connection.exec_driver_sql(f"PRAGMA busy_timeout={wait_ms}")
            info["arrears_busy_timeout_ms"] = wait_ms
    connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only: on SQLite it takes no write lock, so readers never queue
    behind the cycle's writers (WAL gives them a consistent snapshot)."""
    with engine.connect() as connection:
        connection.execution_options(arrears_readonly=True)
        yield connection


# SQLite's page cache for a connection writing in bulk (its default is 2 MiB); `import_cache_mib`.
BULK_CACHE_MIB = 128


@contextmanager
def bulk_cache(connection: Connection, mib: int = BULK_CACHE_MIB) -> Iterator[None]:
    """On SQLite, a page cache of `mib` for this connection while it writes in bulk (an import: a
    whole file in one transaction). With the default 2 MiB, every page dirtied beyond it is written
    out to the WAL and read back when touched again: an index whose keys come in no order (the
    contact points' numbers) had most of its pages written out and read back a chunk. Only pages
    touched take memory. On PostgreSQL nothing: the server's buffers are shared."""
    if connection.dialect.name != "sqlite":
        yield
        return
    # On the driver's connection: through SQLAlchemy's, a statement would begin the transaction.
    driver: Any = connection.connection.dbapi_connection
    (before,) = driver.execute("PRAGMA cache_size").fetchone()
    driver.execute(f"PRAGMA cache_size=-{mib * 1024}")
    try:
        yield
    finally:
        driver.execute(f"PRAGMA cache_size={int(before)}")


@contextmanager
def indexes_built_after(connection: Connection, tables: Sequence[str]) -> Iterator[None]:
    """On SQLite, the secondary indexes of `tables` dropped while the block writes, and built again
    from their stored definitions when it ends without error: each of a million rows written in no
    order of an index costs it a random place, where SQLite builds the whole index, sorted, in a
    fraction of that. In the caller's write transaction, which holds the only write lock: DDL is
    transactional on SQLite, so a block that raises leaves the rollback to bring them back, and
    readers see the committed schema meanwhile. Unique constraints stay. On PostgreSQL nothing."""
    if connection.dialect.name != "sqlite":
        yield
        return
    marks = ", ".join("?" for _ in tables)
    found = connection.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        f"AND tbl_name IN ({marks}) ORDER BY name",
        tuple(tables),
    ).all()
    for name, _ in found:
        connection.exec_driver_sql(f'DROP INDEX "{name}"')
    yield
    for _, sql in found:
        connection.exec_driver_sql(sql)


_writers: WeakKeyDictionary[Engine, threading.Lock] = WeakKeyDictionary()
_writers_guard = threading.Lock()


def one_writer(engine: Engine) -> AbstractContextManager[Any]:
    """Hold it to write from one of many threads (a server's requests): on SQLite, which takes one
    writer at a time, the threads of this process then wait for their turn here, woken as the
    one before finishes, instead of in SQLite's busy handler, which sleeps and retries, so that
    one request of eight waited 8.9 s behind the others (benchmarks/receipts.py). On PostgreSQL
    nothing: its writers go side by side."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _writers_guard:
        return _writers.setdefault(engine, threading.Lock())


class WriterBusy(RuntimeError):
    """This process's turn to write did not come within the wait `bounded_writer` was given."""


def is_busy(error: BaseException) -> bool:
    """Whether `error` says another writer held SQLite's lock for longer than we waited
    ("database is locked"; "database is busy" from a checkpoint), or the turn never came."""
    if isinstance(error, WriterBusy):
        return True
    if not isinstance(error, OperationalError):
        return False
    text = str(error.orig).lower()
    return "database is locked" in text or "database is busy" in text


@contextmanager
def bounded_writer(engine: Engine, wait: float) -> Iterator[Engine]:
    """`one_writer`, but waiting at most `wait` seconds for this process's turn and SQLite's write
    lock together. Yields the engine to write with in the turn: each of its transactions gives up
    with "database is locked" (`is_busy`) after what was left of `wait` when the turn came, not
    after the 30 s of `BUSY_TIMEOUT`. A webhook must answer its vendor within seconds (Twilio waits 15) while
    an import may hold the lock for minutes. Raises `WriterBusy` when the turn did not come.
    On PostgreSQL the engine itself: its writers do not queue for one lock."""
    if engine.dialect.name != "sqlite":
        yield engine
        return
    deadline = time.monotonic() + wait
    with _writers_guard:
        lock = _writers.setdefault(engine, threading.Lock())
    if not lock.acquire(timeout=max(wait, 0.0)):
        raise WriterBusy(f"another writer of this process kept the database for over {wait:g} s")
    try:
        left_ms = max(1, int((deadline - time.monotonic()) * 1000))
        yield engine.execution_options(arrears_busy_timeout_ms=left_ms)
    finally:
        lock.release()


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer arrears: its revision is none this code knows."""


class SchemaBehind(RuntimeError):
    """The database's schema is older than this code's (or not there yet), and the caller asked
    not to upgrade it: an upgrade may rewrite large tables under a lock (0015 on PostgreSQL)."""


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def schema_revisions(engine: Engine) -> tuple[set[str], set[str]]:
    """The database's current revisions and this code's heads, reading only; `SchemaTooNew` for a
    revision this code does not know. (Alembic loads here, not with the module: the cycle's worker
    processes never migrate, and the CLI parses its arguments before a command opens the database.)"""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    # A read-only connection: on SQLite `engine.begin()` takes the one write lock (BEGIN
    # IMMEDIATE), and every command opens its database here: `arrears show`, `hold place` or
    # `report` waited behind an import or a cycle's long write and failed after the busy timeout
    # ("cannot open database: database is locked"), though none of them had anything to migrate.
    with read_only(engine) as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    script = ScriptDirectory.from_config(_alembic_config())
    heads = set(script.get_heads())
    # A database a newer arrears upgraded: Alembic would only say "Can't locate revision
    # identified by '0099'", which tells an operator nothing of what to do.
    known = {r.revision for r in script.walk_revisions()}
    if unknown := sorted(current - known):
        raise SchemaTooNew(
            f"the database's schema is at revision {', '.join(unknown)}, newer than this arrears "
            f"knows (its latest is {', '.join(sorted(heads))}): run the arrears release that "
            "upgraded it, or upgrade arrears"
        )
    return current, heads


def require_schema(engine: Engine) -> None:
    """`SchemaBehind` (or `SchemaTooNew`) unless the schema is this code's head; changes nothing."""
    current, heads = schema_revisions(engine)
    if current != heads:
        raise SchemaBehind(
            f"the database's schema is at revision {', '.join(sorted(current))}, behind this arrears "
            f"({', '.join(sorted(heads))})"
            if current
            else f"the database has no arrears schema yet (this arrears is at {', '.join(sorted(heads))})"
        )


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` with Alembic, on the engine's own connection."""
    from alembic import command

    if revision == "head":
        current, heads = schema_revisions(engine)
        if current == heads:
            return  # every command but the first: nothing to write, so no write transaction
    config = _alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # One upgrade at a time: processes started together after an upgrade of arrears (the
            # server, a command) all found the old revision, and all but one failed at its first
            # step ("column ... already exists"). The next one in reads the revision the first
            # committed, and has nothing to do. (SQLite's BEGIN IMMEDIATE serializes them already.)
            connection.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
