"""Storing checked import rows: accounts upserted by account_id, payments inserted once.

Balances, dates, contact points and import holds belong to the servicing system; lifecycle state
(stage and since when, episode, segment, ability, willingness, broken promises, days past due)
belongs to the cycle, and an import never writes it on a stored account. Every write compares
with what is stored first, so importing the same file twice changes nothing: no row updated, no
audit event, no hold.

`upsert_accounts` and `insert_payments` take the caller's connection and do not commit. They read
what exists with one query per table for the whole chunk and write new and changed rows as tuples
through `arrears.storage.streaming` (COPY on PostgreSQL, one executemany on SQLite): at a million
accounts SQLAlchemy's per-row parameter handling cost more than the database. `run_import` streams
a file through them chunk by chunk, in one transaction for the whole file, so a file is stored all
or nothing (DESIGN §8), while worker processes parse the chunks ahead (`arrears.importing.parallel`).
Memory holds the chunks in flight, plus, for the rules across rows (a
repeated account_id, a borrower's one name and phone), one entry per account id and borrower id
seen so far in the file.
"""

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from arrears.importing import (
    ADDRESS_COLUMNS,
    CURRENCY_MINOR_UNITS,
    AccountRow,
    Checked,
    Kind,
    PaymentRow,
    Rejection,
    RejectsUnwritable,
    RejectsWriter,
    Source,
    check_parsed_accounts,
    check_parsed_payments,
    earliest_date,
    fits_currency,
    read_account,
    read_payment,
    rejects_path,
)
from arrears.importing.checks import YEARS_BACK_AT_MOST
from arrears.importing.parallel import PARSE_WORKERS, parsed_records
from arrears.models import Account, AccountHold, AuditEvent, Borrower, ContactPoint, Payment, utcnow
from arrears.payments import RECEIVED_AHEAD_AT_MOST
from arrears.processes import collecting_rarely
from arrears.storage import borrower_holds
from arrears.storage._common import first_load, opted_out_numbers
from arrears.storage.bulk import among
from arrears.storage.engine import BULK_CACHE_MIB, bulk_cache
from arrears.storage.imported_files import record_import, stale_import
from arrears.storage.streaming import insert_rows, update_rows
from arrears.storage.tables import account, audit, borrower, contact, hold, payment
from arrears.storage.vendor_orders import cancel_vendor_orders
from arrears.vocabulary import Channel

__all__ = [
    "CHUNK_SIZE",
    "SERVICING_COLUMNS",
    "AccountCounts",
    "ImportInterrupted",
    "ImportSummary",
    "PaymentCounts",
    "RejectsUnwritable",
    "insert_payments",
    "run_import",
    "upsert_accounts",
]

# Records checked and written at a time: large enough that per-statement costs vanish, small
# enough that a chunk's rows stay a few tens of MB and its `IN (...)` lists within SQLite's limit
# on bound parameters (32,766).
CHUNK_SIZE = 10_000
# The account columns the servicing system owns; everything else on the row is the cycle's.
SERVICING_COLUMNS = (
    "borrower_id",
    "jurisdiction",
    "timezone",
    "currency",
    "balance",
    "installment_amount",
    "past_due_amount",
    "oldest_due_date",
    "next_due_date",
    "vin",
    "vehicle_value",
    "apr",
    *ADDRESS_COLUMNS,
)
_KEPT_WHEN_ABSENT = ("vin", "vehicle_value", "apr", "next_due_date", *ADDRESS_COLUMNS)
_SOURCE = "import"
_ACTOR = "import"


def _defaults(model: type[SQLModel], **values: Any) -> dict[str, Any]:
    """The model's own defaults: rows written in bulk start as rows made through the ORM would."""
    found = {
        name: info.get_default(call_default_factory=True)
        for name, info in model.model_fields.items()
        if not info.is_required() and name != "id"
    }
    return found | values


@dataclass
class _Counts:
    def add(self, other: "_Counts") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class AccountCounts(_Counts):
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    contacts_added: int = 0
    contacts_changed: int = 0  # made primary, or no longer primary
    holds_placed: int = 0
    holds_lifted: int = 0
    borrower_holds_placed: int = 0  # on the borrower's other open loans (`borrower_holds.spread`)
    borrower_holds_lifted: int = 0


@dataclass
class PaymentCounts(_Counts):
    inserted: int = 0
    already_stored: int = 0  # the same payment again: stored before, or earlier in this file


@dataclass
class ImportSummary:
    kind: Kind
    file: Path
    format: str
    counts: AccountCounts | PaymentCounts
    read: int = 0
    accepted: int = 0
    rejected: int = 0
    empty: int = 0  # lines of separators alone, not records: a spreadsheet's empty rows
    rejects_file: Path | None = None
    first_rejections: list[Rejection] = field(default_factory=list)  # a sample for people to read
    ignored_columns: tuple[str, ...] = ()
    vendor_orders_cancelled: int = 0  # repossession orders a payment or hold in this file overtook

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "file": str(self.file),
            "format": self.format,
            "read": self.read,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "empty": self.empty,
            "rejects_file": str(self.rejects_file) if self.rejects_file else None,
            "ignored_columns": list(self.ignored_columns),
            "vendor_orders_cancelled": self.vendor_orders_cancelled,
            **asdict(self.counts),
        }


# ----------------------------------------------------------------------------------------------
# Accounts


def upsert_accounts(
    rows: Sequence[AccountRow],
    *,
    connection: Connection,
    now: datetime,
    origin: str = "import",
    opt_outs: bool = True,
) -> AccountCounts:
    """Create or update accounts with their borrower, contact points and import holds.

    `origin` (the file's name) is recorded with each hold and its audit event. Rows must have
    distinct account ids (`check_accounts` sees to it); if not, the last one wins. `opt_outs`
    False: no number can have opted out (a `first_load`), so new ones are not looked up.
    """
    counts = AccountCounts()
    latest = list({row.account_id: row for row in rows}.values())
    if not latest:
        return counts
    stored = {
        r.account_id: r
        for r in connection.execute(
            select(account.c.account_id, *(account.c[name] for name in SERVICING_COLUMNS)).where(
                among(account.c.account_id, [row.account_id for row in latest])
            )
        )
    }
    borrower_of = {
        row.account_id: stored[row.account_id].borrower_id
        if row.borrower_defaulted and row.account_id in stored
        else row.borrower_id
        for row in latest
    }
    _upsert_borrowers(connection, latest, borrower_of, now)
    _sync_contact_points(connection, latest, borrower_of, now, counts, opt_outs)
    _upsert_account_rows(connection, latest, borrower_of, stored, now, counts)
    _sync_holds(connection, latest, now, origin, counts)
    return counts


def _upsert_borrowers(
    connection: Connection, rows: list[AccountRow], borrower_of: dict[str, str], now: datetime
) -> None:
    names = {borrower_of[row.account_id]: row.borrower_name for row in rows}
    stored: dict[str, str] = dict(
        connection.execute(
            select(borrower.c.borrower_id, borrower.c.name).where(among(borrower.c.borrower_id, names))
        ).all()
    )
    new = [(b, n) for b, n in names.items() if b not in stored]
    renamed = [(n, b) for b, n in names.items() if b in stored and stored[b] != n]
    insert_rows(connection, borrower, ("borrower_id", "name"), new, _defaults(Borrower, created_at=now))
    update_rows(connection, borrower, "borrower_id", ("name",), renamed)


def _sync_contact_points(
    connection: Connection,
    rows: list[AccountRow],
    borrower_of: dict[str, str],
    now: datetime,
    counts: AccountCounts,
    opt_outs: bool,
) -> None:
    """The file's phone becomes the borrower's one primary SMS number; its alt phone is added.

    Numbers are never deleted or rewritten: validity, failures and opt-outs stay on them, and an
    old primary number the file no longer names stays as a secondary one.
    """
    primary: dict[str, tuple[str, str | None]] = {}
    alternates: dict[str, dict[str, str | None]] = defaultdict(dict)
    for row in rows:
        key = borrower_of[row.account_id]
        primary[key] = (row.phone, row.phone_region)
        if row.alt_phone:
            alternates[key][row.alt_phone] = row.alt_phone_region
    stored: dict[str, dict[str, tuple[int, bool]]] = defaultdict(dict)
    # Unpacked by position: a daily file finds every borrower's numbers stored, and a row's
    # attribute costs ~10 times its index.
    for id_, borrower_id, address, is_primary in connection.execute(
        select(contact.c.id, contact.c.borrower_id, contact.c.address, contact.c.is_primary).where(
            among(contact.c.borrower_id, primary), contact.c.channel == Channel.SMS.value
        )
    ):
        stored[borrower_id][address] = (id_, is_primary)
    base = _defaults(ContactPoint, channel=Channel.SMS.value, source=_SOURCE, created_at=now)
    new: list[tuple[str, str, str | None, bool]] = []
    flips: list[tuple[bool, int]] = []
    for key, (phone, region) in primary.items():
        have = stored.get(key, {})
        flips += [
            (address == phone, id_)
            for address, (id_, is_primary) in have.items()
            if is_primary != (address == phone)
        ]
        if phone not in have:
            new.append((key, phone, region, True))
        new += [
            (key, alt, alt_region, False)
            for alt, alt_region in alternates.get(key, {}).items()
            if alt not in have and alt != phone
        ]
    columns = ("borrower_id", "address", "region", "is_primary")
    opted_out = opted_out_numbers(connection, {address for _, address, _, _ in new}) if opt_outs else {}
    if opted_out:
        # The number opted out under another borrower (the same person's other loan): it stays
        # opted out here too, until the number itself texts START (`record_opt_in` clears it on
        # every borrower's contact point).
        late = [(*row, opted_out[row[1]]) for row in new if row[1] in opted_out]
        new = [row for row in new if row[1] not in opted_out]
        with_opt_out = (*columns, "opted_out_at")
        insert_rows(connection, contact, with_opt_out, late, _without(base, with_opt_out))
        counts.contacts_added += len(late)
    insert_rows(connection, contact, columns, new, _without(base, columns))
    update_rows(connection, contact, "id", ("is_primary",), flips)
    counts.contacts_added += len(new)
    counts.contacts_changed += len(flips)


def _upsert_account_rows(
    connection: Connection,
    rows: list[AccountRow],
    borrower_of: dict[str, str],
    stored: dict[str, Any],
    now: datetime,
    counts: AccountCounts,
) -> None:
    base = _defaults(Account, stage_since=now, updated_at=now)
    new: list[list[Any]] = []
    changed: list[list[Any]] = []
    servicing = attrgetter(*SERVICING_COLUMNS)
    borrower_index = SERVICING_COLUMNS.index("borrower_id")
    kept = [(SERVICING_COLUMNS.index(name), name) for name in _KEPT_WHEN_ABSENT]
    for row in rows:
        before = stored.get(row.account_id)
        values = list(servicing(row))
        values[borrower_index] = borrower_of[row.account_id]
        if row.absent:
            for index, name in kept:
                if name in row.absent:
                    values[index] = getattr(before, name) if before is not None else None
        if before is None:
            values.append(row.account_id)
            new.append(values)
        elif tuple(values) != tuple(before[1:]):  # the stored row, in SERVICING_COLUMNS order
            values.append(row.account_id)
            changed.append(values)
        else:
            counts.unchanged += 1
    columns = (*SERVICING_COLUMNS, "account_id")
    insert_rows(connection, account, columns, new, _without(base, columns))
    update_rows(connection, account, "account_id", SERVICING_COLUMNS, changed, {"updated_at": now})
    counts.created += len(new)
    counts.updated += len(changed)


def _sync_holds(
    connection: Connection, rows: list[AccountRow], now: datetime, origin: str, counts: AccountCounts
) -> None:
    """Flags place holds that are not active yet and lift the import's own holds they no longer name.

    A hold placed by a webhook or an agent is never lifted by a file: the servicing system did
    not place it. A file without a flags column says nothing about holds.
    """
    stated = [row for row in rows if "flags" not in row.absent]
    if not stated:
        return
    active: dict[str, list[Any]] = defaultdict(list)
    for h in connection.execute(
        select(hold.c.id, hold.c.account_id, hold.c.kind, hold.c.source).where(
            among(hold.c.account_id, [row.account_id for row in stated]),
            hold.c.lifted_at.is_(None),
        )
    ):
        active[h.account_id].append(h)
    base = _defaults(AccountHold, source=_SOURCE, placed_at=now)
    event = _defaults(AuditEvent, at=now, kind="hold", actor=_ACTOR)
    placed: list[tuple[str, str, str]] = []
    lifted: list[int] = []
    events: list[dict[str, Any]] = []
    for row in stated:
        holds = active.get(row.account_id, [])
        if not row.holds and not holds:
            continue
        where = f"{origin} line {row.line}"
        for kind in sorted(row.holds - {h.kind for h in holds if h.source != borrower_holds.SOURCE}):
            placed.append((row.account_id, kind.value, f"flag in {where}"))
            events.append(
                _hold_event(event, row.account_id, kind.value, "placed", f"flag in {where}", origin, row.line)
            )
        for h in holds:
            if h.source == _SOURCE and h.kind not in row.holds:
                lifted.append(h.id)
                events.append(
                    _hold_event(
                        event, row.account_id, h.kind, "lifted", f"flag gone from {where}", origin, row.line
                    )
                )
    insert_rows(connection, hold, ("account_id", "kind", "reason"), placed, _without(base, ("reason",)))
    if lifted:
        connection.execute(update(hold).where(hold.c.id.in_(lifted)).values(lifted_at=now))
    if events:
        connection.execute(audit.insert(), events)
    counts.holds_placed += len(placed)
    counts.holds_lifted += len(lifted)


def _without(values: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """Defaults for the columns a bulk insert does not list per row."""
    return {name: value for name, value in values.items() if name not in names}


def _hold_event(
    base: dict[str, Any], account_id: str, kind: str, action: str, why: str, origin: str, line: int
) -> dict[str, Any]:
    return base | {
        "account_id": account_id,
        "detail": f"{kind} hold {action} by import: {why}",
        "data": {"hold": kind, "action": action, "source": _SOURCE, "file": origin, "line": line},
    }


# ----------------------------------------------------------------------------------------------
# Payments


def insert_payments(
    rows: Sequence[PaymentRow], *, connection: Connection, now: datetime
) -> tuple[PaymentCounts, dict[int, list[Rejection]]]:
    """Insert payments not stored yet; `applied_at` stays empty for the cycle's refresh.

    Returns the counts and, by line, the rows refused because of what is stored: an unknown
    account, an amount finer than the account's currency, or a payment_id already stored with
    different content; and those received more than `RECEIVED_AHEAD_AT_MOST` after `now`, or
    before `earliest_date` (a placeholder such as 1970-01-01, not when money came in). The same
    payment again is accepted and changes nothing.
    """
    counts = PaymentCounts()
    rejected: dict[int, list[Rejection]] = {}
    if not rows:
        return counts, rejected
    currency_of: dict[str, str] = dict(
        connection.execute(
            select(account.c.account_id, account.c.currency).where(
                among(account.c.account_id, {r.account_id for r in rows})
            )
        ).all()
    )
    known: dict[str, tuple[str, Any, datetime]] = {
        r.payment_id: (r.account_id, r.amount, r.received_at)
        for r in connection.execute(
            select(payment.c.payment_id, payment.c.account_id, payment.c.amount, payment.c.received_at).where(
                among(payment.c.payment_id, {r.payment_id for r in rows})
            )
        )
    }
    new: list[tuple[str, str, Any, datetime]] = []
    earliest = earliest_date(now.date())
    for row in rows:
        problems = []
        currency = currency_of.get(row.account_id)
        if currency is None:
            problems.append(
                Rejection(row.line, "account_id", f"no account {row.account_id!r}: import it first")
            )
        elif row.currency is not None and row.currency != currency:
            problems.append(
                Rejection(
                    row.line,
                    "currency",
                    f"{row.currency} is not the account's currency ({currency}): a payment is "
                    "imported in the account's currency",
                )
            )
        elif not fits_currency(row.amount, currency):
            problems.append(
                Rejection(
                    row.line,
                    "amount",
                    f"more decimal places than {currency} allows ({CURRENCY_MINOR_UNITS[currency]})",
                )
            )
        if row.received_at > now + RECEIVED_AHEAD_AT_MOST:
            ahead = (row.received_at - now).days
            problems.append(
                Rejection(
                    row.line,
                    "received_at",
                    f"{ahead} days after this import: a payment is imported once received (value-dated "
                    f"at most {RECEIVED_AHEAD_AT_MOST.days} days ahead); is the year right?",
                )
            )
        if row.received_at.date() < earliest:
            problems.append(
                Rejection(
                    row.line,
                    "received_at",
                    f"{row.received_at.date()} is more than {YEARS_BACK_AT_MOST} years before this import: a "
                    "placeholder (1970-01-01 is the Unix epoch), not when a payment was received",
                )
            )
        before = known.get(row.payment_id)
        if before is not None and before != row.content:
            problems.append(Rejection(row.line, "payment_id", "conflicts with stored payment"))
        if problems:
            rejected[row.line] = problems
        elif before is not None:
            counts.already_stored += 1
        else:
            known[row.payment_id] = row.content
            new.append((row.payment_id, row.account_id, row.amount, row.received_at))
    columns = ("payment_id", "account_id", "amount", "received_at")
    insert_rows(connection, payment, columns, new, _without(_defaults(Payment, applied_at=None), columns))
    counts.inserted = len(new)
    return counts, rejected


# ----------------------------------------------------------------------------------------------
# A whole file

T = TypeVar("T")


class ImportInterrupted(Exception):
    """The import was asked to stop (SIGTERM, Ctrl-C) before it committed: nothing is stored."""

    def __init__(self, reason: str, lines_read: int) -> None:
        super().__init__(f"{reason} after {lines_read:,} lines were read: nothing was stored")
        self.reason = reason
        self.lines_read = lines_read


def run_import(
    engine: Engine,
    source: Source,
    *,
    chunk_size: int = CHUNK_SIZE,
    parse_workers: int = PARSE_WORKERS,
    now: datetime | None = None,
    on_progress: Callable[[ImportSummary, int], None] | None = None,
    stop_requested: Callable[[], str | None] | None = None,
    rejects_to: Path | None = None,
    reimport: bool = False,
    cache_mib: int = BULK_CACHE_MIB,
) -> ImportSummary:
    """Check and store every record of `source`, all or nothing; rejected ones go to `FILE.rejects.csv`
    (or to `rejects_to`: a file, or a directory to hold FILE.rejects.csv).

    The whole file is applied in one transaction, chunk by chunk (`chunk_size` records are
    checked, then written in bulk), so memory stays bounded and a crash, a kill or an error at any
    point leaves nothing of the file stored. The rejects file is written and moved into place
    before the commit; if it cannot be, nothing is committed (RejectsUnwritable).

    A file longer than `arrears.importing.parallel.POOL_FROM_RECORDS` records is parsed in
    `parse_workers` spawned processes while this one checks the rules across rows and stores
    (0: all here); a script calling this on such a file needs the `if __name__ == "__main__"`
    guard every spawning program needs. `on_progress`'s bytes read then run a few chunks ahead.

    The file is recorded, by the SHA-256 of the bytes read (so a pipe is read once, whole), with
    the import (`imported_files`): an accounts file imported before, with another imported after
    it, would set balances back, and is refused (StaleImport) unless `reimport`, once read: its
    writes are rolled back. SQLite's page cache: `cache_mib` (`bulk_cache`).

    Raises, with nothing stored: StaleImport, UnreadableFile (a byte not valid in the file's
    encoding, met half-way), RejectsUnwritable, ImportInterrupted (`stop_requested` returned a
    reason; it is asked after every chunk and before the commit), or the database's error. `on_progress` is
    called after each chunk with the summary so far and the bytes read. Returns when committed.
    """
    now = now or utcnow()
    kind = source.kind
    summary = ImportSummary(
        kind=kind,
        file=source.path,
        format=source.format,
        ignored_columns=source.ignored_columns,
        counts=AccountCounts() if kind is Kind.ACCOUNTS else PaymentCounts(),
    )

    def check_stop() -> None:
        reason = stop_requested() if stop_requested is not None else None
        if reason:
            raise ImportInterrupted(reason, summary.read)

    target = rejects_path(source.path, rejects_to)
    read: Any = read_account if kind is Kind.ACCOUNTS else read_payment
    with (
        collecting_rarely(),
        RejectsWriter(target, source.rejects_header) as rejects,
        parsed_records(
            source.lines(), source.layout, read, chunk_size=chunk_size, workers=parse_workers
        ) as parsed,
        engine.connect() as connection,
    ):
        checked: Iterator[Checked[Any]] = (
            check_parsed_accounts(parsed, today=now.date())
            if kind is Kind.ACCOUNTS
            else check_parsed_payments(parsed)
        )
        try:
            with bulk_cache(connection, cache_mib), connection.begin(), first_load(connection) as first:
                for window in _batched(checked, chunk_size):
                    rows = [item.row for item in window if item.row is not None]
                    late = _store_chunk(connection, summary, rows, now, opt_outs=not first)
                    for item in window:
                        found = item.rejections or tuple(late.get(item.raw.line, ()))
                        summary.read += 1
                        if found:
                            summary.rejected += 1
                            rejects.write(source.split(item.raw), found)
                            if len(summary.first_rejections) < 5:
                                summary.first_rejections.extend(found[: 5 - len(summary.first_rejections)])
                        else:
                            summary.accepted += 1
                    if on_progress is not None:
                        on_progress(summary, source.bytes_read)
                    check_stop()
                # Every data line is accounted for, or the file is not imported: a record lost between
                # reading and storing would otherwise go unnoticed.
                if summary.read != source.data_lines:
                    raise AssertionError(f"{source.data_lines} data lines but {summary.read} records read")
                stale = stale_import(connection, kind=kind.value, sha256=source.sha256)  # read whole by now
                if stale is not None and not reimport:
                    raise stale
                summary.empty = source.empty_lines
                if summary.accepted:
                    if isinstance(summary.counts, AccountCounts):  # a borrower's flag holds all their loans
                        borrower_holds.spread(connection, summary.counts, file=summary.file.name, now=now)
                    # A payment or a collection hold cancels a repossession order at once, not at the next
                    # cycle: a repossession after the borrower paid is the finding regulators make most.
                    summary.vendor_orders_cancelled = cancel_vendor_orders(connection, as_of=now)
                record_import(connection, source, now, summary.accepted, summary.rejected)
                check_stop()
                summary.rejects_file = rejects.publish()
        except BaseException:
            # The commit failed after the rejects were moved into place: they describe nothing.
            if summary.rejects_file is not None:
                summary.rejects_file.unlink(missing_ok=True)
                summary.rejects_file = None
            raise
    return summary


def _store_chunk(
    connection: Connection, summary: ImportSummary, rows: list[Any], now: datetime, opt_outs: bool
) -> dict[int, list[Rejection]]:
    """One savepoint per chunk. An import running at the same time (PostgreSQL) may insert the
    same new ids first; the chunk is then read and compared again, once, instead of failing."""
    if not rows:
        return {}
    for attempt in (1, 2):
        try:
            with connection.begin_nested():
                if summary.kind is Kind.ACCOUNTS:
                    counts: AccountCounts | PaymentCounts = upsert_accounts(
                        rows, connection=connection, now=now, origin=summary.file.name, opt_outs=opt_outs
                    )
                    late: dict[int, list[Rejection]] = {}
                else:
                    counts, late = insert_payments(rows, connection=connection, now=now)
        except IntegrityError:
            if attempt == 2:
                raise
            continue
        summary.counts.add(counts)
        return late
    raise AssertionError("unreachable")


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
