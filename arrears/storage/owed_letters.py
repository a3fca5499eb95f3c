"""Which accounts their facts owe a letter: the 催收函 of a CN account entering legal referral,
written once per stay in the stage (`tasks.lifecycle_letters.write_collection_notices`), the GB
notice of sums in arrears, owed by the arrears themselves (`arrears_notices_owed`,
`tasks.lifecycle_letters.write_arrears_notices`), and the US validation notice, owed once a
message about the debt has been sent (`validation_notices_owed`,
`tasks.lifecycle_letters.write_validation_notices`).

Apart from `arrears.storage.letters`, which keeps the letters themselves: this reads accounts (and
their cures, on the timeline), and asks of letters only whether and when one was written; it
writes only why a validation notice is owed again (`record_given_again`).

Functions take the caller's connection and do not commit.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Integer, and_, false, func, literal, or_, select

from arrears.jurisdictions import Profile
from arrears.storage._common import event, insert_events
from arrears.storage.cycle import TERMINAL
from arrears.storage.tables import account, audit, letter, message
from arrears.vocabulary import Exit, Stage

__all__ = [
    "ARREARS_NOTICE",
    "VALIDATION_NOTICE",
    "OwedArrearsNotice",
    "OwedNotice",
    "OwedValidationNotice",
    "arrears_notice_standing",
    "arrears_notices_owed",
    "notices_owed",
    "record_given_again",
    "validation_notice_standing",
    "validation_notices_owed",
]

ARREARS_NOTICE = "arrears_notice"  # the letter kinds
VALIDATION_NOTICE = "validation_notice"


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


@dataclass(frozen=True, slots=True)
class OwedArrearsNotice:
    """An account owed a notice of sums in arrears (the first of its arrears, s.86B(2)(a), or a
    further one, s.86B(2)(b): the notice says the same), with what the notice states."""

    account_id: str
    jurisdiction: str
    timezone: str
    currency: str
    past_due: Any
    balance: Any
    vin: str | None


# What a notice of sums in arrears states of its account, in `OwedArrearsNotice`'s order.
_ARREARS_NOTICE_FACTS = (
    account.c.account_id,
    account.c.jurisdiction,
    account.c.timezone,
    account.c.currency,
    account.c.past_due_amount,
    account.c.balance,
    account.c.vin,
)


def arrears_notices_owed(
    connection: Connection, *, rules: Mapping[str, Profile], now: datetime
) -> list[OwedArrearsNotice]:
    """The open accounts, in the jurisdictions of `rules` (each a profile with `arrears_notice`),
    owed a notice of sums in arrears at `now`: one query for the whole book, none per account.

    Consumer Credit Act 1974 s.86B: once the arrears come to the last two payments due (`payments`
    of the profile), a notice (s.86B(2)(a)), then further ones at intervals of not more than six
    months (s.86B(2)(b)) until the debtor ceases to be in arrears (s.86B(3)-(5)); no new first
    notice while that duty runs (s.86B(1)(d)). So an account is owed:

    - a first notice when `installment_amount > 0` and `past_due_amount >= payments *
      installment_amount` (equal instalments: the last two due are two instalments; an agreement
      paid weekly, four under s.86B(1)(c)(i), is none arrears takes), and no duty runs;
    - a further one when a duty runs and its latest notice was written `every_days` ago or more,
      while any sum is past due (a debtor back to one instalment behind is still in arrears).

    A duty runs from the account's latest `arrears_notice` letter (written, whatever became of it:
    a blocked one is written again in its place, never a second) unless the account was `cured`
    after it: the cycle cures an account when nothing is past due, which is when the debtor ceases
    to be in arrears, and records it on the timeline (a `transition` to `cured`, read through
    `ix_audit_account_kind_at`, a few rows an account). The cure is the clear line between one
    delinquency and the next: `oldest_due_date` moves on while a debtor pays the oldest instalment
    and stays behind, and `stage_since` with every stage. Default sums, which keep a debtor in
    arrears too (s.86B(5)(b)), are not on file: a debtor who paid the instalments is taken out of
    arrears. The accounts are read by a scan of the open book (no index leads with the
    jurisdiction or the past-due amount); the letters and the timeline by the account's indexes."""
    if not rules:
        return []
    last = (
        select(func.max(letter.c.created_at))
        .where(letter.c.account_id == account.c.account_id, letter.c.kind == ARREARS_NOTICE)
        .correlate(account)
        .scalar_subquery()
        .label("last")
    )
    open_ = (
        select(*_ARREARS_NOTICE_FACTS, account.c.installment_amount, last)
        .where(
            account.c.jurisdiction.in_(sorted(rules)),
            account.c.stage.not_in(TERMINAL),
            account.c.past_due_amount > 0,
        )
        .subquery("open_arrears")
    )
    c = open_.c
    running = and_(c.last.is_not(None), ~_cured_since(c.account_id, c.last))
    first = or_(
        false(),
        *(
            and_(
                c.jurisdiction == code,
                c.installment_amount > 0,
                c.past_due_amount >= c.installment_amount * literal(p.arrears_notice_payments, Integer()),
            )
            for code, p in rules.items()
        ),
    )
    further = or_(
        false(),
        *(
            and_(c.jurisdiction == code, c.last <= now - timedelta(days=p.arrears_notice_every_days or 0))
            for code, p in rules.items()
        ),
    )
    rows = connection.execute(
        select(*(c[column.name] for column in _ARREARS_NOTICE_FACTS))
        .where(or_(and_(~running, first), and_(running, further)))
        .order_by(c.account_id)
    ).all()
    return [OwedArrearsNotice(*r) for r in rows]


def arrears_notice_standing(connection: Connection, letter_id: int) -> OwedArrearsNotice | None:
    """The account of notice `letter_id`, with its facts today, while the notice is still owed: the
    account's latest notice of sums in arrears, the account open and in arrears, not cured since it
    was written; None otherwise (a blocked notice of arrears since paid is not written again:
    s.86B(3) would still ask the first notice of a duty to be given, which is a person's call)."""
    other = letter.alias("later")
    later = (
        select(other.c.id)
        .where(
            other.c.account_id == letter.c.account_id,
            other.c.kind == ARREARS_NOTICE,
            or_(
                other.c.created_at > letter.c.created_at,
                and_(other.c.created_at == letter.c.created_at, other.c.id > letter.c.id),
            ),
        )
        .exists()
    )
    found = connection.execute(
        select(*_ARREARS_NOTICE_FACTS)
        .join(letter, letter.c.account_id == account.c.account_id)
        .where(
            letter.c.id == letter_id,
            letter.c.kind == ARREARS_NOTICE,
            account.c.stage.not_in(TERMINAL),
            account.c.past_due_amount > 0,
            ~later,
            ~_cured_since(account.c.account_id, letter.c.created_at),
        )
    ).first()
    return None if found is None else OwedArrearsNotice(*found)


def _cured_since(account_id: ColumnElement[str], since: ColumnElement[datetime]) -> ColumnElement[bool]:
    """Whether the account was cured (nothing past due: out of arrears) at or after `since`."""
    return (
        select(audit.c.id)
        .where(
            audit.c.account_id == account_id,
            audit.c.kind == "transition",
            audit.c.at >= since,
            audit.c.data["to"].as_string() == Exit.CURED.value,
        )
        .exists()
    )


@dataclass(frozen=True, slots=True)
class OwedValidationNotice:
    """An account owed its validation notice, with what the notice states and when it was first
    written to about the debt (the mail-by day counts from it)."""

    account_id: str
    jurisdiction: str
    timezone: str
    currency: str
    balance: Any
    vin: str | None
    first_contact_at: datetime


def _validation_facts() -> tuple[ColumnElement[Any], ...]:
    """What a validation notice states of its account, in `OwedValidationNotice`'s order, and the
    first message sent and the first letter mailed about the debt (`_owed` takes the earlier): the
    initial communication. A message decided in a collection stage counts, through
    `ix_message_account_sent` (sent messages only); a courtesy reminder before a due date, to an
    account in no arrears (decided `cured`), is not about a debt in default, and does not. Any
    letter mailed counts (a notice of sale to a borrower never reached by text), but the notice."""
    c = account.c
    texted = (
        select(func.min(message.c.sent_at))
        .where(
            message.c.account_id == c.account_id,
            message.c.sent_at.is_not(None),
            message.c.stage.in_([s.value for s in Stage]),
        )
        .scalar_subquery()
    )
    other = letter.alias("mailed_letter")
    mailed = (
        select(func.min(other.c.mailed_at))
        .where(
            other.c.account_id == c.account_id,
            other.c.kind != VALIDATION_NOTICE,
            other.c.mailed_at.is_not(None),
        )
        .scalar_subquery()
    )
    return (
        c.account_id,
        c.jurisdiction,
        c.timezone,
        c.currency,
        c.balance,
        c.vin,
        texted.label("texted"),
        mailed.label("mailed"),
    )


def _owed(row: Any) -> OwedValidationNotice | None:
    """The account of a row of `_validation_facts`, if it was ever written to."""
    first = min((t for t in (row.texted, row.mailed) if t is not None), default=None)
    if first is None:
        return None
    return OwedValidationNotice(
        row.account_id, row.jurisdiction, row.timezone, row.currency, row.balance, row.vin, first
    )


def validation_notices_owed(
    connection: Connection, *, jurisdictions: Sequence[str]
) -> list[OwedValidationNotice]:
    """The accounts in `jurisdictions` (profiles with `validation_notice`) owed their validation
    notice: written to about the debt (`_validation_facts`), not closed, and never written one.
    One query for the book, none per account.

    Reg F 1006.34(a)(1): the notice goes with the initial communication about the debt or within
    five business days after it, once per debt (a loan is one debt, whichever stage it is in: a
    cure and a new delinquency owe none again). The first text sent or letter mailed is the
    initial communication arrears makes; one the servicing system made is not known here. An
    account closed (paid off, settled, charged off) is no longer collected: none is written for
    it. A notice once written, whatever became of it, is the account's: a blocked one is written
    again in its place (`validation_notice_standing`), never a second. The accounts are read by a
    scan of the book in these jurisdictions (no index leads with the jurisdiction), each one's
    letters and first message by its indexes."""
    if not jurisdictions:
        return []
    written = (
        select(letter.c.id)
        .where(letter.c.account_id == account.c.account_id, letter.c.kind == VALIDATION_NOTICE)
        .exists()
    )
    contacted = (
        select(*_validation_facts())
        .where(account.c.jurisdiction.in_(list(jurisdictions)), account.c.stage.not_in(TERMINAL), ~written)
        .subquery("contacted")
    )
    rows = connection.execute(
        select(contacted)
        .where(or_(contacted.c.texted.is_not(None), contacted.c.mailed.is_not(None)))
        .order_by(contacted.c.account_id)
    ).all()
    return [owed for r in rows if (owed := _owed(r)) is not None]


def validation_notice_standing(connection: Connection, letter_id: int) -> OwedValidationNotice | None:
    """The account of validation notice `letter_id`, with its facts today, while the notice is
    still owed (the account not closed, and written to); None otherwise."""
    found = connection.execute(
        select(*_validation_facts())
        .join(letter, letter.c.account_id == account.c.account_id)
        .where(letter.c.id == letter_id, letter.c.kind == VALIDATION_NOTICE, account.c.stage.not_in(TERMINAL))
    ).first()
    return None if found is None else _owed(found)


def record_given_again(
    connection: Connection, account_id: str, returned_id: int, key: str, at: datetime
) -> None:
    """On the account's timeline: validation notice `returned_id` came back to sender and the
    notice under `key` gives it again (a returned notice was not provided)."""
    detail = (
        f"validation notice letter {returned_id} came back to sender: given again at the address now "
        "on file, its validation period counted from the new notice"
    )
    data = {"returned_letter_id": returned_id, "idempotency_key": key}
    insert_events(connection, [event(account_id, at, "letter", detail, data)])
