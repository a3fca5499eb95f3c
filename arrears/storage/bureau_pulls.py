"""Data access for bureau pulls: who to ask about (`pull_subjects`), and what a profile or a
refusal tells us (`record_pulls`, `record_pull_refusal`).

One pull per reason (ability, skip trace) per stage episode, its idempotency key in a unique
column (and in the payload), so a rerun or a concurrent cycle cannot record a pull twice; and one
skip trace per borrower, whichever of their accounts asks first. The
candidates are read a chunk at a time and the answers stored a block at a time, never a query
per account. Each function takes the caller's connection and does not commit: the task owns the
transaction. Furnishing reads these records back for one thing, the bankruptcy chapter
(`arrears.storage.bureau`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import phonenumbers
from sqlalchemy import Connection, and_, bindparam, func, select, update

from arrears.policy import DEFAULT_POLICY, Segmentation
from arrears.segmentation import ability_after_hardship, ability_score
from arrears.storage._common import (
    event,
    holds_of,
    insert_events,
    opted_out_numbers,
    place_holds,
    to_precision,
)
from arrears.storage.bulk import among, execute_many, insert_ignore
from arrears.storage.cycle import TERMINAL
from arrears.storage.installation import stored_installation_id
from arrears.storage.promises import HARDSHIP
from arrears.storage.tables import account, audit, borrower, bureau, contact, cycle_run
from arrears.storage.vendor_orders import cancel_vendor_orders
from arrears.vocabulary import Channel, Hold, HoldScope, Segment, Stage

__all__ = [
    "PullSubject",
    "Pulled",
    "found_number",
    "pull_subjects",
    "pulls_of_the_day",
    "record_pull_refusal",
    "record_pulls",
]


@dataclass(frozen=True, slots=True)
class PullSubject:
    """An account the bureau is asked about: on entering negotiation (ability), or unreachable
    (skip tracing). One pull per reason per stage episode: `key` is its idempotency key."""

    account_id: str
    borrower_id: str
    episode: int
    reason: str  # ability | skip_trace
    name: str
    phone: str | None
    currency: str
    balance: Decimal
    installment: Decimal
    vehicle_value: Decimal | None
    installation: str = ""  # the database's installation id, which the key carries (DESIGN §3)

    @property
    def key(self) -> str:
        """Namespaced: two databases asking one bureau account both have an A-1 in its episode 2, and
        the bureau answers a key it knows with its first report (or refuses other content)."""
        return f"{self.installation}-{self.legacy_key}" if self.installation else self.legacy_key

    @property
    def legacy_key(self) -> str:
        """The key a pull was recorded under before keys carried the installation id."""
        return f"{'pull' if self.reason == 'ability' else 'skip'}-{self.account_id}-{self.episode}"


def pull_subjects(connection: Connection, *, limit: int = 1_000, chunk: int = 2_000) -> list[PullSubject]:
    """The first `limit` accounts under no hold that stops their pull (`_held`), still in
    collection (FCRA 604(a)(3)(A): the purpose ends once the account is paid and closed): first
    the unreachable without a skip trace this episode, then those in negotiation without a pull
    this episode, each in account order. A skip trace comes first: an account without a working
    number gets no message at all, and after a first cycle the ability pulls of half a portfolio
    in negotiation, taken in account order with them, kept most traces waiting for weeks.

    The candidates are read `chunk` at a time (a server-side cursor on PostgreSQL) with each
    chunk's recorded pulls and phone numbers, and reading stops once `limit` subjects are found:
    after a first cycle half a portfolio is in negotiation, and every candidate held at once
    for the thousand pulls asked was the cycle's peak memory (some 800 MiB at 1,000,000)."""
    unreachable = account.c.segment == Segment.UNREACHABLE.value
    found: list[PullSubject] = []
    tracing: set[str] = set()  # the borrowers a skip trace is asked for already
    for wanted in (
        and_(unreachable, account.c.stage.in_([x.value for x in Stage])),
        and_(account.c.stage == Stage.NEGOTIATION.value, ~unreachable),
    ):
        query = (
            select(account, borrower.c.name.label("borrower_name"))
            .join(borrower, borrower.c.borrower_id == account.c.borrower_id)
            .where(wanted)
            .order_by(account.c.account_id)
        )
        with connection.execute(query, execution_options={"yield_per": chunk}) as result:
            for candidates in result.partitions():
                found += _pull_subjects(connection, candidates, tracing)
                if len(found) >= limit:
                    return found[:limit]
    return found


def pulls_of_the_day(connection: Connection, *, cycle_id: int) -> int:
    """Pulls the cycles of this cycle's business day recorded, this one's included: a cycle
    killed after its pulls and rerun (at the same instant or later that day) spends what is left
    of the day's `bureau_pulls_per_cycle`, not a second day's worth of inquiries. Each pull is
    recorded at its cycle's instant, so the day's instants find them."""
    day = select(cycle_run.c.business_date).where(cycle_run.c.id == cycle_id).scalar_subquery()
    instants = select(cycle_run.c.as_of).where(cycle_run.c.business_date == day)
    return int(
        connection.execute(
            select(func.count()).where(bureau.c.kind == "pull", bureau.c.at.in_(instants))
        ).scalar_one()
    )


def _pull_subjects(connection: Connection, candidates: Sequence[Any], tracing: set[str]) -> list[PullSubject]:
    """The candidates not pulled yet for their reason this episode, each with the number that
    identifies them to the bureau: one the borrower is known to hold first (from the servicing
    file or confirmed by them, working or not), then valid, primary, oldest. A number a skip trace
    found may be a third party's: asked about under it, the bureau may match, and report on,
    that other person (an inquiry with no permissible purpose, and their ability taken for ours).

    A skip trace looks for the borrower, not the account: one whose borrower is traced already
    (in `tracing`, which it adds to, or by a trace of any of their accounts since this one
    entered its stage) is not asked for. A borrower with two loans was traced twice a day, and
    again for the second loan the next day (each an inquiry, billed, for the same numbers)."""
    done = set(
        connection.execute(
            select(bureau.c.idempotency_key).where(
                bureau.c.kind == "pull", among(bureau.c.account_id, [c.account_id for c in candidates])
            )
        ).scalars()
    )
    held = holds_of(connection, [c.account_id for c in candidates])
    installation = stored_installation_id(connection) or ""  # read only: it exists from migration
    phones: dict[str, str] = {}
    for r in connection.execute(
        select(contact.c.borrower_id, contact.c.address)
        .where(
            among(contact.c.borrower_id, {c.borrower_id for c in candidates}),
            contact.c.channel == Channel.SMS.value,
        )
        .order_by(
            contact.c.verified.desc(), contact.c.valid.desc(), contact.c.is_primary.desc(), contact.c.id
        )
    ):
        phones.setdefault(r.borrower_id, r.address)
    traced = _traced_since(
        connection, {c.borrower_id for c in candidates if c.segment == Segment.UNREACHABLE}
    )
    found: list[PullSubject] = []
    for c in candidates:
        reason = "skip_trace" if c.segment == Segment.UNREACHABLE else "ability"
        if reason == "skip_trace":
            last = traced.get(c.borrower_id)
            if c.borrower_id in tracing or (last is not None and last >= c.stage_since):
                continue
        subject = PullSubject(
            c.account_id,
            c.borrower_id,
            c.episode,
            reason,
            c.borrower_name,
            phones.get(c.borrower_id),
            c.currency,
            to_precision(c.balance, c.currency),
            to_precision(c.installment_amount, c.currency),
            to_precision(c.vehicle_value, c.currency) if c.vehicle_value is not None else None,
            installation,
        )
        if done.isdisjoint((subject.key, subject.legacy_key)) and not _held(
            held.get(c.account_id, frozenset()), reason
        ):
            found.append(subject)
            if reason == "skip_trace":
                tracing.add(c.borrower_id)
    return found


def _traced_since(connection: Connection, borrowers: set[str]) -> dict[str, datetime]:
    """When each borrower was last skip-traced, through any of their accounts (a refusal too)."""
    last: dict[str, datetime] = {}
    if not borrowers:
        return last
    for borrower_id, at in connection.execute(
        select(account.c.borrower_id, bureau.c.at)
        .join(account, account.c.account_id == bureau.c.account_id)
        .where(
            among(account.c.borrower_id, borrowers),
            bureau.c.kind == "pull",
            bureau.c.payload["reason"].as_string() == "skip_trace",
        )
    ):
        if borrower_id not in last or at > last[borrower_id]:
            last[borrower_id] = at
    return last


def _held(holds: frozenset[Hold], reason: str) -> bool:
    """Whether a hold keeps the bureau from being asked: one that stops collection stops an inquiry
    made for it (DESIGN §2: holds stop all collection activity), and one that stops contact stops
    a skip trace, which only looks for numbers to contact the borrower on."""
    stopping = {HoldScope.COLLECTION, HoldScope.CONTACT} if reason == "skip_trace" else {HoldScope.COLLECTION}
    return any(h.scope in stopping for h in holds)


@dataclass(frozen=True, slots=True)
class Pulled:
    """A bureau profile to store for the subject it was pulled for (`record_pulls`)."""

    subject: PullSubject
    purpose: str
    report_id: str
    score_band: str
    income_estimate: Decimal | None
    phones: Sequence[tuple[str, float, str]]  # (number, confidence, line type)
    bankruptcy_chapter: int | None
    bankrupt: bool
    deceased: bool
    unreadable_phones: int = 0  # phone entries of the answer the provider could not read


def record_pulls(
    connection: Connection,
    pulls: Sequence[Pulled],
    *,
    at: datetime,
    min_phone_confidence: float = 0.5,
    policy: Segmentation = DEFAULT_POLICY.segmentation,
) -> list[dict[str, Any]]:
    """Store bureau profiles: for each, the pull record with its purpose, the ability it gives, the
    numbers skip tracing found (unverified, never primary), and a hold for a bankruptcy or death
    the bureau reports, which cancels the account's open repossession orders. Returns what changed,
    pull by pull.

    A block of pulls in a few statements, not six a pull (4 ms a pull as those were): the result
    is what storing them one after the other gives, a later pull of the block seeing what an
    earlier one stored (the account's ability, the numbers found)."""
    incomes = [_income(p.income_estimate) for p in pulls]
    rows = [
        _pull_row(
            p.subject,
            at,
            p.purpose,
            {
                "report_id": p.report_id,
                "bankruptcy": {"chapter": p.bankruptcy_chapter} if p.bankrupt else None,
                "deceased": p.deceased,
                "phones_found": len(p.phones),
            },
            score_band=p.score_band,
            income_estimate=income,
        )
        for p, income in zip(pulls, incomes, strict=True)
    ]
    fresh = insert_ignore(connection, bureau, rows, key="idempotency_key")
    recorded = []
    for p in pulls:  # of two pulls with one key, the first is recorded (as insert_ignore keeps it)
        recorded.append(p.subject.key in fresh)
        fresh.discard(p.subject.key)
    stored = [p for p, fresh_pull in zip(pulls, recorded, strict=True) if fresh_pull]
    accounts = {p.subject.account_id for p in stored}
    ability_now: dict[str, float | None] = {}
    delinquent_since: dict[str, date] = {}
    for account_id, ability, oldest_due in connection.execute(
        select(account.c.account_id, account.c.ability, account.c.oldest_due_date).where(
            among(account.c.account_id, accounts)
        )
    ):
        ability_now[account_id] = ability
        if oldest_due is not None:
            delinquent_since[account_id] = oldest_due
    unable = _hardship_stated(connection, delinquent_since)
    # Who holds each number a skip trace found (any borrower): the subject's own are not added
    # again, and another borrower's are not added at all (below). No index leads with the number:
    # read only for the blocks that found some (skip traces are few beside the ability pulls).
    numbers = {
        e164
        for p in stored
        if p.subject.reason == "skip_trace"
        for n, _, _ in p.phones
        if (e164 := found_number(n)) is not None
    }
    holders: dict[str, set[str]] = defaultdict(set)
    if numbers:
        for borrower_id, address in connection.execute(
            select(contact.c.borrower_id, contact.c.address).where(
                among(contact.c.address, numbers), contact.c.channel == Channel.SMS.value
            )
        ):
            holders[address].add(borrower_id)

    results: list[dict[str, Any]] = []
    abilities: list[dict[str, Any]] = []
    contacts: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for p, income, new_pull in zip(pulls, incomes, recorded, strict=True):
        if not new_pull:  # another run recorded this pull already: what it found is stored once
            results.append(
                {
                    "ability": None,
                    "numbers_found": 0,
                    "holds": [],
                    "vendor_orders_cancelled": 0,
                    "duplicate": True,
                }
            )
            continue
        subject = p.subject
        # An estimate of no income is an estimate: it is not "unknown" (None).
        monthly = (income / 12).quantize(Decimal("0.01")) if income is not None else None
        ability = ability_score(
            score_band=p.score_band,
            monthly_income=monthly,
            installment=subject.installment,
            vehicle_value=subject.vehicle_value,
            balance=subject.balance,
        )
        before = ability_now.get(subject.account_id)
        capped = ability is not None and subject.account_id in unable
        if ability is not None and capped:  # the borrower's word outweighs the bureau's estimate
            ability = ability_after_hardship(ability, policy=policy)
        if ability is not None:
            ability_now[subject.account_id] = round(ability, 4)
            abilities.append({"key": subject.account_id, "ability": round(ability, 4), "at": at})
        # Only a skip trace adds numbers: a pull for ability has no purpose in collecting them.
        new: list[str] = []
        unusable: list[str] = []
        if subject.reason == "skip_trace":
            new, unusable = _usable_numbers(p, holders, min_phone_confidence)
        contacts += [_found_number(subject.borrower_id, n, at) for n in new]
        placed = _hold_reported(connection, p, at)
        held = [kind for a, kind in placed if a == subject.account_id]
        what = "skip trace" if subject.reason == "skip_trace" else "bureau pull"
        detail = f"{what} ({p.purpose}): band {p.score_band}"
        if income is not None:
            detail += f", income {subject.currency} {income} a year"
        elif p.income_estimate is not None:
            detail += ", income estimate unreadable (left out)"
        if ability is not None:
            detail += f"; ability {'—' if before is None else f'{before:.2f}'} → {ability:.2f}"
            detail += " (a hardship the borrower stated holds it down)" if capped else ""
        if new:
            detail += f"; {len(new)} new number{'s' if len(new) > 1 else ''} found (unverified)"
        elif subject.reason == "skip_trace":  # the borrower stays unreachable: say so, not nothing
            detail += "; no new number found"
        if unusable:
            detail += f"; not added: {', '.join(unusable)}"
        events.append(
            event(
                subject.account_id,
                at,
                "bureau",
                detail,
                {
                    "idempotency_key": subject.key,
                    "reason": subject.reason,
                    "report_id": p.report_id,
                    "score_band": p.score_band,
                    "ability": ability,
                    "numbers_found": len(new),
                    "numbers_not_added": unusable,
                },
            )
        )
        events += [
            event(
                a,
                at,
                "hold",
                f"{h} hold placed: bureau report {p.report_id}"
                + ("" if a == subject.account_id else f" on account {subject.account_id}'s borrower"),
                {"hold": h, "action": "placed", "source": "bureau"},
            )
            for a, h in placed
        ]
        results.append(
            {
                "ability": ability,
                "numbers_found": len(new),
                "holds": held,
                "held_accounts": sorted({a for a, _ in placed}),
                "vendor_orders_cancelled": 0,
            }
        )
    execute_many(
        connection,
        update(account)
        .where(account.c.account_id == bindparam("key"))
        .values(ability=bindparam("ability"), updated_at=bindparam("at")),
        abilities,
    )
    # A found number that opted out under another borrower stays opted out (`opted_out_numbers`).
    opted_out = opted_out_numbers(connection, {c["address"] for c in contacts})
    for point in contacts:
        point["opted_out_at"] = opted_out.get(point["address"])
    execute_many(connection, contact.insert(), contacts)
    insert_events(connection, events)
    # A bankruptcy or death the bureau reports overtakes an open repossession order at once, as the
    # borrower's own word does (DESIGN §2): no push may send it to the agency after this.
    for result in results:
        result["vendor_orders_cancelled"] = sum(
            cancel_vendor_orders(connection, as_of=at, account_id=a) for a in result.pop("held_accounts", ())
        )
    return results


# The largest income estimate taken as one: what the money columns hold (19 digits, 4 decimals).
_MAX_INCOME = Decimal(10) ** 15


def _income(estimate: Decimal | None) -> Decimal | None:
    """A bureau's yearly income estimate, or None when it is no amount: NaN and Infinity (which
    JSON decoders read as numbers, and a plugin may hand on), a negative one, or one no money
    column holds. Taken as it came, it failed the whole block of pulls at the first comparison or
    insert, and the cycle with it; left out, the report's band, holds and numbers still count."""
    if estimate is None or not estimate.is_finite() or not 0 <= estimate < _MAX_INCOME:
        return None
    return estimate


def _hardship_stated(connection: Connection, delinquent_since: dict[str, date]) -> set[str]:
    """The accounts whose borrower said, since their delinquency began, that they cannot pay (a
    `hardship` event: `storage.promises.state_hardship`). One query a block of pulls."""
    if not delinquent_since:
        return set()
    earliest = datetime.combine(min(delinquent_since.values()), time(), UTC)
    return {
        account_id
        for account_id, stated in connection.execute(
            select(audit.c.account_id, audit.c.at).where(
                among(audit.c.account_id, delinquent_since), audit.c.kind == HARDSHIP, audit.c.at >= earliest
            )
        )
        if stated >= datetime.combine(delinquent_since[account_id], time(), UTC)
    }


def found_number(number: str) -> str | None:
    """A number as the bureau wrote it, in E.164; None when it is not a valid phone number (a
    vendor's garbage would be texted, and fail, or never match the number the borrower writes from).
    A number a provider hands over as no text (an int, None) is none either: it failed its block."""
    if not isinstance(number, str):
        return None
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    if parsed.extension or not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _usable_numbers(
    pulled: Pulled, holders: dict[str, set[str]], min_confidence: float
) -> tuple[list[str], list[str]]:
    """The numbers of a skip trace to add to its borrower (E.164), and why others were not added
    (each once, for people). A number another borrower holds is theirs or a person's they gave: a
    third party to this borrower either way, and sharing it would attribute their replies (a
    dispute, a bankruptcy, a STOP) to this borrower's accounts too. Updates `holders` with those
    added, so a later pull of the same block sees them."""
    borrower_id = pulled.subject.borrower_id
    new: list[str] = []
    why: Counter[str] = Counter()
    if pulled.unreadable_phones:
        why["unreadable in the bureau's answer"] = pulled.unreadable_phones
    for number, confidence, line_type in pulled.phones:
        if line_type not in ("mobile", "unknown"):  # takes no texts
            why[{"landline": "landline", "voip": "VoIP line"}.get(line_type, f"{line_type} line")] += 1
            continue
        if confidence < min_confidence:
            why[f"match below {min_confidence:.0%} confidence"] += 1  # more likely someone else's
            continue
        e164 = found_number(number)
        if e164 is None:
            why["not a valid phone number"] += 1
            continue
        held = holders[e164]
        if borrower_id in held:
            continue  # the borrower's own already
        if held:
            why["held by another borrower"] += 1
            continue
        held.add(borrower_id)
        new.append(e164)
    return new, [f"{n} {reason}" for reason, n in sorted(why.items())]


def _found_number(borrower_id: str, number: str, at: datetime) -> dict[str, Any]:
    """A number skip tracing found: a contact point to try, unverified and never primary."""
    return {
        "borrower_id": borrower_id,
        "channel": Channel.SMS.value,
        "address": number,
        "region": None,
        "is_primary": False,
        "valid": True,
        "verified": False,
        "source": "bureau",
        "failures": 0,
        "opted_out_at": None,
        "created_at": at,
    }


def _hold_reported(connection: Connection, pulled: Pulled, at: datetime) -> list[tuple[str, str]]:
    """Place the holds for a bankruptcy or death the bureau reports on every open account of the
    borrower, unless one of the kind is active: the consumer's, not one loan's (a bankruptcy's
    automatic stay stays every debt, 11 U.S.C. 362; a death ends them all). The (account, kind)
    pairs placed, the subject's first. (Rare: a query or two, only for the profiles that report one.)"""
    reported = [
        (kind, why)
        for kind, present, why in (
            (
                Hold.BANKRUPTCY,
                pulled.bankrupt,
                f"bureau report {pulled.report_id}: chapter {pulled.bankruptcy_chapter or '?'}",
            ),
            (Hold.DECEASED, pulled.deceased, f"bureau report {pulled.report_id}: deceased indicator"),
        )
        if present
    ]
    if not reported:
        return []
    subject = pulled.subject
    others = connection.execute(
        select(account.c.account_id)
        .where(
            account.c.borrower_id == subject.borrower_id,
            account.c.account_id != subject.account_id,
            account.c.stage.not_in(TERMINAL),
        )
        .order_by(account.c.account_id)
    ).scalars()
    accounts = [subject.account_id, *others]
    placed = place_holds(
        connection, [(a, kind, why) for a in accounts for kind, why in reported], source="bureau", at=at
    )
    return [(a, kind.value) for a in accounts for kind, _ in reported if (a, kind) in placed]


def _record_once(
    connection: Connection, subject: PullSubject, at: datetime, purpose: str, payload: dict[str, Any]
) -> bool:
    """Insert a pull record unless its idempotency key is stored already; True if inserted."""
    return bool(
        insert_ignore(connection, bureau, [_pull_row(subject, at, purpose, payload)], key="idempotency_key")
    )


def _pull_row(
    subject: PullSubject,
    at: datetime,
    purpose: str,
    payload: dict[str, Any],
    *,
    score_band: str | None = None,
    income_estimate: Decimal | None = None,
) -> dict[str, Any]:
    """A pull record, its idempotency key in its column and in its payload."""
    return {
        "account_id": subject.account_id,
        "kind": "pull",
        "idempotency_key": subject.key,
        "purpose": purpose,
        "score_band": score_band,
        "income_estimate": income_estimate,
        "at": at,
        "payload": {"idempotency_key": subject.key, "reason": subject.reason, **payload},
    }


def record_pull_refusal(
    connection: Connection,
    *,
    subject: PullSubject,
    at: datetime,
    purpose: str,
    reason: str,
) -> None:
    """The bureau has no file (or refused for good): recorded, so the account is not asked about
    again this episode."""
    recorded = _record_once(connection, subject, at, purpose, {"error": reason})
    if not recorded:
        return
    what = "skip trace" if subject.reason == "skip_trace" else "bureau pull"
    insert_events(
        connection,
        [
            event(
                subject.account_id,
                at,
                "bureau",
                f"{what} found nothing: {reason}",
                {"idempotency_key": subject.key, "error": reason},
            )
        ],
    )
