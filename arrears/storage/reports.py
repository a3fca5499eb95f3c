"""What operations read: portfolio by stage and bucket, transitions, messages, roll and cure rates.

Shared by the cycle's artifacts and `arrears report`, so both always say the same thing.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from arrears.lifecycle import is_open
from arrears.storage.tables import account, audit, cycle_run, message
from arrears.vocabulary import Exit, Stage

__all__ = ["PortfolioReport", "latest_cycle_id", "portfolio_report"]


@dataclass
class PortfolioReport:
    cycle_id: int | None
    as_of: datetime | None
    by_stage_bucket: dict[str, dict[str, int]] = field(default_factory=dict)
    transitions: dict[str, dict[str, int]] = field(default_factory=dict)  # from -> to -> count, this cycle
    messages: dict[str, int] = field(default_factory=dict)  # status -> count, this cycle's messages
    blocked_by_reason: dict[str, int] = field(default_factory=dict)
    deferred_by_reason: dict[str, int] = field(default_factory=dict)
    roll_rate: float | None = None  # share of delinquent accounts that moved to a later stage
    cure_rate: float | None = None  # share of delinquent accounts that cured or paid off

    def as_json(self) -> dict[str, Any]:
        return {
            "cycle_id": self.cycle_id,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "accounts_by_stage_and_bucket": self.by_stage_bucket,
            "transitions": self.transitions,
            "messages_by_status": self.messages,
            "blocked_by_reason": self.blocked_by_reason,
            "scheduled_by_reason": self.deferred_by_reason,
            "roll_rate": self.roll_rate,
            "cure_rate": self.cure_rate,
        }


def latest_cycle_id(connection: Connection) -> int | None:
    return connection.execute(select(func.max(cycle_run.c.id))).scalar()


def portfolio_report(connection: Connection, *, cycle_id: int | None) -> PortfolioReport:
    as_of = (
        connection.execute(select(cycle_run.c.as_of).where(cycle_run.c.id == cycle_id)).scalar()
        if cycle_id
        else None
    )
    report = PortfolioReport(cycle_id=cycle_id, as_of=as_of)
    for stage, bucket, n in connection.execute(
        select(account.c.stage, account.c.bucket, func.count()).group_by(account.c.stage, account.c.bucket)
    ):
        report.by_stage_bucket.setdefault(stage, {})[bucket] = n
    if cycle_id is None:
        return report
    moves: Counter[tuple[str, str]] = Counter()
    journeys: dict[str, tuple[str, str]] = {}  # account -> (stage before the cycle, stage after)
    for account_id, data in connection.execute(
        select(audit.c.account_id, audit.c.data)
        .where(audit.c.cycle_id == cycle_id, audit.c.kind == "transition")
        .order_by(audit.c.id)
    ):
        moves[(data["from"], data["to"])] += 1
        journeys[account_id] = (journeys.get(account_id, (data["from"], ""))[0], data["to"])
    for (src, dst), n in sorted(moves.items()):
        report.transitions.setdefault(src, {})[dst] = n
    this_cycle = message.c.created_at == as_of
    for status, reason, n in connection.execute(
        select(message.c.status, message.c.reason, func.count())
        .where(this_cycle)
        .group_by(message.c.status, message.c.reason)
    ):
        report.messages[status] = report.messages.get(status, 0) + n
        if status == "blocked":
            report.blocked_by_reason[reason or "unknown"] = (
                report.blocked_by_reason.get(reason or "unknown", 0) + n
            )
        elif status == "scheduled" and reason:
            report.deferred_by_reason[reason] = report.deferred_by_reason.get(reason, 0) + n
    # Rates over the accounts delinquent when the cycle began: those open now, less the ones that
    # fell delinquent during it, plus the ones that left it.
    open_now = sum(
        n for stage, buckets in report.by_stage_bucket.items() if is_open(stage) for n in buckets.values()
    )
    was_open = [(before, after) for before, after in journeys.values() if is_open(before)]
    newly = sum(1 for before, after in journeys.values() if not is_open(before) and is_open(after))
    left = sum(1 for _, after in was_open if not is_open(after))
    base = open_now - newly + left
    if base > 0:
        report.roll_rate = round(
            sum(1 for b, a in was_open if is_open(a) and Stage(a).rank > Stage(b).rank) / base, 4
        )
        report.cure_rate = round(sum(1 for _, a in was_open if a in (Exit.CURED, Exit.PAID_OFF)) / base, 4)
    return report
