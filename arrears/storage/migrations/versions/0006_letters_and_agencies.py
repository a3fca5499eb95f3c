"""letters, agency assignments, mailing address

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 07:30:00

Letters mailed through the letters provider (the PDF as mailed, its hash, the mailed event and
the cure deadline counted from it), repossession assignments sent to the agency provider, and the
borrower's mailing address on the account. Independent of 0003-0005: it touches no table they do
but `account`, where it only adds columns.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import arrears.storage.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agency_assignment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=160), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("account_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("review_id", sa.Integer(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("provider_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("created_at", arrears.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("assigned_at", arrears.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", arrears.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("recovered_at", arrears.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("recovery", sa.JSON(), nullable=True),
        sa.Column("updated_at", arrears.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.account_id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("agency_assignment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agency_assignment_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_agency_assignment_provider_id"), ["provider_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_agency_assignment_review_id"), ["review_id"], unique=False)
        batch_op.create_index("ix_assignment_status", ["status"], unique=False)

    op.create_table(
        "letter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=160), nullable=False),
        sa.Column("account_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("review_id", sa.Integer(), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("template", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("provider_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("mail_type", sqlmodel.sql.sqltypes.AutoString(length=48), nullable=False),
        sa.Column("pdf_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("pdf", sa.LargeBinary(), nullable=True),
        sa.Column("context", sa.JSON(), nullable=True),
        sa.Column("created_at", arrears.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", arrears.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("mailed_at", arrears.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deadline", arrears.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", arrears.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.account_id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("letter", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_letter_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_letter_provider_id"), ["provider_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_letter_review_id"), ["review_id"], unique=False)
        batch_op.create_index("ix_letter_status", ["status", "updated_at"], unique=False)

    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("address_line1", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
        batch_op.add_column(
            sa.Column("address_line2", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
        batch_op.add_column(sa.Column("city", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.add_column(sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("postal_code", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch_op.add_column(sa.Column("country", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_column("country")
        batch_op.drop_column("postal_code")
        batch_op.drop_column("state")
        batch_op.drop_column("city")
        batch_op.drop_column("address_line2")
        batch_op.drop_column("address_line1")

    with op.batch_alter_table("letter", schema=None) as batch_op:
        batch_op.drop_index("ix_letter_status")
        batch_op.drop_index(batch_op.f("ix_letter_review_id"))
        batch_op.drop_index(batch_op.f("ix_letter_provider_id"))
        batch_op.drop_index(batch_op.f("ix_letter_account_id"))

    op.drop_table("letter")
    with op.batch_alter_table("agency_assignment", schema=None) as batch_op:
        batch_op.drop_index("ix_assignment_status")
        batch_op.drop_index(batch_op.f("ix_agency_assignment_review_id"))
        batch_op.drop_index(batch_op.f("ix_agency_assignment_provider_id"))
        batch_op.drop_index(batch_op.f("ix_agency_assignment_account_id"))

    op.drop_table("agency_assignment")
