"""Data access for dispatch: find due outbox rows, lease them, and record what became of them.

A lease (not a lock) keeps two dispatchers off the same rows: a row is taken only when its lease
has run out (or is the taker's own, on a retry). A lease is released only by recording the row's
outcome, so a row still leased when it is taken again, or recorded `provider:unknown`, may have
been sent by a dispatcher that died after the call: it is *in doubt*, and the caller looks it up
at the provider before any new verdict (DESIGN §5). A run that holds the database's run lock
(`arrears.storage.cycle_runs.exclusive_run`) knows every other run-owned lease is a dead run's:
`expire_dead_leases` hands those rows over at once instead of after the lease's wall-clock time.

Each leased row comes with its borrower's contact history (`storage.history`: one query for the
whole batch), so the send-time check counts the caps from the message log as it is now.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, func, or_, select, update

from arrears.compliance.caps import Contact
from arrears.records import record
from arrears.storage._common import event, insert_events
from arrears.storage.bulk import among, execute_many, in_range, range_starts
from arrears.storage.delivery_reports import apply_early_reports, record_carrier_opt_out
from arrears.storage.history import contact_history
from arrears.storage.tables import account, contact, hold, mailing_region, message
from arrears.vocabulary import Hold, InvalidBecause, MessageStatus

__all__ = [
    "UNKNOWN",
    "Claimed",
    "DueMessage",
    "Outcome",
    "awaiting_receipt",
    "changed_since_loaded",
    "claim_batch",
    "clear_doubt",
    "due_batches",
    "expire_dead_leases",
    "in_doubt",
    "let_go",
    "load_batch",
    "mark_waiting",
    "next_due",
    "record_outcomes",
]

UNKNOWN = "provider:unknown"  # the provider may or may not have executed the send
_EXPIRED = datetime(2000, 1, 1, tzinfo=UTC)  # a lease handed over: free to take, still in doubt
# What it takes to ask the provider about a message again (an `SmsRequest` and its provider id).
_REQUEST = (
    message.c.id,
    message.c.idempotency_key,
    message.c.address,
    message.c.template,
    message.c.params,
    message.c.body,
    message.c.provider_id,
    message.c.created_at,
)


@record
class DueMessage:
    """An outbox row with what the send-time check needs of its account."""

    id: int
    idempotency_key: str
    account_id: str
    address: str
    template: str
    params: dict[str, str]
    body: str
    stage: str
    episode: int
    attempts: int  # before this lease: > 0 means an earlier try may have reached the provider
    provider_id: str | None
    account_stage: str
    account_episode: int
    jurisdiction: str
    timezone: str
    region: str | None  # the mailing address's (tables.mailing_region)
    holds: frozenset[Hold]
    opted_out: bool
    address_valid: bool
    borrower_id: str = ""
    history: tuple[Contact, ...] = ()  # the borrower's contacts, without this batch's rows
    in_doubt: bool = False  # an earlier try may have reached the provider: look it up first
    created_at: datetime | None = (
        None  # decided then (for a row in doubt): no try reached the provider before
    )


@record
class Outcome:
    """What dispatch decided or learned for one row."""

    id: int
    account_id: str
    status: MessageStatus
    reason: str | None = None  # the rule that decided (hours:CN, cap:sms-borrower-7d, hold:dispute, ...)
    not_before: datetime | None = None  # for a deferral
    provider: str | None = None
    provider_id: str | None = None
    sent_at: datetime | None = None
    invalid_address: str | None = None  # a number the provider refused as invalid
    opted_out: str | None = None  # a number the provider refused as opted out at the carrier (STOP)
    detail: str | None = None  # what the rule found, for people (never a number)
    borrower_id: str = ""  # for a send found at the provider: whose caps it counts against
    address: str = ""


def _due(now: datetime, account_id: str | None = None) -> Any:
    due = and_(message.c.status == MessageStatus.SCHEDULED.value, message.c.not_before <= now)
    return and_(due, message.c.account_id == account_id) if account_id else due


def due_batches(
    connection: Connection,
    *,
    now: datetime,
    size: int,
    account_id: str | None = None,
    first: int | None = None,
) -> list[tuple[int, int | None]]:
    """Id ranges [lo, hi) of at most `size` rows due at `now` (hi None: to the end); the first
    of at most `first` rows, where given."""
    starts = range_starts(connection, message.c.id, _due(now, account_id), size=size, first=first)
    return [(lo, starts[i + 1] if i + 1 < len(starts) else None) for i, lo in enumerate(starts)]


@dataclass(frozen=True, slots=True)
class Claimed:
    """Rows leased to one dispatcher: theirs until the lease runs out, whoever else reads them."""

    taken: tuple[int, ...]
    doubtful: frozenset[int]  # leased before, or recorded `provider:unknown`: may have been sent


def claim_batch(
    connection: Connection,
    *,
    lo: int,
    hi: int | None,
    now: datetime,
    wall: datetime,
    lease_until: datetime,
    account_id: str | None = None,
    owner: str | None = None,
) -> Claimed:
    """Lease the due rows with lo <= id < hi whose lease is free (or `owner`'s own). The only part
    of a lease that writes: on SQLite it holds the database's one write lock, so the reading is
    left to `load_batch`, after the commit, where it blocks no other writer.

    A run's lease (one with an owner) that ran out is taken only by another run, which holds the
    run lock and so knows it dead, or once handed over (`expire_dead_leases`): a live run may
    still be sending its batch past the lease's end (a rate-limited provider), and a taker
    outside the lock (the single-account path) would find the rows not yet sent and send them."""
    ran_out = message.c.lease_until < wall
    if owner is None:
        ran_out = and_(ran_out, or_(message.c.lease_owner.is_(None), message.c.lease_until == _EXPIRED))
    free = or_(message.c.lease_until.is_(None), ran_out)
    if owner is not None:
        free = or_(free, message.c.lease_owner == owner)
    where = and_(in_range(message.c.id, lo, hi), _due(now, account_id), free)
    # Read which rows are in doubt before the lease overwrites the marks: the UPDATE re-checks
    # `free`, so a row another dispatcher took meanwhile is simply not returned by it.
    doubtful = frozenset(
        connection.execute(
            select(message.c.id).where(
                where, or_(message.c.lease_until.is_not(None), message.c.reason == UNKNOWN)
            )
        ).scalars()
    )
    taken = (
        connection.execute(
            update(message)
            .where(where)
            .values(lease_until=lease_until, lease_owner=owner, attempts=message.c.attempts + 1)
            .returning(message.c.id)
        )
        .scalars()
        .all()
    )
    return Claimed(tuple(taken), doubtful & frozenset(taken))


def load_batch(
    connection: Connection, claimed: Claimed, *, now: datetime, lookback: timedelta = timedelta(days=7)
) -> list[DueMessage]:
    """The leased rows with their accounts' state: holds, the number's opt-out and validity, and
    the borrower's sends over `lookback` (the caps' longest window), the batch's own left out. A
    row taken while still leased, or recorded `provider:unknown`, comes back `in_doubt`. Read
    after the lease commits, the history is at least as recent as it was under the lease."""
    taken = list(claimed.taken)
    if not taken:
        return []
    doubtful = claimed.doubtful
    rows = connection.execute(
        select(
            message.c.id,
            message.c.idempotency_key,
            message.c.account_id,
            message.c.address,
            message.c.template,
            message.c.params,
            message.c.body,
            message.c.stage,
            message.c.episode,
            message.c.attempts,
            message.c.provider_id,
            account.c.stage.label("account_stage"),
            account.c.episode.label("account_episode"),
            account.c.jurisdiction,
            account.c.timezone,
            account.c.borrower_id,
            mailing_region(),
        )
        .join(account, account.c.account_id == message.c.account_id)
        .where(among(message.c.id, taken))
        .order_by(message.c.id)
    ).all()
    # When the rows in doubt were decided, for their lookup (`SmsRequest.since`): only theirs, as
    # reading an instant costs every row of a batch a few microseconds.
    decided: dict[int, datetime] = (
        {
            id_: at
            for id_, at in connection.execute(
                select(message.c.id, message.c.created_at).where(among(message.c.id, doubtful))
            )
        }
        if doubtful
        else {}
    )
    borrower_ids = {r.borrower_id for r in rows}
    holds, numbers = _stops(connection, {r.account_id for r in rows}, borrower_ids)
    history = contact_history(
        connection, borrowers=list(borrower_ids), since=now - lookback, exclude=list(taken)
    )
    # Unpacked by position: a row's attribute lookup costs ~0.25-1 µs, and a batch makes 21 a row.
    found = []
    for (
        id_,
        key,
        account_id,
        address,
        template,
        params,
        body,
        stage,
        episode,
        attempts,
        provider_id,
        account_stage,
        account_episode,
        jurisdiction,
        timezone,
        borrower_id,
        region,
    ) in rows:
        opted_out, valid = numbers.get((borrower_id, address), (False, True))
        found.append(
            DueMessage(
                id=id_,
                idempotency_key=key,
                account_id=account_id,
                address=address,
                template=template,
                params=params or {},
                body=body,
                stage=stage,
                episode=episode,
                attempts=attempts - 1,
                provider_id=provider_id,
                account_stage=account_stage,
                account_episode=account_episode,
                jurisdiction=jurisdiction,
                timezone=timezone,
                region=region,
                holds=frozenset(holds.get(account_id, ())),
                opted_out=opted_out,
                address_valid=valid,
                borrower_id=borrower_id,
                history=history.get(borrower_id, ()),
                in_doubt=id_ in doubtful,
                created_at=decided.get(id_),
            )
        )
    return found


def _stops(
    connection: Connection, account_ids: set[str], borrower_ids: set[str]
) -> tuple[dict[str, set[Hold]], dict[tuple[str, str], tuple[bool, bool]]]:
    """What stops a send: the accounts' holds in force, and each SMS number's (opted out, valid)."""
    holds: dict[str, set[Hold]] = defaultdict(set)
    for account_id, kind in connection.execute(
        select(hold.c.account_id, hold.c.kind).where(
            among(hold.c.account_id, account_ids), hold.c.lifted_at.is_(None)
        )
    ):
        holds[account_id].add(Hold(kind))
    numbers = {
        (borrower_id, address): (opted_out_at is not None, valid)
        for borrower_id, address, opted_out_at, valid in connection.execute(
            select(contact.c.borrower_id, contact.c.address, contact.c.opted_out_at, contact.c.valid).where(
                among(contact.c.borrower_id, borrower_ids), contact.c.channel == "sms"
            )
        )
    }
    return holds, numbers


def changed_since_loaded(connection: Connection, rows: Sequence[DueMessage]) -> dict[int, DueMessage]:
    """The rows whose stops changed since `load_batch` read them, as they are now (by message id):
    their account's stage, episode or holds in force, or their number's opt-out or validity.
    Dispatch asks just before it hands a part of a batch to the provider, so that an opt-out, a
    hold or a stage change committed while the batch was checked or sent stops what has not gone."""
    if not rows:
        return {}
    account_ids = {r.account_id for r in rows}
    states = {
        account_id: (stage, episode)
        for account_id, stage, episode in connection.execute(
            select(account.c.account_id, account.c.stage, account.c.episode).where(
                among(account.c.account_id, account_ids)
            )
        )
    }
    holds, numbers = _stops(connection, account_ids, {r.borrower_id for r in rows})
    changed = {}
    for r in rows:
        stage, episode = states.get(r.account_id, (r.account_stage, r.account_episode))
        opted_out, valid = numbers.get((r.borrower_id, r.address), (False, True))
        now = (stage, episode, frozenset(holds.get(r.account_id, ())), opted_out, valid)
        if now != (r.account_stage, r.account_episode, r.holds, r.opted_out, r.address_valid):
            changed[r.id] = replace(
                r,
                account_stage=stage,
                account_episode=episode,
                holds=now[2],
                opted_out=opted_out,
                address_valid=valid,
            )
    return changed


def next_due(connection: Connection, *, after: datetime, before: datetime) -> datetime | None:
    """The earliest instant in (after, before) at which a scheduled row falls due (a text deferred
    to a borrower's morning), or None: where a simulated day sends what it deferred."""
    return connection.execute(
        select(func.min(message.c.not_before)).where(
            message.c.status == MessageStatus.SCHEDULED.value,
            message.c.not_before > after,
            message.c.not_before < before,
        )
    ).scalar()


def expire_dead_leases(connection: Connection, *, owner: str) -> int:
    """Hand over at once the rows leased by runs other than `owner` (call it under the run lock:
    those runs are dead). The lease is expired, not cleared, so the rows stay in doubt."""
    result = connection.execute(
        update(message)
        .where(
            message.c.status == MessageStatus.SCHEDULED.value,
            message.c.lease_owner.is_not(None),
            message.c.lease_owner != owner,
            message.c.lease_until > _EXPIRED,
        )
        .values(lease_until=_EXPIRED)
    )
    return result.rowcount or 0


def let_go(connection: Connection, *, ids: Sequence[int], doubtful: Sequence[int] = ()) -> None:
    """Release the lease of rows a batch leased but leaves untried (in quarantine), so that
    their retry may take them at once; those in doubt stay so (handed over, as by a dead run)."""
    doubt = set(doubtful)
    for rows, until in (([i for i in ids if i not in doubt], None), (sorted(doubt), _EXPIRED)):
        if rows:
            connection.execute(
                update(message)
                .where(among(message.c.id, rows), message.c.status == MessageStatus.SCHEDULED.value)
                .values(lease_until=until, lease_owner=None)
            )


def in_doubt(connection: Connection, *, wall: datetime, limit: int = 100_000) -> list[Any]:
    """Scheduled rows that an earlier try may have sent, whoever's lease is over: still leased
    with the lease run out (or handed over), or recorded `provider:unknown`. Id order."""
    return list(
        connection.execute(
            select(message.c.account_id, *_REQUEST)
            .where(
                message.c.status == MessageStatus.SCHEDULED.value,
                or_(
                    and_(message.c.lease_until.is_not(None), message.c.lease_until < wall),
                    message.c.reason == UNKNOWN,
                ),
            )
            .order_by(message.c.id)
            .limit(limit)
        ).all()
    )


def clear_doubt(connection: Connection, *, ids: Sequence[int]) -> None:
    """The provider has no record of these rows: never sent. Release them as plain scheduled rows."""
    if not ids:
        return
    connection.execute(
        update(message)
        .where(among(message.c.id, ids), message.c.status == MessageStatus.SCHEDULED.value)
        .values(
            lease_until=None,
            lease_owner=None,
            reason=case((message.c.reason == UNKNOWN, None), else_=message.c.reason),
        )
    )


def mark_waiting(connection: Connection, *, now: datetime, reason: str, account_id: str | None = None) -> int:
    """During an outage: every row due at `now` and not in doubt waits, scheduled, with `reason`."""
    result = connection.execute(
        update(message)
        .where(
            _due(now, account_id),
            message.c.lease_until.is_(None),
            or_(message.c.reason.is_(None), message.c.reason != UNKNOWN),
        )
        .values(reason=reason)
    )
    return result.rowcount or 0


def record_outcomes(
    connection: Connection,
    *,
    outcomes: Sequence[Outcome],
    at: datetime,
    cycle_id: int | None,
    unreachable_after: int | None = None,
) -> None:
    """Write each row's new status, release its lease, and audit every contact and refusal; record
    the opt-outs the provider reported (`Outcome.opted_out`) as a STOP is recorded; apply the
    delivery reports that came before the sends (`unreachable_after`: as `apply_delivery_reports`)."""
    if not outcomes:
        return
    # The instants are typed: inside coalesce() an untyped parameter would bypass UTCDateTime and
    # SQLite would store str(datetime) ("...+00:00"), which compares wrongly with the stored form.
    instant = message.c.sent_at.type
    execute_many(
        connection,
        update(message)
        .where(message.c.id == bindparam("key"))
        .values(
            status=bindparam("status"),
            reason=bindparam("reason"),
            not_before=func.coalesce(bindparam("nb", type_=instant), message.c.not_before),
            provider=func.coalesce(bindparam("provider"), message.c.provider),
            provider_id=func.coalesce(bindparam("provider_id"), message.c.provider_id),
            sent_at=func.coalesce(bindparam("sent_at", type_=instant), message.c.sent_at),
            lease_until=None,
            lease_owner=None,
        ),
        [
            {
                "key": o.id,
                "status": o.status.value,
                "reason": o.reason,
                "nb": o.not_before,
                "provider": o.provider,
                "provider_id": o.provider_id,
                "sent_at": o.sent_at,
            }
            for o in outcomes
        ],
    )
    invalid = [{"number": o.invalid_address, "account": o.account_id} for o in outcomes if o.invalid_address]
    if invalid:
        borrower = (
            select(account.c.borrower_id)
            .where(account.c.account_id == bindparam("account"))
            .scalar_subquery()
        )
        connection.execute(
            update(contact)
            .where(contact.c.address == bindparam("number"), contact.c.borrower_id == borrower)
            .values(valid=False, invalid_reason=InvalidBecause.REFUSED.value),
            invalid,
        )
    sent: dict[str, list[str]] = defaultdict(list)
    for o in outcomes:
        if o.sent_at is not None and o.provider and o.provider_id:
            sent[o.provider].append(o.provider_id)
    insert_events(
        connection,
        [
            event(
                o.account_id,
                o.sent_at or at,
                "message",
                _detail(o),
                {
                    "message_id": o.id,
                    "status": o.status.value,
                    "reason": o.reason,
                    "rule": o.reason,
                    "verdict": _verdict(o),
                    "when": "send",
                    "provider_id": o.provider_id,
                },
                cycle_id=cycle_id,
            )
            for o in outcomes
        ],
    )
    for o in outcomes:  # after the refusal's own event
        if o.opted_out:  # recorded as the borrower's STOP is: the law binds the lender, not the gateway
            record_carrier_opt_out(
                connection,
                address=o.opted_out,
                at=at,
                provider=o.provider or "",
                why="a send refused",
                callback_id=f"message:{o.id}:opted-out",
            )
    for provider, provider_ids in sent.items():  # after the send's own event: the report came later
        apply_early_reports(
            connection, provider=provider, provider_ids=provider_ids, unreachable_after=unreachable_after
        )


def _verdict(o: Outcome) -> str:
    if o.status is MessageStatus.BLOCKED:
        return "block"
    if o.status is MessageStatus.SCHEDULED:
        return "defer"
    return "send" if o.sent_at is not None else "fail"


def _detail(o: Outcome) -> str:
    why = f"{o.reason} ({o.detail})" if o.detail else f"{o.reason}"
    if o.status in (MessageStatus.SENT, MessageStatus.DELIVERED):
        sent = f"message {o.id} sent via {o.provider} ({o.provider_id})"
        return f"{sent}: {o.detail}" if o.detail else sent
    if o.status is MessageStatus.SCHEDULED:
        return (
            f"message {o.id} deferred to {o.not_before:%Y-%m-%dT%H:%MZ}: {why}"
            if o.not_before
            else f"message {o.id} retry: {why}"
        )
    return f"message {o.id} {o.status.value}: {why}"


def awaiting_receipt(
    connection: Connection,
    *,
    provider: str,
    sent_before: datetime,
    sent_after: datetime,
    limit: int,
) -> list[Any]:
    """Messages `provider` accepted between `sent_after` and `sent_before` whose outcome never
    came back (still `sent`), oldest first: the ones to look up instead of waiting on a callback."""
    return list(
        connection.execute(
            select(*_REQUEST)
            .where(
                message.c.status == MessageStatus.SENT.value,
                message.c.provider == provider,
                message.c.provider_id.is_not(None),
                message.c.sent_at < sent_before,
                message.c.sent_at >= sent_after,
            )
            .order_by(message.c.sent_at, message.c.id)
            .limit(limit)
        ).all()
    )
