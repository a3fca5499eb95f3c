"""find a delivery receipt's message by provider id and provider

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 08:30:00

A receipt moves its message with `provider = ? AND provider_id = ? AND status IN ('sent')`. With
the index on provider id alone, SQLite (no statistics) took `ix_message_due` for the status
instead and walked every message still sent for each receipt: 8 ms of CPU a receipt after a
50,000-account cycle, 124 receipts a second, posts held past the 30 s lock wait and refused. An
index on both equal columns is the one it takes. Only an index: nothing is rewritten.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_message_provider_id_provider", "message", ["provider_id", "provider"], unique=False)
    op.drop_index("ix_message_provider_id", table_name="message")


def downgrade() -> None:
    op.create_index("ix_message_provider_id", "message", ["provider_id"], unique=False)
    op.drop_index("ix_message_provider_id_provider", table_name="message")
