"""Data access for furnishing the credit bureau: gather US accounts' facts in bulk, record what
was furnished. Pulls (who to ask about, what a profile tells us) are `arrears.storage.bureau_pulls`.

Reads go by ranges of account ids (a few queries per chunk of thousands of accounts, never a
query per account) and hand the pure `arrears.metro2` code plain `FurnishAccount`s. Each
function takes the caller's connection and does not commit: the task owns the transaction.

A furnish record (`BureauRecord`, kind `furnish`) is kept per account per submission; its payload
is what the base segment said (`Reported.payload()`) plus the period and the submission. Next
month reads them back: the history character of each month furnished, the Date of First
Delinquency, the compliance code and the charge-off amount continue from them exactly.

A pull record (kind `pull`, written by whoever pulls profiles) is read for one thing: the
bankruptcy chapter, from `payload["bankruptcy"]["chapter"]` (or `payload["bankruptcy_chapter"]`),
when the bankruptcy hold's own reason does not name it (`arrears.storage.bureau_pulls` writes them).
A hold's reason names a chapter only when a source that can state one placed it (a person, the
bureau): a hold placed by a borrower's text quotes their words ("my brother filed chapter 7"),
and a Chapter 7 petition on their credit file must not come from those.

The file tells the accounts as stored when it is built (run it after the period's last cycle):
stage, days past due, balances and active holds are today's, dated the period's last day.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Connection, func, or_, select

from arrears.addresses import mailable
from arrears.metro2.furnish import FurnishAccount, Previous, Reported
from arrears.metro2.history import StageChange, payment_history
from arrears.metro2.periods import Period
from arrears.storage.bulk import in_range, range_starts
from arrears.storage.tables import (
    account,
    assignment,
    audit,
    borrower,
    bureau,
    contact,
    hold,
    payment,
    plan,
)

__all__ = [
    "furnish_chunks",
    "load_furnish_accounts",
    "record_furnishing",
    "record_refusal",
    "recorded_submission",
]


_EXITS = frozenset({"paid_off", "settled", "closed", "charged_off"})
_DPD_IN_REASON = re.compile(r"(\d+) days past due")
_CHAPTER = re.compile(r"\b(?:chapter|ch\.?)\s*(7|11|12|13)\b", re.IGNORECASE)
# AccountHold.source of the holds whose reason may state a chapter: a person's (`storage.holds`)
# and the bureau's (`storage.bureau_pulls`). Not `webhook` (a text's words), nor `import` (its
# reason names the file: "flag in chapter7.csv line 3").
_CHAPTER_SOURCES = frozenset({"agent", "bureau"})


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
    for h in connection.execute(
        select(hold.c.account_id, hold.c.kind, hold.c.source, hold.c.reason).where(
            in_range(hold.c.account_id, lo, hi), hold.c.lifted_at.is_(None)
        )
    ):
        holds[h.account_id][h.kind] = h.reason if h.source in _CHAPTER_SOURCES else None

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

    # Repossessed: the agency reported the car recovered. A reviewer's decision is not a
    # repossession: a payment, a plan or a hold may cancel the order before anyone takes the car,
    # and a 96 ("merchandise repossessed") with its `K` would then stand on the file for nothing.
    recovered: dict[str, datetime] = {}
    for recovered_for, recovered_at in connection.execute(
        select(assignment.c.account_id, assignment.c.recovered_at)
        .where(in_range(assignment.c.account_id, lo, hi), assignment.c.recovered_at.is_not(None))
        .order_by(assignment.c.recovered_at, assignment.c.id)
    ):
        recovered[recovered_for] = recovered_at

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
        # Charged off now, or charged off and then paid or settled since the last file: reported
        # 64 (paid after charge-off), with what was owed when it was charged off.
        charged = [at for at, c in account_changes if c.to_stage == "charged_off"]
        charged_at = None
        if a.stage == "charged_off":
            charged_at = exited_at or a.stage_since
        elif (
            charged
            and a.stage in ("paid_off", "settled")
            and (previous_at is None or charged[-1] > previous_at)
        ):
            charged_at = charged[-1]
        charge_off = None
        if charged_at is not None:
            charge_off = a.balance + sum((amount for at, amount in paid if at >= charged_at), Decimal(0))
        account_holds = holds.get(a.account_id, {})
        # Reinstated: cured after the recovery (the past due paid, the car given back). It is then
        # a current loan, not a 96 for good; the months the car was held keep their `K`.
        recovered_at = recovered.get(a.account_id)
        reinstated_at = next(
            (
                at
                for at, c in reversed(account_changes)
                if c.to_stage == "cured" and recovered_at is not None and at > recovered_at
            ),
            None,
        )
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
                repossessed_on=day(recovered_at),
                reinstated_on=day(reinstated_at),
            ),
            oldest_due_date=a.oldest_due_date,
            episode_due=episode_due,
            phone=phones[a.borrower_id][1] if a.borrower_id in phones else None,
            address=mailable(a.address_line1, a.address_line2, a.city, a.state, a.postal_code, a.country),
            holds=frozenset(account_holds),
            bankruptcy_chapter=_hold_chapter(account_holds.get("bankruptcy")) or chapters.get(a.account_id),
            plan=plans.get(a.account_id),
            repossessed=recovered_at is not None and reinstated_at is None,
            last_payment=day(max((at for at, _ in paid), default=None)),
            closed_on=day(exited_at or (a.stage_since if a.stage in _EXITS else None)),
            charge_off_amount=charge_off,
            previous=previous,
            current_since_previous=cured_since,
            currency=a.currency,
        )


def _episode_due(changes: Sequence[StageChange]) -> date | None:
    """The oldest unpaid due date when the latest delinquency began (cured → reminder, "N days past due").

    The stage's episode: partial payments may bring an account under 30 days (reported current)
    without a cure, so `metro2.status.date_of_first_delinquency` passes over a date on or before
    the last month reported current."""
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
        consumer_information=str(payload.get("consumer_information") or "").strip(),
        payment_rating=str(payload.get("rating") or "").strip(),
        special_comment=str(payload.get("special_comment") or "").strip(),
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
