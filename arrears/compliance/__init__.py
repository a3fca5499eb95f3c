"""Compliance rules: pure checks run at decision time (advance) and again at send time (dispatch).

`check_contact` is the single entry: every rule of `contact`, `hours`, `caps` and `content`
is reached through it, so the two checks can never disagree. `report` re-checks what was sent.
"""

from arrears.compliance.caps import Contact
from arrears.compliance.contact import ContactRequest, ContactState, Verdict, VerdictKind, check_contact
from arrears.compliance.holds import PaymentEvent, cancels_repossession
from arrears.compliance.hours import contact_allowed, contact_zones, next_allowed_instant, number_zones

__all__ = [
    "Contact",
    "ContactRequest",
    "ContactState",
    "PaymentEvent",
    "Verdict",
    "VerdictKind",
    "cancels_repossession",
    "check_contact",
    "contact_allowed",
    "contact_zones",
    "next_allowed_instant",
    "number_zones",
]
