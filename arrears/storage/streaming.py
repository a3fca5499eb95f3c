"""Rows written by the hundred thousand: COPY on PostgreSQL, one executemany on SQLite.

SQLAlchemy's `connection.execute(table.insert(), [dict, ...])` turns every row into a dict of
bound parameters and processes it value by value: at a million accounts that bookkeeping costs
more than the database's own work. Here rows are tuples in a stated column order, each column's
bind processor (the same one SQLAlchemy would apply: money as scaled integers and instants as
naive UTC on SQLite, per `arrears.storage.types`) runs once per column over the whole batch, a
value the same for every row is processed once, and the batch goes to the driver as it is.

On PostgreSQL the rows are streamed with COPY (psycopg's `cursor.copy()`), which the server
takes as fast as it can write them. A duplicate key fails the COPY with the driver's error, raised
as SQLAlchemy's `IntegrityError`, so callers that retry on one still do.
"""

from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

from sqlalchemy import Connection, Select, Table, func, select
from sqlalchemy.exc import IntegrityError

from arrears.storage.bulk import driver_values

__all__ = ["insert_rows", "insert_rows_with_ids", "insert_selected_with_ids", "update_rows"]


def _columns(
    connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[Any]:
    """The values of each column, as the driver must receive them (`storage.bulk.driver_values`)."""
    by_column: list[Any] = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    return [
        driver_values(connection.dialect, table.c[name].type, values)
        for name, values in zip(columns, by_column, strict=True)
    ]


def _constants(
    connection: Connection, table: Table, constants: Mapping[str, Any] | None, count: int
) -> tuple[list[str], list[Any]]:
    """Values the same in every row, processed once and repeated."""
    names = list(constants or {})
    values = _columns(connection, table, names, [tuple((constants or {}).values())])
    return names, [repeat(value[0], count) for value in values]


def insert_rows(
    connection: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    constants: Mapping[str, Any] | None = None,
) -> int:
    """Insert `rows` (values in `columns` order) plus `constants` in every row; returns the count.

    In the caller's transaction; nothing is read back (ids a sequence gives are not returned).
    """
    if not rows:
        return 0
    names, repeated = _constants(connection, table, constants, len(rows))
    bound = list(zip(*_columns(connection, table, columns, rows), *repeated, strict=True))
    all_columns = [*columns, *names]
    if connection.dialect.name == "postgresql":
        _copy(connection, table, all_columns, bound)
    else:
        quoted = ", ".join(f'"{name}"' for name in all_columns)
        marks = ", ".join("?" for _ in all_columns)
        connection.exec_driver_sql(f'INSERT INTO "{table.name}" ({quoted}) VALUES ({marks})', bound)
    return len(rows)


def insert_rows_with_ids(
    connection: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    constants: Mapping[str, Any] | None = None,
) -> list[int]:
    """`insert_rows` for a table whose integer `id` the database assigns; the new ids, in the
    order of `rows`, as RETURNING would give them.

    SQLAlchemy can promise RETURNING in parameter order on SQLite only by inserting one row per
    statement (30,000 statements for a first cycle's cure letters at a million accounts). Here
    the rows go in one `executemany` and their ids are counted (`_ids_after`): the write
    transaction holds SQLite's only write lock (arrears begins IMMEDIATE), and SQLite gives each
    new row the highest rowid plus one, so the new rows are exactly those above the highest id
    before, numbered in insertion order. PostgreSQL has concurrent writers: there RETURNING says
    which ids are ours."""
    if not rows:
        return []
    if connection.dialect.name == "postgresql":
        statement = table.insert().returning(table.c.id, sort_by_parameter_order=True)
        params = [dict(zip(columns, row, strict=True)) | dict(constants or {}) for row in rows]
        return [int(i) for i in connection.execute(statement, params).scalars()]
    before = _highest(connection, table)
    insert_rows(connection, table, columns, rows, constants)
    return _ids_after(connection, table, before, len(rows))


def insert_selected_with_ids(
    connection: Connection, table: Table, columns: Sequence[str], query: Select[Any]
) -> list[int]:
    """INSERT ... SELECT: the rows of `query` into `columns` of a table whose integer `id` the
    database assigns; the new ids, in the order of the query's rows. The rows never pass through
    Python. On SQLite the ids are counted as `insert_rows_with_ids` counts them; on PostgreSQL
    they come back through RETURNING (in no promised order), and the sequence numbered the rows
    in the order the SELECT gave them."""
    statement = table.insert().from_select(list(columns), query)
    if connection.dialect.name == "postgresql":
        return sorted(int(i) for i in connection.execute(statement.returning(table.c.id)).scalars())
    before = _highest(connection, table)
    return _ids_after(connection, table, before, connection.execute(statement).rowcount)


def _highest(connection: Connection, table: Table) -> int:
    return int(connection.execute(select(func.max(table.c.id))).scalar_one_or_none() or 0)


def _ids_after(connection: Connection, table: Table, before: int, count: int) -> list[int]:
    """The ids of the `count` rows just inserted on SQLite above the highest id `before`: with
    `count` rows above it, the highest of them before + count, they are before + 1 ... before +
    count (counted, not read back: a quarter of a portfolio's reviews are opened at once)."""
    found, highest = connection.execute(
        select(func.count(), func.max(table.c.id)).where(table.c.id > before)
    ).one()
    assert (found, highest or before) == (count, before + count), (table.name, found, highest, before)
    return list(range(before + 1, before + 1 + count))


def update_rows(
    connection: Connection,
    table: Table,
    key: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    constants: Mapping[str, Any] | None = None,
) -> int:
    """Set `columns` (and `constants`) on the row whose `key` is each row's last value."""
    if not rows:
        return 0
    names, repeated = _constants(connection, table, constants, len(rows))
    by_column = _columns(connection, table, [*columns, key], rows)
    bound = list(zip(*by_column[:-1], *repeated, by_column[-1], strict=True))
    mark = "%s" if connection.dialect.name == "postgresql" else "?"
    assignments = ", ".join(f'"{name}" = {mark}' for name in (*columns, *names))
    connection.exec_driver_sql(f'UPDATE "{table.name}" SET {assignments} WHERE "{key}" = {mark}', bound)
    return len(rows)


def _copy(connection: Connection, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    driver = connection.connection.driver_connection
    assert driver is not None
    quoted = ", ".join(f'"{name}"' for name in columns)
    statement = f'COPY "{table.name}" ({quoted}) FROM STDIN'
    dbapi: Any = connection.dialect.dbapi
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except dbapi.IntegrityError as error:
        raise IntegrityError(statement, None, error) from error
