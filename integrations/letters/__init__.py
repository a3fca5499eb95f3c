"""The letters kind: PDF letters mailed through a print-and-mail provider (Lob-shaped), tracked to delivery.

from integrations import registry
from integrations.letters.sandbox import start_letters_sandbox
with start_letters_sandbox() as lob:
    cls = registry.load("letters", "sandbox")
    with cls.from_config(lob.base_url, lob.credentials) as provider:
        letter = provider.send(request)
        provider.status(letter.id)
"""

from integrations.letters.protocol import (
    LETTER_STATUSES,
    MAIL_TYPES,
    TERMINAL_STATUSES,
    TRACKING_KINDS,
    Letter,
    LetterNotFound,
    LetterRequest,
    LettersProvider,
    LetterStatusName,
    MailType,
    PostalAddress,
    TrackingEvent,
    TrackingKind,
)

__all__ = [
    "LETTER_STATUSES",
    "MAIL_TYPES",
    "TERMINAL_STATUSES",
    "TRACKING_KINDS",
    "Letter",
    "LetterNotFound",
    "LetterRequest",
    "LetterStatusName",
    "LettersProvider",
    "MailType",
    "PostalAddress",
    "TrackingEvent",
    "TrackingKind",
]
