"""an account's audit events found by kind

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 22:00:00

The audit trail was indexed by account and instant: a query for an account's holds and opt-outs
(each dispatch batch's compliance re-check), its promises, replies or filings read every event
of the account and kept those of the kind asked. An account's history grows every day, and with
about sixty events an account the re-check's read of a batch's holds took 0.31 s instead of
0.035 s. The index `(account_id, at)` is replaced by `(account_id, kind, at)`, which serves every
query by account that the old one served (the timeline is sorted after). Building it reads the
whole audit table once; on PostgreSQL writes to the table wait meanwhile.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_audit_account_kind_at", "audit_event", ["account_id", "kind", "at"], unique=False)
    op.drop_index("ix_audit_account_at", table_name="audit_event")


def downgrade() -> None:
    op.create_index("ix_audit_account_at", "audit_event", ["account_id", "at"], unique=False)
    op.drop_index("ix_audit_account_kind_at", table_name="audit_event")
