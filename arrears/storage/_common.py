"""Small helpers the stage storage modules share, so each thing is done one way: audit-event
rows, row locks, chunks of ids under any database's bound-parameter limit, new primary keys,
and amounts and days as the lender counts them."""

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Select,
    String,
    bindparam,
    delete,
    func,
    literal,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite

from arrears.currencies import display
from arrears.storage.bulk import among, chunks, execute_many, insert_ignore
from arrears.storage.engine import indexes_built_after
from arrears.storage.message_counts import counts_of
from arrears.storage.tables import account, audit, contact, hold, opted_out_number
from arrears.vocabulary import Channel, Hold

__all__ = [
    "ACTOR",
    "Refused",
    "chunks",
    "clear_number_opt_out",
    "day_start",
    "event",
    "first_load",
    "for_account",
    "holds_of",
    "insert_events",
    "inserted_id",
    "keep_number_opt_out",
    "locked",
    "opted_out_numbers",
    "place_holds",
    "to_precision",
]

_S = TypeVar("_S", bound=Select[Any])

ACTOR = "arrears"  # the actor of an event no person or servicing file caused


class Refused(ValueError):
    """A person's decision that does not fit what it is about: the message says why, and nothing
    changed. `option` names the command's option at fault, when one is (the CLI prints it)."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


def event(
    account_id: str | None,
    at: datetime,
    kind: str,
    detail: str,
    data: dict[str, Any],
    *,
    actor: str = ACTOR,
    cycle_id: int | None = None,
) -> dict[str, Any]:
    """One audit-event row, for `insert_events`."""
    return {
        "account_id": account_id,
        "at": at,
        "kind": kind,
        "detail": detail,
        "data": data,
        "actor": actor,
        "cycle_id": cycle_id,
    }


def insert_events(connection: Connection, events: list[dict[str, Any]]) -> None:
    """Append audit events (rows made by `event`) in one statement (none: no statement), with
    the counts of a cycle's message events among them, which its report sums (`message_counts`)."""
    execute_many(connection, audit.insert(), events)
    execute_many(connection, audit.insert(), counts_of(events, ACTOR))


def inserted_id(result: CursorResult[Any]) -> int:
    """The primary key of the one row an `INSERT` statement added."""
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the statement inserted no row")
    return int(key[0])


def to_precision(amount: Decimal, currency: str) -> Decimal:
    """An amount at its currency's precision (storage keeps four places for every currency)."""
    return Decimal(display(amount, currency))


def day_start(day: date, zone: str) -> datetime:
    """The instant a calendar day starts in a time zone, in UTC."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def for_account(account_id: str | None, column: ColumnElement[Any]) -> ColumnElement[bool]:
    """`column = account_id` on the single-account path; always true for the whole portfolio."""
    return column == account_id if account_id else true()


def locked(statement: _S, connection: Connection) -> _S:
    """`FOR UPDATE` where the database has row locks (PostgreSQL); SQLite's writer lock already
    serialises the transactions that call these functions."""
    return statement.with_for_update() if connection.dialect.name == "postgresql" else statement


def holds_of(connection: Connection, account_ids: Any) -> dict[str, frozenset[Hold]]:
    """The holds in force on each of the accounts (accounts without any are left out)."""
    found: dict[str, set[Hold]] = defaultdict(set)
    for account_id, kind in connection.execute(
        select(hold.c.account_id, hold.c.kind).where(
            among(hold.c.account_id, account_ids), hold.c.lifted_at.is_(None)
        )
    ):
        found[account_id].add(Hold(kind))
    return {k: frozenset(v) for k, v in found.items()}


def place_holds(
    connection: Connection, wanted: Sequence[tuple[str, Hold, str]], *, source: str, at: datetime
) -> set[tuple[str, Hold]]:
    """Place each (account, kind, reason) unless a hold of that kind is active on the account
    already: the (account, kind) pairs placed. One hold of a kind at a time, whoever placed it,
    so lifting it (an opt-in, an agent) ends it; a pair asked twice is placed once.

    The holds in force are read first: a borrower's hold an import spread is in force too, though
    the database's one-of-a-kind index leaves it out (`AccountHold`), and most pairs of a batch
    already held are never sent. On PostgreSQL another transaction may place a pair between the
    read and the insert (two deliveries of one webhook, an agent during an import): the insert
    waits for it and, once it commits, places nothing there, so the pair is not among those placed.
    """
    if not wanted:
        return set()
    active = holds_of(connection, {account_id for account_id, _, _ in wanted})
    placed: dict[tuple[str, Hold], str] = {}
    for account_id, kind, reason in wanted:
        if kind not in active.get(account_id, ()):
            placed.setdefault((account_id, kind), reason)
    return {(account_id, Hold(kind)) for account_id, kind in _insert_holds(connection, placed, source, at)}


def _insert_holds(
    connection: Connection, placed: dict[tuple[str, Hold], str], source: str, at: datetime
) -> set[tuple[str, str]]:
    """Insert the holds (account, kind: reason), each unless one of its kind is in force on its
    account by the database's unique index (`uq_hold_active_kind`): the (account, kind) pairs
    inserted, in one statement.

    On SQLite the write transaction holds the only write lock from its start (arrears begins them
    IMMEDIATE): the pairs `place_holds` found not held stay so until it commits, and are inserted
    through `execute_many`. PostgreSQL says which rows it inserted (RETURNING), of rows bound as
    three arrays: RETURNING over rows bound one by one sends a statement of new text each thousand
    rows, for psycopg to parse (100,000 new holds: 6.6-7.8 s that way, 2.4-3.4 s this one, 2.2-3.7 s
    before the index, without RETURNING). In order of account and kind: two transactions placing some of the
    same pairs wait for each other in one order, never each for the other.
    """
    if not placed:
        return set()
    index = _ONE_ACTIVE_HOLD
    where = index.dialect_options[connection.dialect.name]["where"]
    keys = [column.name for column in index.columns]
    pairs = sorted(placed)
    if connection.dialect.name == "sqlite":
        rows = [
            {"account_id": a, "kind": k.value, "source": source, "reason": placed[a, k], "placed_at": at}
            for a, k in pairs
        ]
        execute_many(
            connection,
            sqlite.insert(hold).on_conflict_do_nothing(index_elements=keys, index_where=where),
            rows,
        )
        return {(a, k.value) for a, k in pairs}
    text_array = postgresql.ARRAY(String())  # unbounded: a cast to VARCHAR(n)[] would cut reasons short
    new = (
        func.unnest(
            bindparam(None, [a for a, _ in pairs], type_=text_array),
            bindparam(None, [k.value for _, k in pairs], type_=text_array),
            bindparam(None, [placed[p] for p in pairs], type_=text_array),
        )
        .table_valued("account_id", "kind", "reason")
        .render_derived()
    )
    statement = (
        postgresql.insert(hold)
        .from_select(
            ["account_id", "kind", "reason", "source", "placed_at"],
            select(
                new.c.account_id,
                new.c.kind,
                new.c.reason,
                literal(source, hold.c.source.type),
                literal(at, hold.c.placed_at.type),
            ),
        )
        .on_conflict_do_nothing(index_elements=keys, index_where=where)
        .returning(hold.c.account_id, hold.c.kind)
    )
    return {(account_id, kind) for account_id, kind in connection.execute(statement)}


# The index that keeps one hold of a kind in force on an account, as the model declares it.
_ONE_ACTIVE_HOLD = next(index for index in hold.indexes if index.name == "uq_hold_active_kind")


def opted_out_numbers(connection: Connection, addresses: set[str]) -> dict[str, datetime]:
    """Of `addresses`, the SMS numbers that opted out under any borrower, or while no borrower held
    them (`keep_number_opt_out`), with when (the latest): an opt-out is the number's (Reg F
    1006.6(e)), so a contact point it is given later (an import's new borrower, a number a skip
    trace finds) starts opted out.

    Read through the index of contact points by number and the key of `opted_out_number`: a probe
    a number, even for a first import's ten thousand new numbers a chunk, in one statement."""
    if not addresses:
        return {}
    held = select(contact.c.address, contact.c.opted_out_at.label("at")).where(
        among(contact.c.address, addresses),
        contact.c.opted_out_at.is_not(None),
        contact.c.channel == Channel.SMS.value,
    )
    unheld = select(opted_out_number.c.address, opted_out_number.c.opted_out_at.label("at")).where(
        among(opted_out_number.c.address, addresses)
    )
    both = union_all(held, unheld).subquery()
    return dict(
        connection.execute(select(both.c.address, func.max(both.c.at)).group_by(both.c.address)).all()
    )


@contextmanager
def first_load(connection: Connection) -> Iterator[bool]:
    """Whether the file this write transaction imports is a first load: on SQLite, where a write
    transaction holds the only write lock from its start (arrears begins IMMEDIATE), into a
    database without accounts, contact points or kept opt-outs. Then no number can have opted out
    before it ends (no STOP is recorded meanwhile), so its new numbers need no lookup
    (`opted_out_numbers`), and the indexes of accounts and contact points are built once its rows
    are in (`indexes_built_after`): a first import of a million accounts spends ~11 s less CPU."""
    first = connection.dialect.name == "sqlite" and all(
        connection.execute(select(1).select_from(t).limit(1)).first() is None
        for t in (account, contact, opted_out_number)
    )
    with indexes_built_after(connection, (account.name, contact.name)) if first else nullcontext():
        yield first


def keep_number_opt_out(connection: Connection, address: str, at: datetime) -> bool:
    """Keep the opt-out of an SMS number no contact point holds, so that `opted_out_numbers` finds
    it for the borrower it is given later; the first opt-out's time stays, as on a contact point.
    Whether it was new."""
    return bool(
        insert_ignore(connection, opted_out_number, [{"address": address, "opted_out_at": at}], key="address")
    )


def clear_number_opt_out(connection: Connection, address: str, at: datetime) -> bool:
    """The number texted START at `at`: its kept opt-out ends, unless it was made after the START
    (a START delivered late opts nothing back in, as on a contact point). Whether one ended."""
    return bool(
        connection.execute(
            delete(opted_out_number).where(
                opted_out_number.c.address == address, opted_out_number.c.opted_out_at <= at
            )
        ).rowcount
    )
