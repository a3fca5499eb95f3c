"""Letters: the right-to-cure notice written, vetted, mailed through the letters provider, tracked.

- `write_cure_letter` (inside the caller's transaction): renders the notice from stored facts,
  vets its words with the content rules every SMS passes, and keeps the PDF, its SHA-256 and the
  render inputs on a letter row. An account without a mailing address gets no letter: the row is
  `blocked` with the reason, and the review cannot pass its cure period.
- `send_letters`: pending letters to the provider, each under its idempotency key (a resend after
  a crash returns the first letter, never a second one in the post).
- `record_tracking`: tracking events, from a webhook or a lookup. The `mailed` event starts the
  legal clock: the review's cure deadline is counted from it (`arrears.letters.notices`). A
  letter returned to sender puts the review on hold.
- `track_letters`: looks up letters whose webhook never came (`arrears dispatch`, the review runs).

Batch steps: a few letters per task run, never one task run per account.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Connection, Engine

from arrears.currencies import display
from arrears.letters import render, vet
from arrears.letters.notices import (
    context_json,
    cure_letter_context,
    mailed_deadline,
    planned_notice,
)
from arrears.models import utcnow
from arrears.settings import get_settings
from arrears.storage import letters, reviews
from arrears.storage.reviews import ReviewState
from integrations.errors import Permanent, ProviderError
from integrations.letters.protocol import Letter, LetterRequest, PostalAddress, TrackingEvent
from tasks.database import engine, policy
from tasks.providers import letters_provider

__all__ = [
    "cure_letter_key",
    "letters_waiting",
    "record_tracking",
    "send_letters",
    "track_letters",
    "write_cure_letter",
    "write_cure_letters",
]

NO_ADDRESS = "no mailing address on file: import address_line1, city, state, postal_code"


def cure_letter_key(state: ReviewState) -> str:
    return f"letter-{state.account_id.lower()}-review-{state.review_id}-right-to-cure"


def write_cure_letter(connection: Connection, state: ReviewState, at: datetime) -> bool:
    """Write the review's right-to-cure letter, once (pending, or blocked with the reason); False
    when none is owed or it was written before."""
    return write_cure_letters(connection, [state], at) == 1


def write_cure_letters(connection: Connection, states: Sequence[ReviewState], at: datetime) -> int:
    """`write_cure_letter` for each review, in order, with a few queries in all (the daily cycle
    opens thousands of reviews at once); returns how many letters were written."""
    owed: list[tuple[ReviewState, Any]] = []
    for state in states:
        rules = policy().profile(state.jurisdiction)
        notice = planned_notice(
            at,
            jurisdiction=state.jurisdiction,
            timezone=state.timezone,
            cure_amount=Decimal(display(state.past_due, state.currency)),
            currency=state.currency,
            rules=rules,
            prior_cures=state.prior_cures,
        )
        if notice is not None:
            owed.append((state, notice))
    if not owed:
        return 0
    facts = letters.mailing_facts(connection, [s.account_id for s, _ in owed])
    settings = get_settings()
    new: list[dict[str, Any]] = []
    for state, notice in owed:
        common: dict[str, Any] = {
            "key": cure_letter_key(state),
            "account_id": state.account_id,
            "review_id": state.review_id,
            "kind": "right_to_cure",
        }
        address, borrower_name = facts[state.account_id]
        if address is None:
            new.append(common | {"blocked": NO_ADDRESS})
            continue
        rules = policy().profile(state.jurisdiction)
        context = cure_letter_context(
            notice,
            lender=settings.lender_name,
            lender_contact=settings.lender_contact,
            borrower_name=borrower_name,
            account_reference=state.account_id,
            address=address.lines(),
            letter_date=at.astimezone(notice.deadline.tzinfo).date(),
        )
        rendered = render("right_to_cure", context, rules=rules)
        finding = vet(rendered, context, rules=rules)
        blocked = f"content:{finding.rule}: {finding.detail}" if finding else None
        new.append(
            common
            | {
                "template": rendered.template,
                "pdf": None if blocked else rendered.pdf,
                "pdf_sha256": rendered.sha256,
                "context": context_json(context)
                | {
                    "_recipient": {
                        "name": context.borrower_name,
                        "line1": address.line1,
                        "line2": address.line2,
                        "city": address.city,
                        "state": address.state,
                        "postal_code": address.postal_code,
                        "country": address.country,
                    }
                },
                "mail_type": settings.letters_mail_type,
                "blocked": blocked,
            }
        )
    return letters.add_letters(connection, new, at=at)


def _sender() -> PostalAddress:
    settings = get_settings()
    line1, city, state, postal, country = (settings.lender_address.split("|") + [""] * 5)[:5]
    return PostalAddress(settings.lender_name, line1, city, postal, country or "US", state)


def _recipient(row: letters.LetterRow) -> PostalAddress:
    given = dict((row.context or {}).get("_recipient") or {})
    if not given:
        raise ValueError(f"letter {row.id} has no recipient address")
    return PostalAddress(**given)


def letters_waiting() -> bool:
    """Whether any letter waits to be sent or looked up (so no provider is opened for nothing)."""
    with engine().connect() as connection:
        return bool(
            letters.letters_to_send(connection, limit=1) or letters.letters_to_track(connection, limit=1)
        )


@task(name="send-letters", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=30)
def send_letters(limit: int = 500) -> dict[str, int]:
    """Send the pending letters through the letters provider; count sent, failed and waiting."""
    counts = {"letters_sent": 0, "letters_failed": 0, "letters_waiting": 0}
    with engine().connect() as connection:
        todo = letters.letters_to_send(connection, limit=limit)
    if not todo:
        return counts
    name = get_settings().letters_provider
    sender = _sender()
    with letters_provider() as provider:
        for row, pdf in todo:
            now = utcnow()
            try:
                request = LetterRequest(
                    idempotency_key=row.idempotency_key,
                    recipient=_recipient(row),
                    sender=sender,
                    pdf=pdf,
                    mail_type=row.mail_type,  # type: ignore[arg-type]  # checked by LetterRequest
                    description=row.kind,
                )
                sent: Letter | ProviderError | ValueError = provider.send(request)
            except (Permanent, ValueError) as error:
                sent = error
            except ProviderError:  # transient, unknown outcome: sent again under the same key
                counts["letters_waiting"] += 1
                continue
            with engine().begin() as connection:
                if isinstance(sent, Letter):
                    letters.mark_sent(
                        connection,
                        letter_id=row.id,
                        provider=name,
                        provider_id=sent.id,
                        status="created",
                        at=now,
                    )
                    counts["letters_sent"] += 1
                    _apply(connection, row, list(sent.tracking), now)
                else:
                    letters.mark_blocked(
                        connection, letter_id=row.id, reason=f"refused: {sent}", at=now, status="failed"
                    )
                    counts["letters_failed"] += 1
    return counts


@task(name="track-letters", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=30)
def track_letters(limit: int = 500) -> dict[str, int]:
    """Look up letters still in the post whose webhooks may never come; record what moved."""
    with engine().connect() as connection:
        todo = letters.letters_to_track(connection, limit=limit)
    counts = {"letters_looked_up": 0, "letters_moved": 0}
    if not todo:
        return counts
    with letters_provider() as provider:
        for row in todo:
            assert row.provider_id is not None
            try:
                found = provider.status(row.provider_id)
            except ProviderError:
                continue
            counts["letters_looked_up"] += 1
            with engine().begin() as connection:
                counts["letters_moved"] += _apply(connection, row, list(found.tracking), utcnow())
                letters.touch(connection, [row.id], utcnow())
    return counts


def record_tracking(
    events: Sequence[TrackingEvent], seen_at: datetime | None = None, *, engine_: Engine | None = None
) -> tuple[int, int]:
    """Record tracking events from a webhook (late, repeated or out of order: harmless); returns
    how many letters were known and how many events moved one. Unknown letters are ignored."""
    moved = known = 0
    seen = seen_at or utcnow()
    with (engine_ or engine()).begin() as connection:
        for letter_id in dict.fromkeys(e.letter_id for e in events):
            row = letters.letter_by_provider_id(connection, letter_id)
            if row is not None:
                known += 1
                moved += _apply(connection, row, [e for e in events if e.letter_id == letter_id], seen)
    return known, moved


@dataclass(frozen=True, slots=True)
class _Clock:
    mailed_at: datetime
    deadline: datetime | None


def _apply(
    connection: Connection, row: letters.LetterRow, events: list[TrackingEvent], seen: datetime
) -> int:
    moved = 0
    for e in sorted(events, key=lambda e: e.at):
        clock = _clock(connection, row, e.at) if e.kind == "mailed" else None
        reason = "returned to sender: the review is on hold" if e.kind == "returned_to_sender" else None
        moved += letters.move_letter(
            connection,
            letter_id=row.id,
            status=e.kind,
            at=e.at,
            seen_at=seen,
            mailed_at=clock.mailed_at if clock else None,
            deadline=clock.deadline if clock else None,
            reason=reason,
        )
    return moved


def _clock(connection: Connection, row: letters.LetterRow, mailed_at: datetime) -> _Clock:
    """The mailed event of a right-to-cure letter starts its review's cure period."""
    if row.kind != "right_to_cure" or row.review_id is None:
        return _Clock(mailed_at, None)
    state = reviews.review_state(connection, row.review_id, lock=True)
    if state is None:
        return _Clock(mailed_at, None)
    context = row.context or {}
    amount = context.get("amount_to_cure") or {}
    printed = context.get("cure_deadline") or {}
    notice = mailed_deadline(
        mailed_at,
        jurisdiction=state.jurisdiction,
        timezone=state.timezone,
        cure_amount=Decimal(amount["v"]) if amount else state.past_due,
        currency=state.currency,
        rules=policy().profile(state.jurisdiction),
        printed_last_day=date.fromisoformat(printed["v"]) if printed else None,
    )
    if notice is None:
        return _Clock(mailed_at, None)
    reviews.record_cure_notice(connection, review_id=row.review_id, notice=notice)
    return _Clock(mailed_at, notice.deadline)
