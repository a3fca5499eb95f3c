"""The assignment API's JSON: an assignment request in its field names, and its statuses in ours.

Assignment platforms (RDN and its like) speak of orders that are `open` until an agent accepts
them and `repossessed` when the car is on the lot; several say `canceled`. Ours are one word each.
"""

from __future__ import annotations

from typing import Any

from integrations.agency.protocol import AssignmentRequest, AssignmentStatusName

__all__ = ["WIRE", "request_json", "status_from_wire"]

# ours -> the vendor's word, as the sandbox reports it
WIRE: dict[str, str] = {
    "assigned": "open",
    "accepted": "accepted",
    "located": "located",
    "recovered": "repossessed",
    "closed": "closed",
    "cancelled": "cancelled",
}
_OURS: dict[str, AssignmentStatusName] = {
    "open": "assigned",
    "new": "assigned",
    "assigned": "assigned",
    "accepted": "accepted",
    "located": "located",
    "repossessed": "recovered",
    "recovered": "recovered",
    "closed": "closed",
    "cancelled": "cancelled",
    "canceled": "cancelled",
}


def status_from_wire(word: str) -> AssignmentStatusName:
    """Our status for the vendor's word; ValueError for one we do not know."""
    try:
        return _OURS[word.lower()]
    except KeyError:
        raise ValueError(f"unknown assignment status {word!r}") from None


def request_json(request: AssignmentRequest, *, client_id: str, callback_url: str | None) -> dict[str, Any]:
    """The body of `POST /v1/assignments`."""
    v = request.vehicle
    body: dict[str, Any] = {
        "client_id": client_id,
        "reference": request.idempotency_key,
        "case_number": request.account_reference,
        "order_type": request.order_type,
        "vehicle": {
            "vin": v.vin,
            "year": v.year,
            "make": v.make,
            "model": v.model,
            "colour": v.colour,
            "plate": v.plate,
        },
        "debtor": {"name": request.borrower_name},
        "addresses": [
            {
                "type": a.kind,
                "line1": a.line1,
                "line2": a.line2,
                "city": a.city,
                "state": a.state,
                "postal_code": a.postal_code,
                "country": a.country,
            }
            for a in request.addresses
        ],
        "lender_contact": {
            "name": request.lender.name,
            "phone": request.lender.phone,
            "email": request.lender.email,
        },
        "notes": request.notes,
    }
    if callback_url:
        body["callback_url"] = callback_url
    return body
