"""A client of an ECF 5-style e-filing gateway speaking JSON (and of the sandbox court imitating one).

OASIS ECF is message-based; the gateway exposes its operations as JSON over HTTPS, under `/ecf/v5`:

- `POST /ecf/v5/ReviewFiling`: submit a filing; the `Idempotency-Key` header (our key) makes a
  resend return the first filing (200) instead of opening a second case; the same key with
  other content is refused (409 `idempotency.conflict`). Answers 202 with the filing id.
- `POST /ecf/v5/GetFilingStatus`: where a filing stands (review, service, case).
- `POST /ecf/v5/CancelFiling`: withdraw a filing before its review ends.
- Callbacks: the gateway POSTs `{"events": [...]}` to our webhook, signed with the shared secret
  (`integrations.court._signing`).

A filing's status is three facts (review, service, case: `integrations.court._wire`). ECF 5 has
no word for a payment order's objection or its taking effect; the words read for them are the
sandbox gateway's, and a case word the client does not know is refused rather than guessed.

Auth is a Bearer token per filer account; errors are `{"error": {"code", "message"}}`.
Because the gateway deduplicates, an unknown outcome (a 5xx or a timeout after sending) is
reconciled by sending the same filing again with the same key: it answers with the first one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from integrations._http import (
    VendorClient,
    VendorError,
    exchange,
    iso_instant,
    read_once,
    send_deduplicated,
    vendor_error,
)
from integrations.callbacks import CallbackAnswer, UnreadableItem
from integrations.court._signing import verify
from integrations.court._wire import envelope_json, status_from_wire, vendor_words
from integrations.court.protocol import FilingEnvelope, FilingNotFound, FilingReceipt, FilingStatus
from integrations.errors import (
    ConfigError,
    InvalidCallback,
    ProviderError,
    UnknownOutcome,
    UnverifiedCallback,
)
from integrations.metadata import ProviderInfo
from integrations.retries import call_with_retries

log = logging.getLogger(__name__)  # idempotency keys and filing ids only: never a party or a secret

__all__ = ["API_ROOT", "EcfCourtProvider", "EcfSettings", "error_from_response"]

API_ROOT = "/ecf/v5"


class EcfSettings(BaseModel):
    """The gateway's settings; the two secrets print as `**********`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(description="Root URL of the gateway (or of the sandbox court), without /ecf/v5.")
    filer_id: str = Field(min_length=1, description="Our filer account at the gateway.")
    api_key: SecretStr = Field(description="Bearer token of the filer account.")
    callback_secret: SecretStr = Field(
        description="Shared secret the gateway signs status callbacks with (HMAC-SHA256)."
    )
    callback_url: str | None = Field(
        default=None, description="Our webhook for status callbacks, sent with each filing."
    )
    timeout_seconds: float = Field(default=30.0, gt=0, description="Read timeout of one HTTP request.")
    connect_timeout_seconds: float = Field(default=5.0, gt=0, description="Connect timeout.")
    retry_attempts: int = Field(default=4, ge=1, description="Attempts per call, the first included.")
    retry_total_seconds: float = Field(
        default=60.0, gt=0, description="Time budget of one call, waits included."
    )


def error_from_response(
    response: httpx.Response, *, idempotency_key: str | None = None, filing_id: str | None = None
) -> ProviderError:
    """Translate a non-2xx answer into our error tree (pure: unit-tested with `httpx.MockTransport`)."""

    def not_found(error: VendorError) -> ProviderError | None:
        if error.status == 404 and error.code == "filing.not_found" and filing_id is not None:
            return FilingNotFound(filing_id, error.reason)
        return None

    return vendor_error(
        response,
        idempotency_key=idempotency_key,
        no_message=response.reason_phrase or "no error message",
        duplicate_code="idempotency.conflict",
        specific=not_found,
    )


def _status(payload: Mapping[str, Any], filing_id: str | None = None) -> FilingStatus:
    return FilingStatus(
        filing_id=str(payload.get("filingId") or filing_id),
        status=status_from_wire(
            str(payload["reviewStatus"]), payload.get("serviceStatus"), payload.get("caseStatus")
        ),
        at=iso_instant(payload["statusAt"]),
        reason=payload.get("statusReason") or None,
        case_number=payload.get("caseNumber") or None,
        vendor_status=vendor_words(payload),
    )


def _event_or_keep(event: Mapping[str, Any]) -> FilingStatus | UnreadableItem:
    """One filing event of a callback, or the event as it came with why it cannot be read: the
    gateway sends several filings' events in one callback, and refusing all of them for one (an
    unknown status word, a missing filing id) would hold back the others until the next poll."""
    try:
        if not event.get("filingId"):
            raise ValueError("filing event lacks filingId")
        return _status(event)
    except (ValueError, KeyError, TypeError, AttributeError) as unreadable:
        reason = f"missing {unreadable}" if isinstance(unreadable, KeyError) else str(unreadable)
        return UnreadableItem(reason, json.dumps(event, ensure_ascii=False, default=str))


class EcfCourtProvider(VendorClient):
    """One HTTP request per operation over a kept-alive connection; retries capped by the settings."""

    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="ecf",
        kind="court",
        title="ECF 5-style e-filing gateway (JSON)",
        settings=EcfSettings,
        deduplicates=True,
        setup_url="https://docs.oasis-open.org/legalxml-courtfiling/ecf/v5.0/ecf-v5.0.html",
    )
    settings_model: ClassVar[type[EcfSettings]] = EcfSettings

    api_root: ClassVar[str] = API_ROOT
    user_agent: ClassVar[str] = "arrears-court/1"
    settings: EcfSettings

    # -- operations ---------------------------------------------------------------------------

    def submit(self, envelope: FilingEnvelope) -> FilingReceipt:
        key = envelope.idempotency_key
        message = envelope_json(
            envelope, filer_id=self.settings.filer_id, callback_url=self.settings.callback_url
        )

        def once() -> FilingReceipt:
            response = self._call("ReviewFiling", message, idempotency_key=key)
            if response.status_code not in (200, 201, 202):
                raise error_from_response(response, idempotency_key=key)
            try:
                payload = response.json()
                return FilingReceipt(
                    idempotency_key=key,
                    filing_id=str(payload["filingId"]),
                    status=status_from_wire(str(payload["reviewStatus"])),
                    submitted_at=iso_instant(payload["receivedAt"]),
                )
            except (ValueError, KeyError, TypeError):  # received, but the answer is unreadable
                raise UnknownOutcome(
                    f"{self.info.entry_point}: unreadable answer to ReviewFiling",
                    code="bad_answer",
                    idempotency_key=key,
                ) from None

        return send_deduplicated(once, self.retry_policy, log=log, label=self.info.entry_point, key=key)

    def status(self, filing_id: str) -> FilingStatus:
        return self._read(
            "GetFilingStatus", {"filerId": self.settings.filer_id, "filingId": filing_id}, filing_id
        )

    def cancel(self, filing_id: str, reason: str) -> FilingStatus:
        """Withdraw a filing before its review ends (CancelFiling); cancelling twice is harmless.
        `Permanent` (`filing.not_cancellable`) once the court has accepted or rejected it."""
        message = {"filerId": self.settings.filer_id, "filingId": filing_id, "reason": reason}
        return self._read("CancelFiling", message, filing_id)

    def check_callbacks(self) -> None:
        if not self.settings.callback_secret.get_secret_value():
            raise ConfigError(
                f"{self.info.entry_point}: callback_secret is empty: callbacks cannot be verified"
            )

    def acknowledge(self, event: str) -> CallbackAnswer:
        return CallbackAnswer(200, b'{"ok":true}', "application/json")

    def parse_callback(
        self, headers: Mapping[str, str], body: bytes, *, url: str | None = None, event: str = "status"
    ) -> list[FilingStatus | UnreadableItem]:
        # The signature covers the timestamp and the body, not the URL: `url` is not needed.
        if not self.settings.callback_secret.get_secret_value():
            raise UnverifiedCallback("no callback_secret is configured", code="signature.unconfigured")
        verify(self.settings.callback_secret.get_secret_value(), headers, body, self._clock())
        try:
            events = json.loads(body)["events"]
        except (ValueError, KeyError, TypeError):
            events = None
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            raise InvalidCallback("court callback is not a list of filing events", code="body.malformed")
        if event != "status":
            raise InvalidCallback(f"no callback event {event[:20]!r}", code="event.unknown")
        read = [_event_or_keep(e) for e in events]
        statuses = sorted((s for s in read if isinstance(s, FilingStatus)), key=lambda s: s.at)
        unreadable = [u for u in read if isinstance(u, UnreadableItem)]
        return [*statuses, *unreadable]

    # -- HTTP ---------------------------------------------------------------------------------

    def _read(self, operation: str, message: Mapping[str, Any], filing_id: str) -> FilingStatus:
        """An operation that is safe to repeat: an unknown outcome is retried like a transient one."""

        def once() -> FilingStatus:
            return read_once(
                lambda: self._client.post(f"/{operation}", json=message),
                self.info.entry_point,
                what=operation,
                error=lambda response: error_from_response(response, filing_id=filing_id),
                parse=lambda payload: _status(payload, filing_id),
            )

        return call_with_retries(once, self.retry_policy)

    def _call(
        self, operation: str, message: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> httpx.Response:
        """One exchange; transport failures become `Transient` (surely not sent) or `UnknownOutcome`."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return exchange(
            lambda: self._client.post(f"/{operation}", json=message, headers=headers),
            self.info.entry_point,
            idempotency_key=idempotency_key,
            no_answer=f"no answer to {operation} after sending it",
        )
