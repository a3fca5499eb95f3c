"""index bureau records by instant and kind

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 08:00:00

A cycle rerun after a crash counts the bureau pulls its business day already made before it
pulls more (`storage.bureau_pulls.pulls_of_the_day`): they are found by their cycles' instants,
among a year's furnish records, from this index. Only an index: nothing is rewritten.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_bureau_record_at_kind", "bureau_record", ["at", "kind"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_bureau_record_at_kind", table_name="bureau_record")
