"""What an account's Metro 2 codes are, from what arrears knows of it. Pure functions, no I/O.

The month-end *condition* of an account is decided first (current, 30+ days late, with
collections, charged off, repossessed, surrendered, paid, settled); the Account Status, the
Payment Rating and the month's Payment History character all follow from it, so that the three
can never disagree.

Rules, with their sources (metro2.md, CDIA CRRG):
- Account Status 11 for 0-29 days past due, then 71, 78, 80, 82, 83, 84 by 30-day steps.
- 93 "assigned to internal or external collections" only for accounts referred to legal (stage
  `legal_referral`, or `closed` by a judgment with a balance left). Negotiation, restructuring
  and repossession review are our own servicing of a delinquent account: they report by days
  past due, as the CRRG asks of a lender collecting its own loans.
- 96 once a reviewer decided to repossess; 95 for a voluntary surrender; 97 once charged off.
- A zero balance is 13 (paid or closed), unless the account was charged off, repossessed,
  surrendered or with collections since it was last current: then 64, 63, 61, 62.
  A settlement for less than the balance is 13 with Special Comment AU and a zero balance.
- Special Comment BI (involuntary repossession) with 96; AC or CO while a plan is active.
- Payment Rating is present exactly with statuses 05, 13, 65, 88, 89, 94, 95 (CRRG; of those
  arrears writes 13 and 95) and blank otherwise, 97 included. With 13 it tells the account's
  condition before it was paid (the last reported month's character, or 0); with 95, the days
  past due at the surrender.
- Date of First Delinquency: the day the account first reached 30 days past due in the
  delinquency that led to the status (oldest unpaid due date of the episode + 30 days); frozen
  once reported, whatever partial payments do to the oldest due date afterwards; cleared when
  the account is current again (status 11, or 13 with rating 0), and never on or before the end
  of the last month reported current: a delinquency after a current month starts the date over.
- Compliance Condition Code XB while a `dispute` hold is active (FCRA 623(a)(3)); XH once in the
  first file after it is lifted (investigation completed), then nothing.
- Consumer Information Indicator while a `bankruptcy` hold is active: A chapter 7, B chapter 11,
  C chapter 12, D chapter 13 petition; nothing (and a warning) when the chapter is unknown.
- ECOA Code X for a deceased borrower (the CRRG code; metro2.md's "W" is the business code), 1
  otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum

from arrears.metro2.layout import STATUS_COUNTERS

__all__ = [
    "DOFD_STATUSES",
    "HISTORY_CHARS",
    "RATING_CHARS",
    "RATING_REQUIRED",
    "STATUS_CODES",
    "Condition",
    "MonthState",
    "Status",
    "account_status",
    "compliance_condition",
    "condition_of",
    "consumer_information_indicator",
    "date_of_first_delinquency",
    "dpd_char",
    "dpd_status",
    "ecoa_code",
    "history_char",
    "needs_first_delinquency",
    "special_comment",
]

# Every Account Status the format knows (the trailer counts all but DA and DF); arrears writes a subset.
STATUS_CODES: frozenset[str] = frozenset({"DA", "DF", *STATUS_COUNTERS})
RATING_REQUIRED: frozenset[str] = frozenset({"05", "13", "65", "88", "89", "94", "95"})
RATING_CHARS = "0123456GL"
HISTORY_CHARS = "0123456BDEGHJKL"
# Statuses that carry a Date of First Delinquency (CRRG), besides 13 with a rating 1-6, G or L.
DOFD_STATUSES: frozenset[str] = frozenset(STATUS_COUNTERS) - {"05", "11", "13"}
_DPD_STEPS = (
    (180, "84", "6"),
    (150, "83", "5"),
    (120, "82", "4"),
    (90, "80", "3"),
    (60, "78", "2"),
    (30, "71", "1"),
)
_COLLECTION_STAGES = frozenset({"legal_referral", "closed"})
_PAID_AFTER = (("L", "64"), ("K", "63"), ("J", "61"), ("G", "62"))  # most severe first


class Condition(StrEnum):
    """An account's condition at a month end: what its status and its history character say."""

    CURRENT = "current"  # 0-29 days past due
    DELINQUENT = "delinquent"  # 30 days or more past due
    COLLECTION = "collection"  # referred to legal
    CHARGED_OFF = "charged_off"
    REPOSSESSED = "repossessed"
    SURRENDERED = "surrendered"
    PAID = "paid"  # zero balance
    SETTLED = "settled"  # closed for less than the balance, by agreement or in court


@dataclass(frozen=True, slots=True)
class MonthState:
    condition: Condition
    days_past_due: int = 0


@dataclass(frozen=True, slots=True)
class Status:
    account_status: str
    payment_rating: str = ""  # blank unless the status requires one
    special_comment: str = ""  # AU for a settlement; plans add theirs in `special_comment`


def dpd_status(days_past_due: int) -> str:
    for lowest, status, _ in _DPD_STEPS:
        if days_past_due >= lowest:
            return status
    return "11"


def dpd_char(days_past_due: int) -> str:
    """The history character (and rating) of a number of days past due: 0 for 0-29, 1 for 30-59 … 6."""
    for lowest, _, char in _DPD_STEPS:
        if days_past_due >= lowest:
            return char
    return "0"


def condition_of(
    stage: str,
    days_past_due: int,
    balance: Decimal,
    *,
    repossessed: bool = False,
    surrendered: bool = False,
) -> Condition:
    """The condition of an account in `stage` (a Stage or an Exit value) with these numbers."""
    if stage == "settled":
        return Condition.SETTLED
    if balance <= 0 or stage == "paid_off":
        return Condition.PAID
    if stage == "charged_off":
        return Condition.CHARGED_OFF
    if surrendered:
        return Condition.SURRENDERED
    if repossessed:
        return Condition.REPOSSESSED
    if stage in _COLLECTION_STAGES:
        return Condition.COLLECTION
    return Condition.DELINQUENT if days_past_due >= 30 else Condition.CURRENT


def history_char(state: MonthState) -> str:
    """The Payment History Profile character of one month."""
    match state.condition:
        case Condition.CURRENT:
            return "0"
        case Condition.DELINQUENT:
            return dpd_char(state.days_past_due)
        case Condition.COLLECTION:
            return "G"
        case Condition.CHARGED_OFF:
            return "L"
        case Condition.REPOSSESSED:
            return "K"
        case Condition.SURRENDERED:
            return "J"
        case _:
            return "E"  # paid or settled: zero balance


def _since_current(earlier: str) -> str:
    """The characters of the months before, back to (not including) the last current or unknown one."""
    run = []
    for char in earlier:
        if char in "0EB":
            break
        run.append(char)
    return "".join(run)


def _rating_before(earlier: str) -> str:
    """The last known rating-worthy character before this month, or 0. A repossession (K) or a
    surrender (J) is no rating: the delinquency before it is (a settlement after `KK321` rates 3,
    and keeps its Date of First Delinquency, where it read as current)."""
    for char in earlier:
        if char in "DKJ":
            continue
        return char if char in RATING_CHARS else "0"
    return "0"


def account_status(state: MonthState, *, earlier: str = "") -> Status:
    """Account Status, Payment Rating (and AU) of a month; `earlier`: the months before, most recent first."""
    match state.condition:
        case Condition.PAID:
            run = _since_current(earlier)
            for char, status in _PAID_AFTER:
                if char in run:
                    return Status(status)
            return Status("13", _rating_before(earlier))
        case Condition.SETTLED:
            return Status("13", _rating_before(earlier), "AU")
        case Condition.CHARGED_OFF:
            return Status("97")
        case Condition.SURRENDERED:
            return Status("95", dpd_char(state.days_past_due))
        case Condition.REPOSSESSED:
            return Status("96")
        case Condition.COLLECTION:
            return Status("93")
        case _:
            return Status(dpd_status(state.days_past_due))


def needs_first_delinquency(status: Status) -> bool:
    """Whether the CRRG asks for a Date of First Delinquency with this status and rating."""
    if status.account_status in DOFD_STATUSES:
        return True
    return (
        status.account_status == "13" and status.payment_rating != "" and status.payment_rating in "123456GL"
    )


def date_of_first_delinquency(
    status: Status,
    *,
    previous: date | None,
    episode_due: date | None,
    oldest_due: date | None,
    days_past_due: int,
    as_of: date,
    current_until: date | None = None,
) -> date | None:
    """The Date of First Delinquency to report, or None (zero-filled).

    `previous` is what the last file reported for the same delinquency (the caller drops it if
    the account was current since); it wins, so the date never moves. Otherwise the episode's
    first unpaid due date + 30 days, then the account's oldest unpaid due date + 30, then the
    date implied by today's days past due.

    `current_until` is the end of the last month reported current (11): a date on or before it
    belongs to a delinquency that month ended, so it is passed over. The stage's episode runs
    from a cure to the next, and partial payments can bring an account under 30 days (reported
    11) without a cure: metro2.md's "until it becomes current" is the month's, and a delinquency
    after it starts the date over.
    """
    if not needs_first_delinquency(status):
        return None

    def after_current(day: date | None) -> date | None:
        return day if day is not None and (current_until is None or day > current_until) else None

    if after_current(previous) is not None:
        return previous
    for due in (episode_due, oldest_due):
        found = after_current(min(due + timedelta(days=30), as_of) if due is not None else None)
        if found is not None:
            return found
    if days_past_due >= 30:
        return after_current(as_of - timedelta(days=days_past_due - 30))
    return None


def special_comment(status: Status, plan: tuple[str, str] | None) -> str:
    """AU for a settlement; BI with a repossession (96); AC while an instalment plan is active
    (paying under a partial payment agreement); CO while a deferral is active (loan modified);
    blank otherwise.

    Of metro2.md's "`BI`/`BK` with repossession" (CRRG: BI involuntary repossession, BK
    involuntary repossession/balance owing), BI: it says only what a 96 knows for certain, that
    the car was taken; whether a balance is owed after the sale is not known until the car is
    sold, and the Current Balance tells what is owed meanwhile.
    """
    if status.special_comment:
        return status.special_comment
    if status.account_status == "96":
        return "BI"
    if plan is None or status.account_status in ("13", "61", "62", "63", "64", "97"):
        return ""
    kind, plan_status = plan
    if plan_status != "active":
        return ""
    return {"instalment": "AC", "deferral": "CO"}.get(kind, "")


def compliance_condition(*, disputed: bool, previous: str) -> str:
    """XB while the consumer disputes (FCRA 623(a)(3)); XH in the first file after the dispute closed."""
    if disputed:
        return "XB"
    if previous in ("XB", "XC"):
        return "XH"
    return ""


_CHAPTERS = {7: "A", 11: "B", 12: "C", 13: "D"}


def consumer_information_indicator(*, bankrupt: bool, chapter: int | None, previous: str = "") -> str:
    """The petition code of the bankruptcy chapter while a bankruptcy hold is active; `Q` (removes
    the indicator) in the first file after the hold was lifted, when the last one carried a
    petition code (a dismissed case: the petition stood on the file for good); else blank."""
    if bankrupt:
        return _CHAPTERS.get(chapter, "") if chapter is not None else ""
    return "Q" if previous in _CHAPTERS.values() else ""


def ecoa_code(*, deceased: bool) -> str:
    """X for a deceased borrower (CRRG), 1 for an individual account."""
    return "X" if deceased else "1"
