"""What the compliance report reads: verdicts held back, messages sent, holds and opt-outs.

Each function takes the caller's connection and does not commit; the re-check of every send
against the rules is pure and lives in `arrears.compliance.report`.
"""

from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import groupby
from operator import attrgetter
from typing import Any

from sqlalchemy import Connection, Row, and_, select

from arrears.storage.tables import account, audit, contact, hold, message

__all__ = ["held_back_by_rule", "hold_intervals", "opted_out_numbers", "sends_of_borrowers"]

_FOREVER = datetime.max.replace(tzinfo=UTC)


def _between(column: Any, start: datetime | None, end: datetime | None) -> Any:
    parts = [column.is_not(None)]
    if start is not None:
        parts.append(column >= start)
    if end is not None:
        parts.append(column < end)
    return and_(*parts)


def sends_of_borrowers(
    connection: Connection, *, start: datetime | None, end: datetime | None, since: datetime | None
) -> Iterator[list[Row[*tuple[Any, ...]]]]:
    """For each borrower sent a message in [start, end): every message sent to them in [since, end),
    in the order sent, with its account's jurisdiction and zone and the name and lender it was
    filled with (None where absent).

    Streamed a borrower at a time: the re-check holds one borrower's messages, never a whole
    cycle's sends (600,000 bodies for a million accounts).
    """
    borrowers = (
        select(account.c.borrower_id)
        .join(message, message.c.account_id == account.c.account_id)
        .where(_between(message.c.sent_at, start, end))
    )
    rows = connection.execution_options(yield_per=5_000).execute(
        select(
            account.c.borrower_id,
            message.c.id,
            message.c.account_id,
            message.c.address,
            message.c.template,
            message.c.body,
            # The two template values the re-check reads (the names), not the whole JSON document
            # decoded for every send.
            message.c.params["name"].as_string().label("name"),
            message.c.params["lender"].as_string().label("lender"),
            message.c.sent_at,
            message.c.channel,
            account.c.jurisdiction,
            account.c.timezone,
        )
        .join(account, account.c.account_id == message.c.account_id)
        .where(_between(message.c.sent_at, since, end), account.c.borrower_id.in_(borrowers))
        .order_by(account.c.borrower_id, message.c.sent_at, message.c.id)
    )
    for _, sends in groupby(rows, key=attrgetter("borrower_id")):
        yield list(sends)


def held_back_by_rule(
    connection: Connection, start: datetime | None, end: datetime | None, cycle_id: int | None
) -> tuple[dict[str, int], dict[str, int]]:
    """(deferrals, blocks) recorded in [start, end), by the rule each names; of one cycle's audit
    events when `cycle_id` is given."""
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
    connection: Connection, start: datetime | None, end: datetime | None
) -> dict[str, list[tuple[str, datetime, datetime]]]:
    """Per account, (rule, from, until) for every hold and opt-out, from the ledger and the audit trail.

    Only accounts with a message sent in the period are read (a join, never a list of ids).
    """
    sent_accounts = select(message.c.account_id).where(_between(message.c.sent_at, start, end)).distinct()
    found: dict[str, list[tuple[str, datetime, datetime]]] = defaultdict(list)
    for r in connection.execute(
        select(hold.c.account_id, hold.c.kind, hold.c.placed_at, hold.c.lifted_at).where(
            hold.c.account_id.in_(sent_accounts)
        )
    ):
        found[r.account_id].append((f"hold:{r.kind}", r.placed_at, r.lifted_at or _FOREVER))
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


def opted_out_numbers(
    connection: Connection, start: datetime | None, end: datetime | None
) -> dict[tuple[str, str], datetime]:
    """(account, number) -> when the number opted out, for the numbers messaged in the period."""
    sent = (
        select(message.c.account_id, message.c.address)
        .where(_between(message.c.sent_at, start, end))
        .distinct()
        .subquery()
    )
    return {
        (r.account_id, r.address): r.opted_out_at
        for r in connection.execute(
            select(sent.c.account_id, sent.c.address, contact.c.opted_out_at)
            .join(account, account.c.account_id == sent.c.account_id)
            .join(
                contact,
                and_(contact.c.borrower_id == account.c.borrower_id, contact.c.address == sent.c.address),
            )
            .where(contact.c.opted_out_at.is_not(None))
        )
    }
