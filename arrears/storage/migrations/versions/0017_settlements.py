"""settlement agreements

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 15:00:00

A settlement an agent records (`arrears settlement record`): the amount the lender takes for the
balance, the date it is to be paid by, who agreed it and why, and how it ended (paid, lapsed,
cancelled, or ended by the account leaving collection otherwise). A new table: nothing else is
touched, and no row is rewritten.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import arrears.storage.types

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    money = arrears.storage.types.Money(precision=19, scale=4)
    instant = arrears.storage.types.UTCDateTime(timezone=True)
    op.create_table(
        "settlement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("amount", money, nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("pay_by", sa.Date(), nullable=False),
        sa.Column("balance", money, nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("agreed_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("agreed_at", instant, nullable=False),
        sa.Column("received", money, nullable=True),
        sa.Column("written_off", money, nullable=True),
        sa.Column("ended_at", instant, nullable=True),
        sa.Column("ended_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("end_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["account.account_id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("settlement", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_settlement_account_id"), ["account_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("settlement", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_settlement_account_id"))
    op.drop_table("settlement")
