"""The right-to-cure notice as a letter: what it says, and when its cure period really runs.

Pure functions, used by `tasks/letters.py`:

- `planned_notice`: the notice as printed. The letter is written before it is mailed, so the
  deadline it states is counted from the latest day the provider may mail it (`latest_mailing`):
  a printed deadline later than the statute's minimum gives the borrower more time, never less.
  A letter not handed to the provider within `SEND_WITHIN` is written again, so that this holds.
- `given_at` and `mailed_deadline`: the legal clock. It starts when the notice is given as the
  statute defines it (the provider's mailed event, plus the mailing days the profile allows),
  never when we decided to write; the deadline kept is the later of that and the printed one.
- `cure_letter_context` and `context_json`/`context_from_json`: the render inputs, stored with
  the letter so that it can be rendered again, byte for byte; `vehicle_of`: how a notice names
  the car.
- `days_in_the_post`: the days a letter's printed dates allow it in the post, which only domestic
  mail keeps to (`tasks.letters` refuses any other route for such a letter).
"""

from dataclasses import fields, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from arrears.jurisdictions import Profile
from arrears.letters.render import LetterContext
from arrears.review import CureNotice, add_business_days, cure_notice

__all__ = [
    "MAILED_WITHIN_BUSINESS_DAYS",
    "SEND_WITHIN",
    "context_from_json",
    "context_json",
    "cure_letter_context",
    "days_in_the_post",
    "given_at",
    "latest_mailing",
    "mailed_deadline",
    "planned_notice",
    "vehicle_of",
]

# From writing a letter to handing it to the provider, at most. A letter not sent by then (a
# provider down for days, a backlog) would print dates counted from a mailing already past; it is
# written again.
SEND_WITHIN = timedelta(days=1)
# From handing a letter to the provider to its mailing, at most: Lob mails "within two business
# days". Business days, not calendar ones: a letter handed over on a Friday is mailed by Tuesday.
MAILED_WITHIN_BUSINESS_DAYS = 2


def latest_mailing(written_at: datetime, *, timezone: str, calendar: str | None) -> date:
    """The latest day, in the borrower's calendar, on which a letter written at `written_at` is
    mailed: handed over within `SEND_WITHIN`, then mailed within `MAILED_WITHIN_BUSINESS_DAYS`
    business days (weekends and the public holidays of `calendar`, the profile's, skipped). Every
    date a letter prints is counted from it, so that a letter mailed at any moment within these
    bounds gives the borrower at least the time it states."""
    handed_on = (written_at + SEND_WITHIN).astimezone(ZoneInfo(timezone)).date()
    return add_business_days(handed_on, MAILED_WITHIN_BUSINESS_DAYS, calendar=calendar)


def given_at(mailed_at: datetime, rules: Profile) -> datetime:
    """When a notice mailed at `mailed_at` counts as given under the profile."""
    return mailed_at + timedelta(days=rules.cure_mailing_days)


def days_in_the_post(kind: str, rules: Profile) -> int:
    """The days from mailing to service a letter of `kind` prints its dates on (0: none, its dates
    count from the mailing). A right-to-cure notice served when it would be delivered (GB, IE:
    5 days; US-MA: 3) counts on the post of the borrower's own country: sent abroad (Lob mails
    from the US, and international mail takes 5-7 business days more), it would be served after
    the day it printed, and the period it gives would be shorter than the law's."""
    return rules.cure_mailing_days if kind == "right_to_cure" else 0


def vehicle_of(vin: str | None) -> str:
    """How a letter names the car: by its VIN, in full, which no other car has; "" without one.
    Not with a model year read from the VIN: its 10th character is one only in VINs made for North
    America (49 CFR 565.15, a code repeating every 30 years), and a wrong year on a notice would
    name another car."""
    vin = "".join((vin or "").split()).upper()
    return f"VIN {vin}" if vin else ""


def planned_notice(
    written_at: datetime,
    *,
    jurisdiction: str,
    timezone: str,
    cure_amount: Decimal,
    currency: str,
    rules: Profile,
    prior_cures: int = 0,
) -> CureNotice | None:
    """The notice as the letter states it: counted from the latest day it may be mailed."""
    mailed_on = latest_mailing(written_at, timezone=timezone, calendar=rules.hours.holidays)
    # Any hour of that day would do: the notice counts by the borrower's calendar day.
    mailed_at = datetime.combine(mailed_on, time(12), tzinfo=ZoneInfo(timezone))
    return cure_notice(
        given_at(mailed_at, rules),
        jurisdiction=jurisdiction,
        timezone=timezone,
        cure_amount=cure_amount,
        currency=currency,
        rules=rules,
        prior_cures=prior_cures,
    )


def mailed_deadline(
    mailed_at: datetime,
    *,
    jurisdiction: str,
    timezone: str,
    cure_amount: Decimal,
    currency: str,
    rules: Profile,
    printed_last_day: date | None,
) -> CureNotice | None:
    """The notice as given by the mailed event; its deadline is never before the end of the last
    day the letter printed (the borrower was told that day)."""
    notice = cure_notice(
        given_at(mailed_at, rules),
        jurisdiction=jurisdiction,
        timezone=timezone,
        cure_amount=cure_amount,
        currency=currency,
        rules=rules,
    )
    if notice is None or printed_last_day is None or printed_last_day <= notice.last_day:
        return notice
    end = datetime.combine(printed_last_day + timedelta(days=1), time(0), tzinfo=ZoneInfo(timezone))
    return replace(notice, last_day=printed_last_day, deadline=end.astimezone(UTC))


def cure_letter_context(
    notice: CureNotice,
    *,
    lender: str,
    lender_contact: str,
    borrower_name: str,
    account_reference: str,
    address: tuple[str, ...],
    letter_date: date,
    vin: str | None = None,
) -> LetterContext:
    """What a right-to-cure letter says: the amount to cure (itemized, as US-WI requires), the
    last day to cure, and the car under the agreement (`vin`), where its VIN is on file."""
    return LetterContext(
        jurisdiction=notice.jurisdiction,
        lender=lender,
        lender_contact=lender_contact,
        borrower_name=borrower_name,
        account_reference=account_reference,
        letter_date=letter_date,
        currency=notice.currency,
        amount_to_cure=notice.cure_amount,
        cure_deadline=notice.last_day,
        itemization=(("Past due instalments", notice.cure_amount),),
        vehicle=vehicle_of(vin),
        borrower_address=(borrower_name, *address),
    )


def context_json(context: LetterContext) -> dict[str, Any]:
    """The context as JSON for the letter row (Decimals and dates as strings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Decimal | date):
            return {
                "$": type(value).__name__,
                "v": str(value) if isinstance(value, Decimal) else value.isoformat(),
            }
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    # Field by field, not `asdict`: its deep copy of every value was half the cost of writing a
    # cycle's letters, and a context holds no dataclass for it to turn into a dict.
    return {f.name: plain(getattr(context, f.name)) for f in fields(context)}


def context_from_json(data: dict[str, Any]) -> LetterContext:
    def back(value: Any) -> Any:
        if isinstance(value, dict) and "$" in value:
            return Decimal(value["v"]) if value["$"] == "Decimal" else date.fromisoformat(value["v"])
        if isinstance(value, list):
            return tuple(back(v) for v in value)
        return value

    # Keys starting with "_" are the task's own notes (the recipient's address as a structure).
    return LetterContext(**{k: back(v) for k, v in data.items() if not k.startswith("_")})
