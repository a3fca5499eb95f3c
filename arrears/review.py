"""Repossession review and legal referral: the rules a person's decision runs between.

Pure functions over plain data, used by `tasks/review.py` and `tasks/legal.py`:

- `cure_deadline`: when the right to cure ends, from the jurisdiction profile (calendar or
  business days, public holidays from `holidays`), in the borrower's time zone;
- `settle_decision`: what a reviewer's decision becomes under the account's holds (SCRA: no
  self-help repossession of a servicemember's car; it goes to court instead);
- `decision_refusal`, `promise_refusal`: why a decision must wait (the cure period; a promise to
  pay still running holds back repossess and legal);
- `claim_amount`, `venue`, `case_type`, `draft_filing`: the filing of a legal referral, built
  from stored facts only, so the same referral always produces the same documents (the court
  gateway deduplicates by key *and* content).
"""

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from arrears.currencies import display
from arrears.jurisdictions import Profile, is_public_holiday, profile
from arrears.vocabulary import DecisionKind, Hold, HoldScope

__all__ = [
    "COURTS",
    "MILITARY_AFFIDAVIT",
    "CureNotice",
    "DraftDocument",
    "FilingDraft",
    "NothingToClaim",
    "Notice",
    "PendingPromise",
    "ReferralFacts",
    "Settled",
    "add_business_days",
    "case_type",
    "claim_amount",
    "court_order_needed",
    "cure_deadline",
    "cure_notice",
    "decision_refusal",
    "draft_filing",
    "enforcement_barred",
    "notice_owed",
    "notices_from",
    "promise_refusal",
    "settle_decision",
    "venue",
]

MILITARY_AFFIDAVIT = "military_affidavit"  # the document kind the court gateway looks for


# -- the right to cure ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CureNotice:
    """The notice a jurisdiction requires before repossession, and when its cure period ends."""

    jurisdiction: str
    days: int
    business_days: bool
    sent_at: datetime
    deadline: datetime  # the first instant after the cure period: decisions are allowed from here
    last_day: date  # the last day (borrower's local calendar) on which the borrower may cure
    cure_amount: Decimal
    currency: str
    source: str

    def describe(self) -> str:
        unit = "business days" if self.business_days else "days"
        return (
            f"right-to-cure notice ({self.source}): {self.currency} {self.cure_amount} to cure "
            f"within {self.days} {unit}, by the end of {self.last_day.isoformat()}"
        )


def _business_day(day: date, calendar: str | None) -> bool:
    if day.weekday() >= 5:
        return False
    return not calendar or not is_public_holiday(day, calendar)


@lru_cache(maxsize=4096)
def add_business_days(start: date, days: int, *, calendar: str | None) -> date:
    """The `days`-th business day after `start` (weekends and the calendar's public holidays
    skipped; `calendar` as the profiles name it: "US", "US-IA", "GB"). Kept: a cycle's thousands
    of letters, written at one instant, ask it of a handful of days."""
    day = start
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if _business_day(day, calendar):
            counted += 1
    return day


@lru_cache(maxsize=4096)
def _last_day(sent_on: date, days: int, business_days: bool, calendar: str | None) -> date:
    """The last day to cure of a notice given on `sent_on` (`cure_deadline`), from every input it
    depends on; kept because the cycle writes thousands of notices at one instant, which share a
    handful of these (each a walk over days and holiday calendars)."""
    if business_days:
        return add_business_days(sent_on, days, calendar=calendar)
    last = sent_on + timedelta(days=days)
    while not _business_day(last, calendar):
        last += timedelta(days=1)
    return last


def cure_deadline(
    sent_at: datetime,
    *,
    jurisdiction: str,
    timezone: str,
    rules: Profile | None = None,
) -> tuple[date, datetime] | None:
    """The last day to cure and the instant the period ends, or None when no notice is required.

    `rules` is the profile under the lender's policy (`Policy.profile`), the file's by default.
    Days are counted from the day after the notice, in the borrower's calendar. A period counted
    in calendar days that ends on a weekend or public holiday runs on to the next business day:
    statutes differ on this (unverified), and waiting a day longer is the side that never
    repossesses early.
    """
    rules = rules or profile(jurisdiction)
    if rules.cure_notice_days is None:
        return None
    zone = ZoneInfo(timezone)
    sent_on = sent_at.astimezone(zone).date()
    last = _last_day(sent_on, rules.cure_notice_days, rules.cure_business_days, rules.hours.holidays)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return last, end


def cure_notice(
    sent_at: datetime,
    *,
    jurisdiction: str,
    timezone: str,
    cure_amount: Decimal,
    currency: str,
    rules: Profile | None = None,
    prior_cures: int = 0,
) -> CureNotice | None:
    """The notice to send at `sent_at`, or None when the jurisdiction requires none (US-CA, CN),
    or none is owed any more because the borrower has already cured `max_cures` times (US-MA)."""
    rules = rules or profile(jurisdiction)
    if rules.max_cures is not None and prior_cures >= rules.max_cures:
        return None
    found = cure_deadline(sent_at, jurisdiction=jurisdiction, timezone=timezone, rules=rules)
    if found is None:
        return None
    last, end = found
    assert rules.cure_notice_days is not None
    return CureNotice(
        jurisdiction=jurisdiction,
        days=rules.cure_notice_days,
        business_days=rules.cure_business_days,
        sent_at=sent_at,
        deadline=end,
        last_day=last,
        cure_amount=cure_amount,
        currency=currency,
        source=(dict(rules.sources).get("cure") or f"{jurisdiction} profile").split(":")[0],
    )


def notice_owed(jurisdiction: str, *, rules: Profile | None = None, prior_cures: int = 0) -> bool:
    rules = rules or profile(jurisdiction)
    if rules.max_cures is not None and prior_cures >= rules.max_cures:
        return False
    return rules.cure_notice_days is not None


# -- the decision --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settled:
    """A reviewer's decision as it stands under the account's holds."""

    requested: DecisionKind
    decision: DecisionKind
    note: str | None = None  # why it differs from the request, or why no vendor order goes out
    order_vehicle: bool = False  # place a repossession order with the vendor


# The holds under which nothing that enforces the debt goes out (`enforcement_barred`): an order, a
# filing, a legal notice in the post.
ENFORCEMENT_BARRING = frozenset(h for h in Hold if h.scope is HoldScope.COLLECTION and h is not Hold.MILITARY)


def enforcement_barred(holds: frozenset[Hold]) -> str | None:
    """Why neither a repossession order nor a court filing may go out now, or None.

    A bankruptcy filing stays every act to take the car and the start or continuation of a suit
    (11 U.S.C. 362(a)(1), (3)); a dispute, a death or Breathing Space (no enforcement) stops
    collection altogether while it lasts. A military hold bars the repossession only through
    `settle_decision` (SCRA: a court order instead), so it does not bar a filing."""
    blocking = sorted(h for h in holds if h in ENFORCEMENT_BARRING)
    if blocking:
        return f"hold:{blocking[0].value}"
    return None


def court_order_needed(holds: frozenset[Hold], rules: Profile | None = None) -> str | None:
    """Why a repossession needs a court order here, or None: a military hold (SCRA 50 U.S.C. 3952
    forbids repossessing a servicemember's vehicle without one), or the jurisdiction's protected
    goods (GB: CCA 1974 s.90; IE: CCA 1995 ss.63-64)."""
    if Hold.MILITARY in holds:
        return "military hold: SCRA 50 U.S.C. 3952 forbids self-help repossession"
    if rules is not None and rules.repossession_needs_court_order:
        law = dict(rules.sources).get("protected_goods", "the law").split(":")[0]
        return f"protected goods in {rules.code}: {law} forbids repossession without a court order"
    return None


def settle_decision(
    requested: DecisionKind, *, holds: frozenset[Hold], rules: Profile | None = None
) -> Settled:
    """What the decision becomes. Where a repossession needs a court order (`court_order_needed`:
    a military hold, GB's and IE's protected goods) it becomes a referral to legal for that order."""
    if requested is not DecisionKind.REPOSSESS:
        return Settled(requested, requested)
    needed = court_order_needed(holds, rules)
    if needed:
        return Settled(requested, DecisionKind.LEGAL, f"{needed}; referred to legal for a court order")
    barred = enforcement_barred(holds)
    if barred:
        return Settled(requested, requested, f"vendor order withheld: {barred}")
    return Settled(requested, requested, None, order_vehicle=True)


def decision_refusal(
    *,
    in_review: bool,
    closed: bool,
    stage: str,
    notice_owed: bool,
    cure_deadline: datetime | None,
    now: datetime,
) -> str | None:
    """Why a reviewer may not decide now, or None. Nobody decides before the borrower's right to
    cure has run its course: the notice must have gone out where one is owed, and its period ended."""
    if closed:
        return "the review is already decided or closed"
    if not in_review:
        return f"the account is no longer in repossession review (now {stage})"
    if notice_owed and cure_deadline is None:
        return (
            "the right-to-cure notice has not gone out yet (a hold stops it, or the review has not run yet)"
        )
    if cure_deadline is not None and now < cure_deadline:
        return f"the right-to-cure period runs until {cure_deadline.isoformat()}"
    return None


@dataclass(frozen=True, slots=True)
class PendingPromise:
    """A promise to pay neither kept nor broken yet (`arrears.promises`), as a reviewer is told of it."""

    promise_id: int
    amount: Decimal
    due_date: date


def promise_refusal(
    promise: PendingPromise | None, *, decision: DecisionKind | None, currency: str, grace_days: int
) -> str | None:
    """Why a repossession or a referral to legal may not be decided while the borrower's promise
    to pay runs, or None. The lender took the promise and stopped asking for it (`arrears.lifecycle`):
    enforcing before its date would break the lender's word, as a working plan keeps an account from
    review. The wait is bounded: promises are taken only before review, at most
    `promise_max_days_ahead` out, and the cycle judges them `grace_days` after their date. Sending
    the account back to negotiation honours the promise and is never refused; `decision` None asks
    whether any decision may be taken (a flow run waits for its form until then)."""
    if promise is None or decision is DecisionKind.NEGOTIATE:
        return None
    judged = promise.due_date + timedelta(days=grace_days)
    return (
        f"promise {promise.promise_id} to pay {currency} {display(promise.amount, currency)} by "
        f"{promise.due_date.isoformat()} is pending: repossess and legal wait until it is kept or broken "
        f"(judged after {judged.isoformat()}); negotiate may be decided now"
    )


# -- the legal referral --------------------------------------------------------------------------

# The lender's venue table: the court each profile files in. These are the sandbox gateway's court
# codes; a real lender keeps one per county or district (where the borrower lives or the car is).
COURTS: dict[str, str] = {
    "US-CA": "US-CA-LASC",
    "US-IA": "US-IA-POLK",
    "US-MA": "US-MA-BMC",
    "US-WI": "US-WI-MKE",
    "GB": "GB-CCBC",
    "IE": "IE-CC-DUB",
    "CN": "CN-SH-PD",
}


class NothingToClaim(ValueError):
    """The sale proceeds cover the balance and fees: there is no deficiency to sue for."""


def venue(jurisdiction: str) -> str | None:
    return COURTS.get(jurisdiction)


def case_type(jurisdiction: str) -> str:
    """A payment order (支付令) in China, for a fixed amount already due (Civil Procedure Law
    ch. 17); elsewhere a civil claim for the balance or the deficiency after a sale."""
    return "payment_order" if jurisdiction == "CN" else "deficiency"


def claim_amount(balance: Decimal, fees: Decimal, sale_proceeds: Decimal) -> Decimal:
    """Balance plus fees less what the sale of the vehicle brought in; positive or NothingToClaim."""
    claim = balance + fees - sale_proceeds
    if claim <= 0:
        raise NothingToClaim(f"sale proceeds {sale_proceeds} cover balance {balance} and fees {fees}")
    return claim


@dataclass(frozen=True, slots=True)
class Notice:
    kind: str  # cure_notice | vendor_order | sale ...
    at: str  # ISO 8601
    detail: str


@dataclass(frozen=True, slots=True)
class ReferralFacts:
    """What a filing is built from: stored once when the referral opens, so every submission of
    the same referral carries the same documents."""

    referral_id: int
    account_id: str
    lender: str
    borrower_name: str
    jurisdiction: str
    currency: str
    balance: Decimal
    fees: Decimal
    sale_proceeds: Decimal
    past_due: Decimal
    oldest_due_date: date | None
    days_past_due: int
    vin: str | None
    # An active military hold when the referral opened; the filing swears to the status when it
    # is drafted for the court (`tasks.legal.submit_filing`), which may be months later.
    military: bool
    decided_by: str | None  # the reviewer who referred it
    decision_reason: str | None
    opened_on: date
    notices: tuple[Notice, ...] = field(default=())
    # The database's installation id, which the filing's idempotency key carries (DESIGN §3); None
    # in the facts of a referral opened before it did, whose key stays as it was submitted.
    installation: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("balance", "fees", "sale_proceeds", "past_due"):
            data[key] = str(data[key])
        data["oldest_due_date"] = self.oldest_due_date.isoformat() if self.oldest_due_date else None
        data["opened_on"] = self.opened_on.isoformat()
        data["notices"] = [asdict(n) for n in self.notices]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ReferralFacts":
        values = dict(data)
        for key in ("balance", "fees", "sale_proceeds", "past_due"):
            values[key] = Decimal(values[key])
        values["oldest_due_date"] = (
            date.fromisoformat(values["oldest_due_date"]) if values["oldest_due_date"] else None
        )
        values["opened_on"] = date.fromisoformat(values["opened_on"])
        values["notices"] = tuple(Notice(**n) for n in values["notices"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class DraftDocument:
    kind: str
    name: str
    text: str

    @property
    def content(self) -> bytes:
        return self.text.encode("utf-8")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True, slots=True)
class FilingDraft:
    idempotency_key: str
    court: str
    case_type: str
    claim: Decimal
    currency: str
    plaintiff: str
    defendant: str
    documents: tuple[DraftDocument, ...]
    military_affidavit: bool
    # What the affidavit swears (in service or not): a draft sent again after a lost answer
    # must swear the same, whatever the holds say by then (`tasks.legal.submit_filing`).
    defendant_military: bool = False

    def summary(self) -> dict[str, Any]:
        """What the audit trail keeps of the filing: never the documents' text, only their hashes."""
        return {
            "idempotency_key": self.idempotency_key,
            "court": self.court,
            "case_type": self.case_type,
            "claim": str(self.claim),
            "currency": self.currency,
            "military_affidavit": self.military_affidavit,
            "defendant_military": self.defendant_military,
            "documents": [{"kind": d.kind, "name": d.name, "sha256": d.sha256} for d in self.documents],
        }


def draft_filing(facts: ReferralFacts) -> FilingDraft:
    """The filing of a referral: the claim with its calculation, references to the contract, the
    default and the notices, and (in a US court) the military-status affidavit that must precede
    any default judgment (SCRA 50 U.S.C. 3931(b)(1))."""
    court = venue(facts.jurisdiction)
    if court is None:
        raise ValueError(f"no court is configured for {facts.jurisdiction}: add it to the venue table")
    claim = claim_amount(facts.balance, facts.fees, facts.sale_proceeds)
    kind = case_type(facts.jurisdiction)
    money = f"{facts.currency} "
    sold = facts.sale_proceeds > 0
    defaulted = facts.oldest_due_date.isoformat() if facts.oldest_due_date else "(unknown)"
    vehicle = facts.vin or "(no VIN on file)"
    calculation = "\n".join(
        [
            f"Balance outstanding: {money}{facts.balance}",
            f"Fees (repossession, storage, sale): {money}{facts.fees}",
            f"Less proceeds of the sale of the vehicle: {money}{facts.sale_proceeds}",
            f"{'Deficiency' if sold else 'Amount'} claimed: {money}{claim}",
        ]
    )
    title = "Application for a payment order" if kind == "payment_order" else "Complaint"
    referred = (
        f" Referred by reviewer {facts.decided_by}: {facts.decision_reason}." if facts.decided_by else ""
    )
    documents = [
        DraftDocument(
            "complaint",
            "complaint.txt",
            "\n".join(
                [
                    f"{title}: {facts.lender} v. {facts.borrower_name}",
                    f"Account {facts.account_id}; vehicle {vehicle}.",
                    f"The defendant defaulted on the instalment due {defaulted} and was "
                    f"{facts.days_past_due} days past due "
                    f"with {money}{facts.past_due} past due when referred on {facts.opened_on.isoformat()}.",
                    calculation,
                ]
            ),
        ),
        DraftDocument(
            "contract",
            "contract-reference.txt",
            f"Retail instalment contract for account {facts.account_id}, vehicle {vehicle}, held by "
            f"{facts.lender}; the original and any assignments are produced on request.",
        ),
        DraftDocument(
            "default",
            "proof-of-default.txt",
            f"Oldest unpaid instalment due {defaulted}; {facts.days_past_due} days past due on "
            f"{facts.opened_on.isoformat()}; past due {money}{facts.past_due}.{referred}",
        ),
        DraftDocument("deficiency_calculation", "claim-calculation.txt", calculation),
    ]
    if facts.notices:
        documents.append(
            DraftDocument(
                "notices", "notices.txt", "\n".join(f"{n.at} {n.kind}: {n.detail}" for n in facts.notices)
            )
        )
    us = facts.jurisdiction == "US" or facts.jurisdiction.startswith("US-")
    if us:
        status = (
            "IS in military service (an active military hold is on the account): the court must appoint "
            "an attorney "
            "for the defendant and may stay the proceedings (50 U.S.C. 3931(b)(2), 3932)"
            if facts.military
            else "is not, to the plaintiff's knowledge after checking its records, in military service; "
            "the DMDC SCRA status report is attached to the filed copy"
        )
        affidavit = f"Affidavit under 50 U.S.C. 3931(b)(1): the defendant {facts.borrower_name} {status}."
        documents.append(DraftDocument(MILITARY_AFFIDAVIT, "military-status-affidavit.txt", affidavit))
    return FilingDraft(
        # Namespaced: two databases filing through one gateway account both have a referral 1, and
        # the gateway answers a key it knows with its first filing.
        idempotency_key=f"{facts.installation}-referral-{facts.referral_id}"
        if facts.installation
        else f"referral-{facts.referral_id}",
        court=court,
        case_type=kind,
        claim=claim,
        currency=facts.currency,
        plaintiff=facts.lender,
        defendant=facts.borrower_name,
        documents=tuple(documents),
        military_affidavit=us,
        defendant_military=facts.military,
    )


def notices_from(events: Sequence[tuple[str, datetime, str]]) -> tuple[Notice, ...]:
    """The notices a filing refers to, from (kind, at, detail) audit facts, oldest first."""
    return tuple(
        Notice(kind, at.isoformat(), detail) for kind, at, detail in sorted(events, key=lambda e: e[1])
    )
