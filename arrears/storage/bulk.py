"""Bulk SQL the batch paths share, portable across SQLite and PostgreSQL."""

from typing import Any

from sqlalchemy import Connection, Integer, Table, and_, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

__all__ = ["days_between", "in_range", "insert_ignore", "range_starts"]


def insert_ignore(connection: Connection, table: Table, rows: list[dict[str, Any]], *, key: str) -> set[Any]:
    """Insert rows, skipping those whose `key` already exists; returns the keys that were new.

    This is what makes the outbox once-only: a second cycle inserts the same idempotency keys
    and they fall through without error, and without a second audit record.
    """
    if not rows:
        return set()
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
    return set(connection.execute(statement, rows).scalars())


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


def range_starts(
    connection: Connection, column: ColumnElement[Any], where: ColumnElement[bool], *, size: int
) -> list[Any]:
    """The first key of each run of `size` rows matching `where`, in key order.

    Only these boundaries leave the database, so planning shards or batches over a million rows
    stays cheap; each range runs from one start up to (not including) the next.
    """
    numbered = (
        select(column.label("k"), func.row_number().over(order_by=column).label("n")).where(where).subquery()
    )
    return list(
        connection.execute(
            select(numbered.c.k).where((numbered.c.n - 1) % size == 0).order_by(numbered.c.k)
        ).scalars()
    )


def in_range(column: ColumnElement[Any], lo: Any, hi: Any | None) -> ColumnElement[bool]:
    """lo <= column < hi; lo <= column when hi is None (the last range); column = lo when hi == lo
    (a half-open range [lo, lo) would be empty, so it names the single key instead)."""
    if hi is None:
        return column >= lo
    return column == lo if hi == lo else and_(column >= lo, column < hi)
