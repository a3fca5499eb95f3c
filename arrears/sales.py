"""After the repossessed car is sold: what the sale leaves owed (a deficiency) or owed back (a
surplus), and whether a deficiency may be claimed at all.

Why a rule of its own: the servicing system stays the system of record for the balance, but a
sale's accounting is a legal statement. UCC 9-615(d): the proceeds go to the expenses of the sale
and then to the obligation; what is left over is the debtor's (a surplus), what is short the
obligor still owes (a deficiency). UCC 9-616(c) says what the explanation of either states, in
order; `Disposition` holds exactly those amounts, computed once when the sale is recorded, so the
letter, the audit trail and the legal claim can never disagree, and the claim is never computed
again from a balance the servicing system may since have reduced by the same proceeds.

A deficiency is barred when the sale did not follow a proper notice (UCC 9-626 for consumer goods
leaves it to the courts, many of which bar it; Cal. Civ. Code 2983.2(a): "any person liable ...
shall be liable for any deficiency ... only if the notice ... is given"): a sale before the
notice's first sale date, before the notice was mailed, or with no notice where one is owed.

Pure functions over plain data; `arrears.storage.sales` records what they say.
"""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from arrears.currencies import minor_units

__all__ = [
    "EXPLANATION_DAYS",
    "EXTENSION_DAYS",
    "EXTENSION_JURISDICTIONS",
    "Disposition",
    "amount_refusal",
    "claim_after_payments",
    "dispose",
    "first_sale_day",
    "sale_bar",
]

# Cal. Civ. Code 2983.2(a); Cal. Fin. Code 22328(b)(3): "upon written request ... shall extend for
# an additional 10 days" the periods to redeem and to reinstate, without further notice.
EXTENSION_DAYS = 10
EXTENSION_JURISDICTIONS = frozenset({"US-CA"})
# UCC 9-616(b)(1)(B): the explanation is sent "within 14 days after receipt of a request".
EXPLANATION_DAYS = 14
_MAX_DIGITS = 14  # what storage keeps exactly (`arrears.storage.types`)


@dataclass(frozen=True, slots=True)
class Disposition:
    """The accounting of a sale as UCC 9-616(c) orders it, in the account's currency: (1)
    `balance` (the obligations secured, as of the recovery), (2) `proceeds`, (3) `after_proceeds`,
    (4) `expenses`, (5) `credits`, (6) `deficiency` or `surplus` (never both above zero)."""

    currency: str
    balance: Decimal
    proceeds: Decimal
    expenses: Decimal
    credits: Decimal

    @property
    def obligation(self) -> Decimal:
        """What the obligor owed at the sale: the balance, with the sale's expenses, less credits."""
        return self.balance + self.expenses - self.credits

    @property
    def after_proceeds(self) -> Decimal:
        """9-616(c)(3): the aggregate amount of the obligations after deducting the proceeds."""
        return self.balance - self.proceeds

    @property
    def deficiency(self) -> Decimal:
        return max(self.obligation - self.proceeds, Decimal(0))

    @property
    def surplus(self) -> Decimal:
        """UCC 9-615(d)(1): owed to the debtor."""
        return max(self.proceeds - self.obligation, Decimal(0))


def _exact(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)))


def amount_refusal(amount: Decimal, currency: str) -> str | None:
    """Why `amount` is no amount of a sale in `currency`, or None: negative, not a number, too
    large, or finer than the currency's minor unit."""
    if not amount.is_finite():
        return f"{amount} is not an amount"
    if amount < 0:
        return f"{amount} is negative"
    if amount and amount.adjusted() >= _MAX_DIGITS:
        return f"{amount} has more than {_MAX_DIGITS} digits"
    if amount != _exact(amount, currency):
        return f"{amount} has more decimals than {currency} allows ({minor_units(currency)})"
    return None


def dispose(
    *, currency: str, balance: Decimal, proceeds: Decimal, expenses: Decimal, credits: Decimal = Decimal(0)
) -> Disposition:
    """The accounting of a sale; every amount at the currency's precision (`amount_refusal` has
    vetted those a person typed; the balance is the servicing system's, kept at four places)."""
    return Disposition(
        currency,
        _exact(balance, currency),
        _exact(proceeds, currency),
        _exact(expenses, currency),
        _exact(credits, currency),
    )


def first_sale_day(sale_after: date, *, extended: bool) -> date:
    """The first day the car may be sold: the notice's, 10 days later once the borrower asked in
    writing for the extension (`EXTENSION_DAYS`)."""
    return sale_after + timedelta(days=EXTENSION_DAYS) if extended else sale_after


def sale_bar(
    *,
    sold_on: date,
    notice_owed: bool,
    notice_mailed: bool,
    sale_after: date | None,
    extended: bool = False,
) -> str | None:
    """Why no deficiency may be claimed after a sale on `sold_on`, or None when one may:
    `notice_owed` (the profile owes a notice of the planned sale), `notice_mailed` (it was), and
    `sale_after` (the first day it allowed)."""
    if not notice_owed:
        return None
    if not notice_mailed or sale_after is None:
        return f"sold on {sold_on.isoformat()} before the notice of the planned sale was mailed"
    first = first_sale_day(sale_after, extended=extended)
    if sold_on < first:
        said = " (extended 10 days on the borrower's written request)" if extended else ""
        allowed = f"{first.isoformat()}, the first day the notice allowed{said}"
        return f"sold on {sold_on.isoformat()}, before {allowed}"
    return None


def claim_after_payments(deficiency: Decimal, paid_since: Decimal) -> Decimal:
    """What is left to claim of a deficiency once payments the balance at the sale did not include
    are taken off (never below zero: nothing is owed back on a deficiency overpaid here; a refund
    is the servicing system's)."""
    return max(deficiency - paid_since, Decimal(0))
