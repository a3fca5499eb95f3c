"""opt-outs of numbers no borrower holds

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 15:00:00

A STOP from a number no contact point held was kept only in the audit trail, so an account
imported later with that number (or a skip trace that found it) started without the opt-out and
was texted (Reg F 1006.6(e); 47 CFR 64.1200(a)(10)). The table `opted_out_number` keeps such a
number opted out until it texts START; the import's and the bureau pulls' lookup of opted-out
numbers reads it beside the contact points. A new, empty table: nothing is rewritten.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import arrears.storage.types

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "opted_out_number",
        sa.Column("address", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("opted_out_at", arrears.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address"),
    )


def downgrade() -> None:
    op.drop_table("opted_out_number")
