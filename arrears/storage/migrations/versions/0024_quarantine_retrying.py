"""a quarantine entry released for a retry stays in quarantine until the retry is confirmed

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 14:30:00

`arrears quarantine retry` released an entry (resolved, so that the steps would see its item
again) before it ran the item's work: a retry the database walked out on, or a process killed
mid-retry, left the entry resolved though nothing had passed. Now the release only sets
`retrying_since` (the steps see the item while it is set), and the entry is resolved once the
retried work committed (`storage.quarantine.resolve`). Existing rows are not retrying: an entry an
earlier retry resolved cannot be told from one it confirmed, and stays resolved.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import arrears.storage.types

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("retrying_since", arrears.storage.types.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_column("retrying_since")
