"""The installation id: one per database, kept in the database (DESIGN §3).

It namespaces every key that leaves the database (Prefect idempotency keys, provider
references), so that two arrears databases sharing one Prefect server never share a run. It is
created when the database is migrated, or on first use for a database built another way, and
never changes afterwards, except in a copy: a database cloned from another (`CREATE DATABASE …
TEMPLATE`, as the benchmarks and tests clone a loaded portfolio) is another installation and
takes a new id before its first run, or it would find the original's runs under their keys.
"""

import uuid
from datetime import UTC, datetime

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from arrears.storage.tables import table_of

__all__ = ["installation_id", "new_installation_id", "stored_installation_id"]

_ROW = 1  # the only row


def installation_id(connection: Connection) -> str:
    """This database's installation id (12 lowercase hex digits), created on first use."""
    from arrears.models import Installation

    found = stored_installation_id(connection)
    if found is not None:
        return found
    table = table_of(Installation)
    try:
        with connection.begin_nested():  # a concurrent first use may win: keep its id
            connection.execute(
                table.insert().values(
                    id=_ROW, installation_id=uuid.uuid4().hex[:12], created_at=datetime.now(UTC)
                )
            )
    except IntegrityError:
        pass
    return str(connection.execute(select(table.c.installation_id).where(table.c.id == _ROW)).scalar_one())


def stored_installation_id(connection: Connection) -> str | None:
    """The id if the database has one yet, reading only (None: it has sent nothing under one)."""
    from arrears.models import Installation

    table = table_of(Installation)
    found = connection.execute(select(table.c.installation_id).where(table.c.id == _ROW)).scalar()
    return None if found is None else str(found)


def new_installation_id(connection: Connection) -> str:
    """Give a freshly cloned database an id of its own (see the module docstring) and return it.

    Only for a copy that has not run yet: the runs and provider references its original made
    under the old id are not renamed."""
    from arrears.models import Installation

    table = table_of(Installation)
    connection.execute(table.delete().where(table.c.id == _ROW))
    return installation_id(connection)
