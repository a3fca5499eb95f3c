"""The lifecycle's other letters: the 催收函 of a CN account entering legal referral, and the
confirmation of a hardship plan the borrower accepted.

Both go through the one letters path (`tasks.letters.write_letter`: written with its context;
rendered, vetted and kept as evidence as `send_letters` sends it; tracked), each under an
idempotency key namespaced by the installation id, so writing again (a rerun, a retried task)
adds no second letter:

- `write_collection_notices`: a bulk step of the cycle and `arrears dispatch` (one query when
  none is owed): every account in legal referral, in a jurisdiction with a collection-notice
  template, that has none written since it entered the stage;
- `write_arrears_notices`: a bulk step of the cycle and `arrears dispatch` beside it (one query
  when none is owed): the GB notice of sums in arrears (Consumer Credit Act 1974 s.86B), owed by
  the arrears themselves, first when they come to two instalments, then every
  `arrears_notice_every_days` while they last, each to be mailed within 14 days;
- `write_validation_notices`: beside them, the US validation notice (Reg F 1006.34; California by
  the Rosenthal Act), once per account, after the first message or letter about the debt, to be
  mailed within five business days of it;
- `write_plan_letter`: inside the transaction that accepts a plan (by reply or by an agent);
- `readdress_letters`: a letter blocked for want of an address is written again, in its place
  and under its key, once an import brings the address (the CLI's import, the cycle and
  `arrears dispatch` run it), and so is a letter the provider refused once an import brings
  another address (to the provider under a new key), and a letter not handed to the provider in
  time (its dates would be early); a right-to-cure letter so rewritten unblocks its review, and
  its deadline is counted from the rewrite, never from the first attempt. A right-to-cure letter
  returned to sender is kept as it was (it was mailed: the evidence of the notice then given);
  once an import brings another address, a new one is written there and the review's cure
  period counts from its mailing;
- `rewrite_letter` and `rewrite_blocked` (`arrears letters rewrite`): a letter blocked for a
  reason that does not pass by itself (not rendered, its words refused) is written again the same
  way, when an operator asks once the cause is fixed; one letter, or every letter blocked for the
  same cause.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine

from arrears.currencies import display
from arrears.jurisdictions import KNOWN_JURISDICTIONS, Profile
from arrears.letters import LetterContext, LetterTemplateMissing, template_for
from arrears.letters.contexts import (
    arrears_notice_context,
    arrears_notice_last_day,
    collection_notice_context,
    plan_letter_context,
    validation_notice_context,
    validation_notice_last_day,
    validation_period_end,
)
from arrears.letters.notices import SEND_WITHIN
from arrears.restructuring import PlanTerms
from arrears.settings import get_settings
from arrears.storage import accounts, letters, owed_letters, plans, reviews
from arrears.storage.installation import installation_id
from arrears.storage.overdue_letters import mail_by
from arrears.storage.owed_letters import (
    ARREARS_NOTICE,
    VALIDATION_NOTICE,
    OwedArrearsNotice,
    OwedNotice,
    OwedValidationNotice,
)
from arrears.vocabulary import Stage
from tasks.database import engine, policy
from tasks.letters import (
    ASKED,
    NO_ADDRESS,
    REFUSED,
    REWRITTEN,
    STALE,
    Draft,
    cure_letter_key,
    installation_letter_key,
    letter_key,
    write_cure_letter,
    write_letter,
    write_letters,
)
from tasks.recovery import settle_recoveries

__all__ = [
    "NotRewritten",
    "Rewrites",
    "arrears_notice_key",
    "collection_notice_key",
    "plan_letter_key",
    "readdress_letters",
    "rewrite_blocked",
    "rewrite_letter",
    "write_arrears_notices",
    "write_collection_notices",
    "write_plan_letter",
    "write_validation_notices",
]


# Letters the recoveries step writes again itself (`settle_recoveries`, `tasks.sales`).
_RECOVERY_LETTERS = ("notice_of_sale", "deficiency_explanation")


def collection_notice_key(connection: Connection, owed: OwedNotice) -> str:
    return letter_key(connection, owed.account_id, f"legal-{owed.episode}-collection-notice")


def plan_letter_key(connection: Connection, account_id: str, plan_id: int) -> str:
    return letter_key(connection, account_id, f"plan-{plan_id}-confirmation")


def _with_template(kind: str) -> list[str]:
    found = []
    for code in sorted(KNOWN_JURISDICTIONS):
        try:
            template_for(kind, code)
        except LetterTemplateMissing:
            continue
        found.append(code)
    return found


def write_collection_notices(at: datetime, *, engine_: Engine | None = None) -> dict[str, int]:
    """Write the 催收函 owed by accounts that entered legal referral; count them."""
    written = 0
    with (engine_ or engine()).begin() as connection:
        owed = owed_letters.notices_owed(
            connection,
            kind="collection_notice",
            stage=Stage.LEGAL_REFERRAL.value,
            jurisdictions=_with_template("collection_notice"),
        )
        for one in owed:
            written += write_collection_notice(connection, one, max(at, one.stage_since))
    return {"collection_notices_written": written}


def write_collection_notice(
    connection: Connection, owed: OwedNotice, at: datetime, *, readdressed: bool = False
) -> bool:
    settings = get_settings()
    rules = policy().profile(owed.jurisdiction)
    a = accounts.account_row(connection, owed.account_id)
    vin = a.vin if a is not None else None

    def context(name: str, address: tuple[str, ...]) -> LetterContext:
        return collection_notice_context(
            jurisdiction=owed.jurisdiction,
            timezone=owed.timezone,
            calendar=rules.hours.holidays,
            written_at=at,
            lender=settings.lender_name,
            lender_contact=settings.lender_contact,
            borrower_name=name,
            account_reference=owed.account_id,
            currency=owed.currency,
            past_due=Decimal(display(owed.past_due, owed.currency)),
            address=address,
            vin=vin,
        )

    return write_letter(
        connection,
        key=collection_notice_key(connection, owed),
        account_id=owed.account_id,
        review_id=None,
        kind="collection_notice",
        at=at,
        rules=rules,
        context_of=context,
        readdressed=readdressed,
    )


def arrears_notice_key(installation: str, owed: OwedArrearsNotice, at: datetime) -> str:
    """A notice of sums in arrears' key: one a day at most (the borrower's day it is written), so a
    rerun of the day writes none, and the next one owed is a letter of its own."""
    written_on = at.astimezone(ZoneInfo(owed.timezone)).date()
    return installation_letter_key(installation, owed.account_id, f"arrears-notice-{written_on:%Y%m%d}")


def write_arrears_notices(at: datetime, *, engine_: Engine | None = None) -> dict[str, int]:
    """Write the notices of sums in arrears owed at `at`; count them.

    Consumer Credit Act 1974 s.86B, where the profile owes it (`Profile.arrears_notice`, GB): which
    accounts, first notices and further ones, is `owed_letters.arrears_notices_owed`'s (one query
    for the book). Each is written as every letter is (`write_letters`, in bulk: the first cycle
    of a GB book owes thousands): pending, to go with the FCA's arrears information sheet (s.86A),
    or blocked with the reason, without an address or without the sheet (`tasks.letters`), never
    mailed without it; and each gets the day it must be mailed by (`overdue_letters.mail_by`), the
    14 days of s.86B(2)(a) counted from today, the day the cycle first sees it owed, so that one
    not mailed in time (blocked, held, refused) is alerted on as late
    (`arrears.letters.overdue`). Late or not given, it costs the lender the agreement's
    enforcement and its interest and default sums for as long (s.86D): hence the alert, and hence
    a blocked notice rather than one mailed without its sheet. An account under a collection
    hold gets its notice written; the send path holds it (`letters.letters_to_send`)."""
    profile = policy().profile
    rules = {code: p for code in _with_template(ARREARS_NOTICE) if (p := profile(code)).arrears_notice}
    with (engine_ or engine()).begin() as connection:
        owed = owed_letters.arrears_notices_owed(connection, rules=rules, now=at)
        if not owed:
            return {"arrears_notices_written": 0}
        installation = installation_id(connection)
        keys = [arrears_notice_key(installation, one, at) for one in owed]
        written = write_letters(
            connection,
            [
                _arrears_draft(one, key, at, rules[one.jurisdiction])
                for one, key in zip(owed, keys, strict=True)
            ],
        )
        mail_by(
            connection,
            (
                (key, _arrears_last_day(one, at, rules[one.jurisdiction]), one.timezone)
                for one, key in zip(owed, keys, strict=True)
            ),
        )
    return {"arrears_notices_written": written}


def _arrears_last_day(owed: OwedArrearsNotice, at: datetime, rules: Profile) -> date:
    within = rules.arrears_notice_within_days or 0
    return arrears_notice_last_day(at, timezone=owed.timezone, within_days=within)


def _arrears_draft(
    owed: OwedArrearsNotice, key: str, at: datetime, rules: Profile, readdressed: bool = False
) -> Draft:
    settings = get_settings()

    def context(name: str, address: tuple[str, ...]) -> LetterContext:
        return arrears_notice_context(
            jurisdiction=owed.jurisdiction,
            timezone=owed.timezone,
            written_at=at,
            lender=settings.lender_name,
            lender_contact=settings.lender_contact,
            borrower_name=name,
            account_reference=owed.account_id,
            currency=owed.currency,
            arrears=Decimal(display(owed.past_due, owed.currency)),
            balance=Decimal(display(owed.balance, owed.currency)),
            address=address,
            vin=owed.vin,
        )

    return Draft(key, owed.account_id, None, ARREARS_NOTICE, at, rules, context, readdressed)


def write_validation_notices(at: datetime, *, engine_: Engine | None = None) -> dict[str, int]:
    """Write the validation notices owed at `at`; count them.

    Reg F 1006.34, where the profile owes it (`Profile.validation_notice`: California, by the
    Rosenthal Act; elsewhere by policy): which accounts is `owed_letters.validation_notices_owed`'s
    (one query for the book: those sent a message or mailed a letter about the debt, and never
    written one). The cycle runs this before its dispatch, so a first text sent today is followed
    by its notice at the next cycle or `arrears dispatch`. Each is written as every letter is
    (`write_letters`, in bulk), stating the day its validation period ends, counted from the latest
    day it may be mailed (`validation_period_end`); and each gets the day it must be mailed by
    (`overdue_letters.mail_by`): five business days after that first message or letter, so that
    one not mailed in time (blocked without an address, held, refused) is alerted on as late. One
    written for an account contacted before arrears owed it is late from the start, and said so."""
    profile = policy().profile
    rules = {code: p for code in _with_template(VALIDATION_NOTICE) if (p := profile(code)).validation_notice}
    with (engine_ or engine()).begin() as connection:
        owed = owed_letters.validation_notices_owed(connection, jurisdictions=sorted(rules))
        if not owed:
            return {"validation_notices_written": 0}
        installation = installation_id(connection)
        keys = [installation_letter_key(installation, one.account_id, "validation-notice") for one in owed]
        written = write_letters(
            connection,
            [_validation_draft(o, key, at, rules[o.jurisdiction]) for o, key in zip(owed, keys, strict=True)],
        )
        mail_by(
            connection,
            (
                (key, _validation_last_day(one, rules[one.jurisdiction]), one.timezone)
                for one, key in zip(owed, keys, strict=True)
            ),
        )
    return {"validation_notices_written": written}


def _validation_last_day(owed: OwedValidationNotice, rules: Profile, since: datetime | None = None) -> date:
    """The day by which the notice must be mailed: `within_days` business days after the first
    contact, or after `since` for a notice given again."""
    return validation_notice_last_day(
        (since or owed.first_contact_at).astimezone(ZoneInfo(owed.timezone)).date(),
        within_days=rules.validation_notice_within_days or 0,
        holidays=_country(owed.jurisdiction),
    )


def _country(jurisdiction: str) -> str:
    """The calendar of the country's legal public holidays (5 USC 6103(a) for "US")."""
    return jurisdiction.split("-")[0]


def _validation_draft(
    owed: OwedValidationNotice, key: str, at: datetime, rules: Profile, readdressed: bool = False
) -> Draft:
    settings = get_settings()
    ends = validation_period_end(
        at,
        timezone=owed.timezone,
        calendar=rules.hours.holidays,
        holidays=_country(owed.jurisdiction),
        receipt_days=rules.validation_receipt_days or 0,
        period_days=rules.validation_period_days or 0,
    )

    def context(name: str, address: tuple[str, ...]) -> LetterContext:
        return validation_notice_context(
            jurisdiction=owed.jurisdiction,
            timezone=owed.timezone,
            written_at=at,
            validation_ends=ends,
            lender=settings.lender_name,
            lender_contact=settings.lender_contact,
            borrower_name=name,
            account_reference=owed.account_id,
            currency=owed.currency,
            balance=Decimal(display(owed.balance, owed.currency)),
            address=address,
            vin=owed.vin,
        )

    return Draft(key, owed.account_id, None, VALIDATION_NOTICE, at, rules, context, readdressed)


def write_plan_letter(
    connection: Connection,
    *,
    account_id: str,
    plan_id: int,
    terms: PlanTerms,
    accepted_on: date,
    at: datetime,
) -> bool:
    """Write the confirmation of plan `plan_id`, once (inside the caller's transaction)."""
    return _write_plan_letter(connection, account_id, plan_id, terms, accepted_on, at)


def _write_plan_letter(
    connection: Connection,
    account_id: str,
    plan_id: int,
    terms: PlanTerms,
    accepted_on: date,
    at: datetime,
    *,
    readdressed: bool = False,
) -> bool:
    a = accounts.account_row(connection, account_id)
    assert a is not None, account_id
    rules = policy().profile(a.jurisdiction)
    settings = get_settings()

    def context(name: str, address: tuple[str, ...]) -> LetterContext:
        return plan_letter_context(
            terms,
            jurisdiction=a.jurisdiction,
            locale=rules.locale,
            accepted_on=accepted_on,
            letter_date=at.astimezone(ZoneInfo(a.timezone)).date(),
            lender=settings.lender_name,
            lender_contact=settings.lender_contact,
            borrower_name=name,
            account_reference=account_id,
            address=address,
        )

    return write_letter(
        connection,
        key=plan_letter_key(connection, account_id, plan_id),
        account_id=account_id,
        review_id=None,
        kind="hardship_plan",
        at=at,
        rules=rules,
        context_of=context,
        readdressed=readdressed,
    )


def readdress_letters(at: datetime, *, engine_: Engine | None = None) -> dict[str, int]:
    """Write again every letter blocked for want of an address whose account has one now, every
    letter the provider refused whose account has another address now (blocked as refused first,
    one attempt on: it goes under a new provider key), and every letter not handed to the provider
    within `SEND_WITHIN` of being written (blocked as stale first: its printed dates were counted
    from a mailing now past); and give again, in a letter of its own, every right-to-cure or
    validation notice returned to sender whose account has another address now
    (`letters.returned_and_readdressed`). The notice of sale is
    left to `tasks.recovery.settle_recoveries`, which rewrites it the same way at its next run."""
    written = 0
    with (engine_ or engine()).begin() as connection:
        stale = letters.block_unsent(connection, written_before=at - SEND_WITHIN, reason=STALE, at=at)
        letters.refused_and_readdressed(connection, reason=REFUSED, at=at)
        for reason in REWRITTEN:
            for row in letters.addressed_since_blocked(connection, reason=reason):
                written += _readdress(connection, row, at)
        for row in letters.returned_and_readdressed(connection):
            again = _give_validation_again if row.kind == VALIDATION_NOTICE else _give_notice_again
            written += again(connection, row, at)
    return {"letters_readdressed": written} | ({"letters_stale": stale} if stale else {})


class NotRewritten(ValueError):
    """A letter `rewrite_letter` leaves as it is, and why."""


def rewrite_letter(
    letter_id: int, *, why: str, at: datetime, engine_: Engine | None = None
) -> letters.LetterRow:
    """An operator's way out for a letter blocked for a reason that does not pass by itself (it
    could not be rendered, or its words were refused), once the cause is fixed: it is written again
    from today's facts, in its place and under its key (it never reached the provider), with `why`
    in the audit trail, and goes with the next letters run; a right-to-cure letter so rewritten
    counts its dates from now and unblocks its review. A notice of sale is rewritten by
    `tasks.recovery.settle_recoveries`, run here too. Raises `NotRewritten`, changing nothing, for
    any other letter, or one that nothing owes any more (its review closed, its plan ended).
    Returns the letter as it is now."""
    engine_ = engine_ or engine()
    with engine_.begin() as connection:
        row = _rewrite(connection, letter_id, why, at)
    if row.kind in _RECOVERY_LETTERS:
        settle_recoveries(at, engine_=engine_)
    with engine_.connect() as connection:
        now = letters.letter_by_id(connection, letter_id)
    assert now is not None
    return now


@dataclass(frozen=True)
class Rewrites:
    """What `rewrite_blocked` did: the letters written again, those left as they were with the
    reason `NotRewritten` gave, and those whose rewrite failed with the error (left as they were
    too: their transaction rolled back)."""

    rewritten: list[letters.LetterRow]
    left: list[tuple[letters.LetterRow, str]]
    failed: list[tuple[letters.LetterRow, str]]


def rewrite_blocked(reason_starts: str, *, why: str, at: datetime, engine_: Engine | None = None) -> Rewrites:
    """`rewrite_letter` for every letter blocked with a reason that starts with `reason_starts`: a
    systemic cause (a template bug, the lender's contact line) blocks a whole day's letters at
    once. Each letter in a transaction of its own, so one that is owed no more, or whose rewrite
    fails, is left as it was and reported without holding back the others; the recovery runs
    once, after all of them, where a notice of sale was among them (as `rewrite_letter`)."""
    engine_ = engine_ or engine()
    with engine_.connect() as connection:
        found = letters.blocked_for(connection, reason_starts)
    rewritten, left, failed = [], [], []
    for letter_id in found:
        try:
            with engine_.begin() as connection:
                row = _rewrite(connection, letter_id, why, at)
        except NotRewritten as refused:
            left.append((letter_id, str(refused)))
        except Exception as error:  # one letter's bug (its context, its account) stops no other
            failed.append((letter_id, f"{type(error).__name__}: {error}"))
        else:
            rewritten.append(row)
    if any(row.kind in _RECOVERY_LETTERS for row in rewritten):
        settle_recoveries(at, engine_=engine_)
    with engine_.connect() as connection:
        return Rewrites(
            rewritten=[_now(connection, row.id) for row in rewritten],
            left=[(_now(connection, letter_id), why_not) for letter_id, why_not in left],
            failed=[(_now(connection, letter_id), error) for letter_id, error in failed],
        )


def _now(connection: Connection, letter_id: int) -> letters.LetterRow:
    row = letters.letter_by_id(connection, letter_id)
    assert row is not None  # letters are never deleted
    return row


def _rewrite(connection: Connection, letter_id: int, why: str, at: datetime) -> letters.LetterRow:
    """Mark one letter to be written again and write it (a notice of sale is left marked for the
    recovery); raises `NotRewritten` inside the caller's transaction, which then changes nothing."""
    row = letters.letter_by_id(connection, letter_id)
    if row is None:
        raise NotRewritten(f"no letter {letter_id}")
    if row.status != "blocked":
        raise NotRewritten(f"letter {letter_id} is {row.status}: only a blocked letter is written again")
    if row.reason == NO_ADDRESS:
        raise NotRewritten(f"letter {letter_id} waits for an address: import one and it is written again")
    if row.reason in REWRITTEN:
        raise NotRewritten(f"letter {letter_id} is written again by the next cycle or dispatch: {row.reason}")
    letters.mark_blocked(connection, letter_id=letter_id, reason=ASKED, at=at, status="blocked", why=why)
    if row.kind not in _RECOVERY_LETTERS and not _readdress(connection, row, at):
        raise NotRewritten(
            f"letter {letter_id} is owed no more (its review closed, its plan ended, or its account "
            "left the stage that asked for it): left as it was"
        )
    return row


def _give_notice_again(connection: Connection, returned: letters.LetterRow, at: datetime) -> bool:
    """A right-to-cure letter came back to sender, and another address is on file: while its
    review is still open, a new letter goes there (a row of its own, the returned one kept as the
    evidence it is) and the cure period counts from the new letter's mailing."""
    assert returned.review_id is not None  # `returned_and_readdressed` reads review letters of this kind
    state = reviews.review_state(connection, returned.review_id, lock=True)
    if state is None or not state.open_to_notice:
        return False
    at = max(at, state.opened_at)
    key = f"{cure_letter_key(connection, state)}-resent-{returned.id}"
    if not write_cure_letter(connection, state, at, key=key):
        return False
    reviews.restart_cure_period(
        connection,
        review_id=state.review_id,
        account_id=state.account_id,
        returned_letter_id=returned.id,
        at=at,
    )
    return True


def _give_validation_again(connection: Connection, returned: letters.LetterRow, at: datetime) -> bool:
    """A validation notice came back to sender, and another address is on file: while the account
    is open, a new notice goes there (a row of its own, the returned one kept as the evidence it
    is), stating a validation period counted from it. Reg F sets no day for a notice given again:
    it must be mailed within as many business days of `at`, when the new address is found, as the
    first had from the first contact (`overdue_letters.mail_by`), or it is listed as late."""
    still = owed_letters.validation_notice_standing(connection, returned.id)
    if still is None:
        return False
    rules = policy().profile(still.jurisdiction)
    key = f"{returned.idempotency_key}-resent-{returned.id}"
    if write_letters(connection, [_validation_draft(still, key, at, rules)]) != 1:
        return False
    mail_by(connection, [(key, _validation_last_day(still, rules, since=at), still.timezone)])
    owed_letters.record_given_again(connection, still.account_id, returned.id, key, at)
    return True


_Owed = TypeVar("_Owed", OwedArrearsNotice, OwedValidationNotice)


def _write_again(
    connection: Connection,
    row: letters.LetterRow,
    at: datetime,
    still: _Owed | None,
    draft_of: Callable[[_Owed, str, datetime, Profile, bool], Draft],
) -> bool:
    """A letter the account's facts owe (`owed_letters`), written again from today's facts in its
    place and under its key (its mail-by day kept), while they still owe it (`still`)."""
    if still is None:
        return False
    rules = policy().profile(still.jurisdiction)
    return write_letters(connection, [draft_of(still, row.idempotency_key, at, rules, True)]) == 1


def _readdress(connection: Connection, row: letters.LetterRow, at: datetime) -> bool:
    if row.kind == "right_to_cure" and row.review_id is not None:
        state = reviews.review_state(connection, row.review_id, lock=True)
        if state is None or not state.open_to_notice or state.cure_deadline is not None:
            return False
        at = max(at, state.opened_at)
        return write_cure_letter(connection, state, at, readdressed=True, key=row.idempotency_key)
    if row.kind == "collection_notice":
        a = accounts.account_row(connection, row.account_id)
        if a is None or a.stage != Stage.LEGAL_REFERRAL.value:
            return False
        owed = OwedNotice(
            a.account_id, a.episode, a.jurisdiction, a.timezone, a.currency, a.past_due_amount, a.stage_since
        )
        if collection_notice_key(connection, owed) != row.idempotency_key:
            return False  # a notice of an earlier stay in legal referral
        return write_collection_notice(connection, owed, max(at, a.stage_since), readdressed=True)
    if row.kind == ARREARS_NOTICE:
        # While it is the account's latest and the arrears it was owed for last.
        still = owed_letters.arrears_notice_standing(connection, row.id)
        return _write_again(connection, row, at, still, _arrears_draft)
    if row.kind == VALIDATION_NOTICE:
        # While the account is open; its period counted from today (its mail-by day kept: the
        # first contact has not moved).
        still_owed = owed_letters.validation_notice_standing(connection, row.id)
        return _write_again(connection, row, at, still_owed, _validation_draft)
    if row.kind == "hardship_plan":
        current = plans.current_plan(connection, row.account_id)
        if current is None or current.status != "active":
            return False
        if plan_letter_key(connection, row.account_id, current.id) != row.idempotency_key:
            return False  # the confirmation of a plan that is over
        terms = PlanTerms.from_json(current.terms)
        accepted_on = date.fromisoformat(current.terms["accepted_on"])
        return _write_plan_letter(
            connection, row.account_id, current.id, terms, accepted_on, at, readdressed=True
        )
    return False
