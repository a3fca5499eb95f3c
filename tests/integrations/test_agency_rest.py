"""The assignment REST client's wire format and webhook checks, request by request with MockTransport."""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from integrations._hmac import sign
from integrations.agency.contract import VIN, make_request
from integrations.agency.protocol import AssignmentNotCancellable, AssignmentNotFound
from integrations.agency.rest import RestAgencyProvider, RestAgencySettings
from integrations.errors import InvalidCallback

SECRET = "agency-secret"
NOW = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)


def _provider(handler: Callable[[httpx.Request], httpx.Response]) -> RestAgencyProvider:
    settings = RestAgencySettings(
        base_url="https://agency.example",
        client_id="LENDER-1",
        api_key="k-1",
        webhook_secret=SECRET,  # type: ignore[arg-type]
    )
    return RestAgencyProvider(settings, transport=httpx.MockTransport(handler), clock=lambda: NOW)


def test_assign_posts_the_order_with_bearer_and_idempotency_key() -> None:
    """assign() POSTs /v1/assignments with the VIN, addresses and lender contact, Bearer auth and the key."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": "asg_1", "status": "open", "created_at": NOW.isoformat()})

    with _provider(handler) as provider:
        assignment = provider.assign(make_request("a-1"))
    [sent] = seen
    order = json.loads(sent.content)
    assert sent.url.path == "/v1/assignments" and sent.headers["Authorization"] == "Bearer k-1"
    assert sent.headers["Idempotency-Key"] == "a-1" and order["client_id"] == "LENDER-1"
    assert order["vehicle"]["vin"] == VIN and [a["type"] for a in order["addresses"]] == ["home", "work"]
    assert order["lender_contact"]["phone"] == "+15155550100" and order["order_type"] == "involuntary"
    assert (assignment.assignment_id, assignment.status) == ("asg_1", "assigned")


def test_cancel_after_recovery_names_the_status() -> None:
    """A 409 not_cancellable from the platform becomes AssignmentNotCancellable carrying `recovered`."""
    body = {"error": {"code": "not_cancellable", "message": "already repossessed", "status": "repossessed"}}
    with (
        _provider(lambda r: httpx.Response(409, json=body)) as provider,
        pytest.raises(AssignmentNotCancellable) as caught,
    ):
        provider.cancel("asg_1", "paid")
    assert caught.value.status == "recovered" and caught.value.assignment_id == "asg_1"


def test_unknown_assignment_is_not_found() -> None:
    """A 404 assignment_not_found becomes AssignmentNotFound for that id."""
    body = {"error": {"code": "assignment_not_found", "message": "no such assignment"}}
    with _provider(lambda r: httpx.Response(404, json=body)) as provider, pytest.raises(AssignmentNotFound):
        provider.status("asg_x")


def _webhook(at: datetime) -> tuple[dict[str, str], bytes]:
    body = json.dumps(
        {
            "events": [
                {
                    "event_id": "evt_1",
                    "assignment_id": "asg_1",
                    "status": "repossessed",
                    "occurred_at": NOW.isoformat(),
                    "recovery": {
                        "recovered_at": NOW.isoformat(),
                        "location": "lot 4",
                        "condition": "drivable",
                    },
                }
            ]
        }
    ).encode()
    t = str(int(at.timestamp()))
    return {"X-Agency-Signature": sign(SECRET, t, body), "X-Agency-Timestamp": t}, body


def test_signed_webhook_parses_a_recovery() -> None:
    """A signed webhook parses into a recovered status with the recovery's place and condition."""
    headers, body = _webhook(NOW)
    with _provider(lambda r: httpx.Response(500)) as provider:
        [status] = provider.parse_callback(headers, body)
    assert status.status == "recovered" and status.recovery_location == "lot 4" and status.recovered_at == NOW


def test_tampered_or_stale_webhooks_are_refused() -> None:
    """A body changed after signing, or a signature six minutes old, raises InvalidCallback."""
    headers, body = _webhook(NOW)
    stale_headers, stale_body = _webhook(NOW - timedelta(minutes=6))
    with _provider(lambda r: httpx.Response(500)) as provider:
        with pytest.raises(InvalidCallback, match="does not verify"):
            provider.parse_callback(headers, body.replace(b"lot 4", b"lot 5"))
        with pytest.raises(InvalidCallback, match="older than 5 minutes"):
            provider.parse_callback(stale_headers, stale_body)
