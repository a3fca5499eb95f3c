"""A borrower's contact history as the frequency caps count it, read in bulk for a shard or a batch.

A lender runs the cycle every day for years, so an account's outbox rows pile up: tens to hundreds
of messages of episodes long over. The caps count only the sends of the last few days and what is
in flight, and every shard of the advance and every dispatch batch reads them for thousands of
accounts. Read through an index on the account alone, each read visited every message the account
ever had. It is read in two parts joined by UNION ALL, each going from the account straight to the
rows it wants: the sends after `since` (`ix_message_account_sent`: account, sent_at) and the
messages of the stage episode the account is in (`ix_message_account_episode`: account, episode,
stage), of which those scheduled are in flight. Written as one join with an OR, SQLite took the two
indexes too, but PostgreSQL pulled the account out of the OR and read all of its messages (a
dispatch batch: a hash join over the whole outbox).
"""

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, literal, select, union_all

from arrears.compliance.caps import Contact
from arrears.storage.bulk import among
from arrears.storage.tables import account, message
from arrears.vocabulary import MessageStatus

__all__ = ["contact_history"]


def contact_history(
    connection: Connection, *, borrowers: Any, since: datetime, exclude: Sequence[int] = ()
) -> dict[str, tuple[Contact, ...]]:
    """Per borrower, what the caps count: every message sent after `since`, and every one in flight.

    In flight means scheduled (or leased) for the stage episode its account is still in; one left
    from an earlier episode will be refused as stale, so it is not counted. `borrowers` is a
    collection or a SELECT of borrower ids; `exclude` names outbox rows the caller decides itself.
    One query for all of them, never one per account."""
    owner = account.alias("owner")
    of_borrowers = (
        owner.c.borrower_id.in_(borrowers)
        if isinstance(borrowers, Select)
        else among(owner.c.borrower_id, borrowers)
    )
    columns = (
        owner.c.borrower_id,
        message.c.id,
        message.c.account_id,
        message.c.channel,
        message.c.address,
        message.c.status,
        message.c.sent_at,
        message.c.not_before,
        message.c.stage,
        message.c.episode,
    )
    sent = and_(message.c.account_id == owner.c.account_id, message.c.sent_at > since)
    # The episode's rows whatever their status: a `status = 'scheduled'` here lets the planner
    # take `ix_message_due` and read every scheduled row of the outbox for each shard instead.
    episode = and_(
        message.c.account_id == owner.c.account_id,
        message.c.episode == owner.c.episode,
        message.c.stage == owner.c.stage,
    )
    parts = []
    for is_sent, joined in ((True, sent), (False, episode)):
        part = select(literal(is_sent).label("is_sent"), *columns).select_from(owner).join(message, joined)
        part = part.where(of_borrowers)
        parts.append(part.where(~among(message.c.id, exclude)) if exclude else part)
    rows = connection.execute(union_all(*parts)).all()
    counted = {row[2] for row in rows if row[0]}
    found: dict[str, list[Contact]] = defaultdict(list)
    scheduled = MessageStatus.SCHEDULED.value
    # Unpacked by position, in the order selected: a dispatch batch reads this for every borrower.
    for (
        is_sent,
        borrower_id,
        message_id,
        account_id,
        channel,
        address,
        status,
        sent_at,
        not_before,
        stage,
        episode_,
    ) in rows:
        in_flight = status == scheduled
        if not is_sent and (not in_flight or message_id in counted):
            continue  # of the episode but not in flight, or sent after `since`: counted above
        found[borrower_id].append(
            Contact(
                at=not_before if in_flight else sent_at,
                channel=channel,
                account_id=account_id,
                address=address,
                in_flight=in_flight,
                message_id=message_id,
                stage=stage,
                episode=episode_,
            )
        )
    return {k: tuple(v) for k, v in found.items()}
