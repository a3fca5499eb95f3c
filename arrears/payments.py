"""How a payment changes what is owed, until the servicing system's next file says otherwise.

The servicer remains the system of record; arrears applies payments it is told of so that a cure
is seen the same day. Money pays the oldest instalment first, so the oldest due date moves
forward by each instalment the payment clears in full.
"""

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_CEILING, Decimal

import pendulum

__all__ = ["RECEIVED_AHEAD_AT_MOST", "Owed", "apply_payment", "due_day"]

# A payment waits unapplied until its `received_at`. A file may value-date a payment a few days
# ahead; one dated more than a month after it is imported is a typo (2062 for 2026), and would
# leave the borrower who paid pursued until that date. The import refuses it, naming the row.
RECEIVED_AHEAD_AT_MOST = timedelta(days=31)


@dataclass(frozen=True, slots=True)
class Owed:
    balance: Decimal
    past_due_amount: Decimal
    installment_amount: Decimal
    oldest_due_date: date | None
    # The loan's day of the month (`due_day`): a due date
    # moved past a short month comes back to it (31 January, 28 February, 31 March), where it
    # had stayed on the 28th, three more days past due until the servicer's next file.
    due_day: int | None = None


def due_day(next_due_date: date | None, oldest_due_date: date | None) -> int | None:
    """The day of the month the loan falls due on, from its known due dates. A date on the last
    day of its month may be a later day clamped (a loan due on the 31st is due 28 February): the
    oldest due date's later day is then the loan's, or every date moved from it after a short
    month fell on the 28th, days before the loan's own."""
    known = next_due_date or oldest_due_date
    if known is None:
        return None
    month_end = known.day == calendar.monthrange(known.year, known.month)[1]
    if month_end and oldest_due_date is not None and oldest_due_date.day > known.day:
        return oldest_due_date.day
    return known.day


def apply_payment(owed: Owed, amount: Decimal) -> Owed:
    if amount <= 0:
        return owed
    balance = max(Decimal(0), owed.balance - amount)
    past_due = max(Decimal(0), owed.past_due_amount - amount)
    oldest = owed.oldest_due_date
    if past_due == 0:
        oldest = None
    elif oldest is not None and owed.installment_amount > 0:
        cleared = _instalments(owed.past_due_amount, owed.installment_amount) - _instalments(
            past_due, owed.installment_amount
        )
        if cleared > 0:
            moved = pendulum.Date(oldest.year, oldest.month, oldest.day).add(months=cleared)
            # Back to the loan's day where a short month clamped it; never earlier than the move.
            day = max(moved.day, min(owed.due_day, moved.days_in_month)) if owed.due_day else moved.day
            oldest = date(moved.year, moved.month, day)
    return Owed(balance, past_due, owed.installment_amount, oldest, owed.due_day)


def _instalments(amount: Decimal, installment: Decimal) -> int:
    """Instalments still (partly) unpaid in `amount`."""
    return int((amount / installment).to_integral_value(rounding=ROUND_CEILING))
