"""What every provider kind's inbound side shares: the answer a callback gets, the item it could
not read, and URL helpers.

Inbound is part of each provider's interface (DESIGN §6). The webhook server routes
`POST /{kind}/{provider}/{event}` to the registered provider and knows no vendor:

    items = provider.parse_callback(headers, body, url=url, event=event)  # verify, then parse
    ...store the items...
    answer = provider.acknowledge(event)                                  # the vendor's own "got it"

`parse_callback` raises `UnverifiedCallback` (answered 403) when the callback does not prove it
comes from the vendor, `InvalidCallback` (400) when it is authentic but malformed. A callback
about something we do not know is acknowledged all the same (and recorded for operators): a
refusal would only make the vendor push it again. So is a batch (Aliyun pushes arrays) with an
item that cannot be read: the provider gives that item back as an `UnreadableItem`, the webhook
stores the rest and keeps the item for operators. Refusing the whole batch would lose every
readable item in it, an opt-out among them, once the vendor stops pushing it again. The one
answer that asks a vendor to deliver again is a 5xx, which the server gives when it could not
store what arrived.

`check_callbacks()` raises `ConfigError` naming the setting when the provider could not tell a
genuine callback from a forgery (an empty signing key or token): the webhook server then refuses
to start rather than accept forged STOP or START replies.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

__all__ = ["CALLBACK_EVENTS", "CallbackAnswer", "UnreadableItem", "header", "query_param", "token_matches"]

# The events of the SMS kind: delivery receipts, and messages the borrower sends us
CALLBACK_EVENTS = frozenset({"status", "inbound"})


@dataclass(frozen=True, slots=True)
class CallbackAnswer:
    """The HTTP answer a vendor expects once its callback is stored (TwiML, Aliyun's `{"code": 0}`…)."""

    status: int = 200
    body: bytes = b""
    media_type: str = "text/plain"


@dataclass(frozen=True, slots=True)
class UnreadableItem:
    """One item of a batch callback that cannot be read (a reply without its number, a report
    without our reference), in the place of what it should have been."""

    reason: str
    item: str  # the item as received, as JSON text

    def __repr__(self) -> str:  # the item may hold a number: reprs reach logs
        return f"UnreadableItem(reason={self.reason!r}, item=<{len(self.item)} chars>)"


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value whatever the case of its name, or None."""
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def query_param(url: str | None, name: str) -> str | None:
    """The first value of `name` in the query string of `url`, or None."""
    if not url:
        return None
    return next((v for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True) if k == name), None)


def token_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a callback token; an empty expected token never matches."""
    return bool(expected) and given is not None and hmac.compare_digest(expected.encode(), given.encode())
