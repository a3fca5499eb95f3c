"""The Lob client's wire format, checked one request at a time with httpx.MockTransport."""

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from integrations._hmac import sign
from integrations.errors import (
    ConfigError,
    InvalidAddress,
    InvalidCallback,
    Permanent,
    Transient,
    UnknownOutcome,
)
from integrations.letters.contract import make_request
from integrations.letters.lob import LobLettersProvider, LobSettings, error_from_response

KEY, SECRET = "test_abc123", "whsec-1"
NOW = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
LETTER = {
    "id": "ltr_1",
    "date_created": "2026-03-02T17:00:00.000Z",
    "expected_delivery_date": "2026-03-07",
    "metadata": {"idempotency_key": "l-1"},
    "extra_service": "certified",
    "tracking_number": "9407000",
    "tracking_events": [
        {"id": "evnt_1", "name": "Mailed", "time": "2026-03-03T09:00:00Z"},
        {"id": "evnt_2", "name": "In Local Area", "time": "2026-03-05T09:00:00Z"},
    ],
}


def _provider(handler: Callable[[httpx.Request], httpx.Response]) -> LobLettersProvider:
    settings = LobSettings(api_key=KEY, webhook_secret=SECRET, retry_total_seconds=5)  # type: ignore[arg-type]
    return LobLettersProvider(settings, transport=httpx.MockTransport(handler), clock=lambda: NOW)


def test_send_posts_lobs_multipart_form_with_basic_auth_and_idempotency_key() -> None:
    """send() POSTs multipart to[...]/from[...], the PDF and certified mail, Basic auth and the key."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=LETTER)

    request = make_request("l-1")
    with _provider(handler) as provider:
        letter = provider.send(request)
    [sent] = seen
    assert sent.method == "POST" and sent.url.path == "/v1/letters"
    assert sent.headers["Authorization"] == "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    assert sent.headers["Idempotency-Key"] == "l-1"
    assert sent.headers["Content-Type"].startswith("multipart/form-data")
    body = sent.content
    for field, value in (
        ("to[address_line1]", "1 Main St"),
        ("to[address_zip]", "50010"),
        ("from[name]", "Arrears Auto Finance"),
        ("mail_type", "usps_first_class"),
        ("extra_service", "certified"),
        ("use_type", "operational"),
        ("metadata[idempotency_key]", "l-1"),
    ):
        assert f'name="{field}"\r\n\r\n{value}\r\n'.encode() in body, field
    assert b'name="file"; filename="letter.pdf"' in body and request.pdf in body
    assert letter.status == "in_transit" and letter.mailed_at == datetime(2026, 3, 3, 9, tzinfo=UTC)
    assert letter.mail_type == "usps_first_class_certified" and str(letter.expected_delivery) == "2026-03-07"


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "retry_after"),
    [
        (429, {"error": {"code": "rate_limit_exceeded"}}, {"Retry-After": "7"}, Transient, 7.0),
        (502, {"error": {"code": "bad_gateway"}}, {"Retry-After": "3"}, Transient, 3.0),
        (500, {"error": {"code": "internal_server_error"}}, {}, UnknownOutcome, None),
        (422, {"error": {"code": "failed_deliverability_strictness"}}, {}, InvalidAddress, None),
        (422, {"error": {"code": "invalid_file"}}, {}, Permanent, None),
        (401, {"error": {"code": "unauthorized"}}, {}, ConfigError, None),
        (403, {"error": {"code": "forbidden"}}, {}, ConfigError, None),
    ],
)
def test_errors_map_into_our_tree(
    status: int, body: dict[str, object], headers: dict[str, str], expected: type, retry_after: float | None
) -> None:
    """Lob's answers become Transient, UnknownOutcome, InvalidAddress, Permanent or ConfigError."""
    error = error_from_response(httpx.Response(status, json=body, headers=headers), idempotency_key="l-1")
    assert type(error) is expected and error.idempotency_key == "l-1"
    if retry_after is not None:
        assert isinstance(error, Transient) and error.retry_after == retry_after


def test_a_bad_address_is_not_a_bad_request() -> None:
    """A 422 about the address marks the address invalid; a 422 about the file does not."""
    address = error_from_response(
        httpx.Response(422, json={"error": {"code": "failed_deliverability_strictness"}})
    )
    other = error_from_response(httpx.Response(422, json={"error": {"code": "invalid_file"}}))
    assert isinstance(address, Permanent) and address.invalid_address
    assert isinstance(other, Permanent) and not other.invalid_address


def _webhook(event_type: str = "letter.delivered", *, at: datetime = NOW) -> tuple[dict[str, str], bytes]:
    body = json.dumps(
        {
            "id": "evt_9",
            "reference_id": "ltr_1",
            "event_type": {"id": event_type, "resource": "letters"},
            "date_created": "2026-03-06T10:00:00Z",
            "body": LETTER,
        }
    ).encode()
    t = str(int(at.timestamp()))
    return {"Lob-Signature": sign(SECRET, t, body), "Lob-Signature-Timestamp": t}, body


def test_signed_webhook_parses_into_a_tracking_event() -> None:
    """A webhook signed over timestamp.body with the secret parses into one tracking event."""
    headers, body = _webhook()
    with _provider(lambda r: httpx.Response(500)) as provider:
        [event] = provider.parse_callback(headers, body)
    assert (event.letter_id, event.kind, event.event_id) == ("ltr_1", "delivered", "evt_9")
    assert event.at == datetime(2026, 3, 6, 10, tzinfo=UTC)


def test_tampered_webhook_body_is_refused() -> None:
    """A body changed after signing fails verification."""
    headers, body = _webhook()
    with _provider(lambda r: httpx.Response(500)) as provider, pytest.raises(InvalidCallback) as caught:
        provider.parse_callback(headers, body.replace(b"ltr_1", b"ltr_2"))
    assert caught.value.code == "signature.mismatch"


def test_stale_webhook_timestamp_is_refused() -> None:
    """A correctly signed webhook whose timestamp is six minutes old is refused as stale."""
    headers, body = _webhook(at=NOW - timedelta(minutes=6))
    with _provider(lambda r: httpx.Response(500)) as provider, pytest.raises(InvalidCallback) as caught:
        provider.parse_callback(headers, body)
    assert caught.value.code == "signature.stale"


@pytest.mark.parametrize("stamp", ["nan", "NaN", "inf", "-inf"])
def test_a_webhook_timestamp_that_is_no_instant_is_refused(stamp: str) -> None:
    """`float` reads "nan" and "inf": a NaN timestamp compared false with both bounds of the
    five minutes, and passed as fresh. Signed or not, it is refused as malformed."""
    _, body = _webhook()
    headers = {"Lob-Signature": sign(SECRET, stamp, body), "Lob-Signature-Timestamp": stamp}
    with _provider(lambda r: httpx.Response(500)) as provider, pytest.raises(InvalidCallback) as caught:
        provider.parse_callback(headers, body)
    assert caught.value.code == "signature.malformed"


def test_millisecond_timestamps_are_read_as_such() -> None:
    """A timestamp in milliseconds is understood, so a fresh one is not refused as in the future."""
    event = {"reference_id": "ltr_1", "event_type": {"id": "letter.mailed"}, "date_created": NOW.isoformat()}
    body = json.dumps(event).encode()
    t = str(int(NOW.timestamp() * 1000))
    headers = {"lob-signature": sign(SECRET, t, body), "lob-signature-timestamp": t}
    with _provider(lambda r: httpx.Response(500)) as provider:
        assert [e.kind for e in provider.parse_callback(headers, body)] == ["mailed"]


def test_non_tracking_events_parse_to_nothing() -> None:
    """letter.rendered_pdf is a genuine Lob event but no step through the post: no tracking events."""
    headers, body = _webhook("letter.rendered_pdf")
    with _provider(lambda r: httpx.Response(500)) as provider:
        assert provider.parse_callback(headers, body) == []


def test_status_reads_through_a_5xx() -> None:
    """GET /v1/letters/{id} is repeated after a 500: a read is safe to repeat."""
    answers = iter([httpx.Response(500, json={"error": {"code": "x"}}), httpx.Response(200, json=LETTER)])
    with _provider(lambda r: next(answers)) as provider:
        assert provider.status("ltr_1").status == "in_transit"
