"""find a number's contact points by the number

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 02:20:00

Every text a borrower sends us (STOP, START, a reply, a wrong number) is attributed by its number:
the contact points holding it. They were indexed by borrower first, and by number only where the
number had opted out (0014): every inbound text read the whole table, two to four times in its one
write transaction. At a million accounts (1.2 million contact points) that held SQLite's only
write lock 190-300 ms a text, against the daily cycle's shards and every other callback. The
partial index is replaced by one of every SMS contact point's (address, channel): the opted-out
lookup of an import reads it as it read the partial one. Building it reads the table once; on
PostgreSQL writes to the table wait meanwhile.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_contact_point_address", "contact_point", ["address", "channel"], unique=False)
    op.drop_index("ix_contact_point_opted_out", table_name="contact_point")


def downgrade() -> None:
    _opted_out = sa.text("opted_out_at IS NOT NULL")
    op.create_index(
        "ix_contact_point_opted_out",
        "contact_point",
        ["address"],
        unique=False,
        sqlite_where=_opted_out,
        postgresql_where=_opted_out,
    )
    op.drop_index("ix_contact_point_address", table_name="contact_point")
