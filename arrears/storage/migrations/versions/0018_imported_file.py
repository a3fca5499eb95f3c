"""the files imported, by their content's digest

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 18:20:00

The servicing system's accounts files carry no date of their own: a file delivered again after a
newer one was imported set every balance, date and number back to what it said, silently. The
table `imported_file` keeps each file imported (kind, name, size, SHA-256, when, counts), so that
such a file is refused, and operators can read back what was loaded. A new, empty table: nothing
is rewritten; files imported before it are not known to it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import arrears.storage.types

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "imported_file",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("imported_at", arrears.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_imported_file_sha256"), "imported_file", ["sha256"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_imported_file_sha256"), table_name="imported_file")
    op.drop_table("imported_file")
