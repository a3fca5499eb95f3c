"""why a number was marked invalid

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 07:00:00

A number marked invalid for its failed deliveries (用户停机: the borrower's line suspended until the
phone bill is paid) was never texted again, even after the borrower texted from it. Only such
a number may be usable again; one whose holder said it is not the borrower's must stay invalid.
The reason tells them apart. Numbers marked before this revision keep no reason (NULL), and so
stay invalid as before: nothing is rewritten, and SQLite adds the column without copying the table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contact_point", schema=None) as batch_op:
        batch_op.add_column(sa.Column("invalid_reason", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contact_point", schema=None) as batch_op:
        batch_op.drop_column("invalid_reason")
