"""The ECF-style JSON wire format: our statuses in the gateway's words and back, and the envelope.

ECF 5 keeps three separate facts about a filing, and so does the wire: the clerk's review
(`reviewStatus`: received, pending, accepted, partially-accepted, rejected, cancelled, issued), service
on the defendant (`serviceStatus`: sent, delivered, opened, unrecognized) and the case
(`caseStatus`). Our one status is the furthest of them.

ECF 5 names review and service statuses only (../shared/domain/providers.md); the case words are
this gateway's, the sandbox court's: `judgment-entered`, `order-effective` (a payment order that
took effect, 支付令生效: a `judgment`) and `objection-filed` (the respondent's written objection,
支付令失效: `objected`). No word of a real gateway for an objection is known (Chinese courts have
no public API): one is added to `_CASE` once its documentation names it. Until then a case word
not in `_CASE` is refused (`ValueError`): read as `served`, an objection or a stay in another
gateway's words would leave the referral waiting for a judgment that never comes.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from integrations.court.protocol import FilingEnvelope, FilingStatusName

__all__ = ["WIRE", "envelope_json", "status_from_wire", "vendor_words", "wire_facts"]

# ours -> (reviewStatus, serviceStatus, caseStatus), as the sandbox gateway reports them
WIRE: dict[str, tuple[str, str | None, str | None]] = {
    "submitted": ("received", None, None),
    "under_review": ("pending", None, None),
    "accepted": ("accepted", None, None),
    "served": ("accepted", "delivered", None),
    "judgment": ("accepted", "delivered", "judgment-entered"),
    "rejected": ("rejected", None, None),
    "cancelled": ("cancelled", None, None),
    "objected": ("accepted", "delivered", "objection-filed"),
}
# A payment order is not judged: it takes effect when 15 days pass after service without an objection.
_PAYMENT_ORDER_EFFECTIVE = ("accepted", "delivered", "order-effective")
_CASE: dict[str, FilingStatusName] = {
    "judgment-entered": "judgment",
    "order-effective": "judgment",  # enforceable like a judgment (申请执行): the case ends the same way
    "objection-filed": "objected",
}
_REVIEW: dict[str, FilingStatusName] = {
    "received": "submitted",
    "submitted": "submitted",
    "pending": "under_review",
    "under-review": "under_review",
    "accepted": "accepted",
    "partially-accepted": "accepted",
    "issued": "accepted",  # the court issued its order or summons on the accepted filing (支付令 issued)
    "rejected": "rejected",
    "cancelled": "cancelled",
}
_SERVED = {"delivered", "opened"}  # "sent" is not service yet; "unrecognized" failed service


def wire_facts(status: str, case_type: str) -> tuple[str, str | None, str | None]:
    """The gateway's three facts for our `status` of a filing of `case_type`."""
    if status == "judgment" and case_type == "payment_order":
        return _PAYMENT_ORDER_EFFECTIVE
    return WIRE[status]


def status_from_wire(review: str, service: str | None = None, case: str | None = None) -> FilingStatusName:
    """Our status from the three ECF facts; ValueError for a review or case status we do not know."""
    try:
        ours = _REVIEW[review]
    except KeyError:
        raise ValueError(f"unknown reviewStatus {review!r}") from None
    if ours != "accepted":  # service and judgment only follow an accepted filing
        return ours
    if case:
        try:
            return _CASE[case]
        except KeyError:
            raise ValueError(f"unknown caseStatus {case!r}") from None
    if service in _SERVED:
        return "served"
    return "accepted"


def vendor_words(payload: Mapping[str, Any]) -> str:
    """`accepted/delivered/judgment-entered`: the gateway's own facts, for the audit trail."""
    return "/".join(
        str(payload[k]) for k in ("reviewStatus", "serviceStatus", "caseStatus") if payload.get(k)
    )


def envelope_json(envelope: FilingEnvelope, *, filer_id: str, callback_url: str | None) -> dict[str, Any]:
    """The ReviewFiling message. Money goes as a decimal string: never through a float."""
    message: dict[str, Any] = {
        "filerId": filer_id,
        "idempotencyKey": envelope.idempotency_key,
        "court": envelope.court,
        "caseType": envelope.case_type,
        "claim": {"amount": format(envelope.claim_amount, "f"), "currency": envelope.currency},
        "parties": [
            {
                "role": p.role,
                "kind": p.kind,
                "name": p.name,
                "address": p.address,
                "nationalId": p.national_id,
            }
            for p in envelope.parties
        ],
        "documents": [
            {
                "kind": d.kind,
                "name": d.name,
                "sha256": d.sha256,
                **(
                    {"size": len(d.content), "content": base64.b64encode(d.content).decode()}
                    if d.content is not None
                    else {}
                ),
            }
            for d in envelope.documents
        ],
        "militaryStatusAffidavit": envelope.military_affidavit,
    }
    if callback_url:
        message["callbackUrl"] = callback_url
    return message
