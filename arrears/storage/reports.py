"""What operations read: portfolio by stage and bucket, transitions, messages, roll and cure rates,
the trend over the last cycles, and the context a reviewer sees beside a review.

Shared by the cycle's artifacts and `arrears report`, so both always say the same thing. A cycle
retried after a failed attempt reports what all its attempts at that instant did, not only the
last attempt's (which finds every transition already taken).
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, select
from sqlalchemy.sql.functions import coalesce

from arrears.lifecycle import is_open
from arrears.storage import message_counts
from arrears.storage.cycle import MOVES
from arrears.storage.tables import account, audit, cycle_run, message, payment, promise
from arrears.vocabulary import Exit, Stage

__all__ = [
    "AT_CLOSE",
    "HELD",
    "NOW",
    "AccountContext",
    "Contact",
    "PortfolioReport",
    "account_context",
    "latest_cycle_id",
    "letters_sent",
    "portfolio_report",
]


# `PortfolioReport.statuses_as_of`: the statuses the cycle's report read as it closed, or today's.
AT_CLOSE = "cycle close"
NOW = "now"
# `PortfolioReport.provider_failures`: messages an outage held back, never handed to the provider.
HELD = "held"


@dataclass
class PortfolioReport:
    cycle_id: int | None
    as_of: datetime | None
    by_stage_bucket: dict[str, dict[str, int]] = field(default_factory=dict)
    transitions: dict[str, dict[str, int]] = field(default_factory=dict)  # from -> to -> count, this cycle
    messages: dict[str, int] = field(default_factory=dict)  # status -> count, this cycle's messages
    blocked_by_reason: dict[str, int] = field(default_factory=dict)
    deferred_by_reason: dict[str, int] = field(default_factory=dict)
    # Failed ones by the vendor's error code (30007: the carrier filtered our text): a template or
    # sender every carrier refuses shows as one code, not as a count of failures only.
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    # What dispatch did in this cycle (every attempt at its instant), by outcome: what the CLI prints.
    dispatched: dict[str, int] = field(default_factory=dict)
    dispatch_blocked_by_reason: dict[str, int] = field(default_factory=dict)
    # What the provider refused, failed or held back in that dispatch: status -> reason -> count;
    # `held`: the messages an outage kept from being tried at all, by provider (`_held`).
    provider_failures: dict[str, dict[str, int]] = field(default_factory=dict)
    roll_rate: float | None = None  # share of delinquent accounts that moved to a later stage
    cure_rate: float | None = None  # share of delinquent accounts that cured or paid off
    # Whose statuses `messages` and the held messages count: "cycle close" (the report the cycle
    # stored as it closed) or "now" (read from the messages, while the cycle runs or when it
    # stored none: messages sent, delivered or failed since have moved on).
    statuses_as_of: str = NOW

    def as_json(self) -> dict[str, Any]:
        return {
            "cycle_id": self.cycle_id,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "accounts_by_stage_and_bucket": self.by_stage_bucket,
            "transitions": self.transitions,
            "messages_by_status": self.messages,
            "blocked_by_reason": self.blocked_by_reason,
            "scheduled_by_reason": self.deferred_by_reason,
            "failed_by_reason": self.failed_by_reason,
            "dispatched": self.dispatched,
            "dispatch_blocked_by_reason": self.dispatch_blocked_by_reason,
            "provider_failures": self.provider_failures,
            "statuses_as_of": self.statuses_as_of,
            "roll_rate": self.roll_rate,
            "cure_rate": self.cure_rate,
        }


def latest_cycle_id(connection: Connection) -> int | None:
    return connection.execute(select(func.max(cycle_run.c.id))).scalar()


def _attempts(connection: Connection, as_of: datetime) -> list[int]:
    """The cycle runs at this instant: a cycle retried after a failure is one cycle in several rows."""
    return list(connection.execute(select(cycle_run.c.id).where(cycle_run.c.as_of == as_of)).scalars())


def _dispatched(connection: Connection, cycle_ids: list[int]) -> tuple[Counter[str], Counter[str]]:
    """Dispatch outcomes audited by these cycle runs: by status, and blocks by reason.

    Summed from the counts written with them (`message_counts`); counted by the database from
    the rows themselves when some were written without their count."""
    return _by_status(_send_outcomes(connection, cycle_ids))


def _by_status(sends: Counter[tuple[str, str | None]]) -> tuple[Counter[str], Counter[str]]:
    statuses: Counter[str] = Counter()
    blocked: Counter[str] = Counter()
    for (status, reason), n in sends.items():
        statuses[status] += n
        if status == "blocked":
            blocked[reason or "unknown"] += n
    return statuses, blocked


def _provider_failures(sends: Counter[tuple[str, str | None]]) -> dict[str, dict[str, int]]:
    """What the provider failed, refused or held back among `sends`: status -> reason -> count. A
    failure, the carrier's opt-out, or a wait the provider asked for (busy, a recipient throttled,
    an outcome unknown), not a rule of ours."""
    found: Counter[tuple[str, str]] = Counter()
    for (status, reason), n in sends.items():
        why = reason or ""
        if (
            status == "failed"
            or (status == "blocked" and why.startswith("opt_out:carrier"))
            or (status == "scheduled" and why.startswith("provider:"))
        ):
            found[(status, why or "unknown")] += n
    by_status: dict[str, dict[str, int]] = {}
    for (status, why), n in sorted(found.items()):
        by_status.setdefault(status, {})[why] = n
    return by_status


def _send_outcomes(connection: Connection, cycle_ids: list[int]) -> Counter[tuple[str, str | None]]:
    """The send events of these cycle runs by (status, reason): summed from the counts written with
    them (`message_counts`), counted by the database from the rows themselves when some were
    written without their count (`_counted_dispatched`)."""
    counts = message_counts.counted(connection, cycle_ids)
    if counts is None:
        return _counted_dispatched(connection, cycle_ids)
    found: Counter[tuple[str, str | None]] = Counter()
    for (when, status, reason, _), n in counts.items():
        if when == "send" and status is not None:
            found[(status, reason)] += n
    return found


def _counted_dispatched(connection: Connection, cycle_ids: list[int]) -> Counter[tuple[str, str | None]]:
    """`_send_outcomes` counted by the database over the send events of these runs (found by the
    cycle and kind): a GROUP BY, never each row's JSON decoded here."""
    sends = (
        select(_field("status"), _field("reason"))
        .where(audit.c.cycle_id.in_(cycle_ids), audit.c.kind == "message", _field("when") == "send")
        .subquery()
    )
    return Counter(
        {
            (status, reason): n
            for status, reason, n in connection.execute(
                select(sends.c.status, sends.c.reason, func.count()).group_by(sends.c.status, sends.c.reason)
            )
        }
    )


def letters_sent(connection: Connection, as_of: datetime) -> int:
    """The letters the daily cycle at `as_of` handed to the provider, over every run at that
    instant, as `_dispatched` counts its messages: a run killed among the letters and its rerun are
    one cycle, and each letter counts once, in the run that recorded the provider's answer (a
    letter the killed run handed over unrecorded, in the rerun that finds it). Counted from the
    events those runs tagged with their id (`letters.mark_sent`): a few hundred rows found by the
    cycle and kind. Letters `arrears dispatch` or a review run sent are no cycle's."""
    return int(
        connection.execute(
            select(func.count()).where(
                audit.c.cycle_id.in_(_attempts(connection, as_of)), audit.c.kind == "letter"
            )
        ).scalar_one()
    )


def _field(name: str, table: Any = audit) -> Any:
    """One string field of an audit row's data, as SQL (NULL where absent), labelled by its name."""
    return table.c.data[name].as_string().label(name)


def _moves(
    connection: Connection, cycle_ids: list[int]
) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """The transitions audited by these cycle runs, as (from, to) counts; and the journeys, one per
    account: (its stage before its first transition, its stage after its last) counts.

    Each shard counted its own as it wrote them (`storage.cycle.MOVES`): those counts are summed
    when they account for every transition row of these runs and all come from one run. A rerun
    after a crash may have moved an account in two runs, whose journey is then one, not two; and
    a shard that left no count (written before counts were kept) would be missed: then the
    database counts the rows themselves."""
    theirs = and_(audit.c.cycle_id.in_(cycle_ids), audit.c.kind == "transition")
    total = connection.execute(select(func.count()).where(theirs)).scalar_one()
    recorded = connection.execute(
        select(audit.c.cycle_id, audit.c.data).where(audit.c.cycle_id.in_(cycle_ids), audit.c.kind == MOVES)
    ).all()
    if len({r.cycle_id for r in recorded}) <= 1 and sum(r.data["transitions"] for r in recorded) == total:
        moves: Counter[tuple[str, str]] = Counter()
        journeys: Counter[tuple[str, str]] = Counter()
        for r in recorded:
            moves.update({(a, b): n for a, b, n in r.data["moves"]})
            journeys.update({(a, b): n for a, b, n in r.data["journeys"]})
        return moves, journeys
    return _counted_moves(connection, theirs)


def _counted_moves(
    connection: Connection, theirs: ColumnElement[bool]
) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """`_moves` counted by the database over the transition rows `theirs` (found by the cycle and
    kind): two GROUP BYs, never the rows themselves in Python."""
    src, dst = _field("from"), _field("to")
    moves = Counter(
        {
            (a, b): n
            for a, b, n in connection.execute(select(src, dst, func.count()).where(theirs).group_by(src, dst))
        }
    )
    ends = (
        select(func.min(audit.c.id).label("first"), func.max(audit.c.id).label("last"))
        .where(theirs)
        .group_by(audit.c.account_id)
        .subquery()
    )
    first, last = audit.alias("first"), audit.alias("last")
    before, after = _field("from", first), _field("to", last)
    journeys = Counter(
        {
            (a, b): n
            for a, b, n in connection.execute(
                select(before, after, func.count())
                .select_from(
                    ends.join(first, first.c.id == ends.c.first).join(last, last.c.id == ends.c.last)
                )
                .group_by(before, after)
            )
        }
    )
    return moves, journeys


def portfolio_report(connection: Connection, *, cycle_id: int | None) -> PortfolioReport:
    as_of = (
        connection.execute(select(cycle_run.c.as_of).where(cycle_run.c.id == cycle_id)).scalar()
        if cycle_id
        else None
    )
    report = PortfolioReport(cycle_id=cycle_id, as_of=as_of)
    stored = _stored_report(connection, as_of) if as_of is not None else None
    if stored is not None:
        report.by_stage_bucket = stored["accounts_by_stage_and_bucket"]
    else:
        for stage, bucket, n in connection.execute(
            select(account.c.stage, account.c.bucket, func.count()).group_by(
                account.c.stage, account.c.bucket
            )
        ):
            report.by_stage_bucket.setdefault(stage, {})[bucket] = n
    if cycle_id is None or as_of is None:
        return report
    attempts = _attempts(connection, as_of)
    sends = _send_outcomes(connection, attempts)
    sent, blocked = _by_status(sends)
    report.dispatched, report.dispatch_blocked_by_reason = (
        dict(sorted(sent.items())),
        dict(sorted(blocked.items())),
    )
    moves, journeys = _moves(connection, attempts)
    for (src, dst), n in sorted(moves.items()):
        report.transitions.setdefault(src, {})[dst] = n
    failures = _provider_failures(sends)
    if stored is not None and all(key in stored for key in _STATUSES):
        # Read again from the messages, a past cycle's counts moved as its messages were sent,
        # delivered or failed on later days: the same `--cycle` said something else each day.
        report.statuses_as_of = AT_CLOSE
        report.messages, report.blocked_by_reason, report.deferred_by_reason = (
            dict(stored[key]) for key in _STATUSES
        )
        report.failed_by_reason = dict(stored.get("failed_by_reason") or {})  # kept since 2026-12
        held = (stored.get("provider_failures") or {}).get(HELD) or {}
    else:
        _count_messages(connection, report, as_of)
        held = _held(connection, as_of)
    if held:
        failures[HELD] = dict(held)
    report.provider_failures = dict(sorted(failures.items()))
    if stored is not None:  # its rates were taken against the portfolio it left, not today's
        report.roll_rate, report.cure_rate = stored.get("roll_rate"), stored.get("cure_rate")
        return report
    # Rates over the accounts delinquent when the cycle began: those open now, less the ones that
    # fell delinquent during it, plus the ones that left it.
    open_now = sum(
        n for stage, buckets in report.by_stage_bucket.items() if is_open(stage) for n in buckets.values()
    )
    was_open = Counter({(b, a): n for (b, a), n in journeys.items() if is_open(b)})
    newly = sum(n for (b, a), n in journeys.items() if not is_open(b) and is_open(a))
    left = sum(n for (_, a), n in was_open.items() if not is_open(a))
    base = open_now - newly + left
    if base > 0:
        report.roll_rate = round(
            sum(n for (b, a), n in was_open.items() if is_open(a) and Stage(a).rank > Stage(b).rank) / base, 4
        )
        report.cure_rate = round(
            sum(n for (_, a), n in was_open.items() if a in (Exit.CURED, Exit.PAID_OFF)) / base, 4
        )
    return report


# The stored report's counts of the cycle's messages, as `PortfolioReport.as_json` names them.
_STATUSES = ("messages_by_status", "blocked_by_reason", "scheduled_by_reason")


def _count_messages(connection: Connection, report: PortfolioReport, as_of: datetime) -> None:
    """The messages the cycle at `as_of` decided, by their status now and why."""
    for status, reason, n in connection.execute(
        select(message.c.status, message.c.reason, func.count())
        .where(message.c.created_at == as_of)
        .group_by(message.c.status, message.c.reason)
    ):
        report.messages[status] = report.messages.get(status, 0) + n
        if status == "blocked":
            report.blocked_by_reason[reason or "unknown"] = (
                report.blocked_by_reason.get(reason or "unknown", 0) + n
            )
        elif status == "scheduled" and reason:
            report.deferred_by_reason[reason] = report.deferred_by_reason.get(reason, 0) + n
        elif status == "failed":
            code = reason or "unknown"
            report.failed_by_reason[code] = report.failed_by_reason.get(code, 0) + n


def _held(connection: Connection, as_of: datetime) -> dict[str, int]:
    """The messages an outage held back at `as_of`, by reason (`provider:<name>:outage`): due then
    and waiting for the provider. Dispatch marks them waiting without trying them, so no send
    event counts them (only the outage event did); the few the probe batch tried wait until the
    provider's Retry-After, past `as_of`, and are counted by their send events instead."""
    return {
        reason: n
        for reason, n in connection.execute(
            select(message.c.reason, func.count())
            .where(
                message.c.status == "scheduled",
                message.c.not_before <= as_of,
                message.c.reason.like("provider:%:outage"),
            )
            .group_by(message.c.reason)
            .order_by(message.c.reason)
        )
    }


def _stored_report(connection: Connection, as_of: datetime) -> dict[str, Any] | None:
    """The report the cycle at `as_of` stored when it closed (its last finished attempt's), or None
    while it runs or when it failed. Its portfolio and rates are the cycle's: read again later from
    the accounts, `arrears report --cycle` of an earlier cycle gave today's book under its id, and
    rates recomputed against it, unlike the cycle's artifacts."""
    for stats in connection.execute(
        select(cycle_run.c.stats)
        .where(
            cycle_run.c.as_of == as_of, cycle_run.c.status == "finished", cycle_run.c.finished_at.is_not(None)
        )
        .order_by(cycle_run.c.id.desc())
    ).scalars():
        stored = (stats or {}).get("report")
        if isinstance(stored, dict) and "accounts_by_stage_and_bucket" in stored:
            return stored
    return None


@dataclass(frozen=True, slots=True)
class Contact:
    """One message to the borrower, as a reviewer reads it (no address, no text)."""

    at: datetime
    channel: str
    template: str
    status: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class AccountContext:
    """What a reviewer needs beside the review itself: the segment and the last contacts."""

    segment: str
    contacts: tuple[Contact, ...]


def account_context(connection: Connection, account_id: str, *, contacts: int = 5) -> AccountContext:
    """The account's segment and its last `contacts` messages, latest first."""
    segment = connection.execute(
        select(account.c.segment).where(account.c.account_id == account_id)
    ).scalar_one()
    at = coalesce(message.c.sent_at, message.c.not_before)
    rows = connection.execute(
        select(at.label("at"), message.c.channel, message.c.template, message.c.status, message.c.reason)
        .where(message.c.account_id == account_id)
        .order_by(at.desc(), message.c.id.desc())
        .limit(contacts)
    ).all()
    return AccountContext(
        segment, tuple(Contact(r.at, r.channel, r.template, r.status, r.reason) for r in rows)
    )


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """One cycle in the trend: the portfolio after it and what happened in it."""

    business_date: date
    as_of: datetime
    by_stage: dict[str, int]
    roll_rate: float | None
    cure_rate: float | None
    promises_kept: int
    collected: dict[str, Decimal]  # currency -> amount of the payments it applied
    messages: dict[str, int]  # dispatch outcome -> count

    def as_json(self) -> dict[str, Any]:
        return {
            "business_date": self.business_date.isoformat(),
            "as_of": self.as_of.isoformat(),
            "accounts_by_stage": self.by_stage,
            "roll_rate": self.roll_rate,
            "cure_rate": self.cure_rate,
            "promises_kept": self.promises_kept,
            "collected": {c: str(a) for c, a in self.collected.items()},
            "messages_by_outcome": self.messages,
        }


def trend(connection: Connection, *, current: PortfolioReport, cycles: int = 30) -> list[TrendPoint]:
    """The last `cycles` cycles, oldest first, the current one (`current`, not closed yet) last.
    A finished cycle's portfolio, rates and dispatch outcomes come from the report it stored when
    it closed (not from its audit rows again: 30 cycles of a large portfolio are millions of
    rows); promises kept and payments applied from the tables, so each is counted once whatever
    the attempts."""
    finished: dict[datetime, tuple[date, dict[str, Any]]] = {}
    # The current cycle is one of the `cycles`; one more finished cycle bounds the first one's window.
    wanted = cycles + (0 if current.as_of is not None else 1)
    for as_of, day, stats in connection.execute(
        select(cycle_run.c.as_of, cycle_run.c.business_date, cycle_run.c.stats)
        # A failed or crashed run stored no report: drawn, it read as a day with no account at all.
        .where(cycle_run.c.finished_at.is_not(None), cycle_run.c.status == "finished")
        .order_by(cycle_run.c.as_of.desc(), cycle_run.c.id.desc())
    ):
        if current.as_of is not None and as_of >= current.as_of:
            continue
        finished.setdefault(as_of, (day, (stats or {}).get("report") or {}))
        if len(finished) >= wanted:
            break
    instants = sorted(finished)
    points: list[tuple[datetime, date, dict[str, Any]]] = [(i, *finished[i]) for i in instants]
    if current.as_of is not None:
        day = connection.execute(
            select(cycle_run.c.business_date).where(cycle_run.c.id == current.cycle_id)
        ).scalar_one()
        points.append((current.as_of, day, current.as_json()))
    found: list[TrendPoint] = []
    for index, (as_of, day, report) in enumerate(points):
        if index == 0 and len(points) > cycles:
            continue  # only the lower bound of the next cycle's window
        after = points[index - 1][0] if index > 0 else None
        found.append(
            TrendPoint(
                business_date=day,
                as_of=as_of,
                by_stage={
                    stage: sum(buckets.values())
                    for stage, buckets in sorted(report.get("accounts_by_stage_and_bucket", {}).items())
                },
                roll_rate=report.get("roll_rate"),
                cure_rate=report.get("cure_rate"),
                promises_kept=_promises_kept(connection, after, as_of),
                collected=_collected(connection, after, as_of),
                messages=_outcomes(connection, as_of, report),
            )
        )
    return found


def _outcomes(connection: Connection, as_of: datetime, report: dict[str, Any]) -> dict[str, int]:
    """Dispatch outcomes of the cycle at `as_of`: those its report stored when it closed (no attempt
    at an instant comes after a finished one, so they are final), read again from the audit trail
    only for a report stored before it carried them."""
    stored = report.get("dispatched")
    if stored is not None:
        return dict(sorted(stored.items()))
    return dict(sorted(_dispatched(connection, _attempts(connection, as_of))[0].items()))


def _promises_kept(connection: Connection, after: datetime | None, until: datetime) -> int:
    query = select(func.count()).where(promise.c.status == "kept", promise.c.resolved_at <= until)
    if after is not None:
        query = query.where(promise.c.resolved_at > after)
    return int(connection.execute(query).scalar_one())


def _collected(connection: Connection, after: datetime | None, until: datetime) -> dict[str, Decimal]:
    query = (
        select(account.c.currency, func.sum(payment.c.amount))
        .join(account, account.c.account_id == payment.c.account_id)
        .where(payment.c.applied_at <= until)
        .group_by(account.c.currency)
    )
    if after is not None:
        query = query.where(payment.c.applied_at > after)
    return {currency: Decimal(total) for currency, total in connection.execute(query) if total is not None}
