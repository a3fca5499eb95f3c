"""A cycle's message events counted as they are written, so that its report sums a few hundred
counts instead of reading the data of every message event.

A million-account cycle writes ~600,000 message events (a verdict at decision time, an outcome
at send time). Its report needs them only as counts: what dispatch did, by status and reason
(`storage.reports`), and the deferrals and blocks by rule (`storage.compliance`). Reading every
row's JSON for that took most of the report's time. So `insert_events` adds, beside the message
events of a cycle it writes, one `message_counts` event per (cycle run, instant) counting them in
the same transaction, and the readers sum those, as the report sums the shards' transition counts
(`storage.cycle.MOVES`). When some message event of the runs was written without its count (by a
writer that did not go through `insert_events`), `counted` says so and the readers read the rows.
"""

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from arrears.storage.tables import audit

__all__ = ["COUNTS", "Outcome", "counted", "counts_of"]

# The audit kind of a count of message events.
COUNTS = "message_counts"

# (when, status, reason, rule) of a message event's data: when is "decision" or "send".
Outcome = tuple[str | None, str | None, str | None, str | None]


def counts_of(events: Sequence[dict[str, Any]], actor: str) -> list[dict[str, Any]]:
    """The `message_counts` events of the message events of a cycle among `events` (rows made by
    `_common.event`): one per cycle run and instant, each an event row too."""
    found: defaultdict[tuple[int, datetime], Counter[Outcome]] = defaultdict(Counter)
    accounts: defaultdict[tuple[int, datetime], set[str]] = defaultdict(set)
    for e in events:
        if e["kind"] == "message" and e.get("cycle_id") is not None:
            data = e["data"] or {}
            outcome = (data.get("when"), data.get("status"), data.get("reason"), data.get("rule"))
            found[(e["cycle_id"], e["at"])][outcome] += 1
            accounts[(e["cycle_id"], e["at"])].add(e["account_id"] or "")
    rows = []
    for (cycle_id, at), counts in found.items():
        counted_accounts = accounts[(cycle_id, at)]
        rows.append(
            {
                "account_id": None,
                "at": at,
                "kind": COUNTS,
                # The accounts counted, as the shards' transition counts name theirs: a reader of
                # the trail sees whose events these are.
                "detail": f"{counts.total()} message events of "
                f"{min(counted_accounts)} to {max(counted_accounts)}",
                "data": {"messages": counts.total(), "counts": [[*k, n] for k, n in counts.items()]},
                "actor": actor,
                "cycle_id": cycle_id,
            }
        )
    return rows


def counted(
    connection: Connection,
    cycle_ids: Sequence[int],
    start: datetime | None = None,
    end: datetime | None = None,
) -> Counter[Outcome] | None:
    """The message events of these cycle runs (those at an instant in [start, end), where given)
    by outcome, summed from their counts; None when the counts miss some message event of the
    runs, which the caller must then read itself."""
    written = connection.execute(
        select(func.count()).where(audit.c.cycle_id.in_(cycle_ids), audit.c.kind == "message")
    ).scalar_one()
    rows = connection.execute(
        select(audit.c.at, audit.c.data).where(audit.c.cycle_id.in_(cycle_ids), audit.c.kind == COUNTS)
    ).all()
    if sum(int(data["messages"]) for _, data in rows) != written:
        return None
    total: Counter[Outcome] = Counter()
    for at, data in rows:
        if (start is None or at >= start) and (end is None or at < end):
            for when, status, reason, rule, n in data["counts"]:
                total[(when, status, reason, rule)] += n
    return total
