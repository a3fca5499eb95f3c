"""index the opted-out numbers

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 12:00:00

An import that gives a number to a borrower who did not hold it yet (a second loan of the same
person, under its own borrower id) must find whether the number opted out under another borrower:
an opt-out is the number's (Reg F 1006.6(e); 47 CFR 64.1200(a)(10)), and the new contact point
would otherwise be texted. Only the opted-out rows are indexed (a partial index, on SQLite and
PostgreSQL alike), so the lookup is a few probes and the import's inserts of numbers that have not
opted out write nothing to it. Only an index: nothing is rewritten.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHERE = sa.text("opted_out_at IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_contact_point_opted_out",
        "contact_point",
        ["address"],
        unique=False,
        sqlite_where=_WHERE,
        postgresql_where=_WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_contact_point_opted_out", table_name="contact_point")
