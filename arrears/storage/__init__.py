"""Storage: engines, sessions, migrations and the bulk helpers the batch paths use."""

from arrears.storage.engine import database_file, get_engine, migrate, one_writer, read_only, session_scope

__all__ = ["database_file", "get_engine", "migrate", "one_writer", "read_only", "session_scope"]
