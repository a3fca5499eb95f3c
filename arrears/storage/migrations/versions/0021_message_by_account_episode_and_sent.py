"""an account's messages found by stage episode and by send time

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 23:40:00

The outbox was indexed by account alone: every day each shard of the advance read, for every
account, all the messages it ever had to keep those of its current stage episode (the keys the
rules skip, what is in flight) and its sends of the last days (what the caps count), and each
dispatch batch did the same for its borrowers. An account's history grows every day; with 30 old
messages an account the advance's load cost 53.5 µs an account against 20.8 with none
(`benchmarks/phases.py --old-messages 30`), now 21.7. The index
`(account_id)` is replaced by `(account_id, episode, stage)`, which serves every query by account
that the old one served, and sent rows get `(account_id, sent_at)` (partial: unsent rows, as each
is inserted, are not in it). Building them reads the whole message table once each; on PostgreSQL
writes to the table wait meanwhile.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SENT = "sent_at IS NOT NULL"


def upgrade() -> None:
    op.create_index("ix_message_account_episode", "message", ["account_id", "episode", "stage"], unique=False)
    op.create_index(
        "ix_message_account_sent",
        "message",
        ["account_id", "sent_at"],
        unique=False,
        sqlite_where=sa.text(_SENT),
        postgresql_where=sa.text(_SENT),
    )
    op.drop_index("ix_message_account_id", table_name="message")


def downgrade() -> None:
    op.create_index("ix_message_account_id", "message", ["account_id"], unique=False)
    op.drop_index("ix_message_account_sent", table_name="message")
    op.drop_index("ix_message_account_episode", table_name="message")
