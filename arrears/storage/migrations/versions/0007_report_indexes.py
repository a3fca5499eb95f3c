"""indexes for the cycle's report: accounts by stage and bucket, a cycle's audit rows by kind,
the outbox by creation and by send

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:10:00

The report of a cycle (issue 14) must read what the cycle wrote, not the whole portfolio, audit
trail or outbox: the portfolio is counted by stage and bucket from an index alone (it replaces
the index on stage, which its first column serves), a cycle's transitions and message events are
found by cycle and kind, its new messages by their creation instant, and the compliance report's
sends by their send instant. Only indexes: nothing is rewritten.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_account_stage_bucket", "account", ["stage", "bucket"], unique=False)
    op.drop_index("ix_account_stage", table_name="account")
    op.create_index("ix_audit_event_cycle_kind", "audit_event", ["cycle_id", "kind"], unique=False)
    op.drop_index("ix_audit_event_cycle_id", table_name="audit_event")
    op.create_index("ix_message_created", "message", ["created_at", "status", "reason"], unique=False)
    op.create_index("ix_message_sent_at", "message", ["sent_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_message_sent_at", table_name="message")
    op.drop_index("ix_message_created", table_name="message")
    op.create_index("ix_audit_event_cycle_id", "audit_event", ["cycle_id"], unique=False)
    op.drop_index("ix_audit_event_cycle_kind", table_name="audit_event")
    op.create_index("ix_account_stage", "account", ["stage"], unique=False)
    op.drop_index("ix_account_stage_bucket", table_name="account")
