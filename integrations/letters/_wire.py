"""Lob's words for a letter's journey, shared by the client and the sandbox that imitates Lob.

A Lob letter carries `tracking_events` (`name`: "Mailed", "In Transit", "In Local Area",
"Processed for Delivery", "Re-Routed", "Delivered", "Returned to Sender"); webhooks name the same
steps as event types (`letter.mailed`, `letter.in_local_area`…). Several of Lob's steps are one of
ours: everything between mailed and delivered is `in_transit`.
"""

from __future__ import annotations

from integrations.letters.protocol import TrackingKind

__all__ = ["EVENT_TYPES", "KIND_OF_EVENT", "KIND_OF_NAME", "NAMES", "extra_service", "mail_type_of"]

KIND_OF_NAME: dict[str, TrackingKind] = {
    "Mailed": "mailed",
    "In Transit": "in_transit",
    "In Local Area": "in_transit",
    "Processed for Delivery": "in_transit",
    "Re-Routed": "in_transit",
    "Delivered": "delivered",
    "Returned to Sender": "returned_to_sender",
}
KIND_OF_EVENT: dict[str, TrackingKind] = {
    "letter.mailed": "mailed",
    "letter.in_transit": "in_transit",
    "letter.in_local_area": "in_transit",
    "letter.processed_for_delivery": "in_transit",
    "letter.re-routed": "in_transit",
    "letter.delivered": "delivered",
    "letter.returned_to_sender": "returned_to_sender",
}
# ours -> Lob's tracking event name and webhook event type, as the sandbox reports them
NAMES: dict[str, str] = {
    "mailed": "Mailed",
    "in_transit": "In Transit",
    "delivered": "Delivered",
    "returned_to_sender": "Returned to Sender",
}
EVENT_TYPES: dict[str, str] = {
    "mailed": "letter.mailed",
    "in_transit": "letter.in_transit",
    "delivered": "letter.delivered",
    "returned_to_sender": "letter.returned_to_sender",
}
_EXTRA = {
    "usps_first_class": None,
    "usps_first_class_certified": "certified",
    "usps_first_class_certified_return_receipt": "certified_return_receipt",
}


def extra_service(mail_type: str) -> str | None:
    """Lob's `extra_service` for our mail type (Lob's `mail_type` is always `usps_first_class`)."""
    return _EXTRA[mail_type]


def mail_type_of(extra: str | None) -> str:
    """Our mail type from Lob's `extra_service`."""
    return next((ours for ours, lob in _EXTRA.items() if lob == (extra or None)), "usps_first_class")
