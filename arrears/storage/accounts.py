"""One account's story, for `arrears show` and the per-account timeline operations read."""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from arrears.currencies import display
from arrears.models import Account, AccountHold, AuditEvent, Message

__all__ = ["AccountStory", "account_story"]

account = Account.__table__  # type: ignore[attr-defined]
hold = AccountHold.__table__  # type: ignore[attr-defined]
audit = AuditEvent.__table__  # type: ignore[attr-defined]
message = Message.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class AccountStory:
    account: Any  # the account row
    holds: list[str]
    messages: list[Any]
    timeline: list[Any]

    def as_json(self) -> dict[str, Any]:
        a = self.account
        return {
            "account_id": a.account_id,
            "borrower_id": a.borrower_id,
            "stage": a.stage,
            "stage_since": _iso(a.stage_since),
            "days_past_due": a.days_past_due,
            "bucket": a.bucket,
            "past_due_amount": display(a.past_due_amount, a.currency),
            "balance": display(a.balance, a.currency),
            "currency": a.currency,
            "segment": a.segment,
            "holds": self.holds,
            "jurisdiction": a.jurisdiction,
            "timezone": a.timezone,
            "messages": [
                {
                    "id": m.id,
                    "template": m.template,
                    "status": m.status,
                    "not_before": _iso(m.not_before),
                    "sent_at": _iso(m.sent_at),
                    "reason": m.reason,
                    "body": m.body,
                }
                for m in self.messages
            ],
            "timeline": [
                {"at": _iso(e.at), "kind": e.kind, "detail": e.detail, "actor": e.actor}
                for e in self.timeline
            ],
        }


def account_story(connection: Connection, account_id: str) -> AccountStory | None:
    row = connection.execute(select(account).where(account.c.account_id == account_id)).first()
    if row is None:
        return None
    holds = sorted(
        connection.execute(
            select(hold.c.kind).where(hold.c.account_id == account_id, hold.c.lifted_at.is_(None))
        ).scalars()
    )
    messages = connection.execute(
        select(message).where(message.c.account_id == account_id).order_by(message.c.id)
    ).all()
    timeline = connection.execute(
        select(audit).where(audit.c.account_id == account_id).order_by(audit.c.at, audit.c.id)
    ).all()
    return AccountStory(row, holds, list(messages), list(timeline))


def _iso(value: datetime | date | Decimal | None) -> str | None:
    return value.isoformat() if isinstance(value, (datetime, date)) else None if value is None else str(value)
