"""What a hold or a payment stops beyond contact: pending repossession work.

The most frequent finding of regulators in auto servicing is a repossession after the borrower
paid or was granted relief, because the order to the agent was never cancelled (compliance.md,
"What regulators find most often"). Whoever builds repossession work calls `cancels_repossession`
on every hold and payment event and cancels the open orders at once when it says so; a person may
then decide again, from the top.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from arrears.vocabulary import Hold, HoldScope

__all__ = ["PaymentEvent", "cancels_repossession"]


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """A payment received for the account (any amount, any method)."""

    amount: Decimal
    received_at: datetime


def cancels_repossession(holds: Iterable[Hold | str], payment_event: PaymentEvent | None) -> bool:
    """True when pending repossession work must be cancelled now.

    - Any payment cancels it, however small: a partial payment may be an agreed arrangement, and a
      repossession after a payment is the finding we must never repeat. A person re-decides.
    - Any collection hold cancels it: dispute, bankruptcy (the automatic stay, 11 USC 362),
      death, military service (SCRA: no self-help repossession without a court order, 50 USC
      3952), breathing space (no enforcement while it lasts).
    - A contact hold does not: cease_contact stops communication, not the creditor's lawful
      remedies (FDCPA 805(c)), and sms_opt_out stops texts only.
    """
    if payment_event is not None and payment_event.amount > 0:
        return True
    return any(Hold(h).scope is HoldScope.COLLECTION for h in holds)
