"""Callbacks that concern no account of ours, kept for operators: what `arrears callbacks list` reads.

The webhook acknowledges a callback it can store nothing from on an account (a refusal would only
make the vendor push it again) and keeps it in the audit trail without an account:

- `unmatched_report`: a delivery report about no message of ours (applied if its send is recorded
  later; then its message holds what it said, and it is left out: `_applied`);
- `expired_report`: such a report whose send was still not recorded a week on: given up, never
  applied (`delivery_reports.expire_early_reports`);
- `unmatched_court`: a court status for a filing no referral has;
- `unreadable_callback`: an item of a batch callback that could not be read (no number, no
  reference, a status word we do not know);
- what a borrower texted from a number no borrower holds (actor `borrower`): an opt-out, a reply,
  a wrong-number notice.

Each is already masked as it was kept. Every function takes the caller's connection.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, exists, false, func, not_, or_, select

from arrears.storage.court_statuses import UNMATCHED_COURT
from arrears.storage.delivery_reports import EXPIRED_REPORT, UNMATCHED_REPORT
from arrears.storage.tables import audit, message
from arrears.storage.unreadable_callbacks import UNREADABLE_CALLBACK

__all__ = [
    "FROM_UNKNOWN_NUMBER",
    "KINDS",
    "Unattributed",
    "counts_for_report",
    "unattributed_callbacks",
    "unattributed_counts",
]

FROM_UNKNOWN_NUMBER = "from_unknown_number"  # the filter for a borrower's text on no account
KINDS = (UNMATCHED_REPORT, EXPIRED_REPORT, UNMATCHED_COURT, UNREADABLE_CALLBACK, FROM_UNKNOWN_NUMBER)
REPORTED_OVER = timedelta(days=1)  # a daily cycle's report counts those of the day before it


@dataclass(frozen=True, slots=True)
class Unattributed:
    id: int
    at: datetime
    kind: str
    actor: str
    detail: str
    data: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "kind": self.kind,
            "actor": self.actor,
            "detail": self.detail,
            "data": self.data,
        }


def unattributed_callbacks(
    connection: Connection, *, since: datetime | None = None, kinds: Sequence[str] = KINDS
) -> list[Unattributed]:
    """The callbacks of `kinds` kept on no account since `since` (inclusive), newest first."""
    query = select(audit.c.id, audit.c.at, audit.c.kind, audit.c.actor, audit.c.detail, audit.c.data)
    rows = connection.execute(_kept(query, since, kinds).order_by(audit.c.at.desc(), audit.c.id.desc()))
    return [Unattributed(*row) for row in rows]


def unattributed_counts(connection: Connection, *, since: datetime) -> dict[str, int]:
    """How many were kept since `since`, by kind (a stranger's texts together): for the reports."""
    found: dict[str, int] = {}
    query = _kept(select(audit.c.kind, audit.c.actor, func.count()), since, KINDS)
    for kind, actor, n in connection.execute(query.group_by(audit.c.kind, audit.c.actor)):
        key = FROM_UNKNOWN_NUMBER if actor == "borrower" else kind
        found[key] = found.get(key, 0) + n
    return found


def counts_for_report(connection: Connection, as_of: datetime | None) -> dict[str, int]:
    """Those kept in the day up to a cycle's instant, by kind: what the cycle's report shows (the
    artifact and `arrears report` alike), so that operations see them without asking."""
    return {} if as_of is None else unattributed_counts(connection, since=as_of - REPORTED_OVER)


def _kept(query: Select[Any], since: datetime | None, kinds: Sequence[str]) -> Select[Any]:
    """`query` narrowed to the callbacks of `kinds` kept on no account since `since`."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"no kind {sorted(unknown)[0]!r}: one of {', '.join(KINDS)}")
    audit_kinds = [k for k in kinds if k != FROM_UNKNOWN_NUMBER]
    wanted: list[ColumnElement[bool]] = [audit.c.kind.in_(audit_kinds)] if audit_kinds else []
    if FROM_UNKNOWN_NUMBER in kinds:
        wanted.append(audit.c.actor == "borrower")
    query = query.where(audit.c.account_id.is_(None), or_(*wanted) if wanted else false(), not_(_applied()))
    return query if since is None else query.where(audit.c.at >= since)


def _applied() -> ColumnElement[bool]:
    """An `unmatched_report` that was applied once its send was recorded (`apply_early_reports`,
    in the transaction that recorded it): its provider's message with its id now holds the status
    it told. Half of a live cycle's receipts come before their sends are recorded; listed, they
    buried the few that concern no message of ours. Found by the message's index, the audit trail
    left as it was written (append-only). One whose send came only after it was given up (its
    `expired_report` stays listed) and was never applied shows until its message reaches that
    status by another report."""
    said = audit.c.data
    return and_(
        audit.c.kind == UNMATCHED_REPORT,
        exists().where(
            message.c.provider_id == said["provider_id"].as_string(),
            message.c.provider == said["provider"].as_string(),
            message.c.status == said["status"].as_string(),
        ),
    )
