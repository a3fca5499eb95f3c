"""Settlements: the lender agrees to take less than the balance, paid by a date. Pure functions.

An agent records an agreement the borrower made (`arrears settlement record`); `check_terms` says
whether it may be, naming the field that stops it. The cycle then judges it every day with
`assess`, from the payments received since it was recorded: the amount reached on or before the
pay-by date is `paid` (the account exits `settled`, the rest of the balance written off); the
pay-by date passed short of it is `lapsed` (collection resumes where it stood).

While an agreement runs the account is left alone, as a borrower keeping a promise or a plan is:
no reminders or asks, no escalation and no charge-off (`arrears.lifecycle`). Telling a borrower
who agreed to pay a settlement by a date that the full past due is owed would contradict what
they were told (compliance.md: payments applied against what borrowers were told).

Statutory moratoria refuse an agreement: under a bankruptcy's automatic stay (11 U.S.C.
362(a)(6)) a creditor may not act to collect the debt, a settlement included (it is made with the
trustee and approved by the court, outside arrears); under Breathing Space (Debt Respite Scheme
regulations 2020) no enforcement or request for payment. A dispute, a death (the estate settles)
or military service (SCRA) does not: the borrower, or the estate, may settle.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from arrears.currencies import display, minor_units
from arrears.vocabulary import Exit, Hold, Stage

__all__ = [
    "ACTIVE",
    "MORATORIA",
    "Assessment",
    "SettlementError",
    "SettlementStatus",
    "assess",
    "check_terms",
]

# An agreement moves from `active` once: paid, lapsed, cancelled by an agent, or ended because
# the account left collection otherwise (paid in full, charged off, closed).
SettlementStatus = str  # active | paid | lapsed | cancelled | ended
ACTIVE = "active"
MORATORIA: frozenset[Hold] = frozenset({Hold.BANKRUPTCY, Hold.BREATHING_SPACE})
_WHY_NOT = {
    Hold.BANKRUPTCY: "the automatic stay (11 U.S.C. 362(a)(6)) bars collecting the debt: "
    "a settlement is made with the trustee and approved by the court",
    Hold.BREATHING_SPACE: "Breathing Space (Debt Respite Scheme regulations 2020) bars "
    "enforcement and requests for payment",
}


class SettlementError(ValueError):
    """An agreement that cannot be recorded; `field` names what stops it (`amount`, `pay_by`,
    `account`), for the operator's one-line error."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_terms(
    *,
    amount: Decimal,
    currency: str,
    balance: Decimal,
    past_due: Decimal,
    pay_by: date,
    business_date: date,
    stage: str,
    holds: Iterable[Hold] = (),
    max_days: int = 90,
) -> None:
    """Refuse, naming the field, an agreement that is no settlement of this account today. A
    delinquent account not yet taken into collection (`cured`, its first cycle to come) may settle;
    a current one, or one that left collection, may not. The pay-by date is at most `max_days`
    ahead (the policy's `settlements.max_pay_by_days`)."""
    if stage == Exit.CURED and past_due <= 0:
        raise SettlementError("account", "account is current (nothing past due): there is nothing to settle")
    if stage != Exit.CURED and stage not in frozenset(Stage):
        raise SettlementError("account", f"account is {stage}: only an account in collection is settled")
    barred = sorted(h for h in holds if h in MORATORIA)
    if barred:
        raise SettlementError("account", f"{barred[0]} hold: {_WHY_NOT[barred[0]]}")
    if not amount.is_finite() or amount <= 0:
        raise SettlementError("amount", f"{amount} is not a positive amount")
    places = minor_units(currency)
    if amount != amount.quantize(Decimal(1).scaleb(-places)):
        raise SettlementError("amount", f"{amount}: {currency} has {places} decimal places")
    if amount >= balance:
        raise SettlementError(
            "amount",
            f"{currency} {display(amount, currency)} is not below the balance of "
            f"{currency} {display(balance, currency)}: "
            "that is a payoff, not a settlement",
        )
    if pay_by < business_date:
        raise SettlementError("pay_by", f"{pay_by.isoformat()} is in the past (today is {business_date})")
    if (pay_by - business_date).days > max_days:
        # An agreement holds collection and charge-off back while it runs: not open-ended.
        raise SettlementError(
            "pay_by",
            f"{pay_by.isoformat()} is more than {max_days} days ahead "
            "(the policy's settlements.max_pay_by_days)",
        )


@dataclass(frozen=True, slots=True)
class Assessment:
    status: SettlementStatus  # active | paid | lapsed
    received: Decimal  # towards the agreement, on or before its pay-by date
    reason: str


def assess(
    amount: Decimal,
    pay_by: date,
    payments: Iterable[tuple[date, Decimal]],
    *,
    business_date: date,
    currency: str,
    lapse_after_days: int = 0,
) -> Assessment:
    """Where an agreement stands on `business_date`, from the payments (the lender's date each was
    received, amount) made since it was recorded. A payment after the pay-by date pays nothing of
    it; one received by the date may come in a file days later, so an agreement not paid lapses
    only `lapse_after_days` after the date (the policy's `settlements.lapse_after_days`)."""
    received = sum((a for d, a in payments if d <= pay_by and d <= business_date), Decimal(0))
    said = f"{currency} {display(received, currency)} of {currency} {display(amount, currency)}"
    if received >= amount:
        return Assessment("paid", received, f"{said} received by {pay_by.isoformat()}")
    if (business_date - pay_by).days > lapse_after_days:
        return Assessment("lapsed", received, f"{said} received by {pay_by.isoformat()}, the pay-by date")
    return Assessment(ACTIVE, received, f"{said} received so far")
