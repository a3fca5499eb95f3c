"""the audit trail's events of a kind found by instant

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 23:50:00

The refresh reads the borrowers' replies of the last days (`kind = 'reply'` and `at` in a window)
every cycle, and the same shape of query finds a reply set aside as of unknown sender. The audit
trail was indexed by account and by cycle only, so each such read scanned every event ever
written, a table that grows by millions of rows a day at a million accounts: 0.14 s at 1.1 million
events, growing without end. `(kind, at)` finds them in a few probes. A cycle writes its events at
one instant, so the new entries go to one end of the index. Building it reads the audit table
once; on PostgreSQL writes to the table wait meanwhile.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_audit_kind_at", "audit_event", ["kind", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_kind_at", table_name="audit_event")
