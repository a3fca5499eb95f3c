"""The SMS provider kind: protocol and types, the vendor-shaped clients, the sandbox server.

from integrations.sms import build_provider, SmsRequest
with build_provider("sandbox", handle.base_url, handle.credentials) as sms:
    outcomes = sms.send_batch(requests)
"""

from integrations.sms.factory import DEFAULT_PROVIDER, available_providers, build_provider, provider_class
from integrations.sms.protocol import (
    SMS_STATUSES,
    DeliveryReport,
    Outcome,
    SmsProvider,
    SmsRequest,
    SmsResult,
    SmsStatus,
)

__all__ = [
    "DEFAULT_PROVIDER",
    "SMS_STATUSES",
    "DeliveryReport",
    "Outcome",
    "SmsProvider",
    "SmsRequest",
    "SmsResult",
    "SmsStatus",
    "available_providers",
    "build_provider",
    "provider_class",
]
