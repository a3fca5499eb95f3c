"""Letters: the right-to-cure notice written, vetted, mailed through the letters provider, tracked.

- `write_cure_letter` (inside the caller's transaction; `write_cure_letters` for the reviews the
  cycle opens, in bulk, the same letters): keeps the notice's render inputs (stored facts, the
  dates counted from now) on a letter row. An account without a mailing address gets no letter:
  the row is `blocked` with the reason, and the review cannot pass its cure period.
- `send_letters`: renders each pending letter, vets its words with the content rules every SMS
  passes, appends what the law makes it carry (the FCA's default information sheet after a GB
  default notice, its arrears information sheet after a GB notice of sums in arrears:
  `arrears.letters.enclosures`; not configured, the notice is blocked, never mailed without it)
  and stores the PDF as mailed and its SHA-256, then hands it to the provider under its
  idempotency key (a resend after a crash sends the same bytes and returns
  the first letter, never a second one in the post).
- `record_tracking`: tracking events, from a webhook or a lookup. The `mailed` event starts the
  legal clock: the review's cure deadline is counted from it (`arrears.letters.notices`). A
  letter returned to sender puts the review on hold.
- `track_letters`: looks up letters whose webhook never came (`arrears dispatch`, the review runs).

Batch steps: a few letters per task run, never one task run per account.
"""

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from threading import Event
from typing import Literal
from zoneinfo import ZoneInfo

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Connection, Engine

from arrears.currencies import display
from arrears.jurisdictions import Profile
from arrears.letters import LetterContext, LetterTemplateMissing, render, template_for, vet
from arrears.letters.enclosures import (
    ARREARS_INFORMATION_SHEET,
    DEFAULT_INFORMATION_SHEET,
    Enclosed,
    Enclosure,
    enclose,
    enclosures_for,
    read_enclosure,
)
from arrears.letters.notices import (
    SEND_WITHIN,
    context_from_json,
    context_json,
    cure_letter_context,
    days_in_the_post,
    mailed_deadline,
    planned_notice,
)
from arrears.models import utcnow
from arrears.review import notice_owed
from arrears.settings import Settings, get_settings
from arrears.storage import letters, mailing, read_only, reviews
from arrears.storage.installation import installation_id, stored_installation_id
from arrears.storage.reviews import ReviewState
from integrations.errors import ConfigError, Permanent, ProviderError, UnknownOutcome
from integrations.letters.protocol import (
    Letter,
    LetterRequest,
    LettersProvider,
    PostalAddress,
    TrackingEvent,
    posting_countries,
)
from tasks.breaker import FailuresInARow
from tasks.database import engine, policy
from tasks.drill import crash_point
from tasks.logs import run_logger
from tasks.providers import letters_provider

__all__ = [
    "ASKED",
    "GIVE_UP_AFTER",
    "NO_ADDRESS",
    "NO_ARREARS_SHEET",
    "NO_ROUTE",
    "NO_SHEET",
    "REFUSED",
    "REWRITTEN",
    "STALE",
    "Draft",
    "cure_letter_key",
    "installation_letter_key",
    "letter_key",
    "letters_in_the_post",
    "letters_unsent",
    "mailed_by_others",
    "readdressable",
    "record_tracking",
    "send_letters",
    "track_letters",
    "write_cure_letter",
    "write_cure_letters",
    "write_letter",
    "write_letters",
]

NO_ADDRESS = "no mailing address on file: import address_line1, city, state, postal_code"
STALE = "not handed to the letters provider within a day of being written: its dates would be early"
REFUSED = "refused by the letters provider, and another address is on file now: to be written again"
# How the reason begins of a notice no configured route can serve in time (`_no_route`).
NO_ROUTE = "no letters route"
# How the reason begins of a notice the law makes carry a document the lender has not supplied
# (`_unenclosed`), one per document: the FCA's default information sheet (a GB default notice),
# and its arrears information sheet (a GB notice of sums in arrears).
NO_SHEET = DEFAULT_INFORMATION_SHEET.missing
NO_ARREARS_SHEET = ARREARS_INFORMATION_SHEET.missing
ASKED = "to be written again from today's facts, as asked (arrears letters rewrite)"
# Why a blocked letter waits to be written again, in its place and under its key (a refused one
# goes to the provider under a new key: `LetterRow.provider_key`).
REWRITTEN = (NO_ADDRESS, STALE, REFUSED, ASKED)


def letter_key(connection: Connection, account_id: str, what: str) -> str:
    """A letter's idempotency key, namespaced by the installation id (DESIGN §3): the key travels
    to the letters provider, and two databases mailing through one account there must never
    have one's letter taken for the other's (the same account id, review or plan number)."""
    return installation_letter_key(installation_id(connection), account_id, what)


def installation_letter_key(installation: str, account_id: str, what: str) -> str:
    """`letter_key` with the installation id read once (a batch of letters reads it once)."""
    return f"{_ours(installation)}{account_id.lower()}-{what}"


def _ours(installation: str) -> str:
    """How every letter key of this installation begins."""
    return f"{installation}-letter-"


def mailed_by_others(events: Sequence[TrackingEvent], *, engine_: Engine | None = None) -> bool:
    """Whether tracking events about no letter we know are about letters another system mailed
    through the same account (a lender's statements through its Lob account): each carries a key,
    none of this installation. An event without a key, or under one of ours, may be about a
    letter whose send is not recorded yet."""
    if not events or not all(e.idempotency_key for e in events):
        return False
    with read_only(engine_ or engine()) as connection:  # no write lock for another system's mail
        installation = stored_installation_id(connection)
    if installation is None:  # no letter was ever keyed here
        return True
    return not any(e.idempotency_key.startswith(_ours(installation)) for e in events)


def _cure_what(state: ReviewState) -> str:
    return f"review-{state.review_id}-right-to-cure"


def cure_letter_key(connection: Connection, state: ReviewState) -> str:
    return letter_key(connection, state.account_id, _cure_what(state))


@dataclass(frozen=True, slots=True)
class Draft:
    """A letter to write (`write_letters`): its context is `context_of(borrower name, address
    lines)`, its template the one the jurisdiction's `rules` give. `readdressed`: a letter
    blocked for want of an address, or for not having been sent in time (`REWRITTEN`), is written
    again in its place."""

    key: str
    account_id: str
    review_id: int | None
    kind: str
    at: datetime
    rules: Profile
    context_of: Callable[[str, tuple[str, ...]], LetterContext]
    readdressed: bool = False


def write_cure_letter(
    connection: Connection,
    state: ReviewState,
    at: datetime,
    *,
    readdressed: bool = False,
    key: str | None = None,
) -> bool:
    """Write the review's right-to-cure letter, once (pending, or blocked with the reason); False
    when none is owed or it was written before. `readdressed`: the letter was blocked for want of
    an address and one is now on file: it is written again, its deadline counted from now, under
    its own `key` (a letter written before keys carried the installation id keeps its key)."""
    draft = _cure_draft(state, at, lambda s: key or cure_letter_key(connection, s), readdressed=readdressed)
    return draft is not None and write_letters(connection, [draft]) == 1


def write_cure_letters(connection: Connection, states: Sequence[ReviewState], at: datetime) -> int:
    """`write_cure_letter` for each review, in order, with a few queries in all rather than a
    handful per letter (the first daily cycle opens a review for a quarter of a portfolio);
    returns how many letters were written."""
    installation = installation_id(connection)
    profile = policy().profile  # the policy read once for the batch, not once per review

    def key(state: ReviewState) -> str:
        return installation_letter_key(installation, state.account_id, _cure_what(state))

    drafts = [
        draft for state in states if (draft := _cure_draft(state, at, key, rules=profile(state.jurisdiction)))
    ]
    return write_letters(connection, drafts)


def _cure_draft(
    state: ReviewState,
    at: datetime,
    key: Callable[[ReviewState], str],
    *,
    readdressed: bool = False,
    rules: Profile | None = None,
) -> Draft | None:
    """The review's right-to-cure letter to write under `key(state)` (asked only when one is owed), or
    None when the jurisdiction owes none. `rules`: the jurisdiction's profile under the policy, when
    the caller has read the policy already."""
    rules = policy().profile(state.jurisdiction) if rules is None else rules
    # Most reviews the cycle opens owe none (CN, US): known from the profile alone.
    if not notice_owed(state.jurisdiction, rules=rules, prior_cures=state.prior_cures):
        return None
    amount = Decimal(display(state.past_due, state.currency))
    notice = planned_notice(
        at,
        jurisdiction=state.jurisdiction,
        timezone=state.timezone,
        cure_amount=amount,
        currency=state.currency,
        rules=rules,
        prior_cures=state.prior_cures,
    )
    if notice is None:
        return None
    settings = get_settings()

    def context(name: str, address: tuple[str, ...]) -> LetterContext:
        return cure_letter_context(
            notice,
            lender=settings.lender_name,
            lender_contact=settings.lender_contact,
            borrower_name=name,
            account_reference=state.account_id,
            address=address,
            # The borrower's date, as every other letter is dated (the deadline is kept in UTC).
            letter_date=at.astimezone(ZoneInfo(state.timezone)).date(),
            vin=state.vin,
        )

    return Draft(
        key(state), state.account_id, state.review_id, "right_to_cure", at, rules, context, readdressed
    )


def readdressable(connection: Connection, row: letters.LetterRow) -> bool:
    """Whether a letter blocked to be written again (`REWRITTEN`) can now be written: an address
    is on file (an import brought it after the letter was first written, or it was there)."""
    return (
        row.status == "blocked"
        and row.reason in REWRITTEN
        and mailing.mailing_address(connection, row.account_id) is not None
    )


def write_letter(
    connection: Connection,
    *,
    key: str,
    account_id: str,
    review_id: int | None,
    kind: str,
    at: datetime,
    rules: Profile,
    context_of: Callable[[str, tuple[str, ...]], LetterContext],
    readdressed: bool = False,
) -> bool:
    """Write a letter of `kind` under `key`, once (`write_letters`); False when it was written
    before. Every letter goes out through this one path (`send_letters`), whatever asked for it."""
    draft = Draft(key, account_id, review_id, kind, at, rules, context_of, readdressed)
    return write_letters(connection, [draft]) == 1


def write_letters(connection: Connection, drafts: Sequence[Draft]) -> int:
    """Write each letter, in order, once: kept pending with its context (the borrower's name and
    address as they are now, the dates counted from now), to be rendered and vetted when it is
    sent (`send_letters`); blocked with the reason when there is no address. Returns how many were
    written. Addresses and names are read in one query, and the letters and their audit events
    written in a statement each, whether there is one letter or thousands
    (`arrears.storage.letters.add_letters`). Nothing is rendered here: the first daily cycle of a
    book writes tens of thousands of letters at ~1 ms of rendering each, inside the reviews' write
    transaction, and they go to the provider a few hundred a run."""
    if not drafts:
        return 0
    facts = mailing.mailing_facts(connection, [d.account_id for d in drafts])
    settings = get_settings()
    new: list[letters.NewLetter] = []
    for d in drafts:
        replaces = REWRITTEN if d.readdressed else ()
        address, name = facts.get(d.account_id, (None, ""))
        if address is None:
            new.append(_blocked(d, NO_ADDRESS, replaces))
            continue
        context = d.context_of(name, address.lines())
        try:
            template = template_for(d.kind, context.jurisdiction, rules=d.rules)
        except LetterTemplateMissing as missing:
            # No template for its kind there (a notice a lender's policy owes where arrears writes
            # none): blocked as one `send_letters` cannot render, the others written; a notice it
            # owes holds its review until an operator writes it again once there is one
            # (`arrears letters rewrite`).
            new.append(_blocked(d, _unrendered(missing), replaces))
            continue
        unset = _unconfigured(d.kind, context.jurisdiction, settings)
        if unset is not None:  # known now: its review shows why it waits, and it never goes without
            new.append(_blocked(d, unset, replaces))
            continue
        recipient = {
            "name": context.borrower_name,
            "line1": address.line1,
            "line2": address.line2,
            "city": address.city,
            "state": address.state,
            "postal_code": address.postal_code,
            "country": address.country,
        }
        new.append(
            letters.NewLetter(
                d.key,
                d.account_id,
                d.review_id,
                d.kind,
                d.at,
                template=template,
                context=context_json(context) | {"_recipient": recipient},
                mail_type=settings.letters_mail_type,
                replaces=replaces,
            )
        )
    return len(letters.add_letters(connection, new))


def _blocked(draft: Draft, reason: str, replaces: tuple[str, ...]) -> letters.NewLetter:
    """The letter `draft` asks for, blocked with `reason` (`write_letters`)."""
    return letters.NewLetter(
        draft.key, draft.account_id, draft.review_id, draft.kind, draft.at, blocked=reason, replaces=replaces
    )


def _unrendered(error: Exception) -> str:
    """Why a letter that cannot be rendered is blocked: one reason, whenever it is found out, so
    that `arrears letters rewrite --blocked-for "not rendered"` finds them all."""
    return f"not rendered: {type(error).__name__}: {error}"


def _unenclosed(enclosure: Enclosure, why: str) -> str:
    """Why a letter that must carry `enclosure` is blocked: it is not configured, or its file
    cannot be read (`why`). It is written again, with the document, once an operator asks."""
    return (
        f"{enclosure.missing}: {why}. {enclosure.source}; without it the notice is not valid and the "
        f"agreement cannot be enforced on it. It needs {enclosure.env}, the PDF of the current "
        f'version of {enclosure.title}, then `arrears letters rewrite --blocked-for "{enclosure.missing}"`'
    )


def _unconfigured(kind: str, jurisdiction: str, settings: Settings) -> str | None:
    """Why a letter is blocked as it is written: a document it must carry has no file configured
    (`_unenclosed`); None when each has one (read and appended as it is sent: `_enclosures`)."""
    for enclosure in enclosures_for(kind, jurisdiction):
        if getattr(settings, enclosure.setting) is None:
            return _not_set(enclosure)
    return None


def _not_set(enclosure: Enclosure) -> str:
    return _unenclosed(enclosure, f"{enclosure.env} is not set")


def _read(enclosure: Enclosure, path: Path | None) -> Enclosed | str:
    """The document at `path`, or why a letter that must carry it is blocked (`_unenclosed`)."""
    if path is None:
        return _not_set(enclosure)
    try:
        return read_enclosure(enclosure, path)
    except ValueError as error:  # removed, or replaced by no PDF, since the settings were read
        return _unenclosed(enclosure, str(error))


def _enclosures() -> Callable[[str, str], tuple[Enclosed, ...] | str]:
    """The documents a letter of a kind in a jurisdiction must carry, each read from the file its
    setting names once a run, when a letter first needs it (the lender replaces the file when
    the FCA publishes a new sheet: a run takes the file as it is then); or, when one is not
    configured or can no longer be read, why the letter is blocked."""
    settings = get_settings()
    read: dict[Enclosure, Enclosed | str] = {}

    def of(kind: str, jurisdiction: str) -> tuple[Enclosed, ...] | str:
        for enclosure in enclosures_for(kind, jurisdiction):
            if enclosure not in read:
                read[enclosure] = _read(enclosure, getattr(settings, enclosure.setting))
        found = [read[enclosure] for enclosure in enclosures_for(kind, jurisdiction)]
        missing = [f for f in found if isinstance(f, str)]
        return missing[0] if missing else tuple(f for f in found if isinstance(f, Enclosed))

    return of


def _senders() -> Callable[[str], PostalAddress]:
    """The return address of a letter to each country: `ARREARS_LETTERS_SENDERS`' for it, else
    the lender's (`ARREARS_LENDER_ADDRESS`). Read once a run."""
    settings = get_settings()

    def address(value: str) -> PostalAddress:
        line1, city, state, postal, country = (value.split("|") + [""] * 5)[:5]
        return PostalAddress(settings.lender_name, line1, city, postal, country or "US", state)

    lender = address(settings.lender_address)
    by_country = {country: address(value) for country, value in settings.letters_senders.items()}
    return lambda country: by_country.get(country, lender)


def _no_route(row: letters.LetterRow, provider: LettersProvider, sender: PostalAddress) -> str | None:
    """Why `provider` cannot take the letter from `sender`, or None. A notice whose printed dates
    allow it days in the post (`days_in_the_post`: a GB default notice is served 5 days after
    mailing) goes only as domestic mail of the country it is addressed to: sent from another
    (Lob posts in the US), it would be served after the day it printed and give the borrower less
    time than the law. It is blocked, naming what to configure, and written again once that is
    done (`arrears letters rewrite --blocked-for "no letters route"`), its dates counted afresh."""
    context = row.context or {}
    country = str((context.get("_recipient") or {}).get("country") or "")
    try:
        rules = policy().profile(str(context.get("jurisdiction") or ""))
    except LookupError:  # no jurisdiction a profile knows: `_rendered` blocks it, saying why
        return None
    days = days_in_the_post(row.kind, rules)
    posts = posting_countries(provider, sender)
    if not days or not country or posts is None or country in posts:
        return None
    name = get_settings().letters_provider
    if hasattr(type(provider), "posts_in"):
        how = f"letters provider {name!r} posts from {', '.join(sorted(posts))} only"
        fix = f"a letters provider that posts in {country} (ARREARS_LETTERS_PROVIDER)"
    else:
        how = (
            f"no {country} sender address is configured, and letters provider {name!r}, which does "
            f"not say where it posts, is taken to post from its return address's country, {sender.country}"
        )
        fix = f'ARREARS_LETTERS_SENDERS={{"{country}": "line1|city||postal code|{country}"}}'
    return (
        f"{NO_ROUTE} to {country}: {how}; this {row.kind.replace('_', '-')} notice is served {days} "
        f"days after mailing and international mail takes longer, so it would give less time than it "
        f'prints. It needs {fix}, then `arrears letters rewrite --blocked-for "{NO_ROUTE}"`'
    )


def _recipient(row: letters.LetterRow) -> PostalAddress:
    given = dict((row.context or {}).get("_recipient") or {})
    if not given:
        raise ValueError(f"letter {row.id} has no recipient address")
    return PostalAddress(**given)


def letters_unsent() -> bool:
    """Whether any letter waits to be sent (so no provider is opened for nothing)."""
    with engine().connect() as connection:
        return bool(letters.letters_to_send(connection, limit=1))


def letters_in_the_post() -> bool:
    """Whether any letter sent is still in the post, to be looked up."""
    with engine().connect() as connection:
        return bool(letters.letters_to_track(connection, limit=1))


# Hand-overs failed in a row (none answered between) after which the provider is taken for down
# this run: each has spent its client's retries, and a run holds up to ARREARS_LETTERS_PER_RUN.
GIVE_UP_AFTER = 10


@task(name="send-letters", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=30)
def send_letters(
    limit: int | None = None,
    as_of: datetime | None = None,
    account_id: str | None = None,
    cycle_id: int | None = None,
) -> dict[str, int]:
    """Send the pending letters (of one account, if given) through the letters provider, oldest
    first, at most `limit` (`ARREARS_LETTERS_PER_RUN` by default); count sent, failed, blocked
    and waiting.

    Only letters written within `SEND_WITHIN` of `as_of` (default now) go: the dates an older one
    prints (a cure deadline, a sale date) were counted from a mailing that is now too late, so it
    waits to be written again (`tasks.lifecycle_letters.readdress_letters`). A letter in doubt (the
    provider may have taken it) is first looked for by its key (`find`): found, it is recorded as
    sent; not found, it goes again as it was, whatever its age, under its key. A notice whose
    dates allow it days in the post, which the provider would post from another country than the
    one it is addressed to, is blocked instead (`_no_route`). `cycle_id`: the daily cycle run
    sending them, whose letters count each hand-over (`reports.letters_sent`)."""
    counts = {"letters_sent": 0, "letters_failed": 0, "letters_waiting": 0, "letters_blocked": 0}
    settings = get_settings()
    with engine().connect() as connection:
        todo = letters.letters_to_send(
            connection,
            limit=settings.letters_per_run if limit is None else limit,
            written_since=(as_of or utcnow()) - SEND_WITHIN,
            account_id=account_id,
        )
    if not todo:
        return counts
    sender_to = _senders()
    enclosures = _enclosures()
    refused = Event()  # the provider refused our credentials: it would refuse every letter
    down = FailuresInARow(GIVE_UP_AFTER)  # it answers nothing: the rest wait for the next run
    # Each hand-over waits on the provider (the PDF's upload, Lob's checks): several are in its
    # hands at once while this thread renders the next letters. Rendering stays in this thread.
    with (
        letters_provider() as provider,
        ThreadPoolExecutor(max_workers=min(settings.letters_concurrency, len(todo))) as pool,
    ):
        handed = []
        for row, stored in todo:
            if refused.is_set() or down.tripped:
                break
            sender = sender_to(str(((row.context or {}).get("_recipient") or {}).get("country") or ""))
            # One in doubt may be in the provider's hands already: it is looked for as it went.
            unrouted = _no_route(row, provider, sender) if row.submitted_at is None else None
            if unrouted is not None:
                with engine().begin() as connection:
                    letters.mark_blocked(
                        connection, letter_id=row.id, reason=unrouted, at=utcnow(), status="blocked"
                    )
                counts["letters_blocked"] += 1
                continue
            pdf = stored if stored is not None else _rendered(row, utcnow(), enclosures)
            if isinstance(pdf, bytes):
                handed.append(pool.submit(_hand_over, provider, row, pdf, sender, refused, down, cycle_id))
            else:
                counts[pdf] += 1
        refusals: list[ConfigError] = []
        for outcome in handed:
            try:
                counts[outcome.result()] += 1
            except ConfigError as error:
                refusals.append(error)
    if refusals:  # every letter would be refused alike: they wait, and a person is told once
        run_logger("arrears.letters").error(
            "the letters provider refused our credentials (%s): no letter goes until "
            "ARREARS_LETTERS_CREDENTIALS is right",
            refusals[0],
        )
    elif down.tripped:
        run_logger("arrears.letters").warning(
            "the letters provider failed %d hand-overs in a row: the letters left wait for the next run",
            GIVE_UP_AFTER,
        )
    counts["letters_waiting"] += len(todo) - sum(counts.values())  # refused, or not handed over since
    return counts


def _hand_over(
    provider: LettersProvider,
    row: letters.LetterRow,
    pdf: bytes,
    sender: PostalAddress,
    refused: Event,
    down: FailuresInARow,
    cycle_id: int | None = None,
) -> str:
    """Hand one rendered letter to the provider and record what came of it; the count it falls in.
    Runs in a thread of `send_letters`: a letter's steps are its own, in its own transactions.
    Once the provider has refused our credentials (`ConfigError`, raised), or failed
    `GIVE_UP_AFTER` hand-overs in a row (`down`), the letters not yet handed over stay pending as
    they are."""
    if refused.is_set() or down.tripped:
        return "letters_waiting"
    now = utcnow()
    in_doubt = row.submitted_at is not None  # an earlier hand-over's outcome is unknown
    if not in_doubt:  # written ahead: a run killed before `mark_sent` leaves it in doubt
        with engine().begin() as connection:
            letters.mark_handing(connection, letter_id=row.id, at=now)
    try:
        request = LetterRequest(
            idempotency_key=row.provider_key,
            recipient=_recipient(row),
            sender=sender,
            pdf=pdf,
            mail_type=row.mail_type,  # type: ignore[arg-type]  # checked by LetterRequest
            description=row.kind,
        )
        # In doubt: the provider may have it, and may no longer know the key (Lob: a day).
        found = provider.find(row.provider_key) if in_doubt else None
        sent: Letter | ProviderError | ValueError = found or provider.send(request)
        crash_point("letters")  # the crash drill: the provider has the letter, we have no record of it
    except (Permanent, ValueError) as error:
        sent = error
    except UnknownOutcome as error:  # maybe taken: in doubt, sent again as it is, under its key
        down.record(failed=True)
        with engine().begin() as connection:
            letters.mark_in_doubt(connection, letter_id=row.id, at=now, detail=str(error))
        return "letters_waiting"
    except ProviderError as error:  # not executed (Transient, refused credentials): sent again later
        if not in_doubt:  # as it was: written again if it waits too long
            with engine().begin() as connection:
                letters.mark_handing(connection, letter_id=row.id, at=None)
        if isinstance(error, ConfigError):  # a person must fix the settings: no more hand-overs
            refused.set()
            raise
        down.record(failed=True)
        return "letters_waiting"
    down.record(failed=False)  # an answer, a refusal too: the provider is up
    with engine().begin() as connection:
        if isinstance(sent, Letter):
            letters.mark_sent(
                connection,
                letter_id=row.id,
                provider=get_settings().letters_provider,
                provider_id=sent.id,
                status="created",
                at=now,
                cycle_id=cycle_id,
            )
            _apply(connection, row, list(sent.tracking), now)
            return "letters_sent"
        letters.mark_blocked(connection, letter_id=row.id, reason=f"refused: {sent}", at=now, status="failed")
        return "letters_failed"


def _rendered(
    row: letters.LetterRow,
    at: datetime,
    enclosures: Callable[[str, str], tuple[Enclosed, ...] | str],
) -> bytes | Literal["letters_blocked", "letters_waiting"]:
    """Render a pending letter from its stored context, vet its words with the content rules every
    SMS passes, append the documents it must carry (`enclosures`: `_enclosures`, read once a
    run), and store the PDF as it is mailed and its SHA-256 before it goes, with the evidence of
    what went with it. When it cannot go, the count it falls in: blocked (its words fail, it cannot be
    rendered, or a document it must carry is not configured: set aside with the reason, the
    others go on), or waiting (another run rendered it meanwhile: its bytes go next time). What
    is wrong with the run rather than the letter (the policy, the database) raises: nothing
    blocked."""
    reason: str | None
    profile = policy().profile
    documents: tuple[Enclosed, ...] = ()
    try:
        context = context_from_json(row.context or {})
        rules = profile(context.jurisdiction)
        rendered = render(row.kind, context, rules=rules)
        finding = vet(rendered, context, rules=rules)
        reason = f"{finding.rule}: {finding.detail}" if finding else None
        if reason is None:
            found = enclosures(row.kind, context.jurisdiction)
            reason, documents = (found, ()) if isinstance(found, str) else (None, found)
    # What a stored context or its template can be wrong by (LetterTemplateMissing, an unknown
    # jurisdiction: LookupError; a missing date, text no font encodes: ValueError).
    except (ValueError, TypeError, LookupError) as error:
        reason = _unrendered(error)
    if reason is None:  # the PDF as mailed: its hash is the evidence of what went
        pdf = enclose(rendered.pdf, *documents)
        sha256 = hashlib.sha256(pdf).hexdigest() if documents else rendered.sha256
    with engine().begin() as connection:
        if reason is not None:
            letters.mark_blocked(connection, letter_id=row.id, reason=reason, at=at, status="blocked")
            return "letters_blocked"
        stored = letters.mark_rendered(
            connection,
            letter_id=row.id,
            template=rendered.template,
            pdf=pdf,
            sha256=sha256,
            at=at,
            enclosed=[document.evidence() for document in documents],
        )
    return pdf if stored else "letters_waiting"


@task(name="track-letters", cache_policy=NO_CACHE, persist_result=False, retries=1, retry_delay_seconds=30)
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
            if row.status in letters.ENDED and found.mailed_at is None:
                # It is looked up again next time; a notice's cure period cannot start meanwhile.
                run_logger("arrears.letters").warning(
                    "%s letter %s is %s but the provider reports no mailed date: its legal clock "
                    "cannot start until the provider records one",
                    row.kind,
                    row.id,
                    row.status.replace("_", " "),
                )
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
    """The mailed event of a right-to-cure letter starts its review's cure period, if it is the
    review's latest letter: a mailed date learned late (its webhook lost, found by a lookup) of a
    letter returned and given again elsewhere never starts the period the new letter's mailing
    starts (`tasks.lifecycle_letters`)."""
    if row.kind != "right_to_cure" or row.review_id is None:
        return _Clock(mailed_at, None)
    state = reviews.review_state(connection, row.review_id, lock=True)
    if state is None or state.letter_id != row.id:
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
