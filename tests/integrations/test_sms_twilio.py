"""The Twilio-shaped client: its error mapping (MockTransport) and its behaviour against the sandbox."""

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import urlencode

import httpx
import pytest

from integrations.errors import (
    ConfigError,
    Duplicate,
    InvalidAddress,
    InvalidCallback,
    OptedOut,
    Permanent,
    ProviderError,
    Transient,
    UnknownOutcome,
)
from integrations.sandbox import SandboxHandle
from integrations.sms import SmsProvider, SmsRequest, SmsResult
from integrations.sms._signing import twilio_signature
from integrations.sms.contract import make_requests
from integrations.sms.twilio import TwilioSettings, TwilioSmsProvider
from tests.integrations.conftest import _build

TO = "+14155550100"


def _request(key: str = "k-1", to: str = TO, body: str = "Your payment is past due.") -> SmsRequest:
    return SmsRequest(idempotency_key=key, to=to, template="REMINDER", params={}, body=body)


def _mocked(status: int, payload: dict, headers: dict | None = None) -> TwilioSmsProvider:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=payload, headers=headers)

    settings = TwilioSettings(
        base_url="https://api.example",
        account_sid="AC1",
        auth_token="tok-secret",
        from_number="+15005550006",
        reconcile_unknown=False,
        retry_attempts=1,
    )
    return TwilioSmsProvider(settings, transport=httpx.MockTransport(answer))


@pytest.mark.parametrize(
    ("status", "code", "headers", "expected"),
    [
        (400, 21211, None, InvalidAddress),
        (400, 21614, None, InvalidAddress),
        (400, 21610, None, OptedOut),
        (400, 21602, None, Permanent),
        (429, 20429, {"Retry-After": "7"}, Transient),
        (503, 20503, {"Retry-After": "3"}, Transient),
        (500, 20500, None, UnknownOutcome),
        (502, 0, None, UnknownOutcome),
        (401, 20003, None, ConfigError),
        (404, 20404, None, ConfigError),
        (409, 20409, None, Duplicate),
    ],
)
def test_error_mapping(status: int, code: int, headers: dict | None, expected: type) -> None:
    """Each Twilio answer becomes the error class of our tree that the dispatch task acts on."""
    payload = {"code": code, "message": f"The 'To' number {TO} is not valid.", "status": status}
    with _mocked(status, payload, headers) as provider, pytest.raises(ProviderError) as caught:
        provider.send(_request())
    assert type(caught.value) is expected
    assert caught.value.idempotency_key == "k-1"
    assert TO not in str(caught.value)  # numbers are masked in error text
    if headers:
        assert caught.value.retry_after == float(headers["Retry-After"])


def test_invalid_address_flag_only_for_contact_point_errors() -> None:
    """21211 marks the contact point invalid; 21610 (opted out) and 21602 (no body) do not."""
    flags = {}
    for code in (21211, 21610, 21602):
        with _mocked(400, {"code": code, "message": "x"}) as provider:
            try:
                provider.send(_request())
            except Permanent as e:
                flags[code] = e.invalid_address
    assert flags == {21211: True, 21610: False, 21602: False}


def test_form_and_idempotency_header_on_the_wire() -> None:
    """A send is a form-encoded POST with Basic auth and our key in Idempotency-Key."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            201, json={"sid": "SM1", "status": "queued", "date_created": "Thu, 30 Jul 2015 20:12:31 +0000"}
        )

    settings = TwilioSettings(
        base_url="https://api.example",
        account_sid="AC1",
        auth_token="tok",
        from_number="+15005550006",
        status_callback="https://hooks.example/sms",
    )
    with TwilioSmsProvider(settings, transport=httpx.MockTransport(answer)) as provider:
        result = provider.send(_request())
    (request,) = seen
    assert request.url.path == "/2010-04-01/Accounts/AC1/Messages.json"
    assert request.headers["Idempotency-Key"] == "k-1"
    assert request.headers["Authorization"].startswith("Basic ")
    form = dict(httpx.QueryParams(request.content.decode()))
    assert form == {
        "To": TO,
        "Body": "Your payment is past due.",
        "From": "+15005550006",
        "StatusCallback": "https://hooks.example/sms",
    }
    assert result.provider_id == "SM1" and result.accepted_at.utcoffset() is not None


def test_idempotent_resend_returns_the_same_message(twilio: SmsProvider, sandbox: SandboxHandle) -> None:
    """Sending the same request twice yields the same provider id and one message at the sandbox."""
    first = twilio.send(_request())
    second = twilio.send(_request())
    assert second.provider_id == first.provider_id
    assert len(sandbox.messages()) == 1
    assert sandbox.stats()["counters"]["dedup.twilio"] == 1


def test_key_reused_for_other_content_is_duplicate(twilio: SmsProvider, sandbox: SandboxHandle) -> None:
    """Reusing an idempotency key with a different body is refused as Duplicate, not sent."""
    twilio.send(_request(body="first text"))
    with pytest.raises(Duplicate):
        twilio.send(_request(body="another text"))
    assert len(sandbox.messages()) == 1


def test_same_key_twice_in_one_batch_is_duplicate(twilio: SmsProvider, sandbox: SandboxHandle) -> None:
    """A key repeated within one batch is sent once; the repeat's outcome is Duplicate."""
    outcomes = twilio.send_batch([_request("a"), _request("a"), _request("b", to="+14155550101")])
    assert isinstance(outcomes[0], SmsResult) and isinstance(outcomes[1], Duplicate)
    assert isinstance(outcomes[2], SmsResult)
    assert len(sandbox.messages()) == 2


def test_unknown_outcome_then_status_lookup_finds_it(make_provider, sandbox: SandboxHandle) -> None:
    """A 500 after execution raises UnknownOutcome; status() then finds the one message, so no resend."""
    provider = make_provider("twilio", reconcile_unknown="false")
    sandbox.set_faults(http_500=1)
    request = _request()
    with pytest.raises(UnknownOutcome):
        provider.send(request)
    found = provider.status(request)
    (message,) = sandbox.messages()
    assert found is not None and found.provider_id == message["id"]


def test_timeout_is_reconciled_without_resending(twilio: SmsProvider, sandbox: SandboxHandle) -> None:
    """A read timeout after execution is reconciled by lookup: one create, one message, its id returned."""
    sandbox.set_faults(timeouts=1, timeout_ms=1500)
    result = twilio.send(_request())
    (message,) = sandbox.messages()
    assert result.provider_id == message["id"]
    assert sandbox.stats()["counters"]["requests.twilio.create"] == 1


def test_unexecuted_503_burst_is_retried(twilio: SmsProvider, sandbox: SandboxHandle) -> None:
    """503 with Retry-After is retried like a 429, and the message is then sent once."""
    sandbox.set_faults(http_503=2, retry_after=1)
    assert isinstance(twilio.send(_request()), SmsResult)
    assert len(sandbox.messages()) == 1
    assert sandbox.stats()["counters"]["requests.twilio.create"] == 3


def test_landline_and_opted_out_numbers(twilio: SmsProvider, sandbox: SandboxHandle) -> None:
    """Numbers the sandbox calls landline or opted out come back as InvalidAddress and OptedOut."""
    sandbox.set_faults(landline_numbers="0001$", opted_out_numbers="0002$")
    outcomes = twilio.send_batch(make_requests(3, start=1))
    assert isinstance(outcomes[0], InvalidAddress) and outcomes[0].code == "21614"
    assert isinstance(outcomes[1], OptedOut) and outcomes[1].code == "21610"
    assert isinstance(outcomes[2], SmsResult)


def test_status_by_unknown_provider_id_is_none(twilio: SmsProvider) -> None:
    """A provider id the vendor does not know answers None rather than an error."""
    assert twilio.status(_request(), "SM" + "0" * 32) is None


def test_signed_status_callback_is_parsed(twilio: SmsProvider, sandbox: SandboxHandle) -> None:
    """A status callback signed with the auth token becomes a DeliveryReport for the sent message."""
    sandbox.set_faults(undeliverable_numbers="0100$")
    result = twilio.send(_request())
    (form,) = sandbox.admin.get("/_sandbox/reports/twilio").json()
    url = "https://hooks.example/sms/twilio?tenant=1"
    body = urlencode(form).encode()
    signature = twilio_signature(sandbox.credentials["auth_token"], url, form.items())
    (report,) = twilio.parse_callback({"X-Twilio-Signature": signature}, body, url=url)
    assert report.provider_id == result.provider_id
    assert report.status == "undelivered" and report.error_code == "30003"


def test_badly_signed_callback_is_refused(twilio: SmsProvider) -> None:
    """A callback whose signature does not verify raises InvalidCallback."""
    body = urlencode({"MessageSid": "SM1", "MessageStatus": "delivered"}).encode()
    with pytest.raises(InvalidCallback):
        twilio.parse_callback({"X-Twilio-Signature": "forged"}, body, url="https://hooks.example/sms")


def test_callback_without_sid_is_refused(twilio: SmsProvider) -> None:
    """A callback lacking MessageSid raises InvalidCallback rather than yielding an empty report."""
    with pytest.raises(InvalidCallback):
        twilio.parse_callback({}, b"MessageStatus=delivered")


def test_auth_error_text_has_no_secret(make_provider, sandbox: SandboxHandle) -> None:
    """The ConfigError of refused credentials names the problem without echoing the token."""
    provider = make_provider("twilio", bad=True)
    with pytest.raises(ConfigError) as caught:
        provider.send(_request())
    text = json.dumps([str(caught.value), repr(caught.value), repr(provider)])
    assert sandbox.credentials["auth_token"] not in text and "not-the-secret" not in text
    assert caught.value.code == "20003"


def test_unreadable_answer_to_a_create_is_unknown_outcome() -> None:
    """A 201 whose body cannot be read means the message may exist: UnknownOutcome, not a crash."""
    settings = TwilioSettings(
        base_url="https://api.example",
        account_sid="AC1",
        auth_token="tok",
        from_number="+15005550006",
        reconcile_unknown=False,
    )
    transport = httpx.MockTransport(lambda request: httpx.Response(201, content=b"<html>"))
    with TwilioSmsProvider(settings, transport=transport) as provider:
        (outcome,) = provider.send_batch([_request()])
    assert isinstance(outcome, UnknownOutcome) and outcome.idempotency_key == "k-1"


# -- looking up without a provider id: never by text alone (DESIGN §5) -----------------------------


def test_lookup_never_takes_a_message_with_the_same_text_for_a_request_never_sent(
    twilio: SmsProvider, sandbox: SandboxHandle
) -> None:
    """Without a provider id, a request never sent is not found, though a message with the same text
    went to the same number just before under another key (it would be recorded sent, and never go)."""
    first = twilio.send(_request("k-first"))
    assert twilio.status(_request("k-second")) is None
    found = twilio.status(_request("k-first"))
    assert found is not None and found.provider_id == first.provider_id


def test_a_process_that_never_tried_the_send_finds_it_only_among_messages_since_its_decision(
    twilio: SmsProvider, sandbox: SandboxHandle
) -> None:
    """After a crash, another process (a client that remembers nothing) looks up a send whose answer
    was lost: it finds the message made since the row was decided (`SmsRequest.since`), and never
    an identical one sent to the same number before then."""
    from dataclasses import replace

    older = twilio.send(_request("k-yesterday"))
    decided = datetime.now(UTC) + timedelta(minutes=5)  # after `older`, beyond the clock skew allowed
    assert twilio.status(replace(_request("k-today"), since=decided)) is None
    decided = datetime.now(UTC)
    sent = twilio.send(_request("k-today"))
    with _build("twilio", sandbox, timeout_seconds="0.5") as restarted:
        found = restarted.status(replace(_request("k-today"), since=decided))
        assert restarted.status(_request("k-today")) is None  # no instant: nothing can be tied to it
    assert found is not None and found.provider_id == sent.provider_id != older.provider_id


def test_unknown_outcome_never_takes_a_weeks_old_identical_message_for_this_send() -> None:
    """A 500 on the create (not executed), then a lookup that lists an identical text sent to the
    same number 20 days ago: that message is not this send's, so the create goes again."""
    posts: list[httpx.Request] = []
    old = datetime.now(UTC) - timedelta(days=20)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posts.append(request)
            if len(posts) == 1:
                return httpx.Response(500, json={"code": 20500, "message": "Internal Server Error"})
            created = format_datetime(datetime.now(UTC))
            return httpx.Response(201, json={"sid": "SMnew", "status": "queued", "date_created": created})
        listed = {
            "sid": "SMold",
            "to": TO,
            "body": "Your payment is past due.",
            "status": "delivered",
            "direction": "outbound-api",
            "date_created": format_datetime(old),
            "date_sent": format_datetime(old),
        }
        return httpx.Response(200, json={"messages": [listed], "next_page_uri": None})

    settings = TwilioSettings(
        base_url="https://api.example", account_sid="AC1", auth_token="tok", from_number="+15005550006"
    )
    with TwilioSmsProvider(settings, transport=httpx.MockTransport(answer)) as provider:
        result = provider.send(_request())
    assert result.provider_id == "SMnew" and len(posts) == 2


def test_status_callback_with_21610_reports_an_opt_out_not_a_number_that_cannot_take_texts(
    twilio: SmsProvider, sandbox: SandboxHandle
) -> None:
    """providers.md: Twilio "reports opt-outs with error 21610": a signed `failed` callback with it
    says the recipient opted out (with the number), not that the number is dead."""
    url = "https://hooks.example/sms/twilio/status"
    form = {"MessageSid": "SM21610", "MessageStatus": "failed", "ErrorCode": "21610", "To": TO}
    signature = twilio_signature(sandbox.credentials["auth_token"], url, form.items())
    (report,) = twilio.parse_callback({"X-Twilio-Signature": signature}, urlencode(form).encode(), url=url)
    assert report.recipient_opted_out and not report.number_cannot_text
    assert report.recipient == TO and TO not in repr(report)
