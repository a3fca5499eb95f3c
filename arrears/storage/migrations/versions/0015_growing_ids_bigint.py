"""64-bit ids for the audit trail and the outbox on PostgreSQL

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 12:30:00

`audit_event` and `message` grow by about a row per account a day, and on PostgreSQL every outbox
key a cycle finds already there (ON CONFLICT DO NOTHING) takes a number of the id's sequence too:
a serial `integer` stops at 2**31 - 1, within a few years of a million-account book, after which
no decision could be audited and no message written. Their ids and sequences become `bigint`.
SQLite is left as it is: its `INTEGER PRIMARY KEY` is the 64-bit rowid already.

On PostgreSQL the column change rewrites both tables under an exclusive lock: minutes for a
large audit trail, while no cycle runs. The append-only triggers do not fire on a rewrite.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("audit_event", "message")


def _sequence(table: str) -> str:
    """The sequence behind the table's serial id, as PostgreSQL names it."""
    name = op.get_bind().execute(sa.text(f"SELECT pg_get_serial_sequence('{table}', 'id')")).scalar()
    assert isinstance(name, str), f"{table}.id has no sequence"
    return name


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN id TYPE BIGINT")
        op.execute(f"ALTER SEQUENCE {_sequence(table)} AS BIGINT")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"ALTER SEQUENCE {_sequence(table)} AS INTEGER")
        op.execute(f"ALTER TABLE {table} ALTER COLUMN id TYPE INTEGER")
