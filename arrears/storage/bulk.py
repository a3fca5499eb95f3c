"""Bulk SQL the batch paths share, portable across SQLite and PostgreSQL."""

import json
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Dialect,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    func,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.expression import ColumnElement, FunctionElement
from sqlalchemy.types import NullType, TypeDecorator, TypeEngine

__all__ = [
    "among",
    "chunks",
    "days_between",
    "driver_values",
    "execute_many",
    "greatest",
    "in_range",
    "insert_ignore",
    "json_object",
    "range_starts",
]


def execute_many(connection: Connection, statement: UpdateBase, rows: Sequence[dict[str, Any]]) -> None:
    """Run `statement` (an INSERT or an UPDATE of bound parameters) once per row, in one DBAPI
    `executemany`, with each column's bind processing looked up once per call.

    `connection.execute(statement, rows)` builds and processes every row's parameters through
    SQLAlchemy's general machinery, about 15 µs a row: most of the time a shard of the daily cycle
    spends writing. This does what that does for the simple case (the same compiled SQL, the same
    type processing: money as scaled integers and instants as naive UTC on SQLite, JSON through the
    engine's serializer), and leaves the rest to the driver. Every row must have the same keys.
    """
    if not rows:
        return
    dialect = connection.dialect
    compiled = statement.compile(dialect=dialect, column_keys=list(rows[0]))
    assert isinstance(compiled, SQLCompiler)
    names = list(compiled.positiontup or ()) if compiled.positional else list(compiled.binds)
    columns = []
    for name in names:
        bind = compiled.binds[name]
        # A value fixed in the statement itself (`.values(lease_until=None)`) is the same for every row.
        values = [row[name] for row in rows] if name in rows[0] else [bind.effective_value] * len(rows)
        columns.append(driver_values(dialect, bind.type, values))
    params: list[Any] = (
        list(zip(*columns, strict=True))
        if compiled.positional
        else [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    )
    connection.exec_driver_sql(compiled.string, params)


def driver_values(dialect: Dialect, type_: TypeEngine[Any], values: Sequence[Any]) -> Sequence[Any]:
    """One column's values as the driver must receive them: the type's bind processor (money as
    scaled integers and instants as naive UTC on SQLite, JSON through the engine's serializer), run
    once per distinct value where values repeat. The one place the bulk writers (`execute_many`,
    `storage.streaming`) process values, so both store what SQLAlchemy would."""
    process = type_.dialect_impl(dialect).bind_processor(dialect)
    if process is None:
        return values
    # JSON documents are unhashable: one shared by many rows (the audit data of a transition
    # every account of a shard takes) is encoded once, told apart by identity. The documents
    # stay alive in `values` while this runs, so no two of them share an id.
    if isinstance(type_, JSON):
        return list(map(_memoized(process, key=id), values))
    if not _repeating(values):
        return list(map(process, values))
    return list(map(_memoized(process), values))


# Values looked at to tell a column whose values repeat from one whose values are distinct.
_SAMPLE = 64


def _repeating(values: Sequence[Any]) -> bool:
    """Whether `values` look like they repeat (a shard's instants, stages): judged on the first
    `_SAMPLE`. A memo over distinct values (an import's amounts) costs more than the processing
    it would save: 1.9 s against 0.7 s for a million amounts."""
    sample = values[:_SAMPLE]
    return len(set(sample)) <= len(sample) // 2


def insert_ignore(connection: Connection, table: Table, rows: list[dict[str, Any]], *, key: str) -> set[Any]:
    """Insert rows, skipping those whose `key` already exists; returns the keys that were new.

    This is what makes the outbox once-only: a second cycle inserts the same idempotency keys
    and they fall through without error, and without a second audit record.

    On SQLite a write transaction holds the database's only write lock (arrears begins them
    IMMEDIATE), so the keys found absent stay absent until commit: they are looked up first and
    the new rows inserted through `execute_many`, several times faster than RETURNING row by row.
    PostgreSQL has concurrent writers: there the database says which rows it inserted.
    """
    if not rows:
        return set()
    if connection.dialect.name == "sqlite":
        column = table.c[key]
        wanted = [row[key] for row in rows]
        present = set(connection.execute(select(column).where(among(column, wanted))).scalars())
        new: dict[Any, dict[str, Any]] = {}
        for row in rows:  # the first of two rows with one key wins, as ON CONFLICT DO NOTHING does
            if row[key] not in present:
                new.setdefault(row[key], row)
        execute_many(
            connection, sqlite.insert(table).on_conflict_do_nothing(index_elements=[key]), list(new.values())
        )
        return set(new)
    statement = postgresql.insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
    return set(connection.execute(statement, rows).scalars())


def chunks(ids: Sequence[Any], size: int = 5_000) -> Iterable[list[Any]]:
    """Ids in slices small enough for any database's limit on bound parameters."""
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _memoized(process: Callable[[Any], Any], key: Callable[[Any], Any] | None = None) -> Callable[[Any], Any]:
    """`process` run once per distinct value (per distinct `key` of a value, where given): a
    shard's rows share their instants, cycle ids and stages. (Equal values process alike: money
    is quantized, instants go to UTC.)"""
    done: dict[Any, Any] = {}
    missing = object()

    def run(value: Any) -> Any:
        # Not try/except KeyError: in a column of mostly distinct values (amounts, instants of an
        # import) raising and catching cost more than the processing saved.
        name = value if key is None else key(value)
        result = done.get(name, missing)
        if result is missing:
            done[name] = result = process(value)
        return result

    return run


class days_between(FunctionElement[int]):
    """Whole days from `earlier` to `later` (both dates), as SQL."""

    type = Integer()
    inherit_cache = True

    def __init__(self, later: ColumnElement[Any], earlier: ColumnElement[Any]) -> None:
        super().__init__(later, earlier)


@compiles(days_between, "sqlite")
def _days_sqlite(element: days_between, compiler: Any, **kw: Any) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"


@compiles(days_between, "postgresql")
def _days_postgresql(element: days_between, compiler: Any, **kw: Any) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"(CAST({later} AS DATE) - CAST({earlier} AS DATE))"


def _call_by_dialect(element: type[FunctionElement[Any]], *, sqlite: str, postgresql: str) -> None:
    """Compile `element(...)` as a call of the function each database names for it."""
    for dialect, function in (("sqlite", sqlite), ("postgresql", postgresql)):

        def call(element: FunctionElement[Any], compiler: Any, _function: str = function, **kw: Any) -> str:
            return f"{_function}({compiler.process(element.clauses, **kw)})"

        compiles(element, dialect)(call)


class greatest(FunctionElement[Any]):
    """The larger of two values, row by row (SQLite's two-argument `max`, PostgreSQL's
    `GREATEST`), typed as the first. Instants compare right on both: SQLite keeps them as ISO
    text, always with microseconds (`storage.types.UTCDateTime`)."""

    inherit_cache = True

    def __init__(self, first: ColumnElement[Any], second: ColumnElement[Any]) -> None:
        super().__init__(first, second)
        self.type = first.type


_call_by_dialect(greatest, sqlite="max", postgresql="GREATEST")


class json_object(FunctionElement[Any]):
    """A JSON object built by the database from `key, value, ...` pairs (`json_object` on
    SQLite, `json_build_object` on PostgreSQL): for audit data written by INSERT ... SELECT,
    which never passes through Python. Readers decode it like any other."""

    type = JSON()
    inherit_cache = True


_call_by_dialect(json_object, sqlite="json_object", postgresql="json_build_object")


class _Keys(TypeDecorator[Collection[Any]]):
    """Keys bound as one value: an array on PostgreSQL, a JSON array on SQLite (read by json_each)."""

    impl = String
    cache_ok = True

    def __init__(self, item: TypeEngine[Any]) -> None:
        super().__init__()
        self.item = item

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(self.item))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: Collection[Any] | None, dialect: Dialect) -> Any:
        keys = list(value or ())
        return keys if dialect.name == "postgresql" else json.dumps(keys)


class among(FunctionElement[Any]):
    """`column IN (keys)` for thousands of keys (text or integer), bound as one value.

    `in_()` renders one placeholder per key at every execution: for a batch of a few thousand ids
    SQLAlchemy spends longer naming and binding them than the database spends on the lookup.
    Here PostgreSQL gets `= ANY(array)` and SQLite the keys as one JSON array; `~among(...)` is
    NOT IN. The statement's compiled form is cached like any other.
    """

    # Untyped, not Boolean: SQLite has no boolean type, and SQLAlchemy would write a Boolean
    # predicate in a WHERE as `(...) = 1`, which no index serves (a scan of every row).
    type = NullType()
    inherit_cache = True

    def __init__(self, column: ColumnElement[Any], keys: Collection[Any]) -> None:
        super().__init__(column, bindparam(None, list(keys), type_=_Keys(column.type)))


@compiles(among)
def _among_sqlite(element: among, compiler: Any, **kw: Any) -> str:
    column, keys = (compiler.process(c, **kw) for c in element.clauses)
    return f"({column} IN (SELECT value FROM json_each({keys})))"


@compiles(among, "postgresql")
def _among_postgresql(element: among, compiler: Any, **kw: Any) -> str:
    column, keys = (compiler.process(c, **kw) for c in element.clauses)
    return f"({column} = ANY({keys}))"


def range_starts(
    connection: Connection,
    column: ColumnElement[Any],
    where: ColumnElement[bool],
    *,
    size: int,
    first: int | None = None,
) -> list[Any]:
    """The first key of each run of `size` rows matching `where`, in key order; the first run
    holds `first` rows instead, where given.

    Only these boundaries leave the database, so planning shards or batches over a million rows
    stays cheap; each range runs from one start up to (not including) the next.
    """
    numbered = (
        select(column.label("k"), func.row_number().over(order_by=column).label("n")).where(where).subquery()
    )
    before = numbered.c.n - 1  # rows before this one
    starts = (
        before % size == 0
        if first is None
        else or_(before == 0, and_(before >= first, (before - first) % size == 0))
    )
    return list(connection.execute(select(numbered.c.k).where(starts).order_by(numbered.c.k)).scalars())


def in_range(column: ColumnElement[Any], lo: Any, hi: Any | None) -> ColumnElement[bool]:
    """lo <= column < hi; lo <= column when hi is None (the last range); column = lo when hi == lo
    (a half-open range [lo, lo) would be empty, so it names the single key instead)."""
    if hi is None:
        return column >= lo
    return column == lo if hi == lo else and_(column >= lo, column < hi)
