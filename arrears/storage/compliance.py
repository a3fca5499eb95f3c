"""What the compliance report reads: verdicts held back, messages sent, holds and opt-outs, and
the re-checks a cycle's dispatch recorded as it sent.

Each function takes the caller's connection and does not commit; the re-check of every send
against the rules is pure and lives in `arrears.compliance.report`. Which sends a read concerns
is a condition on the message table: those of a period (`sent_between`) or of a dispatch batch
(`sent_among`).
"""

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import groupby
from operator import attrgetter
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Connection, and_, case, func, or_, select

from arrears.storage import message_counts
from arrears.storage._common import event, insert_events
from arrears.storage.bulk import among, chunks
from arrears.storage.tables import account, audit, contact, cycle_run, hold, mailing_region, message

__all__ = [
    "CHECK",
    "Send",
    "held_back_by_rule",
    "hold_intervals",
    "opted_out_numbers",
    "record_check",
    "recorded_checks",
    "sends_of_borrowers",
    "sends_of_messages",
    "sent_among",
    "sent_between",
    "sent_count",
]

# The audit kind of a dispatch batch's re-check of its sends (`record_check`).
CHECK = "compliance_check"

_FOREVER = datetime.max.replace(tzinfo=UTC)


def _between(column: Any, start: datetime | None, end: datetime | None) -> Any:
    parts = [column.is_not(None)]
    if start is not None:
        parts.append(column >= start)
    if end is not None:
        parts.append(column < end)
    return and_(*parts)


def sent_between(start: datetime | None, end: datetime | None) -> ColumnElement[bool]:
    """The messages sent in [start, end)."""
    return _between(message.c.sent_at, start, end)


def sent_among(ids: list[int]) -> ColumnElement[bool]:
    """The messages `ids` that were sent (a dispatch batch's: a few thousand at most)."""
    return and_(among(message.c.id, ids), message.c.sent_at.is_not(None))


def sent_count(connection: Connection, start: datetime | None, end: datetime | None) -> int:
    """How many messages were sent in [start, end)."""
    return int(connection.execute(select(func.count()).where(sent_between(start, end))).scalar_one())


class Send(NamedTuple):
    """A send as the re-check reads it, in the order of `_send_columns`. A tuple, not SQLAlchemy's
    row: the re-check reads a dozen fields of every send, and a row's attribute costs ~10 times
    a tuple's."""

    borrower_id: str
    id: int
    account_id: str
    address: str
    template: str
    body: str | None
    name: str | None
    lender: str | None
    sent_at: datetime
    channel: str
    jurisdiction: str
    timezone: str
    region: str | None  # the mailing address's (tables.mailing_region)


def _send_columns() -> tuple[Any, ...]:
    """A send as the re-check reads it: the message, its account's jurisdiction and zone, and
    the two template values it reads (the names), not the whole JSON document decoded."""
    return (
        account.c.borrower_id,
        message.c.id,
        message.c.account_id,
        message.c.address,
        message.c.template,
        message.c.body,
        message.c.params["name"].as_string().label("name"),
        message.c.params["lender"].as_string().label("lender"),
        message.c.sent_at,
        message.c.channel,
        account.c.jurisdiction,
        account.c.timezone,
        mailing_region(),
    )


def sends_of_messages(connection: Connection, ids: list[int]) -> list[Send]:
    """The sent messages among `ids`, as `sends_of_borrowers` reads them, in id order."""
    found: list[Send] = []
    for part in chunks(sorted(ids)):
        found += map(
            Send._make,
            connection.execute(
                select(*_send_columns())
                .join(account, account.c.account_id == message.c.account_id)
                .where(sent_among(part))
                .order_by(message.c.id)
            ),
        )
    return found


def record_check(
    connection: Connection,
    *,
    at: datetime,
    cycle_id: int,
    ids: list[int],
    sent_checked: int,
    violations: list[dict[str, Any]],
) -> None:
    """Record that a batch of a cycle's sends (messages `ids`) was re-checked: how many, and what
    was found."""
    first, last = min(ids), max(ids)
    detail = f"messages {first}-{last}: {sent_checked} sends re-checked, {len(violations)} violations"
    data = {"messages": [first, last], "sent_checked": sent_checked, "violations": violations}
    insert_events(connection, [event(None, at, CHECK, detail, data, cycle_id=cycle_id)])


def recorded_checks(connection: Connection, cycle_id: int) -> tuple[int, list[dict[str, Any]]] | None:
    """The sends a cycle's dispatch re-checked as it recorded them, and the violations found, over
    every attempt at the cycle's instant (a cycle rerun after a crash is one cycle in several
    rows); None when it recorded no re-check."""
    instant = select(cycle_run.c.as_of).where(cycle_run.c.id == cycle_id).scalar_subquery()
    attempts = select(cycle_run.c.id).where(cycle_run.c.as_of == instant)
    rows = connection.execute(
        select(audit.c.data).where(audit.c.cycle_id.in_(attempts), audit.c.kind == CHECK)
    ).scalars()
    checked, violations, any_ = 0, [], False
    for data in rows:
        any_ = True
        checked += int(data["sent_checked"])
        violations += data["violations"]
    return (checked, violations) if any_ else None


def sends_of_borrowers(
    connection: Connection,
    *,
    start: datetime | None,
    end: datetime | None,
    since: datetime | None,
    crowded: Iterable[tuple[timedelta, int]] = (),
) -> Iterator[list[Send]]:
    """For each borrower sent a message in [start, end): every message sent to them in [since, end),
    in the order sent, with its account's jurisdiction and zone and the name and lender it was
    filled with (None where absent). With `crowded` (window, limit) pairs, only the borrowers
    sent more than `limit` messages in [start - window, end) for one of them (`since` at or before
    every `start - window`): the only ones a cap of that window and limit can find over the period.

    Streamed a borrower at a time: the re-check holds one borrower's messages, never a whole
    cycle's sends (600,000 bodies for a million accounts).
    """
    borrowers = (
        select(account.c.borrower_id)
        .join(message, message.c.account_id == account.c.account_id)
        .where(sent_between(start, end))
    )
    # Of each window only its least limit: a borrower over any limit of a window is over that one,
    # and SQLite sums a window's count once per comparison it appears in (five caps: 0.62 -> 0.49
    # s over 120,000 sends).
    least: dict[timedelta, int] = {}
    for window, limit in crowded:
        least[window] = min(limit, least.get(window, limit))
    if least:
        # One pass over the period's sends: per borrower, a count for each window.
        sent = {
            window: func.count()
            if start is None
            else func.sum(case((message.c.sent_at >= start - window, 1), else_=0))
            for window in least
        }
        over = (
            select(account.c.borrower_id)
            .join(message, message.c.account_id == account.c.account_id)
            .where(sent_between(since, end))
            .group_by(account.c.borrower_id)
            .having(or_(*(sent[window] > limit for window, limit in least.items())))
        )
        borrowers = borrowers.where(account.c.borrower_id.in_(over))
    rows = connection.execution_options(yield_per=5_000).execute(
        select(*_send_columns())
        .join(account, account.c.account_id == message.c.account_id)
        .where(sent_between(since, end), account.c.borrower_id.in_(borrowers))
        .order_by(account.c.borrower_id, message.c.sent_at, message.c.id)
    )
    for _, sends in groupby(map(Send._make, rows), key=attrgetter("borrower_id")):
        yield list(sends)


def held_back_by_rule(
    connection: Connection, start: datetime | None, end: datetime | None, cycle_id: int | None
) -> tuple[dict[str, int], dict[str, int]]:
    """(deferrals, blocks) recorded in [start, end), by the rule each names; of one cycle's audit
    events when `cycle_id` is given, summed from their counts where every one was counted
    (`message_counts`)."""
    counts = message_counts.counted(connection, [cycle_id], start, end) if cycle_id is not None else None
    if counts is None:
        return _read_held_back(connection, start, end, cycle_id)
    deferrals: Counter[str] = Counter()
    blocks: Counter[str] = Counter()
    for (_, status, reason, rule), n in counts.items():
        named = rule or reason  # as the events are read: the rule, else the reason
        if status == "blocked":
            blocks[named or "unknown"] += n
        elif status == "scheduled" and named:
            deferrals[named] += n
    return dict(deferrals), dict(blocks)


def _read_held_back(
    connection: Connection, start: datetime | None, end: datetime | None, cycle_id: int | None
) -> tuple[dict[str, int], dict[str, int]]:
    """`held_back_by_rule` read from the message events themselves."""
    # Sends are most of the message events and count for nothing here: left in the database.
    held_back = audit.c.data["status"].as_string().in_(("blocked", "scheduled"))
    where = [audit.c.kind == "message", _between(audit.c.at, start, end), held_back]
    if cycle_id is not None:
        where.append(audit.c.cycle_id == cycle_id)
    deferrals: Counter[str] = Counter()
    blocks: Counter[str] = Counter()
    for (data,) in connection.execute(select(audit.c.data).where(*where)):
        rule = (data or {}).get("rule") or (data or {}).get("reason")
        status = (data or {}).get("status")
        if status == "blocked":
            blocks[rule or "unknown"] += 1
        elif status == "scheduled" and rule:
            deferrals[rule] += 1
    return dict(deferrals), dict(blocks)


def hold_intervals(
    connection: Connection, sent: ColumnElement[bool]
) -> dict[str, list[tuple[str, datetime, datetime]]]:
    """Per account, (rule, from, until) for every hold and opt-out, from the ledger and the audit trail.

    Only accounts with a message among `sent` are read (a join, never a list of ids).
    """
    sent_accounts = select(message.c.account_id).where(sent).distinct()
    found: dict[str, list[tuple[str, datetime, datetime]]] = defaultdict(list)
    for account_id, kind, placed_at, lifted_at in connection.execute(
        select(hold.c.account_id, hold.c.kind, hold.c.placed_at, hold.c.lifted_at).where(
            hold.c.account_id.in_(sent_accounts)
        )
    ):
        found[account_id].append((f"hold:{kind}", placed_at, lifted_at or _FOREVER))
    # The audit trail: hold events (placed / lifted) and opt-out / opt-in events, in order.
    opened: dict[tuple[str, str], datetime] = {}
    for r in connection.execute(
        select(audit.c.account_id, audit.c.kind, audit.c.at, audit.c.data)
        .where(audit.c.account_id.in_(sent_accounts), audit.c.kind.in_(("hold", "opt_out", "opt_in")))
        .order_by(audit.c.at, audit.c.id)
    ):
        data = r.data or {}
        if r.kind == "hold" and data.get("hold"):
            key = (r.account_id, f"hold:{data['hold']}")
            lifting = data.get("action") == "lifted"
        elif r.kind in ("opt_out", "opt_in"):
            key = (r.account_id, "opt_out")
            lifting = r.kind == "opt_in" and data.get("action") == "lifted"
        else:
            continue
        if lifting:
            if key in opened:
                found[r.account_id].append((key[1], opened.pop(key), r.at))
        else:
            opened.setdefault(key, r.at)
    for (account_id, rule), since in opened.items():
        found[account_id].append((rule, since, _FOREVER))
    return found


def opted_out_numbers(connection: Connection, sent: ColumnElement[bool]) -> dict[tuple[str, str], datetime]:
    """(account, number) -> when the number opted out, for the numbers of the messages `sent`."""
    numbers = select(message.c.account_id, message.c.address).where(sent).distinct().subquery()
    return {
        (account_id, address): opted_out_at
        for account_id, address, opted_out_at in connection.execute(
            select(numbers.c.account_id, numbers.c.address, contact.c.opted_out_at)
            .join(account, account.c.account_id == numbers.c.account_id)
            .join(
                contact,
                and_(contact.c.borrower_id == account.c.borrower_id, contact.c.address == numbers.c.address),
            )
            .where(contact.c.opted_out_at.is_not(None))
        )
    }
