"""Storage: engines, sessions, migrations and the bulk helpers the batch paths use."""

from arrears.storage.engine import (
    SchemaBehind,
    SchemaTooNew,
    WriterBusy,
    bounded_writer,
    database_file,
    get_engine,
    is_busy,
    migrate,
    one_writer,
    read_only,
    require_schema,
    schema_revisions,
    session_scope,
)

__all__ = [
    "SchemaBehind",
    "SchemaTooNew",
    "WriterBusy",
    "bounded_writer",
    "database_file",
    "get_engine",
    "is_busy",
    "migrate",
    "one_writer",
    "read_only",
    "require_schema",
    "schema_revisions",
    "session_scope",
]
