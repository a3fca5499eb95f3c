"""The ECF client: wire vocabulary, error mapping and callback checks, with `httpx.MockTransport`."""

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from integrations.callbacks import UnreadableItem
from integrations.court._signing import signature_header
from integrations.court._wire import status_from_wire
from integrations.court.contract import make_envelope
from integrations.court.ecf import EcfCourtProvider, EcfSettings
from integrations.court.protocol import FilingNotFound, FilingStatus
from integrations.errors import (
    ConfigError,
    Duplicate,
    InvalidCallback,
    Permanent,
    ProviderError,
    Transient,
    UnknownOutcome,
)

SECRET = "cb-secret-31f0"
STATUS = {
    "filingId": "ECF-1",
    "reviewStatus": "accepted",
    "serviceStatus": None,
    "caseStatus": None,
    "statusAt": "2026-12-01T09:00:00+00:00",
    "caseNumber": "2026-CV-000001",
}


def _provider(answer: Callable[[httpx.Request], httpx.Response], **overrides: object) -> EcfCourtProvider:
    settings = EcfSettings(
        base_url="https://ecf.example",
        filer_id="FILER-1",
        api_key="api-key-7c2a",
        callback_secret=SECRET,
        **{"retry_attempts": 1, **overrides},  # type: ignore[arg-type]
    )
    return EcfCourtProvider(settings, transport=httpx.MockTransport(answer))


def _answering(status: int, payload: object, headers: dict[str, str] | None = None) -> EcfCourtProvider:
    return _provider(lambda request: httpx.Response(status, json=payload, headers=headers))


@pytest.mark.parametrize(
    ("review", "service", "case", "ours"),
    [
        ("received", None, None, "submitted"),
        ("pending", None, None, "under_review"),
        ("accepted", None, None, "accepted"),
        ("partially-accepted", "sent", None, "accepted"),
        ("issued", None, None, "accepted"),
        ("issued", "delivered", None, "served"),
        ("accepted", "delivered", None, "served"),
        ("accepted", "opened", None, "served"),
        ("accepted", "unrecognized", None, "accepted"),
        ("accepted", "delivered", "judgment-entered", "judgment"),
        ("rejected", None, None, "rejected"),
        ("cancelled", None, None, "cancelled"),
    ],
)
def test_wire_statuses(review: str, service: str | None, case: str | None, ours: str) -> None:
    """The gateway's review, service and case facts become our one status, the furthest of them."""
    assert status_from_wire(review, service, case) == ours


def test_unknown_wire_status_is_refused() -> None:
    """A review status outside ECF's vocabulary is an error, not a guess."""
    with pytest.raises(ValueError, match="reviewStatus"):
        status_from_wire("teleported")


@pytest.mark.parametrize(
    ("status", "code", "headers", "expected"),
    [
        (429, "throttled", {"Retry-After": "7"}, Transient),
        (503, "unavailable", {"Retry-After": "3"}, Transient),
        (500, "internal", None, UnknownOutcome),
        (502, "bad_gateway", None, UnknownOutcome),
        (401, "auth.invalid", None, ConfigError),
        (403, "filer.forbidden", None, ConfigError),
        (404, "not_found", None, ConfigError),
        (409, "idempotency.conflict", None, Duplicate),
        (400, "court.unknown", None, Permanent),
        (422, "document.hash_mismatch", None, Permanent),
    ],
)
def test_submit_error_mapping(status: int, code: str, headers: dict | None, expected: type) -> None:
    """Each gateway answer to ReviewFiling becomes the error class of our tree that the task acts on."""
    payload = {"error": {"code": code, "message": "refused"}}
    with _answering(status, payload, headers) as provider, pytest.raises(ProviderError) as caught:
        provider.submit(make_envelope("k-1"))
    assert type(caught.value) is expected
    assert caught.value.idempotency_key == "k-1" and caught.value.code == code
    if headers:
        assert caught.value.retry_after == float(headers["Retry-After"])


def test_status_of_unknown_filing() -> None:
    """A 404 `filing.not_found` on GetFilingStatus is FilingNotFound naming the id."""
    answer = {"error": {"code": "filing.not_found", "message": "no"}}
    with _answering(404, answer) as provider, pytest.raises(FilingNotFound) as caught:
        provider.status("ECF-404")
    assert caught.value.filing_id == "ECF-404"


def test_status_of_an_issued_filing_is_read() -> None:
    """ECF 5's `issued` (the court issued its order or summons, as a 支付令 is issued) is a status
    the filing reaches after acceptance: read as accepted, not refused as an unreadable answer."""
    answer = {"filingId": "ECF-9", "reviewStatus": "issued", "statusAt": "2027-01-05T02:00:00Z"}
    with _answering(200, answer) as provider:
        found = provider.status("ECF-9")
    assert (found.status, found.vendor_status) == ("accepted", "issued")


def test_status_retries_server_errors_but_submit_reconciles_once() -> None:
    """Status lookups repeat a 500 like a throttle; a submit resends once after a 500, then gives up."""
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(500, json={"error": {"code": "internal", "message": "x"}})

    with _provider(answer, retry_attempts=3) as provider:
        with pytest.raises(Transient):
            provider.status("ECF-1")
        assert calls == ["/ecf/v5/GetFilingStatus"] * 3
        calls.clear()
        with pytest.raises(UnknownOutcome):
            provider.submit(make_envelope("k-1"))
        assert calls == ["/ecf/v5/ReviewFiling"] * 2


def test_submit_sends_the_envelope_with_its_key_and_bearer_token() -> None:
    """ReviewFiling carries the idempotency key, the bearer token, money as a string and documents by hash."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            202, json={"filingId": "ECF-7", "reviewStatus": "received", "receivedAt": "2026-12-01T09:00:00Z"}
        )

    with _provider(answer, callback_url="https://arrears.example/hooks/court") as provider:
        receipt = provider.submit(make_envelope("k-7"))
    assert receipt.filing_id == "ECF-7" and receipt.submitted_at == datetime(2026, 12, 1, 9, tzinfo=UTC)
    [request] = seen
    body = json.loads(request.content)
    assert request.headers["Idempotency-Key"] == "k-7"
    assert request.headers["Authorization"] == "Bearer api-key-7c2a"
    assert body["claim"] == {"amount": "4321.09", "currency": "USD"} and body["filerId"] == "FILER-1"
    assert body["callbackUrl"] == "https://arrears.example/hooks/court"
    assert [d["kind"] for d in body["documents"]] == ["complaint", "notice_of_sale", "military_affidavit"]
    assert all(len(d["sha256"]) == 64 for d in body["documents"]) and body["militaryStatusAffidavit"] is True


def test_naive_gateway_times_are_read_as_utc() -> None:
    """A status time without an offset is taken as UTC, so every datetime handed up is aware."""
    with _answering(200, {**STATUS, "statusAt": "2026-12-01T09:00:00"}) as provider:
        assert provider.status("ECF-1").at == datetime(2026, 12, 1, 9, tzinfo=UTC)


def test_unreadable_receipt_is_unknown_outcome() -> None:
    """A 202 whose body cannot be read leaves the outcome unknown, after one resend with the same key."""
    with _answering(202, {"unexpected": True}) as provider, pytest.raises(UnknownOutcome, match="unreadable"):
        provider.submit(make_envelope("k-1"))


def _callback(
    events: list[dict], *, secret: str = SECRET, at: int | None = None
) -> tuple[dict[str, str], bytes]:
    body = json.dumps({"events": events}).encode()
    return {"X-Arrears-Signature": signature_header(secret, at or int(time.time()), body)}, body


def test_callback_events_come_back_oldest_first() -> None:
    """Events of one callback are returned oldest first, whatever their order in the body."""
    later = {**STATUS, "reviewStatus": "accepted", "statusAt": "2026-12-01T10:00:00+00:00"}
    earlier = {
        **STATUS,
        "reviewStatus": "pending",
        "statusAt": "2026-12-01T09:30:00+00:00",
        "caseNumber": None,
    }
    headers, body = _callback([later, earlier])
    with _answering(200, {}) as provider:
        statuses = provider.parse_callback(headers, body)
    assert [s.status for s in statuses] == ["under_review", "accepted"]
    assert statuses[1].vendor_status == "accepted" and statuses[1].case_number == "2026-CV-000001"


def test_callback_signed_with_a_rotated_secret_passes() -> None:
    """During a secret rotation the gateway sends two v1 signatures; the one made with our secret suffices."""
    headers, body = _callback([STATUS], secret="old-secret")
    t, old = headers["X-Arrears-Signature"].split(",")
    new = signature_header(SECRET, int(t[2:]), body).split(",")[1]
    with _answering(200, {}) as provider:
        assert (
            provider.parse_callback({"x-arrears-signature": f"{t},{old},{new}"}, body)[0].status == "accepted"
        )


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"no_events": []}', b'{"events": ["ECF-1"]}', b'{"events": "x"}', b"[]"],
)
def test_malformed_signed_callback_is_refused(body: bytes) -> None:
    """A correctly signed body that is not a list of filing events raises InvalidCallback."""
    headers = {"X-Arrears-Signature": signature_header(SECRET, int(time.time()), body)}
    with _answering(200, {}) as provider, pytest.raises(InvalidCallback, match="not a list of filing events"):
        provider.parse_callback(headers, body)


def test_an_event_without_its_facts_is_kept_in_its_place() -> None:
    """A signed list of events with one that lacks its review status or instant gives that one back
    as unreadable, naming what it lacks, and reads the others."""
    body = json.dumps({"events": [{"filingId": "ECF-1"}, STATUS]}).encode()
    headers = {"X-Arrears-Signature": signature_header(SECRET, int(time.time()), body)}
    with _answering(200, {}) as provider:
        status, unreadable = provider.parse_callback(headers, body)
    assert isinstance(status, FilingStatus) and status.status == "accepted"
    assert isinstance(unreadable, UnreadableItem) and unreadable.reason == "missing 'reviewStatus'"
    assert json.loads(unreadable.item) == {"filingId": "ECF-1"}


def test_callback_clock_is_the_providers() -> None:
    """The five-minute window is measured on the provider's clock, so a callback replayed later is refused."""
    headers, body = _callback([STATUS], at=int(datetime(2026, 12, 1, 9, tzinfo=UTC).timestamp()))
    settings = EcfSettings(base_url="https://ecf.example", filer_id="F", api_key="k", callback_secret=SECRET)
    on_time = EcfCourtProvider(settings, clock=lambda: datetime(2026, 12, 1, 9, 4, tzinfo=UTC))
    late = EcfCourtProvider(settings, clock=lambda: datetime(2026, 12, 1, 9, 6, tzinfo=UTC))
    with on_time, late:
        assert on_time.parse_callback(headers, body)[0].filing_id == "ECF-1"
        with pytest.raises(InvalidCallback, match="older than 5 minutes"):
            late.parse_callback(headers, body)


def test_settings_errors_name_fields_not_values() -> None:
    """Missing or invalid settings raise ConfigError naming the fields, never echoing a value given."""
    with pytest.raises(ConfigError) as caught:
        EcfCourtProvider.from_config("https://ecf.example", {"api_key": "key-5d1e", "timeout_seconds": "-1"})
    text = str(caught.value)
    assert "filer_id" in text and "callback_secret" in text and "timeout_seconds" in text
    assert "key-5d1e" not in text


def test_secret_fields_are_declared() -> None:
    """The client's metadata flags its two secrets, so tools know what never to print."""
    assert EcfCourtProvider.info.secret_fields() == ["api_key", "callback_secret"]
    assert EcfCourtProvider.info.entry_point == "court.ecf" and EcfCourtProvider.info.deduplicates
