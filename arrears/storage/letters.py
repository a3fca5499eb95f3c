"""Data access for letters: written, sent, tracked until mailed and delivered (or returned).

A letter row is written once per idempotency key with the context it is rendered from; the PDF
and its SHA-256 are stored when the letters task renders it, just before handing it to the
provider (the evidence of what was mailed, and what `arrears letters pdf` gives back). It is
then moved by tracking events (webhooks, or lookups where a webhook never came).
Statuses only move forward: a late `in_transit` never moves a delivered letter back.

Functions take the caller's connection and do not commit.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, true, update

from arrears.review import ENFORCEMENT_BARRING
from arrears.storage._common import chunks, event, insert_events
from arrears.storage.bulk import among
from arrears.storage.mailing import ADDRESS_COLUMNS, address_of
from arrears.storage.streaming import insert_rows_with_ids
from arrears.storage.tables import account, hold, letter

__all__ = [
    "ACTIVE",
    "ENDED",
    "STATUSES",
    "LetterRow",
    "NewLetter",
    "add_letters",
    "addressed_since_blocked",
    "blocked_for",
    "letter_by_id",
    "letter_by_key",
    "letter_by_provider_id",
    "letter_pdf",
    "letters_of_reviews",
    "letters_to_send",
    "letters_to_track",
    "list_letters",
    "mark_blocked",
    "mark_handing",
    "mark_rendered",
    "mark_sent",
    "move_letter",
    "provider_key",
    "refused_and_readdressed",
    "returned_and_readdressed",
]

# Where a letter stands, in order; `blocked` and `failed` are off the path (their `reason` says why).
RANK = {"pending": 0, "created": 1, "mailed": 2, "in_transit": 3, "delivered": 4, "returned_to_sender": 4}
ACTIVE = ("created", "mailed", "in_transit")  # sent, and not yet at the end of the post
ENDED = ("delivered", "returned_to_sender")  # at the end of the post
STATUSES = (*RANK, "blocked", "failed")


@dataclass(frozen=True, slots=True)
class LetterRow:
    id: int
    account_id: str
    review_id: int | None
    kind: str
    template: str
    status: str
    reason: str | None
    provider: str | None
    provider_id: str | None
    mail_type: str
    pdf_sha256: str | None
    created_at: datetime
    submitted_at: datetime | None
    mailed_at: datetime | None
    deadline: datetime | None
    updated_at: datetime
    idempotency_key: str = ""
    context: Any = None
    attempt: int = 0

    @property
    def provider_key(self) -> str:
        return provider_key(self.idempotency_key, self.attempt)

    def as_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "account_id": self.account_id,
            "review_id": self.review_id,
            "kind": self.kind,
            "status": self.status,
            "reason": self.reason,
            "provider": self.provider,
            "provider_id": self.provider_id,
            "mail_type": self.mail_type,
            "pdf_sha256": self.pdf_sha256,
            "created_at": iso(self.created_at),
            "submitted_at": iso(self.submitted_at),
            "mailed_at": iso(self.mailed_at),
            "deadline": iso(self.deadline),
        }


_COLUMNS = [c for c in letter.c if c.name != "pdf"]


def provider_key(key: str, attempt: int) -> str:
    """The key a letter goes to the provider under: its own, then a new one each time it is written
    again after the provider refused it (migration 0012 says why)."""
    return f"{key}-retry-{attempt}" if attempt else key


def _row(r: Any) -> LetterRow:
    return LetterRow(
        r.id,
        r.account_id,
        r.review_id,
        r.kind,
        r.template,
        r.status,
        r.reason,
        r.provider,
        r.provider_id,
        r.mail_type,
        r.pdf_sha256,
        r.created_at,
        r.submitted_at,
        r.mailed_at,
        r.deadline,
        r.updated_at,
        r.idempotency_key,
        r.context,
        r.attempt,
    )


def _note(
    c: Connection, account_id: str, at: datetime, detail: str, data: dict[str, Any], cycle: int | None = None
) -> None:
    """The letter's step in the account's audit trail (`cycle`: the cycle run whose step it is)."""
    insert_events(c, [event(account_id, at, "letter", detail, data, cycle_id=cycle)])


@dataclass(frozen=True, slots=True)
class NewLetter:
    """A letter to write under `key` (`add_letters`): pending (to be rendered from `context` when
    it is sent), or `blocked` with the reason.

    `replaces`: a letter under `key` that is blocked for exactly this reason (no address then)
    is written again in place, under the same key, and never reached the provider; any other
    letter under `key` stands."""

    key: str
    account_id: str
    review_id: int | None
    kind: str
    at: datetime
    template: str = ""
    context: dict[str, Any] | None = None
    mail_type: str = "usps_first_class"
    blocked: str | None = None
    replaces: tuple[str, ...] = ()  # the reasons a blocked letter under `key` may be written again for

    def values(self) -> dict[str, Any]:
        """The letter row's columns."""
        return {
            "idempotency_key": self.key,
            "account_id": self.account_id,
            "review_id": self.review_id,
            "kind": self.kind,
            "template": self.template,
            "status": "blocked" if self.blocked else "pending",
            "reason": self.blocked,
            "mail_type": self.mail_type,
            "pdf": None,
            "pdf_sha256": None,
            "context": self.context or {},
            "created_at": self.at,
            "updated_at": self.at,
        }


def add_letters(connection: Connection, new: Sequence[NewLetter]) -> list[int]:
    """Write letters, in order, each under its key once, with an audit event saying what was
    written and why it waits; returns the ids written (a letter written again in place keeps its
    id). A key written before is skipped, unless `replaces` says its blocked letter is written
    again; one still blocked for the same reason is skipped too (nothing new to say).

    The same rows, ids and events as writing the letters one at a time, in a few statements for
    any number: a query per chunk of keys, one insert, one insert of the events (and an update per
    letter written in place, which is rare). A key given twice is written as one at a time would:
    the second sees the first."""
    written: list[int] = []
    start = 0
    while start < len(new):
        seen: set[str] = set()
        end = start
        while end < len(new) and new[end].key not in seen:
            seen.add(new[end].key)
            end += 1
        written += _add_distinct(connection, new[start:end])
        start = end
    return written


def _add_distinct(connection: Connection, new: Sequence[NewLetter]) -> list[int]:
    """`add_letters` for letters whose keys are all different."""
    found: dict[str, Any] = {
        r.idempotency_key: r
        for r in connection.execute(
            select(letter.c.idempotency_key, letter.c.id, letter.c.status, letter.c.reason).where(
                among(letter.c.idempotency_key, [n.key for n in new])
            )
        )
    }
    fresh: list[NewLetter] = []
    ids: dict[str, int] = {}
    for n in new:
        was = found.get(n.key)
        if was is None:
            fresh.append(n)
        elif was.status == "blocked" and was.reason in n.replaces and n.blocked != was.reason:
            ids[n.key] = int(was.id)
            connection.execute(update(letter).where(letter.c.id == was.id).values(**n.values()))
    if fresh:
        rows = [n.values() for n in fresh]
        inserted = insert_rows_with_ids(connection, letter, tuple(rows[0]), [tuple(r.values()) for r in rows])
        ids |= {n.key: i for n, i in zip(fresh, inserted, strict=True)}
    events = []
    for n in new:
        if n.key not in ids:
            continue
        letter_id = ids[n.key]
        detail = (
            f"{n.kind} letter {letter_id} cannot be mailed: {n.blocked}"
            if n.blocked
            else f"{n.kind} letter {letter_id} written, to be rendered and mailed"
        )
        if n.key in found and not n.blocked:
            detail += f" (it was blocked: {found[n.key].reason})"
        data = {"letter_id": letter_id, "review_id": n.review_id, "blocked": n.blocked}
        events.append(event(n.account_id, n.at, "letter", detail, data))
    insert_events(connection, events)
    return [ids[n.key] for n in new if n.key in ids]


def addressed_since_blocked(connection: Connection, *, reason: str) -> list[LetterRow]:
    """Letters blocked for `reason` (no address) whose account has a mailing address now (an
    import brought it): the letters to write again. One query; none in the usual case."""
    rows = connection.execute(
        select(*_COLUMNS)
        .join(account, account.c.account_id == letter.c.account_id)
        .where(
            letter.c.status == "blocked",
            letter.c.reason == reason,
            account.c.address_line1.is_not(None),
            account.c.city.is_not(None),
            account.c.postal_code.is_not(None),
            account.c.country.is_not(None),
        )
        .order_by(letter.c.id)
    ).all()
    return [_row(r) for r in rows]


def refused_and_readdressed(connection: Connection, *, reason: str, at: datetime) -> int:
    """Letters the provider refused (`failed`) whose account has a mailing address now that is not
    the one refused: each is blocked for `reason`, one attempt on, to be written again in its place
    (`tasks.lifecycle_letters.readdress_letters`). One query; none in the usual case. Returns how
    many."""
    rows = connection.execute(
        select(*_COLUMNS, *ADDRESS_COLUMNS)
        .join(account, account.c.account_id == letter.c.account_id)
        .where(letter.c.status == "failed")
        .order_by(letter.c.id)
    ).all()
    moved = 0
    for r in rows:
        if not _addressed_elsewhere(r):
            continue
        connection.execute(
            update(letter)
            .where(letter.c.id == r.id)
            .values(status="blocked", reason=reason, attempt=letter.c.attempt + 1, updated_at=at)
        )
        _note(
            connection,
            r.account_id,
            at,
            f"{r.kind} letter {r.id}, refused by the provider ({r.reason}): another address is on file",
            {"letter_id": r.id, "status": "blocked", "reason": reason, "attempt": r.attempt + 1},
        )
        moved += 1
    return moved


def returned_and_readdressed(connection: Connection) -> list[LetterRow]:
    """Notices returned to sender, each the latest of its kind for its review (right to cure) or
    account (validation), whose account has a mailing address now that is not the one the letter
    came back from: to give again (`tasks.lifecycle_letters.readdress_letters`). Only these: a
    returned right-to-cure letter holds its review, a returned validation notice was not provided
    (Reg F 1006.42(a)(1): not by a way giving actual notice); a returned collection notice or plan
    confirmation holds nothing. One query. The returned letter stays as it was: the evidence."""
    later = letter.alias("later")
    rows = connection.execute(
        select(*_COLUMNS, *ADDRESS_COLUMNS)
        .join(account, account.c.account_id == letter.c.account_id)
        .where(
            letter.c.status == "returned_to_sender",
            or_(
                and_(letter.c.kind == "right_to_cure", letter.c.review_id.is_not(None)),
                letter.c.kind == "validation_notice",
            ),
            ~select(later.c.id)
            .where(later.c.account_id == letter.c.account_id, later.c.kind == letter.c.kind)
            .where(
                later.c.id > letter.c.id,
                or_(letter.c.review_id.is_(None), later.c.review_id == letter.c.review_id),
            )
            .exists(),
        )
        .order_by(letter.c.id)
    ).all()
    return [_row(r) for r in rows if _addressed_elsewhere(r)]


def _addressed_elsewhere(r: Any) -> bool:
    """Whether the account of a letter row (joined with its `ADDRESS_COLUMNS`) has a mailing address now
    that is not the one the letter was written to (the recipient kept in its context)."""
    address = address_of(r)
    if address is None:
        return False
    now_on_file = asdict(address)
    written_to = (r.context or {}).get("_recipient") or {}  # the address fields, as written then
    return {k: written_to.get(k) or "" for k in now_on_file} != now_on_file


def letters_to_send(
    connection: Connection,
    *,
    limit: int = 500,
    written_since: datetime | None = None,
    account_id: str | None = None,
) -> list[tuple[LetterRow, bytes | None]]:
    """Pending letters with their PDF (None: not rendered yet), oldest first, of one account if
    given: those written at or after `written_since` (if given), and those in doubt whenever
    written (handed to the provider, its answer lost: they go again as they are, under their key,
    and the provider answers with the letter it took).

    None of an account under a hold that bars enforcement (`arrears.review.ENFORCEMENT_BARRING`:
    a bankruptcy's automatic stay, a dispute, a death, Breathing Space) placed after the letter
    was written: it waits, pending, until the hold is lifted (one written too long before is then
    written again, `written_since`)."""
    barred = select(hold.c.id).where(
        hold.c.account_id == letter.c.account_id,
        hold.c.lifted_at.is_(None),
        hold.c.kind.in_(sorted(h.value for h in ENFORCEMENT_BARRING)),
    )
    rows = connection.execute(
        select(*_COLUMNS, letter.c.pdf)
        .where(
            ~barred.exists(),
            letter.c.status == "pending",
            or_(letter.c.created_at >= written_since, letter.c.submitted_at.is_not(None))
            if written_since is not None
            else true(),
            letter.c.account_id == account_id if account_id is not None else true(),
        )
        .order_by(letter.c.created_at, letter.c.id)
        .limit(limit)
    ).all()
    return [(_row(r), None if r.pdf is None else bytes(r.pdf)) for r in rows]


def mark_rendered(
    connection: Connection,
    *,
    letter_id: int,
    template: str,
    pdf: bytes,
    sha256: str,
    at: datetime,
    enclosed: Sequence[Mapping[str, Any]] = (),
) -> bool:
    """Store the PDF a pending letter was rendered as, before it is handed to the provider: a
    letter is rendered once, and a resend (in doubt, or after a crash) sends these bytes. False
    when it was rendered or moved on meanwhile. `enclosed`: what the PDF carries besides the
    letter (`arrears.letters.enclosures`), recorded in its audit event as the evidence."""
    row = connection.execute(select(*_COLUMNS).where(letter.c.id == letter_id)).one()
    done = connection.execute(
        update(letter)
        .where(letter.c.id == letter_id, letter.c.status == "pending", letter.c.pdf.is_(None))
        .values(template=template, pdf=pdf, pdf_sha256=sha256, updated_at=at)
    ).rowcount
    if done:
        data: dict[str, Any] = {"letter_id": letter_id, "sha256": sha256}
        with_ = ""
        if enclosed:
            data["enclosed"] = [dict(e) for e in enclosed]
            with_ = "".join(
                f", enclosing {e['name']} ({e['pages']} pages, sha256 {e['sha256']})" for e in enclosed
            )
        _note(
            connection,
            row.account_id,
            at,
            f"{row.kind} letter {letter_id} rendered (sha256 {sha256}){with_}, to be mailed",
            data,
        )
    return bool(done)


def block_unsent(connection: Connection, *, written_before: datetime, reason: str, at: datetime) -> int:
    """Block, with `reason`, every pending letter written before `written_before` and never handed
    to the provider (one in doubt may have been taken: it is not written again), each with its
    audit event; returns how many. One query when none."""
    rows = connection.execute(
        select(letter.c.id, letter.c.account_id, letter.c.kind, letter.c.review_id).where(
            letter.c.status == "pending",
            letter.c.created_at < written_before,
            letter.c.submitted_at.is_(None),
        )
    ).all()
    for ids in chunks([r.id for r in rows]):
        connection.execute(
            update(letter)
            .where(letter.c.id.in_(ids), letter.c.status == "pending")
            .values(status="blocked", reason=reason, updated_at=at)
        )
    insert_events(
        connection,
        [
            event(
                r.account_id,
                at,
                "letter",
                f"{r.kind} letter {r.id} cannot be mailed: {reason}",
                {"letter_id": r.id, "review_id": r.review_id, "blocked": reason},
            )
            for r in rows
        ],
    )
    return len(rows)


def letters_to_track(connection: Connection, *, limit: int = 500) -> list[LetterRow]:
    """Letters sent and not yet delivered nor returned, least recently heard of first; and those
    delivered or returned with no mailed date. Webhooks may be lost: a `delivered` one whose
    `mailed` one never came leaves a letter at the end of the post with no mailed date, which a
    notice's legal clock starts from (DESIGN §6). The provider's record holds it, so the letter is
    looked up until it is found."""
    rows = connection.execute(
        select(*_COLUMNS)
        .where(
            or_(
                letter.c.status.in_(ACTIVE),
                and_(letter.c.status.in_(ENDED), letter.c.mailed_at.is_(None)),
            ),
            letter.c.provider_id.is_not(None),
        )
        .order_by(letter.c.updated_at, letter.c.id)
        .limit(limit)
    ).all()
    return [_row(r) for r in rows]


def mark_handing(connection: Connection, *, letter_id: int, at: datetime | None) -> None:
    """Note, before a letter is handed to the provider, that it may be taken from now on (`at`),
    or (None) that the provider did not execute the request after all. A run killed between the
    provider's answer and `mark_sent` leaves the letter pending with `submitted_at` set: in doubt,
    looked for by its key before it goes again, never written again (`block_unsent`)."""
    connection.execute(
        update(letter).where(letter.c.id == letter_id, letter.c.status == "pending").values(submitted_at=at)
    )


def mark_in_doubt(connection: Connection, *, letter_id: int, at: datetime, detail: str) -> None:
    """The letter was handed to the provider and its answer lost: it stays pending, to be sent
    again under its key, and is never written again (`block_unsent`)."""
    row = connection.execute(select(*_COLUMNS).where(letter.c.id == letter_id)).one()
    connection.execute(
        update(letter)
        .where(letter.c.id == letter_id, letter.c.status == "pending")
        .values(submitted_at=func.coalesce(letter.c.submitted_at, at), updated_at=at)
    )
    _note(
        connection,
        row.account_id,
        at,
        f"{row.kind} letter {letter_id} handed to the provider, no answer: {detail}",
        {"letter_id": letter_id, "in_doubt": True},
    )


def mark_sent(
    connection: Connection,
    *,
    letter_id: int,
    provider: str,
    provider_id: str,
    status: str,
    at: datetime,
    cycle_id: int | None = None,
) -> None:
    row = connection.execute(select(*_COLUMNS).where(letter.c.id == letter_id)).one()
    connection.execute(
        update(letter)
        .where(letter.c.id == letter_id, letter.c.status == "pending")
        .values(provider=provider, provider_id=provider_id, status=status, submitted_at=at, updated_at=at)
    )
    _note(
        connection,
        row.account_id,
        at,
        f"{row.kind} letter {letter_id} accepted by {provider} as {provider_id}",
        {"letter_id": letter_id, "provider": provider, "provider_id": provider_id},
        cycle_id,
    )


def mark_blocked(
    connection: Connection, *, letter_id: int, reason: str, at: datetime, status: str, why: str | None = None
) -> None:
    """A letter that cannot go out (`blocked`: content, address) or was refused (`failed`); `why`:
    what a person said, for the audit trail."""
    row = connection.execute(select(*_COLUMNS).where(letter.c.id == letter_id)).one()
    connection.execute(
        update(letter).where(letter.c.id == letter_id).values(status=status, reason=reason, updated_at=at)
    )
    detail = f"{row.kind} letter {letter_id} {status}: {reason}"
    data = {"letter_id": letter_id, "status": status, "reason": reason}
    _note(
        connection,
        row.account_id,
        at,
        f"{detail} ({why})" if why else detail,
        data | ({"why": why} if why else {}),
    )


def letter_by_id(connection: Connection, letter_id: int) -> LetterRow | None:
    r = connection.execute(select(*_COLUMNS).where(letter.c.id == letter_id)).first()
    return _row(r) if r else None


def letter_by_key(connection: Connection, key: str) -> LetterRow | None:
    """The letter written under `key`, if any (letters other than a review's are found by it)."""
    r = connection.execute(select(*_COLUMNS).where(letter.c.idempotency_key == key)).first()
    return _row(r) if r else None


def letter_by_provider_id(connection: Connection, provider_id: str) -> LetterRow | None:
    r = connection.execute(select(*_COLUMNS).where(letter.c.provider_id == provider_id)).first()
    return _row(r) if r else None


def move_letter(
    connection: Connection,
    *,
    letter_id: int,
    status: str,
    at: datetime,
    seen_at: datetime,
    mailed_at: datetime | None = None,
    deadline: datetime | None = None,
    reason: str | None = None,
) -> bool:
    """Move a letter forward to `status` (never back); set its mailed date and deadline once.
    False when nothing changed (a repeated or late event)."""
    row = connection.execute(select(*_COLUMNS).where(letter.c.id == letter_id)).one()
    values: dict[str, Any] = {}
    if RANK.get(status, -1) > RANK.get(row.status, 99):
        values |= {"status": status, "reason": reason}
    if mailed_at is not None and row.mailed_at is None:
        values["mailed_at"] = mailed_at
    if deadline is not None and row.deadline is None:
        values["deadline"] = deadline
    if not values:
        return False
    connection.execute(update(letter).where(letter.c.id == letter_id).values(**values, updated_at=seen_at))
    if "status" in values or "mailed_at" in values:
        # A mailed date learned after the letter moved on (its webhook lost, found by a lookup)
        # is noted too: it starts the legal clock.
        said = status if "status" in values else f"mailed (learned after it was {row.status})"
        detail = f"{row.kind} letter {letter_id} {said.replace('_', ' ')} on {at.isoformat()}"
        if deadline is not None and "deadline" in values:
            detail += f"; cure period ends {deadline.isoformat()}"
        _note(
            connection,
            row.account_id,
            at,
            detail,
            {"letter_id": letter_id, "status": values.get("status", row.status), "reason": reason},
        )
    return True


def touch(connection: Connection, letter_ids: Iterable[int], at: datetime) -> None:
    """Note that these letters were looked up at `at` (the next lookup takes others first)."""
    ids = list(letter_ids)
    if ids:
        connection.execute(update(letter).where(letter.c.id.in_(ids)).values(updated_at=at))


def letters_of_reviews(connection: Connection, review_ids: Sequence[int]) -> dict[int, LetterRow]:
    """The latest letter of each review, by review id. The ids are bound as one value (`among`):
    the cycle asks for thousands at a time."""
    if not review_ids:
        return {}
    found: dict[int, LetterRow] = {}
    for r in connection.execute(
        select(*_COLUMNS).where(among(letter.c.review_id, review_ids)).order_by(letter.c.id)
    ):
        found[r.review_id] = _row(r)
    return found


def list_letters(
    connection: Connection, *, account_id: str | None = None, status: str | None = None
) -> list[LetterRow]:
    statement = select(*_COLUMNS).order_by(letter.c.created_at, letter.c.id)
    if account_id is not None:
        statement = statement.where(letter.c.account_id == account_id)
    if status is not None:
        statement = statement.where(letter.c.status == status)
    return [_row(r) for r in connection.execute(statement)]


def blocked_for(connection: Connection, reason_starts: str) -> list[int]:
    """The ids of the letters blocked with a reason that starts with `reason_starts` (as
    `list_letters` shows it; matched literally, `%` and `_` included), oldest first."""
    return list(
        connection.scalars(
            select(letter.c.id)
            .where(letter.c.status == "blocked", letter.c.reason.startswith(reason_starts, autoescape=True))
            .order_by(letter.c.id)
        )
    )


def letter_pdf(connection: Connection, letter_id: int) -> tuple[bytes, str | None] | None:
    """The PDF as mailed and its recorded SHA-256, or None when there is no such letter or PDF."""
    r = connection.execute(select(letter.c.pdf, letter.c.pdf_sha256).where(letter.c.id == letter_id)).first()
    if r is None or r.pdf is None:
        return None
    return bytes(r.pdf), r.pdf_sha256
