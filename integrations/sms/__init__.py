"""The SMS provider kind: protocol and types, the vendor-shaped clients, the sandbox server.

from integrations.providers import build_provider
from integrations.sms import SmsRequest
with build_provider("sms", "sandbox", handle.base_url, handle.credentials) as sms:
    outcomes = sms.send_batch(requests)
"""

from integrations.sms.protocol import (
    SMS_STATUSES,
    Callback,
    DeliveryReport,
    InboundMessage,
    Outcome,
    SmsProvider,
    SmsRequest,
    SmsResult,
    SmsStatus,
)

__all__ = [
    "SMS_STATUSES",
    "Callback",
    "DeliveryReport",
    "InboundMessage",
    "Outcome",
    "SmsProvider",
    "SmsRequest",
    "SmsResult",
    "SmsStatus",
]
