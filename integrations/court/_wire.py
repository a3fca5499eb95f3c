"""The ECF-style JSON wire format: our statuses in the gateway's words and back, and the envelope.

ECF 5 keeps three separate facts about a filing, and so does the wire: the clerk's review
(`reviewStatus`: received, pending, accepted, partially-accepted, rejected, cancelled, issued), service
on the defendant (`serviceStatus`: sent, delivered, opened, unrecognized) and the case
(`caseStatus`: judgment-entered). Our one status is the furthest of them.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from integrations.court.protocol import FilingEnvelope, FilingStatusName

__all__ = ["WIRE", "envelope_json", "status_from_wire", "vendor_words"]

# ours -> (reviewStatus, serviceStatus, caseStatus), as the sandbox gateway reports them
WIRE: dict[str, tuple[str, str | None, str | None]] = {
    "submitted": ("received", None, None),
    "under_review": ("pending", None, None),
    "accepted": ("accepted", None, None),
    "served": ("accepted", "delivered", None),
    "judgment": ("accepted", "delivered", "judgment-entered"),
    "rejected": ("rejected", None, None),
    "cancelled": ("cancelled", None, None),
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


def status_from_wire(review: str, service: str | None = None, case: str | None = None) -> FilingStatusName:
    """Our status from the three ECF facts; ValueError for a review status we do not know."""
    try:
        ours = _REVIEW[review]
    except KeyError:
        raise ValueError(f"unknown reviewStatus {review!r}") from None
    if ours != "accepted":  # service and judgment only follow an accepted filing
        return ours
    if case == "judgment-entered":
        return "judgment"
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
