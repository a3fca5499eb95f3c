"""One month's furnishing: from each account's facts to its base segment, and the whole file.

`furnish_account` is pure: it takes what the storage layer gathered for an account (a
`FurnishAccount`) and returns its record and what it reported (a `Reported`, kept with the
account's furnish record so that next month's history, Date of First Delinquency, compliance
code and charge-off amount continue from it exactly).

What is furnished: accounts of US jurisdictions only (`US`, `US-*`); Metro 2 is the US format,
other countries report elsewhere (PBOC, Baihang). An account already reported paid or settled
(13, 61-64) is not reported again, unless a code that report left on the consumer's file has to
change (a dispute resolved: XH; a bankruptcy lifted: Q); a charged-off account is reported every
month while it has a balance.

What is not, each with its reason in the file's `skipped` (never dropped without a word): an
account kept in a currency other than US dollars (Metro 2 money is dollars, and no rate converts
it here); an account whose id, as Metro 2 writes it (ASCII, upper case), is empty, longer than 30
characters, or the number of another account too (the bureau would take them for one account);
a borrower's name not written in Latin letters, or without a surname (a romanization is a guess
at a name the consumer's US records spell their own way, and a tradeline without a name matches
nobody); a value too large for its field (a balance of a billion dollars).

The consumer's address is the account's US mailing address (imported with the accounts file);
without one, only the State of the jurisdiction is given. Fields arrears does not hold
(date opened, original amount, terms, SSN, date of birth) are left blank or zero: the servicing
system's file has to add them before a real bureau will take the records (see the validator's
docstring for what is and is not checked).
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from arrears.addresses import MailingAddress
from arrears.metro2 import status as codes
from arrears.metro2.layout import BASE
from arrears.metro2.periods import Period
from arrears.metro2.status import Condition, MonthState, Status
from arrears.metro2.writer import DoesNotFit, Furnisher, format_record, text, whole_dollars, write_file

__all__ = [
    "FINAL_STATUSES",
    "FurnishAccount",
    "FurnishFile",
    "Previous",
    "Reported",
    "build_file",
    "days_past_due_on",
    "furnish_account",
    "is_furnished",
    "split_name",
]

FINAL_STATUSES = frozenset({"13", "61", "62", "63", "64"})  # reported once, then no more
_GENERATIONS = {"JR": "J", "SR": "S", "II": "2", "III": "3", "IV": "4", "V": "5"}


def is_furnished(jurisdiction: str) -> bool:
    """Only US accounts are furnished in Metro 2."""
    return jurisdiction == "US" or jurisdiction.startswith("US-")


@dataclass(frozen=True, slots=True)
class Previous:
    """What the last file reported for the account (from its latest furnish record)."""

    period: str
    status: str
    first_delinquency: date | None = None
    compliance_condition: str = ""
    charge_off_amount: int | None = None
    consumer_information: str = ""  # the Consumer Information Indicator it carried
    payment_rating: str = ""
    special_comment: str = ""


@dataclass(frozen=True, slots=True)
class FurnishAccount:
    """Everything a base segment is built from, gathered by the storage layer."""

    account_id: str
    borrower_name: str
    jurisdiction: str
    stage: str
    days_past_due: int
    balance: Decimal
    past_due_amount: Decimal
    installment_amount: Decimal
    history: str  # the 24 months before the period, most recent first (`history.payment_history`)
    oldest_due_date: date | None = None
    episode_due: date | None = None  # oldest unpaid due date when the latest delinquency began
    phone: str | None = None  # E.164
    address: MailingAddress | None = None  # the account's mailing address, if it has one
    holds: frozenset[str] = frozenset()
    bankruptcy_chapter: int | None = None
    plan: tuple[str, str] | None = None  # (kind, status) of the latest plan
    repossessed: bool = False  # the car recovered, and the loan not reinstated (cured) since
    surrendered: bool = False
    last_payment: date | None = None
    closed_on: date | None = None  # when it left for an exit other than `cured`
    charge_off_amount: Decimal | None = None  # balance when it was charged off, if known
    previous: Previous | None = None
    current_since_previous: bool = False  # was it current (cured) after the previous report?
    currency: str = "USD"  # the account's ISO 4217 currency: only US dollars are furnished


@dataclass(frozen=True, slots=True)
class Reported:
    """What one account's base segment says: kept with its furnish record."""

    account_id: str
    record: str = field(repr=False)
    account_status: str
    payment_rating: str
    history_char: str  # this month's character: next month's history starts with it
    payment_history: str
    special_comment: str
    compliance_condition: str
    consumer_information: str
    ecoa: str
    current_balance: int
    amount_past_due: int
    charge_off_amount: int
    first_delinquency: date | None
    warnings: tuple[str, ...] = ()

    def payload(self) -> dict[str, Any]:
        """The JSON kept in the account's BureauRecord (kind `furnish`)."""
        return {
            "status": self.account_status,
            "rating": self.payment_rating,
            "char": self.history_char,
            "history": self.payment_history,
            "special_comment": self.special_comment,
            "compliance_condition": self.compliance_condition,
            "consumer_information": self.consumer_information,
            "ecoa": self.ecoa,
            "current_balance": self.current_balance,
            "amount_past_due": self.amount_past_due,
            "charge_off_amount": self.charge_off_amount,
            "first_delinquency": self.first_delinquency.isoformat() if self.first_delinquency else None,
            "warnings": list(self.warnings),
        }


def split_name(full: str) -> tuple[str, str, str, str]:
    """(surname, first, middle, generation code) of a name written in Western order."""
    parts = full.replace(",", " ").replace(".", " ").split()
    generation = ""
    if len(parts) > 2 and parts[-1].upper() in _GENERATIONS:
        generation = _GENERATIONS[parts.pop().upper()]
    if not parts:
        return "", "", "", generation
    if len(parts) == 1:
        return parts[0], "", "", generation
    return parts[-1], parts[0], " ".join(parts[1:-1]), generation


def _phone_digits(phone: str | None) -> int | None:
    if phone and phone.startswith("+1") and len(phone) == 12 and phone[1:].isdigit():
        return int(phone[2:])
    return None


def days_past_due_on(account: FurnishAccount, as_of: date) -> int:
    """The account's days past due on `as_of`, the period's last day, never more than it shows now.

    `account.days_past_due` is counted against the business date of the last cycle, and a month is
    furnished after it ended (on the 3rd by default): an instalment due on 1 November is 29 days
    past due on 30 November (status 11) but 32 on 3 December, and reporting those as of 30
    November told the bureau of a 30-day delinquency that month never had. The oldest unpaid due
    date gives the count at the month's end; a payment since moved it forward, so the count is
    never above the month's own: no delinquency is reported that the month did not have.
    """
    if account.oldest_due_date is None:
        return account.days_past_due
    return min(account.days_past_due, max(0, (as_of - account.oldest_due_date).days))


def _reported_current_until(previous: Previous | None) -> date | None:
    """The last day of the last month reported, when it was reported current (11).

    The last report's, not the history's: a month the history reconstructs (never furnished) is
    a lower bound that partial payments can make read current, and a delinquency the bureau was
    told of must not restart on a guess. A report older than the last is covered by the last:
    if that one was delinquent, its own date stands.
    """
    if previous is None or previous.status != "11":
        return None
    return Period.parse(previous.period).last_day


def furnish_account(account: FurnishAccount, period: Period, furnisher: Furnisher) -> Reported:
    """The base segment of one account for `period` (Date of Account Information: its last day)."""
    as_of = period.last_day
    days_past_due = days_past_due_on(account, as_of)
    condition = codes.condition_of(
        account.stage,
        days_past_due,
        account.balance,
        repossessed=account.repossessed,
        surrendered=account.surrendered,
    )
    month = MonthState(condition, days_past_due)
    # Paid or settled this month after a charge-off or a repossession of this month too: the
    # history holds neither yet, and the account was reported 13, its charge-off never (64, 63).
    ended = condition in (codes.Condition.PAID, codes.Condition.SETTLED)
    this_month = "".join(
        char
        for char, happened in (
            ("L", account.charge_off_amount is not None),
            ("K", account.repossessed),
            ("J", account.surrendered),
        )
        if ended and happened and char not in account.history[:1]
    )
    status = codes.account_status(month, earlier=this_month + account.history)
    warnings: list[str] = []

    previous = account.previous
    if previous is not None and previous.status in FINAL_STATUSES and ended:
        # Reported again after its final report only to change a code (`_already_final`): the
        # tradeline says what it said, its history now ending in that report's `E`, which would
        # read a 64 as a 13 rated 0.
        rating = previous.payment_rating or (status.payment_rating if previous.status == "13" else "")
        status = Status(previous.status, rating, previous.special_comment)
    keep = previous is not None and not account.current_since_previous
    first_delinquency = codes.date_of_first_delinquency(
        status,
        previous=previous.first_delinquency if keep and previous else None,
        episode_due=account.episode_due,
        oldest_due=account.oldest_due_date,
        days_past_due=days_past_due,
        as_of=as_of,
        current_until=_reported_current_until(previous),
    )
    if codes.needs_first_delinquency(status) and first_delinquency is None:
        warnings.append(f"status {status.account_status} needs a Date of First Delinquency and none is known")

    zero = condition in (Condition.PAID, Condition.SETTLED)
    closed = zero or condition is Condition.CHARGED_OFF
    balance = 0 if zero else whole_dollars(account.balance)
    owed = account.balance if condition is Condition.CHARGED_OFF else account.past_due_amount
    past_due = 0 if zero else whole_dollars(owed)
    if not past_due and not zero and owed > 0 and status.account_status not in ("11", "13"):
        # Cents left past due on a delinquent account (45 days late on $0.50): dropped, they made
        # a 71 with no amount past due, which the bureau rejects, and our validator refused the
        # whole month's file for it. The delinquency is real: a dollar is the least it reports.
        past_due = 1
    charge_off = 0
    if status.account_status in ("97", "64"):
        # Frozen once reported: later payments lower the balance, never the charge-off amount.
        known = previous.charge_off_amount if previous and previous.charge_off_amount else None
        charge_off = known or whole_dollars(account.charge_off_amount or account.balance)
        if not charge_off:
            warnings.append(
                f"status {status.account_status} needs the Original Charge-off Amount and none is known"
            )

    holds = account.holds
    bankrupt = "bankruptcy" in holds
    cii = codes.consumer_information_indicator(
        bankrupt=bankrupt,
        chapter=account.bankruptcy_chapter,
        previous=previous.consumer_information if previous else "",
    )
    if bankrupt and not cii:
        warnings.append("bankruptcy hold without a known chapter: no Consumer Information Indicator reported")
    ccc = codes.compliance_condition(
        disputed="dispute" in holds, previous=previous.compliance_condition if previous else ""
    )
    comment = codes.special_comment(status, account.plan)
    ecoa = codes.ecoa_code(deceased="deceased" in holds)
    surname, first, middle, generation = split_name(account.borrower_name)
    # Metro 2 reports a US address; a foreign one (or none) leaves the fields blank but the State
    # the jurisdiction implies.
    address = account.address if account.address and account.address.country == "US" else None
    state = address.state if address else account.jurisdiction.partition("-")[2]

    record = format_record(
        BASE,
        {
            "Record Descriptor Word": 426,
            "Identification Number": furnisher.identification_number,
            "Consumer Account Number": account.account_id,
            "Portfolio Type": "I",  # instalment
            "Account Type": "00",  # auto loan
            "Terms Frequency": "M",
            "Scheduled Monthly Payment Amount": 0 if closed else whole_dollars(account.installment_amount),
            "Account Status": status.account_status,
            "Payment Rating": status.payment_rating,
            "Payment History Profile": account.history,
            "Special Comment": comment,
            "Compliance Condition Code": ccc,
            "Current Balance": balance,
            "Amount Past Due": past_due,
            "Original Charge-off Amount": charge_off,
            "Date of Account Information": as_of,
            "Date of First Delinquency": first_delinquency,
            "Date Closed": account.closed_on if closed else None,
            "Date of Last Payment": account.last_payment,
            "Surname": surname,
            "First Name": first,
            "Middle Name": middle,
            "Generation Code": generation,
            "Telephone Number": _phone_digits(account.phone),
            "ECOA Code": ecoa,
            "Consumer Information Indicator": cii,
            "First Line of Address": address.line1 if address else "",
            "Second Line of Address": address.line2 if address else "",
            "City": address.city if address else "",
            "State": state,
            "Postal/Zip Code": address.postal_code.replace("-", "") if address else "",
        },
    )
    return Reported(
        account_id=account.account_id,
        record=record,
        account_status=status.account_status,
        payment_rating=status.payment_rating,
        history_char=codes.history_char(month),
        payment_history=account.history,
        special_comment=comment,
        compliance_condition=ccc,
        consumer_information=cii,
        ecoa=ecoa,
        current_balance=balance,
        amount_past_due=past_due,
        charge_off_amount=charge_off,
        first_delinquency=first_delinquency,
        warnings=tuple(warnings),
    )


@dataclass(frozen=True, slots=True)
class FurnishFile:
    period: Period
    content: bytes = field(repr=False)
    reported: tuple[Reported, ...]
    skipped: tuple[tuple[str, str], ...]  # (account id, why it was not furnished)
    # Of those, the accounts that ought to be furnished and cannot be as they stand (a currency,
    # an id or a name Metro 2 cannot write, a value too large): for operations to mend. The rest
    # are left out by design every month (another country's, reported closed).
    unfurnishable: tuple[tuple[str, str], ...] = ()

    @property
    def warnings(self) -> list[tuple[str, str]]:
        return [(r.account_id, w) for r in self.reported for w in r.warnings]

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.reported:
            counts[r.account_status] = counts.get(r.account_status, 0) + 1
        return dict(sorted(counts.items()))


def _already_final(account: FurnishAccount) -> bool:
    """Reported paid or settled already, and nothing on that report to correct.

    A final report leaves its compliance code and consumer information indicator on the
    consumer's file: a dispute resolved since must still be told (XH), a bankruptcy lifted since
    still removed (Q), once; a blank code changes nothing at the bureau, so only these call for
    the account again.
    """
    previous = account.previous
    if previous is None or previous.status not in FINAL_STATUSES:
        return False
    if account.balance > 0 and account.stage not in ("paid_off", "settled"):
        return False
    resolved = codes.compliance_condition(
        disputed="dispute" in account.holds, previous=previous.compliance_condition
    )
    lifted = codes.consumer_information_indicator(
        bankrupt="bankruptcy" in account.holds,
        chapter=account.bankruptcy_chapter,
        previous=previous.consumer_information,
    )
    return resolved != "XH" and lifted != "Q"


def _numbering(accounts: Sequence[FurnishAccount]) -> dict[str, str]:
    """Why each account that cannot be furnished under its own Consumer Account Number cannot.

    The number is the id as Metro 2 writes it (`writer.text`: ASCII, upper case): one that is
    empty or longer than the field cannot be written, and two ids written alike (a-1 and A-1)
    are one account to the bureau, which would overwrite one with the other. Of ids written
    alike, the one written as it is keeps the number, whoever comes first; the others are left
    out (all of them when none is).
    """
    length = BASE["Consumer Account Number"].length
    why: dict[str, str] = {}
    numbered: dict[str, list[str]] = defaultdict(list)
    for account in accounts:
        number = text(account.account_id).rstrip()
        if not number:
            why[account.account_id] = "account id has no character Metro 2 can write (ASCII letters, digits)"
        elif len(number) > length:
            why[account.account_id] = f"account id longer than the {length} characters Metro 2 allows"
        else:
            numbered[number].append(account.account_id)
    for number, ids in numbered.items():
        for account_id in ids if len(ids) > 1 else ():
            if account_id != number:
                others = ", ".join(sorted(i for i in ids if i != account_id))
                why[account_id] = f"account id is written {number} in Metro 2, as that of {others} is"
    return why


def _name_problem(name: str) -> str | None:
    """Why the borrower's name cannot be furnished, if it cannot."""
    if any("LATIN" not in unicodedata.name(c, "") for c in name if c.isalpha()):
        return "borrower name not in Latin letters: the bureau needs it as the consumer's US records spell it"
    if not any(c.isalpha() for c in text(split_name(name)[0])):
        return "borrower name has no surname Metro 2 can write"
    return None


def _left_out(account: FurnishAccount) -> str | None:
    """Why the account is left out of the file by design, or None."""
    if not is_furnished(account.jurisdiction):
        return f"jurisdiction {account.jurisdiction} is not furnished"
    if account.previous is not None and _already_final(account):
        return f"already reported closed ({account.previous.status})"
    return None


def _cannot_be(account: FurnishAccount, numbering: dict[str, str]) -> str | None:
    """Why the account, which ought to be furnished, cannot be as it stands, or None."""
    if account.currency != "USD":
        return f"kept in {account.currency}: Metro 2 reports US dollars, and no rate converts it here"
    return numbering.get(account.account_id) or _name_problem(account.borrower_name)


def build_file(
    accounts: Iterable[FurnishAccount], period: Period, furnisher: Furnisher, *, created: date
) -> FurnishFile:
    """The period's file: one base segment per US account still to report, in the order given;
    the others in `skipped`, each with its reason."""
    accounts = list(accounts)
    numbering = _numbering([a for a in accounts if is_furnished(a.jurisdiction)])
    reported: list[Reported] = []
    skipped: list[tuple[str, str]] = []
    unfurnishable: list[tuple[str, str]] = []
    for account in accounts:
        why = _left_out(account)
        if why is not None:
            skipped.append((account.account_id, why))
            continue
        why = _cannot_be(account, numbering)
        if why is None:
            try:
                reported.append(furnish_account(account, period, furnisher))
            except DoesNotFit as error:
                why = f"a value does not fit its field ({error})"
        if why is not None:
            skipped.append((account.account_id, why))
            unfurnishable.append((account.account_id, why))
    content = write_file(
        furnisher, activity_date=period.last_day, created=created, base_records=(r.record for r in reported)
    )
    return FurnishFile(period, content, tuple(reported), tuple(skipped), tuple(unfurnishable))
