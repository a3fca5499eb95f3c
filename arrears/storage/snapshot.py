"""What a cycle decided, in a form two databases can be compared by: the judge of sameness when
the same portfolio is run two ways (in one process, or fanned out to workers: benchmarks/workers.py).

Only decisions are kept: each account's stage, episode and segment; each outbox row by its
idempotency key with its status, template and body; each audit event by account, kind and
detail. Row ids, wall-clock instants and provider ids differ from run to run by nature and are
left out, also where an audit detail names them ("message 868 sent via sandbox (ab12…)" is
compared as "message # sent via sandbox (#)", "letter 3 accepted by sandbox as ltr_9f…" as
"letter # accepted by sandbox as #"). The dispatch's compliance re-checks are records
of a batch, not decisions (how sends fall into batches differs by design), and are left out too,
as are the shards' transition counts and the counts of message events (the transitions and
message events themselves are compared).
Rows come in a total order, streamed, so a million-account portfolio is compared without holding
either side in memory.
"""

import re
from collections.abc import Iterator
from itertools import groupby

from sqlalchemy import Connection, func, select

from arrears.storage.compliance import CHECK
from arrears.storage.cycle import MOVES
from arrears.storage.message_counts import COUNTS
from arrears.storage.tables import account, audit, message

__all__ = ["SNAPSHOT_TABLES", "decision_counts", "decision_rows"]

SNAPSHOT_TABLES = ("account", "message", "audit")
_BATCH = 5_000  # rows fetched at a time
# Row ids and provider ids inside audit details ("message 868 sent via sandbox (…)", "repossession
# review 701 opened", "plan offer 12 declined": storage/outbox.py, reviews.py, plans.py, …).
_ROW_ID = re.compile(r"\b(message|review|referral|plan|offer|promise|letter|order) \d+\b")
_PROVIDER_ID = re.compile(r"( via \S+) \([^)]*\)")
# A vendor's id for a letter or a repossession order (storage/letters.py, assignments.py).
_VENDOR_ID = re.compile(r"(accepted by \S+|assigned to the agency \(\S+\)) as \S+")


_DECIDED = audit.c.kind.not_in((CHECK, MOVES, COUNTS))


def _without_ids(detail: str) -> str:
    return _VENDOR_ID.sub(r"\1 as #", _PROVIDER_ID.sub(r"\1 (#)", _ROW_ID.sub(r"\1 #", detail)))


def decision_rows(connection: Connection, table: str) -> Iterator[tuple[object, ...]]:
    """The decision columns of `table` (one of SNAPSHOT_TABLES), every row, in a total order."""
    if table == "account":
        query = select(account.c.account_id, account.c.stage, account.c.episode, account.c.segment).order_by(
            account.c.account_id
        )
    elif table == "message":
        query = select(
            message.c.idempotency_key,
            message.c.account_id,
            message.c.status,
            message.c.template,
            message.c.body,
            message.c.reason,
        ).order_by(message.c.idempotency_key)
    elif table == "audit":
        yield from _audit_rows(connection)
        return
    else:
        raise ValueError(f"no decision snapshot of {table!r}: one of {SNAPSHOT_TABLES}")
    result = connection.execution_options(stream_results=True, yield_per=_BATCH).execute(query)
    for row in result:
        yield tuple(row)


def _audit_rows(connection: Connection) -> Iterator[tuple[object, ...]]:
    """Audit events without the ids in their details, sorted within each account: the ids
    decide the database's order of an account's events, so the order is made after masking."""
    query = (
        select(audit.c.account_id, audit.c.kind, audit.c.detail).where(_DECIDED).order_by(audit.c.account_id)
    )
    result = connection.execution_options(stream_results=True, yield_per=_BATCH).execute(query)
    for account_id, events in groupby(result, key=lambda row: row.account_id):
        yield from sorted(((account_id, kind, _without_ids(detail)) for _, kind, detail in events), key=str)


def decision_counts(connection: Connection) -> dict[str, int]:
    """Rows per snapshot table: the size of what `decision_rows` compares."""
    counted = {
        name: select(func.count()).select_from(table)
        for name, table in (("account", account), ("message", message))
    }
    counted["audit"] = select(func.count()).where(_DECIDED)
    return {name: int(connection.execute(counted[name]).scalar_one()) for name in SNAPSHOT_TABLES}
