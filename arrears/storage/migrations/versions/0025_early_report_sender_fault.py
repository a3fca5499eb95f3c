"""an early report keeps whether its failure was our message's or sender's

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 16:00:00

A failed delivery the vendor says is about our message, our sender or our account, not the
number (Twilio's 30007 content filtered, 30034 an unregistered sender, Aliyun's template and
signature codes: `DeliveryReport.sender_fault`), does not count towards marking the number
unreachable. A report that comes before its send is recorded is kept and applied once the send
is (`storage.delivery_reports.apply_early_reports`): without the flag kept with it, it would be
applied as one more failure of the number. Existing rows said nothing of it, as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("early_report", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sender_fault", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("early_report", schema=None) as batch_op:
        batch_op.drop_column("sender_fault")
