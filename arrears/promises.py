"""Promises to pay: reading one from a borrower's reply, and deciding whether each was kept.

Pure functions over plain data; `arrears.storage.promises` loads the promises and payments
and stores what these decide.

- A reply promises when it reads `PAY <amount> <date>` (the negotiation message's own words) or
  `还款 <amount> <date>` (zh-CN); full-width digits, a currency sign, `元`, thousands separators
  and the dates `2026-12-05`, `2026/12/05`, `2026.12.05` and `2026年12月5日` are understood. A
  date without its year is refused: "12/05" reads differently in Shanghai and in Iowa. A reply
  that begins a promise but names no full date (`PAY 200 on Friday`) is refused with its reason,
  which the timeline shows beside the words for an agent to follow up.
- Every number in a reply is the borrower's to choose, so each is bounded before anything
  computes with it: a reply shaped like a promise whose amount is not a plain positive amount
  (`-500`, `NaN`, `1e30`, more digits than money holds) is refused with its reason
  (`read_promise`), and a promise is refused above the account's balance, finer than its
  currency, before today or beyond the horizon (`refusal`), never more than a year out, and
  one whose sign or unit names another currency than the account's (`currency_refusal`).
- A promise is kept once the payments received from the day it was made up to its due date plus
  the grace period add up to its amount; partial payments count towards it. Past that date it is
  broken. Payments are shared out in due-date order, each payment counting once, so two
  promises are not both kept by the same money.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from arrears.currencies import minor_units
from arrears.inbound import normalise

__all__ = [
    "DEFAULT_PROMISE_RULES",
    "PaymentView",
    "PromiseRules",
    "PromiseView",
    "Resolution",
    "Unreadable",
    "currency_refusal",
    "parse_promise",
    "promise_rules",
    "read_promise",
    "refusal",
    "resolve_promises",
]


@dataclass(frozen=True, slots=True)
class PromiseRules:
    grace_days: int = 3  # a payment this many days after the promised date still keeps it
    max_days_ahead: int = 30  # a promise further out than this is refused (it would stall collection)


DEFAULT_PROMISE_RULES = PromiseRules()

# Whatever a policy says, a promise is for the coming year (dates past it would only stall
# collection, and date arithmetic on them can overflow), and for at most 14 digits before the
# point and 4 after: what storage holds exactly on every database.
LONGEST_PROMISE_DAYS = 366
MAX_AMOUNT_DIGITS = 14
MAX_AMOUNT_PLACES = 4


def promise_rules(policy: Any) -> PromiseRules:
    """The promise numbers of a policy: `negotiation.promise_grace_days` and
    `negotiation.promise_max_days_ahead` when the policy has them, the defaults otherwise."""
    section = getattr(policy, "negotiation", None)
    return PromiseRules(
        grace_days=getattr(section, "promise_grace_days", DEFAULT_PROMISE_RULES.grace_days),
        max_days_ahead=getattr(section, "promise_max_days_ahead", DEFAULT_PROMISE_RULES.max_days_ahead),
    )


# -- reading a reply ----------------------------------------------------------------------------

_AMOUNT = r"(?P<amount>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
_DATE = r"(?P<year>\d{4})\s*(?:[-/.]|年)\s*(?P<month>\d{1,2})\s*(?:[-/.]|月)\s*(?P<day>\d{1,2})\s*日?"
_KEYWORD = r"^(?:PAY|还款|還款)\s*(?P<sign>[$¥￥£€])?\s*"
_TAIL = rf"\s*(?P<unit>元|块|塊|USD|CNY|RMB|GBP|EUR)?\s*(?:ON|BY|于|於|在)?\s*{_DATE}$"
_PROMISE = re.compile(rf"{_KEYWORD}{_AMOUNT}{_TAIL}")
# The same shape with anything in the amount's place: `PAY -500 …`, `PAY NaN …`, `PAY 1e30 …`.
_SHAPE = re.compile(rf"{_KEYWORD}(?P<amount>[^\s$¥￥£€元块塊]+?){_TAIL}")
# A promise begun but with no full date: `PAY 200 12/15`, `PAY 200 on Friday`, `PAY 200`.
_DATELESS = re.compile(rf"{_KEYWORD}{_AMOUNT}(?![\d.,])\s*(?P<rest>.*)$")


# The currencies a promise's sign or unit names. A sign several currencies write ($ for dollars
# and pesos, ¥ for yuan and yen) names only these, the ones arrears' jurisdictions lend in.
_NAMES = {
    "$": {"USD"},
    "¥": {"CNY", "JPY"},
    "£": {"GBP"},
    "€": {"EUR"},
    "元": {"CNY"},
    "块": {"CNY"},
    "塊": {"CNY"},
    "RMB": {"CNY"},
    "CNY": {"CNY"},
    "USD": {"USD"},
    "GBP": {"GBP"},
    "EUR": {"EUR"},
}
_KNOWN = frozenset().union(*_NAMES.values())
_SIGNS = frozenset({"$", "¥", "£", "€", "元", "块", "塊"})


def currency_refusal(text: str, currency: str) -> str | None:
    """Why a promise reply cannot be recorded in the account's `currency`: it names another
    (`PAY $500 …` to a CNY loan would be recorded as ¥500, and kept by a seventh of what was
    promised). None when it names none, or the account's. A sign that is not one of ours
    (`$` on a loan in Canadian dollars) is left alone: it may be the account's own."""
    found = _PROMISE.match(normalise(text))
    if found is None:
        return None
    for said in (found["sign"], found["unit"]):
        names = _NAMES.get(said or "", set())
        if names and currency not in names and (currency in _KNOWN or said not in _SIGNS):
            return f"the amount is in {'/'.join(sorted(names))}, the account's currency is {currency}"
    return None


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A reply shaped like a promise that cannot be one; `reason` is for the timeline."""

    reason: str


def read_promise(text: str) -> tuple[Decimal, date] | Unreadable | None:
    """The amount and date a reply promises; `Unreadable` with the reason when it has the shape of
    a promise but an amount or date that cannot be; None when the reply is not a promise."""
    norm = normalise(text)
    found = _PROMISE.match(norm)
    if found is None:
        shaped = _SHAPE.match(norm)
        if shaped is None:
            return _dateless(norm)
        said = shaped["amount"][:24]
        if said.startswith(("-", "−")):
            return Unreadable(f"the amount {said} is not above zero")
        return Unreadable(f"{said!r} is not an amount: a plain number such as 500 or 412.50")
    whole, _, places = found["amount"].replace(",", "").partition(".")
    if len(whole.lstrip("0")) > MAX_AMOUNT_DIGITS or len(places) > MAX_AMOUNT_PLACES:
        return Unreadable(
            f"the amount has more than {MAX_AMOUNT_DIGITS} digits or {MAX_AMOUNT_PLACES} decimal places"
        )
    try:
        amount = Decimal(found["amount"].replace(",", ""))
        when = date(int(found["year"]), int(found["month"]), int(found["day"]))
    except (InvalidOperation, ValueError):
        return Unreadable(f"{found['year']}-{found['month']}-{found['day']} is not a date")
    return amount, when


def _dateless(norm: str) -> Unreadable | None:
    """Why `PAY <amount>` with no date, or a date without its year, is not recorded: said on the
    timeline, for an agent to follow up, rather than read as a reply like any other."""
    begun = _DATELESS.match(norm)
    if begun is None:
        return None
    rest = begun["rest"][:24]
    if not rest:
        return Unreadable("no date: a promise names its date with the year, such as PAY 200 2026-12-15")
    return Unreadable(f"{rest!r} is not a date with its year, such as 2026-12-15")


def parse_promise(text: str) -> tuple[Decimal, date] | None:
    """The amount and date a reply promises, or None when the reply is not a promise it can
    record (`read_promise` says why).

    A reply that has the shape of a promise but an impossible date (2026-02-30) is not one.
    """
    read = read_promise(text)
    return None if isinstance(read, Unreadable) else read


def refusal(
    amount: Decimal,
    due_date: date,
    *,
    today: date,
    currency: str,
    rules: PromiseRules,
    balance: Decimal | None = None,
) -> str | None:
    """Why a promise cannot be recorded, or None when it can. `balance`, when given, bounds the
    amount: nobody owes more than the balance of the loan."""
    if not amount.is_finite() or amount <= 0:
        return "the amount must be positive"
    if amount.adjusted() >= MAX_AMOUNT_DIGITS:
        return f"the amount has more than {MAX_AMOUNT_DIGITS} digits"
    if amount != amount.quantize(Decimal(1).scaleb(-minor_units(currency))):
        return f"the amount has more decimals than {currency} allows"
    if balance is not None and amount > balance:
        return f"the amount {amount} is more than the balance of {currency} {balance}"
    if due_date < today:
        return f"the date {due_date.isoformat()} has passed"
    ahead = min(rules.max_days_ahead, LONGEST_PROMISE_DAYS)
    if (due_date - today).days > ahead:
        return f"the date is more than {ahead} days ahead"
    return None


# -- kept or broken -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PromiseView:
    id: int
    amount: Decimal
    due_date: date
    made_on: date  # the lender's business date on which the promise was made


@dataclass(frozen=True, slots=True)
class PaymentView:
    payment_id: str
    amount: Decimal
    received_on: date  # the lender's business date of receipt


@dataclass(frozen=True, slots=True)
class Resolution:
    """A pending promise's outcome today: `kept` or `broken`, with what was paid towards it."""

    promise_id: int
    status: str  # kept | broken
    paid: Decimal
    taken: tuple[tuple[str, Decimal], ...]  # (payment id, what of it counted towards this promise)
    reason: str

    @property
    def payments(self) -> tuple[str, ...]:
        """The payments counted towards it."""
        return tuple(payment_id for payment_id, _ in self.taken)


def resolve_promises(
    promises: Iterable[PromiseView],
    payments: Iterable[PaymentView],
    *,
    business_date: date,
    rules: PromiseRules,
) -> list[Resolution]:
    """The pending promises of one account that are kept or broken on `business_date`.

    Promises still inside their window with too little paid stay pending and are not returned.
    `payments` are what is left of each payment once the promises judged before took their share
    (`Resolution.taken`): money that kept one promise never keeps a later one.
    """
    pool = sorted(payments, key=lambda p: (p.received_on, p.payment_id))
    unused = [p.amount for p in pool]  # what is left of each payment, in pool order
    outcomes: list[Resolution] = []
    for promise in sorted(promises, key=lambda p: (p.due_date, p.id)):
        deadline = promise.due_date + timedelta(days=rules.grace_days)
        paid = Decimal(0)
        used: list[tuple[str, Decimal]] = []
        for i, payment in enumerate(pool):
            left = unused[i]
            if left <= 0 or payment.received_on < promise.made_on or payment.received_on > deadline:
                continue
            take = min(left, promise.amount - paid)
            unused[i] = left - take
            paid += take
            used.append((payment.payment_id, take))
            if paid >= promise.amount:
                break
        if paid >= promise.amount:
            outcomes.append(
                Resolution(promise.id, "kept", paid, tuple(used), f"paid {paid} of {promise.amount}")
            )
        elif business_date > deadline:
            why = f"paid {paid} of {promise.amount} by {deadline.isoformat()}"
            outcomes.append(Resolution(promise.id, "broken", paid, tuple(used), why))
        else:
            # Still inside its window: what it has taken stays reserved for it, so a later
            # promise is not kept by the money this one is waiting to add up.
            pass
    return outcomes


def within_window(promises: Sequence[PromiseView], *, rules: PromiseRules) -> date | None:
    """The earliest day a payment can count for one of these promises (None without promises)."""
    return min((p.made_on for p in promises), default=None)
