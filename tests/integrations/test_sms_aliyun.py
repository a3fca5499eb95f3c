"""The Aliyun-shaped client: code mapping, signed wire format, batching, reconciliation, reports."""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import parse_qsl, quote

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from integrations.callbacks import UnreadableItem
from integrations.errors import (
    ConfigError,
    Duplicate,
    InvalidAddress,
    InvalidCallback,
    Permanent,
    RecipientThrottled,
    Transient,
    UnknownOutcome,
)
from integrations.sandbox import SandboxHandle
from integrations.sms import SmsProvider, SmsRequest, SmsResult
from integrations.sms._phones import phone_tag
from integrations.sms._signing import (
    aliyun_percent_encode,
    aliyun_signature,
    aliyun_signed_form,
    aliyun_string_to_sign,
)
from integrations.sms.aliyun import AliyunSettings, AliyunSmsProvider, _out_id_for, error_from_code
from integrations.sms.contract import make_requests
from integrations.sms.protocol import DeliveryReport, InboundMessage
from integrations.sms.sandbox_server import form_pairs


@pytest.mark.parametrize(
    ("code", "http_status", "expected"),
    [
        ("isv.MOBILE_NUMBER_ILLEGAL", 200, InvalidAddress),
        ("isv.BUSINESS_LIMIT_CONTROL", 200, RecipientThrottled),
        ("Throttling.User", 429, Transient),
        ("ServiceUnavailable", 503, Transient),
        ("InternalError", 500, UnknownOutcome),
        ("", 502, UnknownOutcome),
        ("SignatureDoesNotMatch", 400, ConfigError),
        ("InvalidAccessKeyId.NotFound", 404, ConfigError),
        ("isv.SMS_SIGNATURE_ILLEGAL", 200, ConfigError),
        ("isv.AMOUNT_NOT_ENOUGH", 200, ConfigError),
        ("isv.SMS_TEMPLATE_ILLEGAL", 200, Permanent),
    ],
)
def test_code_mapping(code: str, http_status: int, expected: type) -> None:
    """Each vendor Code (or bare HTTP status) becomes the error class the dispatch task acts on."""
    assert type(error_from_code(code, "message", http_status)) is expected


def test_flow_control_hands_back_a_delay() -> None:
    """Per-number flow control is Transient with a delay long enough for the vendor's minute window."""
    error = error_from_code("isv.BUSINESS_LIMIT_CONTROL", "limited", 200)
    assert isinstance(error, Transient) and error.retry_after == 60.0


def test_flow_control_is_about_the_number_and_throttling_about_the_account() -> None:
    """Flow control (per number, signature and template) is `RecipientThrottled`: the vendor is up
    and held back one recipient; its throttling of our account or API calls is a plain `Transient`,
    which dispatch may read as the provider being unavailable."""
    assert isinstance(error_from_code("isv.BUSINESS_LIMIT_CONTROL", "limited", 200), RecipientThrottled)
    for code, status in (("Throttling.User", 429), ("Throttling.Api", 200), ("ServiceUnavailable", 503)):
        assert type(error_from_code(code, "slow down", status)) is Transient


def _answering(
    status: int, body: dict[str, str], headers: dict[str, str], calls: list[str]
) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(dict(parse_qsl(request.content.decode())).get("Action", ""))
        return httpx.Response(status, json=body, headers=headers)

    return httpx.MockTransport(handler)


def _settings() -> AliyunSettings:
    return AliyunSettings(
        base_url="https://dysms.example",
        access_key_id="LTAI1",
        access_key_secret="s3cret",
        sign_name="Lender",
    )


def test_retry_after_given_as_an_http_date_is_honoured() -> None:
    """A 429 whose Retry-After is an HTTP date two minutes ahead (RFC 9110 allows either form) is
    read as the shared `integrations._http.retry_after` reads it: not retried at once (the wait is
    beyond the client's time budget), and handed back with the hint for dispatch to wait by."""
    calls: list[str] = []
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    transport = _answering(
        429, {"Code": "Throttling.User", "Message": "slow down"}, {"Retry-After": when}, calls
    )
    with AliyunSmsProvider(_settings(), transport=transport) as provider:
        [outcome] = provider.send_batch([SmsRequest("k-1", "+8613912345678", "T", {}, "x")])
    assert isinstance(outcome, Transient)
    assert outcome.retry_after is not None and 100 < outcome.retry_after <= 120, outcome.retry_after
    assert calls == ["SendSms"]


def test_a_batch_whose_outcome_is_unknown_and_not_found_yet_is_not_sent_again_at_once() -> None:
    """providers.md: Aliyun does not deduplicate; "after a timeout, reconcile by delivery reports
    (OutId) before resending". A lookup right after a 500 that finds nothing (the vendor's records
    lag the send) is no proof the batch was not sent: it stays unknown, for the outbox's next try
    to look up again, and is never resent in the same breath (a borrower texted twice)."""
    sends: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        action = dict(parse_qsl(request.content.decode())).get("Action", "")
        if action == "QuerySendDetails":  # nothing found under our OutId: the lookup lags
            return httpx.Response(200, json={"Code": "OK", "SmsSendDetailDTOs": {"SmsSendDetailDTO": []}})
        sends.append(action)
        return httpx.Response(500, json={"Code": "InternalError", "Message": "try later"})

    settings = _settings().model_copy(update={"lookback_days": 1})
    with AliyunSmsProvider(settings, transport=httpx.MockTransport(answer)) as provider:
        outcomes = provider.send_batch(make_requests(2))
    assert sends == ["SendBatchSms"]
    assert all(isinstance(o, UnknownOutcome) for o in outcomes)
    assert all(
        "looked up again before any resend" in o.reason for o in outcomes if isinstance(o, UnknownOutcome)
    )


@pytest.mark.parametrize("header", ["1000000000000", "inf", "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_a_retry_after_of_years_is_taken_as_an_hour(header: str) -> None:
    """An absurd Retry-After (10^12 seconds, `inf`, a date in 9999) is read as an hour, as every
    client reads it, and is handed back without a wait."""
    calls: list[str] = []
    transport = _answering(
        503, {"Code": "ServiceUnavailable", "Message": "later"}, {"Retry-After": header}, calls
    )
    with AliyunSmsProvider(_settings(), transport=transport) as provider:
        [outcome] = provider.send_batch([SmsRequest("k-1", "+8613912345678", "T", {}, "x")])
    assert isinstance(outcome, Transient) and outcome.retry_after == 3600.0
    assert calls == ["SendSms"]


@given(
    st.one_of(
        st.text(),
        st.lists(st.sampled_from(['"', ",", ":", " ", "%", "%25", "{", "}", "中", "¥", "*", "~", "a"])).map(
            "".join
        ),
    )
)
@example(json.dumps([{"name": "Li Wei", "amount": "$1,000.00", "ref": "100%"}] * 3))  # ASCII: by replace
@example(json.dumps([{"name": "李伟", "amount": "¥1,000.00"}] * 3, ensure_ascii=False))
@example("".join(map(chr, range(32, 127))))  # more distinct bytes to escape than are replaced one by one
def test_percent_encoding_is_quote_keeping_only_the_unreserved(value: str) -> None:
    """RFC 3986 as the vendor signs: exactly `quote(value, safe="-_.~")`, `%` itself escaped once."""
    assert aliyun_percent_encode(value) == quote(value, safe="-_.~")


@given(st.dictionaries(st.text(min_size=1), st.text()), st.sampled_from(["GET", "post"]))
def test_string_to_sign_encodes_the_canonical_query_again(params: dict[str, str], method: str) -> None:
    """Aliyun's definition, on any names and values (JSON, Chinese, `%`, `=`, `&`, `+`, `*`, `~`):
    `METHOD&%2F&` + the encoded canonical query, itself the sorted encoded pairs."""
    canonical = "&".join(
        f"{aliyun_percent_encode(k)}={aliyun_percent_encode(v)}"
        for k, v in sorted(params.items())
        if k != "Signature"
    )
    expected = f"{method.upper()}&%2F&{aliyun_percent_encode(canonical)}"
    assert aliyun_string_to_sign(method, params.items()) == expected


_FORM_PIECES = st.sampled_from(
    ["%", "%4", "%4G", "%41", "%e4%b8%ad", "%E4%B8", "%5C", "\\", "\\x41", "+", "=", "&", "中"]
)


@given(
    st.one_of(
        st.dictionaries(st.text(min_size=1), st.text()).map(
            lambda params: aliyun_signed_form("s", "POST", params.items())
        ),
        st.lists(st.one_of(_FORM_PIECES, st.text(max_size=4))).map("".join),
    )
)
def test_the_sandbox_reads_a_form_as_parse_qsl_does(body: str) -> None:
    """The sandbox's form reader gives what `parse_qsl(body, keep_blank_values=True)` gives, on
    signed forms and on any text: stray and short escapes, lower-case hex, backslashes, invalid
    UTF-8, `+`, raw non-ASCII characters, empty and `=`-less fields."""
    assert form_pairs(body) == parse_qsl(body, keep_blank_values=True)


@given(st.dictionaries(st.text(min_size=1), st.text()), st.sampled_from(["GET", "post"]))
def test_signed_form_is_the_parameters_and_their_signature(params: dict[str, str], method: str) -> None:
    """The body the client posts, its values encoded once for the signature and the form alike,
    reads back (as any form decoder reads it) as the parameters and their signature."""
    params = {k: v for k, v in params.items() if k != "Signature"}
    form = aliyun_signed_form("s3cret", method, params.items())
    read = parse_qsl(form, keep_blank_values=True, strict_parsing=True)
    assert dict(read) == {**params, "Signature": aliyun_signature("s3cret", method, params.items())}
    assert len(read) == len(params) + 1


def test_batch_request_is_signed_and_shaped() -> None:
    """A batch is one SendBatchSms POST whose JSON arrays line up and whose signature verifies."""
    seen: list[dict[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(dict(parse_qsl(request.content.decode(), keep_blank_values=True)))
        return httpx.Response(200, json={"Code": "OK", "Message": "OK", "BizId": "1^0"})

    settings = AliyunSettings(
        base_url="https://dysms.example",
        access_key_id="LTAI1",
        access_key_secret="s3cret",
        sign_name="Lender",
    )
    with AliyunSmsProvider(settings, transport=httpx.MockTransport(answer)) as provider:
        outcomes = provider.send_batch(make_requests(3))
    (params,) = seen
    assert params["Action"] == "SendBatchSms" and params["TemplateCode"] == "SMS_REMINDER"
    assert json.loads(params["PhoneNumberJson"]) == ["13800000000", "13800000001", "13800000002"]
    assert json.loads(params["SignNameJson"]) == ["Lender"] * 3
    assert json.loads(params["TemplateParamJson"])[2] == {"name": "Borrower 2", "amount": "102.00"}
    assert params["Signature"] == aliyun_signature("s3cret", "POST", params.items())
    assert all(isinstance(o, SmsResult) for o in outcomes)
    assert len({o.provider_id for o in outcomes}) == 3


def test_large_batch_is_cut_into_requests_of_100(aliyun: SmsProvider, sandbox: SandboxHandle) -> None:
    """250 messages go out in three SendBatchSms requests, each message once, results in order."""
    requests = make_requests(250)
    outcomes = aliyun.send_batch(requests)
    assert [o.idempotency_key for o in outcomes] == [r.idempotency_key for r in requests]
    assert sandbox.stats()["counters"]["requests.aliyun.SendBatchSms"] == 3
    assert len(sandbox.messages()) == 250


def test_templates_and_repeated_numbers(aliyun: SmsProvider, sandbox: SandboxHandle) -> None:
    """Two templates and a number repeated in one batch still give every message its own provider id."""
    a, b, c = (
        SmsRequest(f"k{i}", "+8613900000001", t, {"n": str(i)}, f"text {i}")
        for i, t in enumerate(["T1", "T1", "T2"])
    )
    outcomes = aliyun.send_batch([a, b, c])
    assert all(isinstance(o, SmsResult) for o in outcomes)
    assert len({o.provider_id for o in outcomes}) == 3
    assert len(sandbox.messages()) == 3


def test_one_illegal_number_does_not_sink_its_batch(aliyun: SmsProvider, sandbox: SandboxHandle) -> None:
    """The vendor refuses a batch for one illegal number; the client isolates it, sends the rest once."""
    sandbox.set_faults(invalid_numbers="00000037$")
    outcomes = aliyun.send_batch(make_requests(100))
    assert isinstance(outcomes[37], InvalidAddress) and outcomes[37].idempotency_key == "c-37"
    assert sum(isinstance(o, SmsResult) for o in outcomes) == 99
    tos = [m["to"] for m in sandbox.messages()]
    assert len(tos) == len(set(tos)) == 99


def test_flow_controlled_number_is_handed_back(aliyun: SmsProvider, sandbox: SandboxHandle) -> None:
    """A flow-controlled number comes back Transient with a delay; the others in its batch are sent."""
    sandbox.set_faults(limited_numbers="00000003$")
    outcomes = aliyun.send_batch(make_requests(8))
    assert isinstance(outcomes[3], RecipientThrottled) and outcomes[3].retry_after == 60.0
    assert len(sandbox.messages()) == 7


def test_not_e164_is_refused_locally(aliyun: SmsProvider, sandbox: SandboxHandle) -> None:
    """A number not in E.164 form is an InvalidAddress outcome without any request for it."""
    outcome = aliyun.send_batch([SmsRequest("k", "13800000000", "T", {}, "x")])[0]
    assert isinstance(outcome, InvalidAddress)
    assert sandbox.stats()["counters"].get("requests.aliyun.SendSms") is None


def test_duplicate_key_in_batch(aliyun: SmsProvider, sandbox: SandboxHandle) -> None:
    """A key repeated within a batch is Duplicate: the vendor would send it twice."""
    first, second = make_requests(2)
    again = SmsRequest(first.idempotency_key, second.to, second.template, second.params, second.body)
    outcomes = aliyun.send_batch([first, again])
    assert isinstance(outcomes[0], SmsResult) and isinstance(outcomes[1], Duplicate)
    assert len(sandbox.messages()) == 1


def test_timeout_of_a_batch_is_reconciled(aliyun: SmsProvider, sandbox: SandboxHandle) -> None:
    """A batch that timed out after execution is found by OutId and not sent again."""
    sandbox.set_faults(timeouts=1, timeout_ms=1500)
    outcomes = aliyun.send_batch(make_requests(20))
    assert all(isinstance(o, SmsResult) for o in outcomes)
    assert len(sandbox.messages()) == 20
    assert sandbox.stats()["counters"]["requests.aliyun.SendBatchSms"] == 1


def test_unknown_outcome_without_reconciliation(make_provider, sandbox: SandboxHandle) -> None:
    """With reconciliation off, a 500 after execution is handed back as UnknownOutcome per message."""
    provider = make_provider("aliyun", reconcile_unknown="false")
    sandbox.set_faults(http_500=1)
    # Dispatch gives every request our own reference (`ref`, derived from its key): a batch shares
    # one vendor id, so the reference is what finds each message again after a lost answer.
    requests = [
        replace(r, params={**r.params, "ref": f"ref{i:020d}"}) for i, r in enumerate(make_requests(5))
    ]
    outcomes = provider.send_batch(requests)
    assert all(isinstance(o, UnknownOutcome) for o in outcomes)
    assert [o.idempotency_key for o in outcomes] == [r.idempotency_key for r in requests]
    found = [provider.status(r) for r in requests]  # the restart path: search by our reference
    assert all(f is not None and f.status == "delivered" for f in found)
    assert len(sandbox.messages()) == 5


def test_status_of_single_send_by_its_key(aliyun: SmsProvider, sandbox: SandboxHandle) -> None:
    """A single send's OutId derives from our key, so a search after a crash finds it exactly."""
    request = make_requests(1)[0]
    result = aliyun.send(request)
    found = aliyun.status(SmsRequest(request.idempotency_key, request.to, "OTHER", {}, ""))
    assert found is not None and found.provider_id == result.provider_id


def _hook(sandbox: SandboxHandle, event: str = "status") -> str:
    """The callback URL given to Aliyun: its token is what authenticates the pushes."""
    return f"https://hooks.example/sms/aliyun/{event}?token={sandbox.credentials['callback_token']}"


def test_delivery_reports_match_results(aliyun: SmsProvider, sandbox: SandboxHandle) -> None:
    """The sandbox's SmsReport array parses into reports whose provider ids are those of the results."""
    sandbox.set_faults(undeliverable_numbers="00000001$")
    outcomes = aliyun.send_batch(make_requests(3))
    body = sandbox.admin.get("/_sandbox/reports/aliyun").content
    headers = {"Content-Type": "application/json"}
    reports = {r.provider_id: r for r in aliyun.parse_callback(headers, body, url=_hook(sandbox))}
    assert set(reports) == {o.provider_id for o in outcomes}
    assert reports[outcomes[1].provider_id].status == "undelivered"
    assert reports[outcomes[0].provider_id].status == "delivered"
    assert all(r.at.utcoffset() is not None for r in reports.values())


@pytest.mark.parametrize("body", [b"not json", b'"a"', b"[1, 2]", b'[{"success": true}, 3]'])
def test_malformed_reports_are_refused(aliyun: SmsProvider, sandbox: SandboxHandle, body: bytes) -> None:
    """A callback that is not an array of objects raises InvalidCallback."""
    with pytest.raises(InvalidCallback):
        aliyun.parse_callback({}, body, url=_hook(sandbox))


@pytest.mark.parametrize("event", ["status", "inbound"])
def test_an_unreadable_item_comes_back_in_its_place_and_the_rest_is_read(
    aliyun: SmsProvider, sandbox: SandboxHandle, event: str
) -> None:
    """An array with an item that cannot be read (no out_id; no phone_number) is read all the same:
    that item comes back as an UnreadableItem with the reason and the item as it came, the
    others as they are, in order."""
    good = (
        {"phone_number": "13912345678", "success": True, "out_id": "k1", "report_time": "2026-12-01 09:00:05"}
        if event == "status"
        else {"phone_number": "13912345678", "content": "退订", "send_time": "2026-12-01 09:00:00"}
    )
    bad = {"success": True, "phone_number": "13912345678"} if event == "status" else {"content": "退订"}
    body = json.dumps([good, bad, good | {"phone_number": "13900000000"}], ensure_ascii=False).encode()
    first, unreadable, last = aliyun.parse_callback({}, body, url=_hook(sandbox), event=event)
    read = DeliveryReport if event == "status" else InboundMessage
    assert isinstance(first, read) and isinstance(last, read)
    assert isinstance(unreadable, UnreadableItem)
    assert "lacks" in unreadable.reason and json.loads(unreadable.item) == bad
    assert "13912345678" not in repr(unreadable)


def test_a_report_of_another_systems_message_is_told_apart_by_its_out_id(
    aliyun: SmsProvider, sandbox: SandboxHandle
) -> None:
    """Aliyun pushes every report of the account: one under an OutId we send (k or b and 31 hex
    digits) is ours, one under another system's OutId or none is `foreign`."""
    sent = aliyun.send_batch(make_requests(2))
    ours = [r.provider_id.split(":")[0] for r in sent if isinstance(r, SmsResult)]
    item = {"phone_number": "13912345678", "success": True, "report_time": "2026-12-01 09:00:05"}
    others = ["otp-77", "", "k" + "0" * 30, "b" + "0" * 32, "K" + "0" * 31]
    body = json.dumps([item | {"out_id": o} for o in [*ours, _out_id_for("key-1"), *others]]).encode()
    reports = aliyun.parse_callback({}, body, url=_hook(sandbox), event="status")
    assert [r.foreign for r in reports if isinstance(r, DeliveryReport)] == [False] * (len(ours) + 1) + [
        True
    ] * len(others)


def test_wrong_access_key_id(make_provider, sandbox: SandboxHandle) -> None:
    """An AccessKey ID the vendor does not know is a ConfigError, and nothing is sent."""
    provider = make_provider("aliyun", access_key_id="LTAIunknown")
    with pytest.raises(ConfigError) as caught:
        provider.send(make_requests(1)[0])
    assert caught.value.code == "InvalidAccessKeyId.NotFound"
    assert sandbox.messages() == []


def test_unapproved_sign_name(make_provider, sandbox: SandboxHandle) -> None:
    """A signature (SignName) the vendor has not approved stops the batch as a ConfigError."""
    provider = make_provider("aliyun", sign_name="Unapproved")
    with pytest.raises(ConfigError):
        provider.send_batch(make_requests(3))


def test_international_numbers_keep_their_country(aliyun: SmsProvider, sandbox: SandboxHandle) -> None:
    """A +1 number whose digits look like a mainland mobile reaches the vendor as itself, not as +86."""
    requests = [
        SmsRequest(f"k{i}", to, "T", {"n": "1"}, "x")
        for i, to in enumerate(["+13125550100", "+8613125550100", "+447700900123"])
    ]
    outcomes = aliyun.send_batch(requests)
    assert sorted(m["to"] for m in sandbox.messages()) == sorted(r.to for r in requests)
    body = sandbox.admin.get("/_sandbox/reports/aliyun").content
    reported = {r.provider_id for r in aliyun.parse_callback({}, body, url=_hook(sandbox))}
    assert reported == {o.provider_id for o in outcomes}
    assert len(reported) == 3


@pytest.mark.parametrize("form", ["+8613900001111", "8613900001111", "13900001111", "008613900001111"])
def test_phone_tag_ignores_the_prefix_form(form: str) -> None:
    """Every form of one mainland number gets the same tag, so reports match whatever form they carry."""
    assert phone_tag(form) == phone_tag("+8613900001111")
