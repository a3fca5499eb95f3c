"""Data access for the credit bureau: furnishing (gather US accounts' facts in bulk, record what
was furnished) and pulls (who to ask about, and what a profile or a refusal tells us).

Reads go by ranges of account ids (a few queries per chunk of thousands of accounts, never a
query per account) and hand the pure `arrears.metro2` code plain `FurnishAccount`s. Each
function takes the caller's connection and does not commit: the task owns the transaction.

A furnish record (`BureauRecord`, kind `furnish`) is kept per account per submission; its payload
is what the base segment said (`Reported.payload()`) plus the period and the submission. Next
month reads them back: the history character of each month furnished, the Date of First
Delinquency, the compliance code and the charge-off amount continue from them exactly.

A pull record (kind `pull`, written by whoever pulls profiles) is read for one thing: the
bankruptcy chapter, from `payload["bankruptcy"]["chapter"]` (or `payload["bankruptcy_chapter"]`),
when the bankruptcy hold's own reason does not name it. `pull_subjects` and `record_pull` write
them: one pull per reason (ability, skip trace) per stage episode, its idempotency key in a unique
column (and in the payload), so a rerun or a concurrent cycle cannot record a pull twice.

The file tells the accounts as stored when it is built (run it after the period's last cycle):
stage, days past due, balances and active holds are today's, dated the period's last day.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Connection, and_, bindparam, func, or_, select, update

from arrears.metro2.furnish import FurnishAccount, Previous, Reported
from arrears.metro2.history import StageChange, payment_history
from arrears.metro2.periods import Period
from arrears.segmentation import ability_score
from arrears.storage._common import event, insert_events, to_precision
from arrears.storage.bulk import among, execute_many, in_range, insert_ignore, range_starts
from arrears.storage.tables import account, audit, borrower, bureau, contact, hold, payment, plan, review
from arrears.vocabulary import Channel, Hold, Segment, Stage

__all__ = [
    "PullSubject",
    "Pulled",
    "furnish_chunks",
    "load_furnish_accounts",
    "pull_subjects",
    "record_furnishing",
    "record_pull",
    "record_pull_refusal",
    "record_pulls",
    "record_refusal",
    "recorded_submission",
]


_EXITS = frozenset({"paid_off", "settled", "closed", "charged_off"})
_DPD_IN_REASON = re.compile(r"(\d+) days past due")
_CHAPTER = re.compile(r"\b(?:chapter|ch\.?)\s*(7|11|12|13)\b", re.IGNORECASE)


def _us() -> ColumnElement[bool]:
    return or_(account.c.jurisdiction == "US", account.c.jurisdiction.like("US-%"))


def furnish_chunks(connection: Connection, *, size: int) -> list[tuple[str, str | None]]:
    """Account id ranges [lo, hi) of at most `size` US accounts each (hi None: to the end)."""
    starts = range_starts(connection, account.c.account_id, _us(), size=size)
    return [(lo, starts[i + 1] if i + 1 < len(starts) else None) for i, lo in enumerate(starts)]


def load_furnish_accounts(
    connection: Connection, *, period: Period, lo: str, hi: str | None, lender_timezone: str
) -> Iterator[FurnishAccount]:
    """The US accounts with lo <= id < hi, each with every fact its base segment needs."""
    zone = ZoneInfo(lender_timezone)

    def day(instant: datetime | None) -> date | None:
        return instant.astimezone(zone).date() if instant is not None else None

    rows = connection.execute(
        select(account, borrower.c.name.label("borrower_name"), borrower.c.created_at.label("borrower_since"))
        .join(borrower, borrower.c.borrower_id == account.c.borrower_id)
        .where(in_range(account.c.account_id, lo, hi), _us())
        .order_by(account.c.account_id)
    ).all()
    if not rows:
        return
    window_start = datetime.combine((period - 25).first_day, time.min, zone).astimezone(UTC)

    holds: dict[str, dict[str, str | None]] = defaultdict(dict)
    for r in connection.execute(
        select(hold.c.account_id, hold.c.kind, hold.c.reason).where(
            in_range(hold.c.account_id, lo, hi), hold.c.lifted_at.is_(None)
        )
    ):
        holds[r.account_id][r.kind] = r.reason

    phones: dict[str, tuple[tuple[bool, bool], str]] = {}
    borrowers = select(account.c.borrower_id).where(in_range(account.c.account_id, lo, hi))
    for cp in connection.execute(
        select(contact.c.borrower_id, contact.c.address, contact.c.is_primary, contact.c.verified).where(
            contact.c.borrower_id.in_(borrowers), contact.c.channel == "sms", contact.c.valid.is_(True)
        )
    ):
        rank = (cp.is_primary, cp.verified)
        if cp.borrower_id not in phones or rank > phones[cp.borrower_id][0]:
            phones[cp.borrower_id] = (rank, cp.address)

    plans: dict[str, tuple[str, str]] = {}
    for r in connection.execute(
        select(plan.c.account_id, plan.c.kind, plan.c.status)
        .where(in_range(plan.c.account_id, lo, hi))
        .order_by(plan.c.updated_at, plan.c.id)
    ):
        plans[r.account_id] = (r.kind, r.status)

    repossessed: dict[str, date | None] = {}
    for r in connection.execute(
        select(review.c.account_id, review.c.decision, review.c.decided_at)
        .where(in_range(review.c.account_id, lo, hi))
        .order_by(review.c.opened_at, review.c.id)
    ):
        repossessed[r.account_id] = day(r.decided_at) if r.decision == "repossess" else None

    payments: dict[str, list[tuple[datetime, Decimal]]] = defaultdict(list)
    for r in connection.execute(
        select(payment.c.account_id, payment.c.received_at, payment.c.amount).where(
            in_range(payment.c.account_id, lo, hi)
        )
    ):
        payments[r.account_id].append((r.received_at, r.amount))

    changes: dict[str, list[tuple[datetime, StageChange]]] = defaultdict(list)
    for r in connection.execute(
        select(audit.c.account_id, audit.c.at, audit.c.data)
        .where(in_range(audit.c.account_id, lo, hi), audit.c.kind == "transition", audit.c.at >= window_start)
        .order_by(audit.c.at, audit.c.id)
    ):
        data = r.data or {}
        found = _DPD_IN_REASON.search(str(data.get("reason") or ""))
        change = StageChange(
            on=day(r.at) or period.last_day,
            from_stage=str(data.get("from")),
            to_stage=str(data.get("to")),
            days_past_due=int(found[1]) if found else None,
        )
        changes[r.account_id].append((r.at, change))
    first_seen: dict[str, datetime] = dict(
        connection.execute(
            select(audit.c.account_id, func.min(audit.c.at))
            .where(in_range(audit.c.account_id, lo, hi))
            .group_by(audit.c.account_id)
        ).all()
    )

    furnished: dict[str, list[tuple[int, datetime, dict[str, Any]]]] = defaultdict(list)
    chapters: dict[str, int] = {}
    for rec in connection.execute(
        select(bureau.c.id, bureau.c.account_id, bureau.c.kind, bureau.c.at, bureau.c.payload)
        .where(in_range(bureau.c.account_id, lo, hi), bureau.c.kind.in_(("furnish", "pull")))
        .order_by(bureau.c.at, bureau.c.id)
    ):
        payload = rec.payload or {}
        if rec.kind == "furnish" and payload.get("period"):
            furnished[rec.account_id].append((rec.id, rec.at, payload))
        elif rec.kind == "pull":
            chapter = _pulled_chapter(payload)
            if chapter is not None:
                chapters[rec.account_id] = chapter

    this = str(period)
    for a in rows:
        account_changes = changes.get(a.account_id, [])
        # by period, then time: a late correction of an old month never becomes "the last report"
        earlier = sorted(
            ((at, p) for _, at, p in furnished.get(a.account_id, []) if p["period"] < this),
            key=lambda item: (item[1]["period"], item[0]),
        )
        reported = {p["period"]: str(p.get("char") or "D") for _, p in earlier}
        previous_at, previous_payload = earlier[-1] if earlier else (None, None)
        previous = _previous(previous_payload) if previous_payload else None
        cured_since = previous_at is not None and any(
            at > previous_at and c.to_stage == "cured" for at, c in account_changes
        )
        episode_due = _episode_due([c for _, c in account_changes])
        exits = [(at, c) for at, c in account_changes if c.to_stage in _EXITS]
        exited_at = exits[-1][0] if exits and exits[-1][1].to_stage == a.stage else None
        paid = payments.get(a.account_id, [])
        charge_off = None
        if a.stage == "charged_off":
            charged_at = exited_at or a.stage_since
            charge_off = a.balance + sum((amount for at, amount in paid if at >= charged_at), Decimal(0))
        account_holds = holds.get(a.account_id, {})
        known = [t for t in (first_seen.get(a.account_id), a.borrower_since) if t is not None]
        yield FurnishAccount(
            account_id=a.account_id,
            borrower_name=a.borrower_name,
            jurisdiction=a.jurisdiction,
            stage=a.stage,
            days_past_due=a.days_past_due,
            balance=a.balance,
            past_due_amount=a.past_due_amount,
            installment_amount=a.installment_amount,
            history=payment_history(
                period,
                reported=reported,
                known_since=day(min(known)) or period.first_day,
                changes=[c for _, c in account_changes],
                current_stage=a.stage,
                oldest_due=a.oldest_due_date,
                repossessed_on=repossessed.get(a.account_id),
            ),
            oldest_due_date=a.oldest_due_date,
            episode_due=episode_due,
            phone=phones[a.borrower_id][1] if a.borrower_id in phones else None,
            holds=frozenset(account_holds),
            bankruptcy_chapter=_hold_chapter(account_holds.get("bankruptcy")) or chapters.get(a.account_id),
            plan=plans.get(a.account_id),
            repossessed=repossessed.get(a.account_id) is not None,
            last_payment=day(max((at for at, _ in paid), default=None)),
            closed_on=day(exited_at or (a.stage_since if a.stage in _EXITS else None)),
            charge_off_amount=charge_off,
            previous=previous,
            current_since_previous=cured_since,
        )


def _episode_due(changes: Sequence[StageChange]) -> date | None:
    """The oldest unpaid due date when the latest delinquency began (cured → reminder, "N days past due")."""
    for change in reversed(changes):
        if change.from_stage == "cured" and change.days_past_due is not None:
            return date.fromordinal(change.on.toordinal() - change.days_past_due)
    return None


def _previous(payload: dict[str, Any]) -> Previous:
    first = payload.get("first_delinquency")
    return Previous(
        period=str(payload["period"]),
        status=str(payload.get("status") or ""),
        first_delinquency=date.fromisoformat(first) if first else None,
        compliance_condition=str(payload.get("compliance_condition") or ""),
        charge_off_amount=int(payload.get("charge_off_amount") or 0) or None,
    )


def _hold_chapter(reason: str | None) -> int | None:
    found = _CHAPTER.search(reason or "")
    return int(found[1]) if found else None


def _pulled_chapter(payload: dict[str, Any]) -> int | None:
    bankruptcy = payload.get("bankruptcy")
    chapter = bankruptcy.get("chapter") if isinstance(bankruptcy, dict) else payload.get("bankruptcy_chapter")
    try:
        return int(chapter) if chapter is not None else None
    except (TypeError, ValueError):
        return None


def recorded_submission(connection: Connection, *, period: Period, submission_id: str) -> bool:
    """Whether the records of this submission were already written (a re-run the bureau deduplicated)."""
    found = connection.execute(
        select(audit.c.id).where(
            audit.c.kind == "bureau",
            audit.c.account_id.is_(None),
            audit.c.detail == _detail(period, submission_id),
        )
    ).first()
    return found is not None


def record_furnishing(
    connection: Connection,
    *,
    period: Period,
    reported: Sequence[Reported],
    submission_id: str,
    idempotency_key: str,
    sha256: str,
    now: datetime,
    summary: dict[str, Any],
) -> int:
    """One furnish record per account reported and one audit event for the file; returns the records written.

    Nothing is written twice for one submission: a re-run that the bureau answered with the same
    submission (same file, same key) finds its audit event and stops.
    """
    if recorded_submission(connection, period=period, submission_id=submission_id):
        return 0
    common = {"period": str(period), "submission_id": submission_id, "idempotency_key": idempotency_key}
    rows = [
        {
            "account_id": r.account_id,
            "kind": "furnish",
            "purpose": None,
            "score_band": None,
            "income_estimate": None,
            "payload": r.payload() | common,
            "at": now,
        }
        for r in reported
    ]
    for start in range(0, len(rows), 5_000):
        connection.execute(bureau.insert(), rows[start : start + 5_000])
    connection.execute(
        audit.insert(),
        [
            {
                "account_id": None,
                "at": now,
                "kind": "bureau",
                "actor": "arrears",
                "cycle_id": None,
                "detail": _detail(period, submission_id),
                "data": common | {"sha256": sha256, "accounts": len(rows), **summary},
            }
        ],
    )
    return len(rows)


def _detail(period: Period, submission_id: str) -> str:
    return f"metro2 {period} furnished to the bureau: submission {submission_id}"


def record_refusal(
    connection: Connection,
    *,
    period: Period,
    reason: str,
    problems: Sequence[tuple[int, str, str]],
    now: datetime,
) -> None:
    """An audit event for a file that was not furnished (refused by our validator or by the bureau)."""
    connection.execute(
        audit.insert(),
        [
            {
                "account_id": None,
                "at": now,
                "kind": "bureau",
                "actor": "arrears",
                "cycle_id": None,
                "detail": f"metro2 {period} not furnished: {reason}",
                "data": {
                    "period": str(period),
                    "problems": [list(p) for p in problems[:50]],
                    "count": len(problems),
                },
            }
        ],
    )


# == bureau pulls =================================================================================


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

    @property
    def key(self) -> str:
        return f"{'pull' if self.reason == 'ability' else 'skip'}-{self.account_id}-{self.episode}"


def pull_subjects(connection: Connection, *, limit: int = 1_000, chunk: int = 2_000) -> list[PullSubject]:
    """The first `limit` accounts, in account order, in negotiation without a pull this episode
    or unreachable without a skip trace this episode; only accounts still in collection (FCRA
    604(a)(3)(A): the purpose ends once the account is paid and closed).

    The candidates are read `chunk` at a time (a server-side cursor on PostgreSQL) with each
    chunk's recorded pulls and phone numbers, and reading stops once `limit` subjects are found:
    after a first cycle half a portfolio is in negotiation, and every candidate held at once
    for the thousand pulls asked was the cycle's peak memory (some 800 MiB at 1,000,000)."""
    wanted = or_(
        account.c.stage == Stage.NEGOTIATION.value,
        and_(account.c.segment == Segment.UNREACHABLE.value, account.c.stage.in_([x.value for x in Stage])),
    )
    query = (
        select(account, borrower.c.name.label("borrower_name"))
        .join(borrower, borrower.c.borrower_id == account.c.borrower_id)
        .where(wanted)
        .order_by(account.c.account_id)
    )
    found: list[PullSubject] = []
    with connection.execute(query, execution_options={"yield_per": chunk}) as result:
        for candidates in result.partitions():
            found += _pull_subjects(connection, candidates)
            if len(found) >= limit:
                break
    return found[:limit]


def _pull_subjects(connection: Connection, candidates: Sequence[Any]) -> list[PullSubject]:
    """The candidates not pulled yet for their reason this episode, each with its best number
    (valid first, then primary, then oldest: it identifies the subject, valid or not)."""
    done = set(
        connection.execute(
            select(bureau.c.idempotency_key).where(
                bureau.c.kind == "pull", among(bureau.c.account_id, [c.account_id for c in candidates])
            )
        ).scalars()
    )
    phones: dict[str, str] = {}
    for r in connection.execute(
        select(contact.c.borrower_id, contact.c.address)
        .where(
            among(contact.c.borrower_id, {c.borrower_id for c in candidates}),
            contact.c.channel == Channel.SMS.value,
        )
        .order_by(contact.c.valid.desc(), contact.c.is_primary.desc(), contact.c.id)
    ):
        phones.setdefault(r.borrower_id, r.address)
    found: list[PullSubject] = []
    for c in candidates:
        reason = "skip_trace" if c.segment == Segment.UNREACHABLE else "ability"
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
        )
        if subject.key not in done:
            found.append(subject)
    return found


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


def record_pull(
    connection: Connection,
    *,
    subject: PullSubject,
    at: datetime,
    purpose: str,
    report_id: str,
    score_band: str,
    income_estimate: Decimal | None,
    phones: Sequence[tuple[str, float, str]],
    bankruptcy_chapter: int | None,
    bankrupt: bool,
    deceased: bool,
    min_phone_confidence: float = 0.5,
) -> dict[str, Any]:
    """Store one bureau profile (`record_pulls` of one)."""
    pulled = Pulled(
        subject,
        purpose,
        report_id,
        score_band,
        income_estimate,
        phones,
        bankruptcy_chapter,
        bankrupt,
        deceased,
    )
    return record_pulls(connection, [pulled], at=at, min_phone_confidence=min_phone_confidence)[0]


def record_pulls(
    connection: Connection, pulls: Sequence[Pulled], *, at: datetime, min_phone_confidence: float = 0.5
) -> list[dict[str, Any]]:
    """Store bureau profiles: for each, the pull record with its purpose, the ability it gives, the
    numbers skip tracing found (unverified, never primary), and a hold for a bankruptcy or death
    the bureau reports. Returns what changed, pull by pull.

    A block of pulls in a few statements, not six a pull (4 ms a pull as those were): the result
    is what storing them one after the other gives, a later pull of the block seeing what an
    earlier one stored (the account's ability, the numbers found)."""
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
            income_estimate=p.income_estimate,
        )
        for p in pulls
    ]
    fresh = insert_ignore(connection, bureau, rows, key="idempotency_key")
    recorded = []
    for p in pulls:  # of two pulls with one key, the first is recorded (as insert_ignore keeps it)
        recorded.append(p.subject.key in fresh)
        fresh.discard(p.subject.key)
    stored = [p for p, new in zip(pulls, recorded, strict=True) if new]
    accounts = {p.subject.account_id for p in stored}
    ability_now: dict[str, float | None] = {
        account_id: ability
        for account_id, ability in connection.execute(
            select(account.c.account_id, account.c.ability).where(among(account.c.account_id, accounts))
        )
    }
    traced = {p.subject.borrower_id for p in stored if p.subject.reason == "skip_trace" and p.phones}
    known: dict[str, set[str]] = defaultdict(set)
    for borrower_id, address in connection.execute(
        select(contact.c.borrower_id, contact.c.address).where(
            among(contact.c.borrower_id, traced), contact.c.channel == Channel.SMS.value
        )
    ):
        known[borrower_id].add(address)

    results: list[dict[str, Any]] = []
    abilities: list[dict[str, Any]] = []
    contacts: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for p, new_pull in zip(pulls, recorded, strict=True):
        if not new_pull:  # another run recorded this pull already: what it found is stored once
            results.append({"ability": None, "numbers_found": 0, "holds": [], "duplicate": True})
            continue
        subject = p.subject
        monthly = (p.income_estimate / 12).quantize(Decimal("0.01")) if p.income_estimate else None
        ability = ability_score(
            score_band=p.score_band,
            monthly_income=monthly,
            installment=subject.installment,
            vehicle_value=subject.vehicle_value,
            balance=subject.balance,
        )
        before = ability_now.get(subject.account_id)
        if ability is not None:
            ability_now[subject.account_id] = round(ability, 4)
            abilities.append({"key": subject.account_id, "ability": round(ability, 4), "at": at})
        # Only a skip trace adds numbers: a pull for ability has no purpose in collecting them.
        found = known[subject.borrower_id] if subject.reason == "skip_trace" else set()
        new = [
            (n, conf, kind)
            for n, conf, kind in p.phones
            if subject.reason == "skip_trace"
            and n not in found
            and conf >= min_phone_confidence
            and kind in ("mobile", "unknown")
        ]
        found.update(n for n, _, _ in new)
        contacts += [_found_number(subject.borrower_id, n, at) for n, _, _ in new]
        held = _hold_reported(connection, p, at)
        what = "skip trace" if subject.reason == "skip_trace" else "bureau pull"
        detail = f"{what} ({p.purpose}): band {p.score_band}"
        if p.income_estimate is not None:
            detail += f", income {subject.currency} {p.income_estimate} a year"
        if ability is not None:
            detail += f"; ability {'—' if before is None else f'{before:.2f}'} → {ability:.2f}"
        if new:
            detail += f"; {len(new)} new number{'s' if len(new) > 1 else ''} found (unverified)"
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
                },
            )
        )
        events += [
            event(
                subject.account_id,
                at,
                "hold",
                f"{h} hold placed: bureau report {p.report_id}",
                {"hold": h, "action": "placed", "source": "bureau"},
            )
            for h in held
        ]
        results.append({"ability": ability, "numbers_found": len(new), "holds": held})
    execute_many(
        connection,
        update(account)
        .where(account.c.account_id == bindparam("key"))
        .values(ability=bindparam("ability"), updated_at=bindparam("at")),
        abilities,
    )
    execute_many(connection, contact.insert(), contacts)
    insert_events(connection, events)
    return results


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


def _hold_reported(connection: Connection, pulled: Pulled, at: datetime) -> list[str]:
    """Place the holds for a bankruptcy or death the bureau reports, unless one is active; the
    kinds placed. (Rare: a query each, only for the profiles that report one.)"""
    held = []
    reported = (
        (
            Hold.BANKRUPTCY,
            pulled.bankrupt,
            f"bureau report {pulled.report_id}: chapter {pulled.bankruptcy_chapter or '?'}",
        ),
        (Hold.DECEASED, pulled.deceased, f"bureau report {pulled.report_id}: deceased indicator"),
    )
    account_id = pulled.subject.account_id
    for kind, present, why in reported:
        if not present:
            continue
        active = connection.execute(
            select(hold.c.id).where(
                hold.c.account_id == account_id, hold.c.kind == kind.value, hold.c.lifted_at.is_(None)
            )
        ).first()
        if active is None:
            connection.execute(
                hold.insert().values(
                    account_id=account_id,
                    kind=kind.value,
                    source="bureau",
                    reason=why,
                    placed_at=at,
                    lifted_at=None,
                )
            )
            held.append(kind.value)
    return held


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
