"""The outbox rows a shard's accounts already have in the stage episode they are in.

On every day but an account's first in a stage, nine in ten of the messages the rules find it due
are these (a second day of 20,000 accounts: 11,105 of 12,213). The outbox keeps the row decided
first (its keys are once-only, `storage.bulk.insert_ignore`), so deciding them again, rendering,
checking the content, the hours and the caps at ~30 µs a message, only for the insert to drop
them, cost a second day's advance about a third of its CPU. The rules skip the keys found here
(`Facts.decided`).

An account's outbox rows of earlier episodes pile up over the years (tens to hundreds), and read
through an index on the account alone each was visited to be dropped (with 31 old messages an
account, 19-23 µs an account instead of 3). The rows are looked up by (account, episode, stage) in
`ix_message_account_episode`: the accounts' current episodes are a list the lookup walks, which
SQLite takes as the outer loop (joined, its planner went from the message table's range of the
shard's accounts instead, and read them all).
"""

from collections import defaultdict

from sqlalchemy import Connection, select, tuple_

from arrears.storage.bulk import in_range
from arrears.storage.tables import account, message

__all__ = ["decided_keys"]


def decided_keys(connection: Connection, lo: str, hi: str | None) -> dict[str, frozenset[str]]:
    """Per account with lo <= id < hi, the idempotency keys of its outbox rows of its current stage
    and episode, in one query (none on an account's first day in a stage)."""
    current = select(account.c.account_id, account.c.episode, account.c.stage).where(
        in_range(account.c.account_id, lo, hi)
    )
    found: defaultdict[str, set[str]] = defaultdict(set)
    for account_id, key in connection.execute(
        select(message.c.account_id, message.c.idempotency_key).where(
            tuple_(message.c.account_id, message.c.episode, message.c.stage).in_(current)
        )
    ):
        found[account_id].add(key)
    return {k: frozenset(v) for k, v in found.items()}
