"""A client of a generic repossession-assignment API (and of the sandbox agency imitating one).

- `POST /v1/assignments`: a JSON order (`integrations.agency._wire.request_json`); the
  `Idempotency-Key` header makes a resend answer the first assignment (200) instead of sending a
  second agent after the car; the same key with other content is refused (409
  `idempotency_conflict`). Answers 201 with the assignment.
- `POST /v1/assignments/{id}/cancel` with a reason: 200 with the cancelled assignment, also when
  it already was; 409 `not_cancellable` once the car is recovered or the order closed.
- `GET /v1/assignments/{id}`: where it stands, with the recovery's details once there are some
  (`recovery`: `recovered_at`, `location`, `condition`, `personal_property`: the inventory of
  what was found in the car, items as text or `{"description", "quantity"}`).
- Webhooks: `{"events": [...]}` POSTed to our URL, signed `X-Agency-Signature` (hex HMAC-SHA256 of
  `timestamp + "." + body` with the shared secret) and `X-Agency-Timestamp` (Unix seconds).

Auth is a Bearer token per lender account; errors are `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from integrations import _hmac
from integrations._http import (
    VendorClient,
    VendorError,
    exchange,
    iso_instant,
    read_once,
    send_deduplicated,
    vendor_error,
)
from integrations.agency._wire import request_json, status_from_wire
from integrations.agency.protocol import (
    Assignment,
    AssignmentNotCancellable,
    AssignmentNotFound,
    AssignmentRequest,
    AssignmentStatus,
)
from integrations.errors import (
    ConfigError,
    InvalidCallback,
    ProviderError,
    UnknownOutcome,
)
from integrations.metadata import ProviderInfo
from integrations.retries import call_with_retries

log = logging.getLogger(__name__)  # idempotency keys and assignment ids only: never a VIN or a name

__all__ = [
    "API_ROOT",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "RestAgencyProvider",
    "RestAgencySettings",
    "error_from_response",
    "status_from_json",
]

API_ROOT = "/v1"
SIGNATURE_HEADER = "X-Agency-Signature"
TIMESTAMP_HEADER = "X-Agency-Timestamp"


class RestAgencySettings(BaseModel):
    """The assignment platform's settings; the two secrets print as `**********`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(description="Root URL of the platform (or of the sandbox agency), without /v1.")
    client_id: str = Field(min_length=1, description="Our lender account at the platform.")
    api_key: SecretStr = Field(description="Bearer token of the lender account.")
    webhook_secret: SecretStr = Field(description="Shared secret the platform signs webhooks with.")
    callback_url: str | None = Field(default=None, description="Our webhook, sent with each assignment.")
    timeout_seconds: float = Field(default=30.0, gt=0, description="Read timeout of one HTTP request.")
    connect_timeout_seconds: float = Field(default=5.0, gt=0, description="Connect timeout.")
    retry_attempts: int = Field(default=4, ge=1, description="Attempts per call, the first included.")
    retry_total_seconds: float = Field(
        default=60.0, gt=0, description="Time budget of one call, waits included."
    )


def error_from_response(
    response: httpx.Response, *, idempotency_key: str | None = None, assignment_id: str | None = None
) -> ProviderError:
    """Translate a non-2xx answer into our error tree (pure: unit-tested with `httpx.MockTransport`)."""

    def agency_only(error: VendorError) -> ProviderError | None:
        if assignment_id is None:
            return None
        if error.status == 404 and error.code == "assignment_not_found":
            return AssignmentNotFound(assignment_id, error.reason)
        if error.status == 409 and error.code == "not_cancellable":
            try:
                ours = status_from_wire(str(error.body.get("status")))
            except ValueError:
                ours = "recovered"  # the side that never pretends the car is still out there
            return AssignmentNotCancellable(assignment_id, ours, error.reason)
        return None

    return vendor_error(
        response,
        idempotency_key=idempotency_key,
        no_message=f"HTTP {response.status_code}",
        duplicate_code="idempotency_conflict",
        specific=agency_only,
    )


def status_from_json(payload: Mapping[str, Any], assignment_id: str | None = None) -> AssignmentStatus:
    """Our status from an assignment or a webhook event; KeyError or ValueError if it is neither."""
    recovery = payload.get("recovery") or {}
    return AssignmentStatus(
        assignment_id=str(payload.get("assignment_id") or payload.get("id") or assignment_id),
        status=status_from_wire(str(payload["status"])),
        at=iso_instant(payload.get("occurred_at") or payload["status_at"]),
        event_id=str(payload.get("event_id") or ""),
        reason=payload.get("status_reason") or payload.get("reason") or None,
        recovered_at=iso_instant(recovery["recovered_at"]) if recovery.get("recovered_at") else None,
        recovery_location=recovery.get("location") or None,
        condition=recovery.get("condition") or None,
        vendor_status=str(payload["status"]),
        personal_property=_inventory(recovery.get("personal_property")),
    )


def _inventory(items: Any) -> tuple[str, ...]:
    """The recovery report's personal-property inventory: items as text, or as objects with a
    `description` (and a `quantity`); ValueError for anything else."""
    if not items:
        return ()
    if not isinstance(items, list):
        raise ValueError("personal_property is not a list")
    found = []
    for item in items:
        if isinstance(item, dict):
            text, quantity = str(item.get("description") or "").strip(), item.get("quantity")
            text = f"{text} (x{quantity})" if text and quantity not in (None, 1, "1") else text
        else:
            text = str(item).strip()
        if not text:
            raise ValueError("a personal_property item says nothing")
        found.append(text)
    return tuple(found)


class RestAgencyProvider(VendorClient):
    """One HTTP request per operation over a kept-alive connection; retries capped by the settings."""

    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="rest",
        kind="agency",
        title="Repossession assignment platform (generic REST)",
        settings=RestAgencySettings,
        deduplicates=True,
    )
    settings_model: ClassVar[type[RestAgencySettings]] = RestAgencySettings

    api_root: ClassVar[str] = API_ROOT
    user_agent: ClassVar[str] = "arrears-agency/1"
    settings: RestAgencySettings

    def assign(self, request: AssignmentRequest) -> Assignment:
        key = request.idempotency_key
        body = request_json(
            request, client_id=self.settings.client_id, callback_url=self.settings.callback_url
        )

        def once() -> Assignment:
            response = exchange(
                lambda: self._client.post("/assignments", json=body, headers={"Idempotency-Key": key}),
                self.info.entry_point,
                idempotency_key=key,
                no_answer="no answer to POST /v1/assignments after sending it",
            )
            if response.status_code not in (200, 201):
                raise error_from_response(response, idempotency_key=key)
            try:
                payload = response.json()
                return Assignment(
                    idempotency_key=key,
                    assignment_id=str(payload["id"]),
                    status=status_from_wire(str(payload["status"])),
                    assigned_at=iso_instant(payload["created_at"]),
                )
            except (ValueError, KeyError, TypeError):
                raise UnknownOutcome(
                    f"{self.info.entry_point}: unreadable answer to POST /v1/assignments",
                    code="bad_answer",
                    idempotency_key=key,
                ) from None

        return send_deduplicated(once, self.retry_policy, log=log, label=self.info.entry_point, key=key)

    def cancel(self, assignment_id: str, reason: str) -> AssignmentStatus:
        # Cancelling twice is harmless at the platform, so an unknown outcome is simply repeated.
        return self._read("POST", f"/assignments/{assignment_id}/cancel", assignment_id, {"reason": reason})

    def status(self, assignment_id: str) -> AssignmentStatus:
        return self._read("GET", f"/assignments/{assignment_id}", assignment_id)

    def check_callbacks(self) -> None:
        if not self.settings.webhook_secret.get_secret_value():
            raise ConfigError(
                f"{self.info.entry_point}: webhook_secret is empty: agency webhooks cannot be verified"
            )

    def parse_callback(
        self, headers: Mapping[str, str], body: bytes, *, url: str | None = None
    ) -> list[AssignmentStatus]:
        _hmac.verify(
            self.settings.webhook_secret.get_secret_value(),
            headers,
            body,
            self._clock(),
            signature_header=SIGNATURE_HEADER,
            timestamp_header=TIMESTAMP_HEADER,
        )
        try:
            statuses = [status_from_json(event) for event in json.loads(body)["events"]]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InvalidCallback(
                "agency webhook is not a list of assignment events", code="body.malformed"
            ) from None
        return sorted(statuses, key=lambda s: s.at)

    def _read(
        self, method: str, path: str, assignment_id: str, body: Mapping[str, Any] | None = None
    ) -> AssignmentStatus:
        """An operation safe to repeat: an unknown outcome is retried like a transient one."""

        def once() -> AssignmentStatus:
            return read_once(
                lambda: self._client.request(method, path, json=body),
                self.info.entry_point,
                what=f"{method} {path}",
                error=lambda response: error_from_response(response, assignment_id=assignment_id),
                parse=lambda payload: status_from_json(payload, assignment_id),
            )

        return call_with_retries(once, self.retry_policy)
