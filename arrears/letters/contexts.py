"""What the lifecycle's other letters say: the 催收函 before legal action, and the confirmation of
an accepted hardship plan. Pure functions over stored facts, used by `tasks.lifecycle_letters`.

- `collection_notice_context`: the zh-CN 催收函 mailed when a CN account enters legal referral.
  It names the past-due amount and a last day to pay before the lender goes to court; the CBA
  2026 guideline asks for written notice, not for a period, so `COLLECTION_NOTICE_DAYS` is a
  policy number (a conservative default, unverified), counted like a cure notice from the
  latest day the letter may be mailed, so the borrower is never given less time than it says.
- `plan_letter_context`: the confirmation of the plan the borrower accepted (its terms in the
  borrower's language: the template is chosen by the profile's locale).
- `arrears_notice_context`: the GB notice of sums in arrears (Consumer Credit Act 1974 s.86B), the
  arrears and the balance still to pay as they stand the day it is written;
  `arrears_notice_last_day`: the last day it may be mailed.
- `validation_notice_context`: the US validation notice (Reg F 1006.34), with the day its
  validation period ends (`validation_period_end`, counted from the latest day it may be mailed,
  so a notice mailed at any moment allowed gives the borrower at least the period it states);
  `validation_notice_last_day`: the last day it may be mailed, counted from the first contact.
"""

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from arrears.letters.notices import latest_mailing, vehicle_of
from arrears.letters.render import LetterContext
from arrears.restructuring import PlanTerms, count_months
from arrears.review import add_business_days

__all__ = [
    "COLLECTION_NOTICE_DAYS",
    "arrears_notice_context",
    "arrears_notice_last_day",
    "collection_notice_context",
    "plan_letter_context",
    "validation_notice_context",
    "validation_notice_last_day",
    "validation_period_end",
]

COLLECTION_NOTICE_DAYS = 15  # policy: days to pay after the latest mailing, before court action


def collection_notice_context(
    *,
    jurisdiction: str,
    timezone: str,
    calendar: str | None,
    written_at: datetime,
    lender: str,
    lender_contact: str,
    borrower_name: str,
    account_reference: str,
    currency: str,
    past_due: Decimal,
    address: tuple[str, ...],
    vin: str | None = None,
) -> LetterContext:
    """The 催收函 of an account entering legal referral, written at `written_at` (`calendar`: the
    profile's public holidays, which the mailing days skip); it names the car (车辆) by its `vin`
    where one is on file."""
    zone = ZoneInfo(timezone)
    mailed_by = latest_mailing(written_at, timezone=timezone, calendar=calendar)
    return LetterContext(
        jurisdiction=jurisdiction,
        lender=lender,
        lender_contact=lender_contact,
        borrower_name=borrower_name,
        account_reference=account_reference,
        letter_date=written_at.astimezone(zone).date(),
        currency=currency,
        amount_to_cure=past_due,
        cure_deadline=mailed_by + timedelta(days=COLLECTION_NOTICE_DAYS),
        itemization=(("逾期应还款项", past_due),),
        vehicle=vehicle_of(vin),
        borrower_address=(borrower_name, *address),
    )


def _describe(terms: PlanTerms, locale: str) -> str:
    """The plan in a line, in the letter's language (`PlanTerms.describe` is for the audit trail)."""
    if locale == "zh-CN":
        if terms.kind == "deferral":
            extended = terms.term_extension_months
            return f"延期还款：{terms.months}期月供顺延至贷款期末（期限延长{extended}个月）"
        if terms.taken_in:
            dates = "、".join(d.isoformat() for d in terms.taken_in)
            return f"分期还款：逾期款项及{dates}到期的月供分{terms.months}个月随月供偿还"
        return f"分期还款：逾期款项分{terms.months}个月随月供偿还"
    if terms.kind == "deferral":
        plural = "s" if terms.months > 1 else ""
        return (
            f"deferral of {terms.months} instalment{plural} to the end of the loan "
            f"(term extended by {count_months(terms.term_extension_months)})"
        )
    if terms.taken_in:  # due before the plan's first payment: spread with the past due
        dates = ", ".join(d.isoformat() for d in terms.taken_in)
        return (
            f"the past-due amount and the instalment due {dates} spread over {terms.months} months "
            "with your regular instalment"
        )
    return f"the past-due amount spread over {terms.months} months with your regular instalment"


def plan_letter_context(
    terms: PlanTerms,
    *,
    jurisdiction: str,
    locale: str,
    accepted_on: date,
    letter_date: date,
    lender: str,
    lender_contact: str,
    borrower_name: str,
    account_reference: str,
    address: tuple[str, ...],
) -> LetterContext:
    """The confirmation of an accepted plan: what it is, the first payment and its date, how many."""
    first, last = terms.schedule[0], terms.schedule[-1]
    # The odd cents ride on the first payments: the rest are a minor unit less, and the letter,
    # the record of what was agreed, says so instead of giving the first amount for every month.
    later = sum(1 for i in terms.schedule if i.amount == last.amount) if last.amount != first.amount else 0
    return LetterContext(
        jurisdiction=jurisdiction,
        lender=lender,
        lender_contact=lender_contact,
        borrower_name=borrower_name,
        account_reference=account_reference,
        letter_date=letter_date,
        currency=terms.currency,
        plan_description=_describe(terms, locale),
        plan_installment=first.amount,
        plan_installments=len(terms.schedule),
        plan_later_installment=last.amount if later else None,
        plan_later_installments=later or None,
        plan_first_due=first.due,
        plan_accepted_on=accepted_on,
        borrower_address=(borrower_name, *address),
    )


def arrears_notice_context(
    *,
    jurisdiction: str,
    timezone: str,
    written_at: datetime,
    lender: str,
    lender_contact: str,
    borrower_name: str,
    account_reference: str,
    currency: str,
    arrears: Decimal,
    balance: Decimal,
    address: tuple[str, ...],
    vin: str | None = None,
) -> LetterContext:
    """The notice of sums in arrears of an account written at `written_at`: the parties, the
    agreement (and its car by `vin`), the arrears and the balance still to pay, dated the
    borrower's day (SI 2007/1167 Sch. 2 as the template reads it; unverified)."""
    return LetterContext(
        jurisdiction=jurisdiction,
        lender=lender,
        lender_contact=lender_contact,
        borrower_name=borrower_name,
        account_reference=account_reference,
        letter_date=written_at.astimezone(ZoneInfo(timezone)).date(),
        currency=currency,
        amount_to_cure=arrears,
        balance=balance,
        vehicle=vehicle_of(vin),
        borrower_address=(borrower_name, *address),
    )


def arrears_notice_last_day(written_at: datetime, *, timezone: str, within_days: int) -> date:
    """The last day, in the borrower's calendar, to mail a notice of sums in arrears first owed the
    day it is written (the cycle writes it the day it first sees it owed): s.86B(2)(a) gives
    "the period of 14 days beginning with the day" the conditions are met, that day the first
    of them, so the 14th is 13 days after it. Mailed by then, it is given within the period only
    if the post is quicker than the law deems it (a posted notice is served when it would be
    delivered): the alert on a letter not mailed by it is the latest warning, not the safe one."""
    return written_at.astimezone(ZoneInfo(timezone)).date() + timedelta(days=within_days - 1)


def validation_period_end(
    written_at: datetime,
    *,
    timezone: str,
    calendar: str | None,
    holidays: str,
    receipt_days: int,
    period_days: int,
) -> date:
    """The last day of the validation period a notice written at `written_at` states (Reg F
    1006.34(b)(5), (c)(3)(v)): `period_days` after the day the borrower is assumed to receive it,
    `receipt_days` business days after it is mailed, weekends and the legal public holidays of
    `holidays` (5 USC 6103(a): the country's calendar, "US") skipped. Counted from the latest day
    the letter may be mailed (`latest_mailing`, whose mailing days skip the profile's `calendar`):
    a letter mailed sooner is received sooner, and its period, ending that day still, is longer.
    The holidays are where validation periods are misdated: a subdivision's calendar in the
    `holidays` package leaves out federal days it does not keep (Columbus Day in California), and
    an observed day (Friday 3 July 2026) is skipped like the holiday itself, which is the later
    date; any receipt day at least five business days on is allowed."""
    mailed_on = latest_mailing(written_at, timezone=timezone, calendar=calendar)
    return add_business_days(mailed_on, receipt_days, calendar=holidays) + timedelta(days=period_days)


def validation_notice_last_day(first_contact_on: date, *, within_days: int, holidays: str) -> date:
    """The last day to mail the validation notice of a debt first written about (a message sent,
    a letter mailed) on `first_contact_on`: `within_days` business days after it (Reg F
    1006.34(a)(1)(i)(B), the legal public holidays of `holidays` skipped)."""
    return add_business_days(first_contact_on, within_days, calendar=holidays)


def validation_notice_context(
    *,
    jurisdiction: str,
    timezone: str,
    written_at: datetime,
    validation_ends: date,
    lender: str,
    lender_contact: str,
    borrower_name: str,
    account_reference: str,
    currency: str,
    balance: Decimal,
    address: tuple[str, ...],
    vin: str | None = None,
) -> LetterContext:
    """The validation notice of an account written at `written_at` (Reg F 1006.34(c), in Model
    Form B-1's order): who collects and from whom, the debt itemized and what is owed now, and
    until when it may be disputed. arrears keeps no statement history, so the itemization date is
    the notice's own and the debt is itemized as it stands that day: no interest, fees or payments
    since (which of 1006.34(b)(3)'s reference dates that is, is for counsel)."""
    letter_date = written_at.astimezone(ZoneInfo(timezone)).date()
    return LetterContext(
        jurisdiction=jurisdiction,
        lender=lender,
        lender_contact=lender_contact,
        borrower_name=borrower_name,
        account_reference=account_reference,
        letter_date=letter_date,
        currency=currency,
        balance=balance,
        itemized_on=letter_date,
        validation_ends=validation_ends,
        vehicle=vehicle_of(vin),
        borrower_address=(borrower_name, *address),
    )
