"""The sandbox's memory: messages received, idempotency records, faults to inject. No HTTP here.

Everything runs on the server's single event loop, so plain dicts need no lock as long as a
handler does not await between reading and writing them.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field

from integrations._sandbox_faults import CallbackFaults, FaultState

__all__ = ["CallbackTarget", "Credentials", "Faults", "SandboxMessage", "SandboxState"]

Route = Literal["twilio", "aliyun"]


@dataclass(frozen=True)
class Credentials:
    """What the sandbox accepts; the keys are the settings fields of the sandbox-built providers."""

    account_sid: str
    auth_token: str
    from_number: str
    access_key_id: str
    access_key_secret: str
    sign_name: str
    twilio_api_key_sid: str = "SK00000000000000000000000000000000"  # Twilio API key: another Basic-auth pair
    twilio_api_key_secret: str = "sandbox-api-key-secret"
    callback_token: str = "sandbox-callback-token"  # in the Aliyun callback URLs (`?token=`)

    @classmethod
    def generate(cls) -> Credentials:
        return cls(
            account_sid="AC" + secrets.token_hex(16),
            auth_token=secrets.token_hex(16),
            from_number="+15005550006",
            access_key_id="LTAI" + secrets.token_hex(8),
            access_key_secret=secrets.token_hex(15),
            sign_name="arrears",
            twilio_api_key_sid="SK" + secrets.token_hex(16),
            twilio_api_key_secret=secrets.token_hex(16),
            callback_token=secrets.token_urlsafe(24),
        )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str]) -> Credentials:
        return cls(**mapping)

    def as_mapping(self) -> dict[str, str]:
        return asdict(self)

    def __repr__(self) -> str:
        return f"Credentials(account_sid={self.account_sid!r}, access_key_id={self.access_key_id!r}, ...)"


class Faults(CallbackFaults):
    """Faults to inject (`POST /_sandbox/faults`); counters count down per request, or per callback
    pushed (`drop_callbacks`, `duplicate_callbacks`: a Twilio status callback, or an Aliyun report
    array with its retries)."""

    route: Literal["all", "twilio", "aliyun"] = Field(
        default="all", description="Which wire format they hit."
    )
    invalid_numbers: str | None = Field(default=None, description="Regex on E.164: refused as invalid.")
    landline_numbers: str | None = Field(default=None, description="Regex: refused as not a mobile (21614).")
    opted_out_numbers: str | None = Field(default=None, description="Regex: refused as opted out (21610).")
    limited_numbers: str | None = Field(default=None, description="Regex: refused by flow control (Aliyun).")
    unpermitted_numbers: str | None = Field(
        default=None, description="Regex: refused by the account's geo permissions (Twilio 21408)."
    )
    undeliverable_numbers: str | None = Field(default=None, description="Regex: accepted, then undelivered.")
    delivery_ms: int = Field(
        default=0,
        ge=0,
        description="After acceptance, lookups say `sent` until then; final callbacks wait as long.",
    )


@dataclass(slots=True)
class CallbackTarget:
    """Where Aliyun-shaped delivery reports go (`POST /_sandbox/callbacks`), unsigned as the vendor
    sends them: the URL carries the lender's secret token in its query string."""

    aliyun_url: str | None = None
    retry_delays: tuple[float, ...] = (0.2, 0.5, 1.0)  # the vendor's 1, 5 and 10 minutes, scaled down


@dataclass(slots=True)
class SandboxMessage:
    id: str  # Twilio SID, or Aliyun "<BizId>/<n>"
    route: Route
    to: str  # E.164
    body: str
    created_at: datetime
    sender: str | None = None  # From, MessagingServiceSid or SignName
    template: str | None = None
    params: dict[str, str] | None = None
    idempotency_key: str | None = None
    out_id: str | None = None
    biz_id: str | None = None
    status_callback: str | None = None
    undeliverable: bool = False

    def status(self, now: datetime, delivery: timedelta) -> tuple[str, str | None]:
        """(Twilio-style status, error code) as a lookup at `now` sees it."""
        if now - self.created_at < delivery:
            return "sent", None
        return ("undelivered", "30003") if self.undeliverable else ("delivered", None)

    def public(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


@dataclass
class SandboxState(FaultState):
    credentials: Credentials
    faults: Faults = field(default_factory=Faults)
    messages: list[SandboxMessage] = field(default_factory=list)
    by_id: dict[str, SandboxMessage] = field(default_factory=dict)
    by_number: dict[str, list[SandboxMessage]] = field(default_factory=dict)
    idempotency: dict[str, tuple[tuple[str, ...], SandboxMessage]] = field(default_factory=dict)
    nonces: dict[str, datetime] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # every push attempt, dropped ones too
    callback_target: CallbackTarget = field(default_factory=CallbackTarget)
    pushes: set[asyncio.Task[None]] = field(default_factory=set)  # callbacks waiting or in flight
    _patterns: dict[str, re.Pattern[str] | None] = field(default_factory=dict)

    def reset(self) -> None:
        self.faults = Faults()
        self.callback_target = CallbackTarget()
        for task in self.pushes:
            task.cancel()
        self.pushes.clear()
        self.callbacks.clear()
        self._patterns.clear()
        for store in (
            self.messages,
            self.by_id,
            self.by_number,
            self.idempotency,
            self.nonces,
            self.counters,
        ):
            store.clear()

    def set_faults(self, faults: Faults) -> None:
        self.faults = faults
        self._patterns = {
            name: re.compile(getattr(faults, name)) if getattr(faults, name) else None
            for name in (
                "invalid_numbers",
                "landline_numbers",
                "opted_out_numbers",
                "limited_numbers",
                "unpermitted_numbers",
                "undeliverable_numbers",
            )
        }

    def matches(self, pattern: str, number: str) -> bool:
        compiled = self._patterns.get(pattern)
        return bool(compiled and compiled.search(number))

    def record(self, message: SandboxMessage) -> None:
        message.undeliverable = self.matches("undeliverable_numbers", message.to)
        self.messages.append(message)
        self.by_id[message.id] = message
        self.by_number.setdefault(message.to, []).append(message)
        self.count(f"messages.{message.route}")

    def push(self, work: Any) -> None:
        """Run the coroutine `work` (a callback push) in the background, kept until it is done."""
        task = asyncio.get_running_loop().create_task(work)
        self.pushes.add(task)
        task.add_done_callback(self.pushes.discard)

    def log_callback(self, route: str, url: str, ids: list[str], **fields: Any) -> dict[str, Any]:
        """A new, pending entry in the callback log (`GET /_sandbox/callbacks`)."""
        entry = {
            "route": route,
            "url": url,
            "at": self.now().isoformat(),
            "message_ids": ids,
            "status_code": None,
            "outcome": "pending",
            **fields,
        }
        self.callbacks.append(entry)
        return entry

    def settle(self, entry: dict[str, Any], outcome: str) -> None:
        """Close a log entry with `outcome` unless the push already set one (`failed`), and count it."""
        if entry["outcome"] == "pending":
            entry["outcome"] = outcome
        self.count(f"callbacks.{entry['route']}.{entry['outcome']}")

    def use_nonce(self, nonce: str, now: datetime) -> bool:
        """False if the nonce was seen in the last 15 minutes (the vendor refuses a replay)."""
        if len(self.nonces) > 200_000:
            horizon = now - timedelta(minutes=15)
            self.nonces = {k: v for k, v in self.nonces.items() if v > horizon}
        if nonce in self.nonces:
            return False
        self.nonces[nonce] = now
        return True

    @property
    def delivery(self) -> timedelta:
        return timedelta(milliseconds=self.faults.delivery_ms)
