"""delivery reports that came before their send was recorded

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 09:00:00

A vendor may report on a message within a second of taking it, while dispatch records a batch's
sends once the whole batch is sent. Such a report found no message, was acknowledged, and was
lost: the message stayed `sent` until `arrears dispatch` looked it up an hour on. It is now kept
in `early_report` until the send is recorded, then applied and deleted.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import arrears.storage.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "early_report",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("provider_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("at", arrears.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("error_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("vendor_status", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_early_report_provider_id_provider", "early_report", ["provider_id", "provider"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_early_report_provider_id_provider", table_name="early_report")
    op.drop_table("early_report")
