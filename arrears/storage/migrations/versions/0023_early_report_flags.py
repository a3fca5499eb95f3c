"""an early report keeps what it said of the number

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 10:45:00

A delivery report that comes before its send is recorded is kept and applied once the send is
(`storage.delivery_reports.apply_early_reports`). It kept the status and error code but not what
the vendor said of the number: that it cannot take texts at all (Twilio's 30005, 30006: the
number is marked invalid at the first such failure), or that its owner opted out at the carrier
(Twilio's 21610: no failed delivery at all). Applied later, either counted as one more plain
failure. Existing rows said neither.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("early_report", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("number_cannot_text", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("opted_out", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("early_report", schema=None) as batch_op:
        batch_op.drop_column("opted_out")
        batch_op.drop_column("number_cannot_text")
