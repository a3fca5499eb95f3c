"""Alembic environment: runs on the connection `arrears.storage.migrate` hands it, or on the
URL from settings when invoked as `alembic -x` from a checkout."""

from alembic import context
from sqlmodel import SQLModel

import arrears.models  # noqa: F401  (registers the tables on SQLModel.metadata)

target_metadata = SQLModel.metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        from arrears.settings import get_settings
        from arrears.storage.engine import get_engine

        with get_engine(get_settings().database_url).begin() as connection:
            _run_on(connection)
    else:
        _run_on(connection)


def _run_on(connection: object) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
