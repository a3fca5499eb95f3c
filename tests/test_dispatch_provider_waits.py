"""How dispatch records a provider's "not now" (`tasks.sending`): the message waits, scheduled, for
a bounded time, and the batch is an outage only when the provider is down, never because it holds
back one recipient. Against the sandbox SMS server in its own process."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from arrears.vocabulary import MessageStatus
from integrations import retries
from integrations.errors import MAX_RETRY_AFTER, RecipientThrottled, Transient
from integrations.providers import build_provider
from integrations.sms.protocol import SmsRequest
from tests.factories import unique_id

NOW = datetime(2026, 12, 1, 16, 30, tzinfo=UTC)
CN_PHONE = "+8613912345678"


@pytest.fixture(autouse=True)
def _no_waiting() -> Iterator[None]:
    retries.set_testing(True)
    yield
    retries.set_testing(False)


def _request(to: str) -> SmsRequest:
    return SmsRequest(unique_id("key"), to, "reminder", {"name": "Dana"}, "Your payment is past due.")


def _row(n: int, to: str) -> SimpleNamespace:
    return SimpleNamespace(id=n, account_id="A-1", address=to)


@pytest.mark.parametrize("seconds", [1e12, 1e9])
def test_a_provider_asking_to_wait_for_years_defers_the_message_an_hour(
    sms_sandbox: Any, seconds: float
) -> None:
    """DESIGN §5: Retry-After is honoured "capped in attempts and time". A 429 asking for 10^12
    seconds (or 10^9) neither makes the batch's outcome unrecordable (a datetime overflow
    would lose the record of every send of the batch, those accepted included) nor parks the
    message for decades: it waits an hour, then is tried again."""
    from tasks.sending import PROVIDER_BUSY, _outcome

    sms_sandbox.set_faults(http_429=10, retry_after=seconds, route="twilio")
    with build_provider("sms", "twilio", sms_sandbox.base_url, dict(sms_sandbox.credentials)) as twilio:
        [result] = twilio.send_batch([_request("+12133734253")])
    assert isinstance(result, Transient)
    waiting = _outcome(_row(1, "+12133734253"), result, "twilio", NOW)
    assert (waiting.status, waiting.reason) == (MessageStatus.SCHEDULED, PROVIDER_BUSY)
    assert waiting.not_before == NOW + timedelta(seconds=MAX_RETRY_AFTER)


def test_flow_control_of_one_number_is_no_outage(sms_sandbox: Any) -> None:
    """providers.md: Aliyun's flow control is "per phone, signature and template"; DESIGN §5 keeps
    the loud path (relabelled rows, the outage exit code, an event) for a full outage. A batch whose
    only rows go to one flow-controlled number (one borrower's texts) is no outage: its messages
    wait, scheduled, with a reason of their own, and are tried again after the vendor's window."""
    from tasks.sending import RECIPIENT_THROTTLED, _outage, _outcome

    sms_sandbox.set_faults(limited_numbers=r"^\+8613912345678$")
    with build_provider("sms", "sandbox", sms_sandbox.base_url, dict(sms_sandbox.credentials)) as aliyun:
        results = aliyun.send_batch([_request(CN_PHONE), _request(CN_PHONE)])
    assert all(isinstance(r, RecipientThrottled) for r in results), results
    sent = [_outcome(_row(n, CN_PHONE), r, "sandbox", NOW) for n, r in enumerate(results)]
    assert _outage(sent, "sandbox") == {}
    assert [(o.status, o.reason) for o in sent] == [(MessageStatus.SCHEDULED, RECIPIENT_THROTTLED)] * 2
    assert all(o.not_before == NOW + timedelta(seconds=60) for o in sent)


def test_a_provider_that_answers_only_503_is_still_an_outage(sms_sandbox: Any) -> None:
    """The loud path stays for a provider that is down: every send of the batch refused with 503
    (not executed) is an outage, and the rows wait with the provider named in their reason."""
    from tasks.sending import _outage, _outcome, outage_reason

    sms_sandbox.set_faults(http_503=50, retry_after=1)
    with build_provider("sms", "sandbox", sms_sandbox.base_url, dict(sms_sandbox.credentials)) as aliyun:
        results = aliyun.send_batch([_request(CN_PHONE), _request("+8613912345679")])
    assert all(type(r) is Transient for r in results), results
    sent = [_outcome(_row(n, CN_PHONE), r, "sandbox", NOW) for n, r in enumerate(results)]
    assert _outage(sent, "sandbox") == {"outage": 1, "waiting": 2}
    assert {o.reason for o in sent} == {outage_reason("sandbox")}
