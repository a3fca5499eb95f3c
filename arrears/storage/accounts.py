"""One account: its story, for `arrears show` and the timeline operations read; the two
account-level writes every stage shares, a row lock (`lock_accounts`) and an audit note (`note`);
and a person's confirmation that a number is the borrower's (`confirm_number`)."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, select, update

from arrears.currencies import display
from arrears.masking import mask_phone
from arrears.storage._common import chunks, event, insert_events, opted_out_numbers
from arrears.storage.tables import account, audit, contact, hold, message

__all__ = [
    "AccountStory",
    "Confirmed",
    "account_row",
    "account_story",
    "add_number",
    "confirm_number",
    "lock_accounts",
    "note",
]


@dataclass(frozen=True, slots=True)
class AccountStory:
    account: Any  # the account row
    holds: list[str]
    messages: list[Any]
    timeline: list[Any]
    numbers: list[Any]  # the borrower's SMS contact points

    def as_json(self) -> dict[str, Any]:
        a = self.account
        return {
            "account_id": a.account_id,
            "borrower_id": a.borrower_id,
            "stage": a.stage,
            "stage_since": _iso(a.stage_since),
            # 0 until a cycle first takes the account into collection: its stage until then is the
            # resting `cured`, and its days past due 0 until a cycle's refresh.
            "episode": a.episode,
            "days_past_due": a.days_past_due,
            "oldest_due_date": _iso(a.oldest_due_date),
            "bucket": a.bucket,
            "past_due_amount": display(a.past_due_amount, a.currency),
            "balance": display(a.balance, a.currency),
            "currency": a.currency,
            "segment": a.segment,
            "holds": self.holds,
            # The borrower's numbers, masked as everywhere an operator reads them: which one is
            # texted, and why another is not (invalid and why, opted out, failing, found by a skip trace).
            "numbers": [
                {
                    "number": mask_phone(n.address),
                    "primary": n.is_primary,
                    "valid": n.valid,
                    "invalid_reason": n.invalid_reason,  # an InvalidBecause; None if valid or marked before
                    "verified": n.verified,
                    "source": n.source,
                    "failures": n.failures,
                    "opted_out_at": _iso(n.opted_out_at),
                }
                for n in self.numbers
            ],
            "jurisdiction": a.jurisdiction,
            "timezone": a.timezone,
            "messages": [
                {
                    "id": m.id,
                    "template": m.template,
                    "status": m.status,
                    "not_before": _iso(m.not_before),
                    "sent_at": _iso(m.sent_at),
                    "reason": m.reason,
                    "body": m.body,
                }
                for m in self.messages
            ],
            "timeline": [
                {"at": _iso(e.at), "kind": e.kind, "detail": e.detail, "actor": e.actor}
                # What a borrower attached to a text (an MMS photo), where the vendor holds it.
                | ({"media": e.data["media"]} if isinstance(e.data, dict) and e.data.get("media") else {})
                for e in self.timeline
            ],
        }


def account_row(connection: Connection, account_id: str) -> Row[Any] | None:
    """The account's row as stored, or None for an unknown account."""
    return connection.execute(select(account).where(account.c.account_id == account_id)).first()


def account_story(connection: Connection, account_id: str) -> AccountStory | None:
    row = account_row(connection, account_id)
    if row is None:
        return None
    holds = sorted(
        connection.execute(
            select(hold.c.kind).where(hold.c.account_id == account_id, hold.c.lifted_at.is_(None))
        ).scalars()
    )
    messages = connection.execute(
        select(message).where(message.c.account_id == account_id).order_by(message.c.id)
    ).all()
    timeline = connection.execute(
        select(audit).where(audit.c.account_id == account_id).order_by(audit.c.at, audit.c.id)
    ).all()
    numbers = connection.execute(
        select(contact)
        .where(contact.c.borrower_id == row.borrower_id, contact.c.channel == "sms")
        .order_by(contact.c.is_primary.desc(), contact.c.id)
    ).all()
    return AccountStory(row, holds, list(messages), list(timeline), list(numbers))


def _iso(value: datetime | date | Decimal | None) -> str | None:
    return value.isoformat() if isinstance(value, (datetime, date)) else None if value is None else str(value)


def note(
    connection: Connection,
    *,
    account_id: str,
    at: datetime,
    kind: str,
    detail: str,
    data: dict[str, Any],
    actor: str = "arrears",
    cycle_id: int | None = None,
) -> None:
    """One audit event: what was read or decided, and why nothing else followed."""
    insert_events(connection, [event(account_id, at, kind, detail, data, actor=actor, cycle_id=cycle_id)])


def lock_accounts(connection: Connection, account_ids: Iterable[str]) -> None:
    """Take the accounts' rows before reading what answered their replies, so two transactions
    (the daily cycle, a webhook's single-account run) do not both answer the same reply."""
    ids = sorted(set(account_ids))
    if ids and connection.dialect.name == "postgresql":
        for chunk in chunks(ids):
            connection.execute(
                select(account.c.account_id).where(account.c.account_id.in_(chunk)).with_for_update()
            )


def add_number(
    connection: Connection,
    *,
    account_id: str,
    address: str,
    region: str | None,
    by: str,
    why: str,
    at: datetime,
) -> str | None:
    """Give the account's borrower a number they told a person is theirs (a new phone, after their
    old one went dead or was disowned): confirmed, not primary, audited as the agent's. An import
    neither removes it nor makes it primary. A number that opted out, under anyone, stays opted out.
    None: added; else why not ("no account", "the borrower's already", "another borrower's"):
    a number another borrower holds would give each the other's texts and replies."""
    row = account_row(connection, account_id)
    if row is None:
        return "no account"
    holders = set(
        connection.execute(
            select(contact.c.borrower_id).where(contact.c.channel == "sms", contact.c.address == address)
        ).scalars()
    )
    if row.borrower_id in holders:
        return "the borrower's already"
    if holders:
        return "another borrower's"
    connection.execute(
        contact.insert().values(
            borrower_id=row.borrower_id,
            channel="sms",
            address=address,
            region=region,
            is_primary=False,
            valid=True,
            verified=True,
            source="agent",
            failures=0,
            opted_out_at=opted_out_numbers(connection, {address}).get(address),
            created_at=at,
        )
    )
    note(
        connection,
        account_id=account_id,
        at=at,
        kind="contact",
        detail=f"number {mask_phone(address)} added, the borrower's by {by}: {why}",
        data={"action": "added", "number": mask_phone(address), "reason": why},
        actor=by,
    )
    return None


@dataclass(frozen=True, slots=True)
class Confirmed:
    """What `confirm_number` did: confirmed now or already, and why the number is texted nothing
    even so (marked invalid and why, opted out), or None if it is usable."""

    now: bool
    unusable: str | None


def confirm_number(
    connection: Connection, *, account_id: str, address: str, by: str, why: str, at: datetime
) -> Confirmed | None:
    """Record that the borrower confirmed `address` (E.164) is theirs: a number skip tracing found
    is unconfirmed, perhaps a third party's, and no text telling of the debt goes to it until a
    person who spoke with the borrower says so (compliance.md: third parties are never told).
    None: the account's borrower has no such number. A confirmation makes no invalid number valid
    nor lifts an opt-out (its holder's word, or the borrower's): the agent is told."""
    row = account_row(connection, account_id)
    if row is None:
        return None
    mine = (
        contact.c.borrower_id == row.borrower_id,
        contact.c.channel == "sms",
        contact.c.address == address,
    )
    point = connection.execute(
        select(contact.c.verified, contact.c.valid, contact.c.invalid_reason, contact.c.opted_out_at).where(
            *mine
        )
    ).first()
    if point is None:
        return None
    unusable = (
        None
        if point.valid and point.opted_out_at is None
        else "it opted out of texts"
        if point.valid
        else f"it is marked invalid ({(point.invalid_reason or 'no reason recorded').replace('_', ' ')})"
    )
    if point.verified:
        return Confirmed(False, unusable)
    connection.execute(update(contact).where(*mine).values(verified=True))
    detail = f"number {mask_phone(address)} confirmed the borrower's by {by}: {why}"
    note(
        connection,
        account_id=account_id,
        at=at,
        kind="contact",
        detail=detail,
        data={"action": "confirmed", "number": mask_phone(address), "reason": why},
        actor=by,
    )
    return Confirmed(True, unusable)
