"""drop the contact points' index on borrower id alone

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 20:50:00

The unique index on (borrower_id, channel, address) starts with the borrower id, so every lookup
by borrower (the shard's contacts, an opt-out binding all of a borrower's numbers) can use it;
SQLite and PostgreSQL both search a composite index by its first column. The index on the
borrower id alone only cost each insert: 1,000,000 contact points, inserted alone, took 3.5-4.1 s
with it and 2.8-2.9 s without (about a second of a million-account import). Only an index:
nothing is rewritten.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_contact_point_borrower_id", table_name="contact_point")


def downgrade() -> None:
    op.create_index("ix_contact_point_borrower_id", "contact_point", ["borrower_id"], unique=False)
