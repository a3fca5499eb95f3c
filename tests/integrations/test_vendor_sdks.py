"""The vendors' own SDKs against our sandbox and our clients: the official `twilio` SDK (9.x) and
Alibaba Cloud's `alibabacloud_dysmsapi20170525` (4.x), as an integrator would point them at it."""

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from alibabacloud_dysmsapi20170525 import models as ali
from alibabacloud_dysmsapi20170525.client import Client as AliyunClient
from alibabacloud_tea_openapi.models import Config
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client as TwilioClient

from integrations.errors import ConfigError, InvalidCallback, UnverifiedCallback
from integrations.sandbox import SandboxHandle
from integrations.sms import DeliveryReport, InboundMessage, SmsProvider, SmsRequest

CN = "13912345678"
US = "+12133734253"


def _aliyun_sdk(sandbox: SandboxHandle, *, secret: str | None = None, algorithm: str | None = None) -> Any:
    host = sandbox.base_url.removeprefix("http://")
    config = Config(
        access_key_id=sandbox.credentials["access_key_id"],
        access_key_secret=secret or sandbox.credentials["access_key_secret"],
        endpoint=host,
        protocol="http",
    )
    if algorithm:
        config.signature_algorithm = algorithm
    return AliyunClient(config)


@pytest.fixture
def twilio_sdk(sandbox: SandboxHandle) -> Iterator[TwilioClient]:
    """The twilio SDK, authenticated with the sandbox's API key (SK…), aimed at the sandbox."""
    c = sandbox.credentials
    client = TwilioClient(c["twilio_api_key_sid"], c["twilio_api_key_secret"], c["account_sid"])
    client.api.base_url = sandbox.base_url
    yield client


# -- Aliyun -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [None, "v2"], ids=["v3-default", "rpc-v2"])
def test_aliyun_sdk_sends_batches_and_queries_through_the_sandbox(
    sandbox: SandboxHandle, algorithm: str | None
) -> None:
    """The official SDK, with its default V3 signature or the RPC one, sends, batch-sends and queries."""
    sdk = _aliyun_sdk(sandbox, algorithm=algorithm)
    sent = sdk.send_sms(
        ali.SendSmsRequest(
            phone_numbers=CN,
            sign_name="arrears",
            template_code="SMS_1",
            template_param=json.dumps({"name": "王芳"}, ensure_ascii=False),
            out_id="ours-1",
        )
    )
    assert sent.body.code == "OK" and sent.body.biz_id
    batch = sdk.send_batch_sms(
        ali.SendBatchSmsRequest(
            phone_number_json=json.dumps([CN, "13912345679"]),
            sign_name_json=json.dumps(["arrears", "arrears"]),
            template_code="SMS_1",
            template_param_json=json.dumps([{"n": "1"}, {"n": "2"}]),
        )
    )
    assert batch.body.code == "OK"
    day = datetime.now(timezone(timedelta(hours=8))).strftime("%Y%m%d")
    found = sdk.query_send_details(
        ali.QuerySendDetailsRequest(phone_number=CN, send_date=day, page_size=10, current_page=1)
    )
    assert found.body.code == "OK" and int(found.body.total_count) == 2
    assert {d.out_id for d in found.body.sms_send_detail_dtos.sms_send_detail_dto} == {"ours-1", ""}
    assert len(sandbox.messages(route="aliyun")) == 3


def test_aliyun_sdk_gets_the_vendors_error_codes(sandbox: SandboxHandle) -> None:
    """A wrong secret is SignatureDoesNotMatch, an illegal number isv.MOBILE_NUMBER_ILLEGAL, as at Aliyun."""
    with pytest.raises(Exception) as caught:
        _aliyun_sdk(sandbox, secret="not-the-secret").send_sms(
            ali.SendSmsRequest(phone_numbers=CN, sign_name="arrears", template_code="SMS_1")
        )
    assert getattr(caught.value, "code", None) == "SignatureDoesNotMatch"
    sandbox.set_faults(invalid_numbers=r"5678$")
    answer = _aliyun_sdk(sandbox).send_sms(
        ali.SendSmsRequest(phone_numbers=CN, sign_name="arrears", template_code="SMS_1")
    )
    assert answer.body.code == "isv.MOBILE_NUMBER_ILLEGAL"
    assert sandbox.messages() == []


# -- Twilio -------------------------------------------------------------------------------------------


def test_twilio_sdk_with_an_api_key_creates_fetches_and_pages(
    twilio_sdk: TwilioClient, sandbox: SandboxHandle
) -> None:
    """The twilio SDK, with an API key instead of the auth token, creates, fetches and lists messages."""
    created = [
        twilio_sdk.messages.create(to=US, from_=sandbox.credentials["from_number"], body=f"reminder {n}")
        for n in range(3)
    ]
    assert all(m.sid.startswith("SM") and m.status == "queued" for m in created)
    assert twilio_sdk.messages(created[0].sid).fetch().body == "reminder 0"
    assert len(list(twilio_sdk.messages.list(to=US, page_size=2))) == 3


def test_twilio_sdk_sees_21408_and_our_client_stops_on_it(
    twilio_sdk: TwilioClient, make_provider: Any, sandbox: SandboxHandle
) -> None:
    """21408 (region not enabled) reaches the SDK as Twilio sends it; our client stops with ConfigError."""
    sandbox.set_faults(unpermitted_numbers=r"^\+86")
    with pytest.raises(TwilioRestException) as caught:
        twilio_sdk.messages.create(to="+8613912345678", from_=sandbox.credentials["from_number"], body="x")
    assert caught.value.code == 21408
    provider: SmsProvider = make_provider("twilio")
    requests = [SmsRequest(f"k{n}", to, "T", {}, "x") for n, to in enumerate(["+8613912345678", US])]
    with pytest.raises(ConfigError) as stopped:
        provider.send_batch(requests)
    assert stopped.value.code == "21408" and not getattr(stopped.value, "invalid_address", False)


def test_sandbox_callbacks_validate_under_twilios_request_validator(
    make_provider: Any, sandbox: SandboxHandle
) -> None:
    """The sandbox's status callback and incoming message verify under RequestValidator, and parse."""
    provider = make_provider("twilio")
    result = provider.send(SmsRequest("k1", US, "T", {}, "Your payment is past due."))
    validator = RequestValidator(sandbox.credentials["auth_token"])
    for event, extra in (
        ("status", {"message_id": result.provider_id}),
        ("inbound", {"sender": US, "text": "STOP"}),
    ):
        url = f"https://hooks.example/sms/twilio/{event}?tenant=1"
        rendered = sandbox.admin.post(
            "/_sandbox/render", json={"route": "twilio", "event": event, "url": url, **extra}
        ).json()
        form = dict(parse_qsl(rendered["body"], keep_blank_values=True))
        assert validator.validate(url, form, rendered["headers"]["X-Twilio-Signature"])
        (item,) = provider.parse_callback(
            rendered["headers"], rendered["body"].encode(), url=url, event=event
        )
        assert isinstance(item, DeliveryReport if event == "status" else InboundMessage)


def test_sdk_signed_callbacks_verify_with_or_without_the_default_port(
    make_provider: Any, sandbox: SandboxHandle
) -> None:
    """A callback signed over https://host:443/… verifies at https://host/… and back; tampering is 403."""
    provider = make_provider("twilio")
    validator = RequestValidator(sandbox.credentials["auth_token"])
    form = {"MessageSid": "SM1", "From": US, "To": "+15005550006", "Body": "TD"}
    body = urlencode(form).encode()
    for signed_url, seen_url in (
        ("https://hooks.example:443/sms/twilio/inbound", "https://hooks.example/sms/twilio/inbound"),
        ("https://hooks.example/sms/twilio/inbound", "https://hooks.example:443/sms/twilio/inbound"),
    ):
        headers = {"X-Twilio-Signature": validator.compute_signature(signed_url, form)}
        (item,) = provider.parse_callback(headers, body, url=seen_url, event="inbound")
        assert isinstance(item, InboundMessage) and item.text == "TD"
        with pytest.raises(UnverifiedCallback):
            provider.parse_callback(headers, body.replace(b"TD", b"START"), url=seen_url, event="inbound")


def test_an_advanced_opt_out_keyword_comes_with_twilios_own_reading(make_provider: Any) -> None:
    """With Advanced Opt-Out, Twilio adds OptOutType (STOP, START, HELP) to an incoming message
    whose whole body is a keyword the lender configured ("ALTO"): the parsed message carries it;
    one without it carries none."""
    provider = make_provider("twilio")
    validator = RequestValidator(provider.settings.auth_token.get_secret_value())
    url = "https://hooks.example/sms/twilio/inbound"
    for extra, expected in (({"OptOutType": "STOP"}, "STOP"), ({"OptOutType": "start"}, "START"), ({}, None)):
        form = {"MessageSid": "SM2", "From": US, "To": "+15005550006", "Body": "ALTO", **extra}
        headers = {"X-Twilio-Signature": validator.compute_signature(url, form)}
        (item,) = provider.parse_callback(headers, urlencode(form).encode(), url=url, event="inbound")
        assert isinstance(item, InboundMessage) and item.vendor_keyword == expected


def test_signed_status_callback_without_message_status_is_malformed(make_provider: Any) -> None:
    """A genuine Twilio-signed callback lacking MessageStatus is InvalidCallback (400), not Unverified."""
    provider = make_provider("twilio")
    token = provider.settings.auth_token.get_secret_value()
    form = {"MessageSid": "SM1"}
    url = "https://hooks.example/sms/twilio/status"
    headers = {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, form)}
    with pytest.raises(InvalidCallback) as caught:
        provider.parse_callback(headers, urlencode(form).encode(), url=url, event="status")
    assert not isinstance(caught.value, UnverifiedCallback)


def test_partially_delivered_is_final_not_queued(make_provider: Any) -> None:
    """Twilio's `partially_delivered` reads as delivered (a final status), never as queued."""
    provider = make_provider("twilio")
    token = provider.settings.auth_token.get_secret_value()
    form = {"MessageSid": "SM1", "MessageStatus": "partially_delivered"}
    url = "https://hooks.example/sms/twilio/status"
    headers = {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, form)}
    (report,) = provider.parse_callback(headers, urlencode(form).encode(), url=url)
    assert report.status == "delivered" and report.vendor_status == "partially_delivered"
