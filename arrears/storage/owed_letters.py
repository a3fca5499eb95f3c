"""Which accounts a stage's entry owes a letter: the 催收函 of a CN account entering legal
referral, written once per stay in the stage (`tasks.lifecycle_letters.write_collection_notices`).

Apart from `arrears.storage.letters`, which keeps the letters themselves: this reads accounts,
and asks of letters only whether one was written.

Functions take the caller's connection and do not commit.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from arrears.storage.tables import account, letter

__all__ = ["OwedNotice", "notices_owed"]


@dataclass(frozen=True, slots=True)
class OwedNotice:
    """An account in a stage whose entry owes it a letter, with what the letter states."""

    account_id: str
    episode: int
    jurisdiction: str
    timezone: str
    currency: str
    past_due: Any
    stage_since: datetime


def notices_owed(
    connection: Connection, *, kind: str, stage: str, jurisdictions: Sequence[str]
) -> list[OwedNotice]:
    """Accounts in `stage` in these jurisdictions with no `kind` letter written since they entered
    it (one query): the 催收函 of a CN account entering legal referral."""
    if not jurisdictions:
        return []
    written = (
        select(letter.c.id)
        .where(
            letter.c.account_id == account.c.account_id,
            letter.c.kind == kind,
            letter.c.created_at >= account.c.stage_since,
        )
        .exists()
    )
    rows = connection.execute(
        select(
            account.c.account_id,
            account.c.episode,
            account.c.jurisdiction,
            account.c.timezone,
            account.c.currency,
            account.c.past_due_amount,
            account.c.stage_since,
        )
        .where(account.c.stage == stage, account.c.jurisdiction.in_(list(jurisdictions)), ~written)
        .order_by(account.c.account_id)
    ).all()
    return [OwedNotice(*r) for r in rows]
