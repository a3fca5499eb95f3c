"""The SMS sandbox pushes delivery receipts itself (Twilio status callbacks, signed; Aliyun SmsReport
arrays, unsigned to a token URL), retried where the vendor retries, and loses or repeats them on request."""

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest

from integrations.sandbox import SandboxHandle
from integrations.sms import SmsProvider, SmsRequest
from integrations.sms.contract import make_requests

TO = "+12133734253"


class Receiver:
    """A webhook on 127.0.0.1 keeping every POST; `answers` gives each one's (status, body) in turn
    (the last one repeats)."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, str], bytes]] = []
        self.answers: list[tuple[int, bytes]] = [(200, b"")]
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                n = len(receiver.received)
                receiver.received.append((time.monotonic(), dict(self.headers.items()), body))
                status, answer = receiver.answers[min(n, len(receiver.answers) - 1)]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/sms/status?tenant=1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def forms(self) -> list[dict[str, str]]:
        return [dict(parse_qsl(body.decode(), keep_blank_values=True)) for _, _, body in self.received]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def twilio_cb(make_provider: Callable[..., SmsProvider], receiver: Receiver) -> SmsProvider:
    """A Twilio-shaped provider whose sends carry StatusCallback = the receiver."""
    return make_provider("twilio", status_callback=receiver.url)


def settled(sandbox: SandboxHandle, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The callback log once no push is waiting or in flight."""
    deadline = time.monotonic() + timeout
    while True:
        log = sandbox.admin.get("/_sandbox/callbacks").json()
        if log["pending"] == 0:
            return list(log["callbacks"])
        assert time.monotonic() < deadline, f"callbacks still pending after {timeout}s: {log}"
        time.sleep(0.02)


def twilio_signature(token: str, url: str, form: dict[str, str]) -> str:
    """Twilio's scheme written out, so the test does not trust the code under test."""
    data = url + "".join(k + v for k, v in sorted(form.items()))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def _request(key: str = "k-1", to: str = TO) -> SmsRequest:
    return SmsRequest(key, to, "REMINDER", {}, "Your payment is past due.")


# -- Twilio-shaped --------------------------------------------------------------------------------


def test_twilio_status_callbacks_are_signed_as_twilio_signs_them(
    twilio_cb: SmsProvider, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    """A send with StatusCallback gets `sent` then `delivered`, form-encoded, with X-Twilio-Signature."""
    result = twilio_cb.send(_request())
    log = settled(sandbox)
    forms = receiver.forms()
    assert [f["MessageStatus"] for f in forms] == ["sent", "delivered"]
    token = sandbox.credentials["auth_token"]
    for (_, headers, body), form in zip(receiver.received, forms, strict=True):
        assert headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert headers["X-Twilio-Signature"] == twilio_signature(token, receiver.url, form)
        assert form["MessageSid"] == result.provider_id
        assert (form["To"], form["From"], form["AccountSid"]) == (
            TO,
            sandbox.credentials["from_number"],
            sandbox.credentials["account_sid"],
        )
        assert "ErrorCode" not in form
        (report,) = twilio_cb.parse_callback(headers, body, url=receiver.url)  # our client agrees
        assert report.provider_id == result.provider_id
    assert [(c["status"], c["outcome"], c["status_code"]) for c in log] == [
        ("sent", "delivered", 200),
        ("delivered", "delivered", 200),
    ]
    assert sandbox.stats()["counters"]["callbacks.twilio.delivered"] == 2


def test_undeliverable_number_gets_undelivered_with_error_code(
    twilio_cb: SmsProvider, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    """A number matching `undeliverable_numbers` ends `undelivered` with ErrorCode 30003."""
    sandbox.set_faults(undeliverable_numbers="4253$")
    twilio_cb.send(_request())
    settled(sandbox)
    final = receiver.forms()[-1]
    assert (final["MessageStatus"], final["ErrorCode"]) == ("undelivered", "30003")
    (report,) = twilio_cb.parse_callback(receiver.received[-1][1], receiver.received[-1][2], url=receiver.url)
    assert (report.status, report.error_code) == ("undelivered", "30003")


def test_final_status_waits_for_delivery_ms(
    twilio_cb: SmsProvider, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    """`sent` comes at once, `delivered` only after `delivery_ms`, when a lookup also says delivered."""
    sandbox.set_faults(delivery_ms=400)
    result = twilio_cb.send(_request())
    looked_up = twilio_cb.status(_request(), result.provider_id)
    assert looked_up is not None and looked_up.status == "sent"
    settled(sandbox)
    (sent_at, _, _), (delivered_at, _, _) = receiver.received
    assert delivered_at - sent_at >= 0.35
    looked_up = twilio_cb.status(_request(), result.provider_id)
    assert looked_up is not None and looked_up.status == "delivered"


def test_no_status_callback_no_push(
    make_provider: Callable[..., SmsProvider], sandbox: SandboxHandle
) -> None:
    """A send without StatusCallback (no `status_callback` in the settings) gets no callbacks."""
    make_provider("twilio").send(_request())
    assert sandbox.messages()[0]["status_callback"] is None
    assert settled(sandbox) == []


def test_idempotent_resend_pushes_nothing_more(
    twilio_cb: SmsProvider, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    """A resend under the same Idempotency-Key is the first message: no second round of callbacks."""
    twilio_cb.send(_request())
    twilio_cb.send(_request())
    settled(sandbox)
    assert [f["MessageStatus"] for f in receiver.forms()] == ["sent", "delivered"]


def test_dropped_callbacks_are_lost_and_logged(
    twilio_cb: SmsProvider, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    """`drop_callbacks: 1` loses the next push (the `sent` one); the log shows it dropped."""
    sandbox.set_faults(drop_callbacks=1)
    twilio_cb.send(_request())
    log = settled(sandbox)
    assert [f["MessageStatus"] for f in receiver.forms()] == ["delivered"]
    assert [(c["status"], c["outcome"]) for c in log] == [("sent", "dropped"), ("delivered", "delivered")]
    assert sandbox.admin.get("/_sandbox/faults").json()["drop_callbacks"] == 0
    assert sandbox.stats()["counters"]["faults.drop_callbacks"] == 1


def test_duplicated_callbacks_arrive_twice(
    twilio_cb: SmsProvider, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    """`duplicate_callbacks: 2` sends both pushes twice, identical and identically signed."""
    sandbox.set_faults(duplicate_callbacks=2)
    twilio_cb.send(_request())
    log = settled(sandbox)
    assert [f["MessageStatus"] for f in receiver.forms()] == ["sent", "sent", "delivered", "delivered"]
    assert receiver.received[0][2] == receiver.received[1][2]
    assert receiver.received[0][1]["X-Twilio-Signature"] == receiver.received[1][1]["X-Twilio-Signature"]
    assert [c["copy"] for c in log] == [1, 2, 1, 2]


def test_callback_faults_keep_to_their_route(
    twilio_cb: SmsProvider, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    """Callback faults scoped to `aliyun` leave Twilio's callbacks alone."""
    sandbox.set_faults(route="aliyun", drop_callbacks=5)
    twilio_cb.send(_request())
    settled(sandbox)
    assert len(receiver.received) == 2


def test_unreachable_receiver_is_a_failed_attempt(
    make_provider: Callable[..., SmsProvider], sandbox: SandboxHandle
) -> None:
    """A StatusCallback nobody answers is logged as failed; Twilio does not push it again."""
    make_provider("twilio", status_callback="http://127.0.0.1:9/never").send(_request())
    log = settled(sandbox)
    assert [(c["outcome"], c["status_code"]) for c in log] == [("failed", None), ("failed", None)]


def test_reset_cancels_pushes_still_waiting(
    twilio_cb: SmsProvider, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    """A reset forgets the log and cancels the pushes not made yet."""
    sandbox.set_faults(delivery_ms=60_000)
    twilio_cb.send(_request())
    deadline = time.monotonic() + 5
    while len(receiver.received) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sandbox.admin.get("/_sandbox/callbacks").json()["pending"] == 1
    sandbox.reset()
    assert settled(sandbox, timeout=2) == []
    assert len(receiver.received) == 1  # the `sent` one, before the reset


# -- Aliyun-shaped --------------------------------------------------------------------------------


def _register(sandbox: SandboxHandle, url: str, **extra: Any) -> dict[str, Any]:
    url += f"&token={sandbox.credentials['callback_token']}"
    response = sandbox.admin.post("/_sandbox/callbacks", json={"aliyun_url": url, **extra})
    response.raise_for_status()
    return dict(response.json())


def test_aliyun_reports_are_pushed_unsigned_to_the_token_url_and_acknowledged(
    aliyun: SmsProvider, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    """One SmsReport array per send reaches the token URL unsigned, as Aliyun sends it, and verifies."""
    receiver.answers = [(200, b'{"code": 0, "msg": "ok"}')]
    registered = _register(sandbox, receiver.url)
    assert registered["retry_delays"] == [0.2, 0.5, 1.0] and "token=" in registered["aliyun_url"]
    sandbox.set_faults(undeliverable_numbers="00000001$")
    outcomes = aliyun.send_batch(make_requests(3))
    log = settled(sandbox)
    ((_, headers, body),) = receiver.received
    assert not any(k.lower().startswith("x-arrears") for k in headers)
    items = json.loads(body)
    assert {i["out_id"] for i in items} and len(items) == 3
    reports = {r.provider_id: r for r in aliyun.parse_callback(headers, body, url=registered["aliyun_url"])}
    assert set(reports) == {o.provider_id for o in outcomes}  # type: ignore[union-attr]
    assert reports[outcomes[1].provider_id].status == "undelivered"  # type: ignore[union-attr]
    assert [(c["route"], c["attempt"], c["outcome"]) for c in log] == [("aliyun", 1, "delivered")]


def test_aliyun_reports_are_pushed_again_after_non_2xx_only(
    aliyun: SmsProvider, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    """A 500 and a 503 are pushed again after 0.2 s, then 0.5 s; any 200 counts as received, as at Aliyun."""
    receiver.answers = [(500, b"oops"), (503, b""), (200, b'{"code": 1}')]
    _register(sandbox, receiver.url)
    aliyun.send(make_requests(1)[0])
    log = settled(sandbox)
    assert [(c["attempt"], c["outcome"], c["status_code"]) for c in log] == [
        (1, "failed", 500),
        (2, "failed", 503),
        (3, "delivered", 200),
    ]
    times = [t for t, _, _ in receiver.received]
    assert times[1] - times[0] >= 0.18 and times[2] - times[1] >= 0.45
    assert len({body for _, _, body in receiver.received}) == 1  # the same report each time


def test_aliyun_gives_up_after_the_last_retry(
    aliyun: SmsProvider, sandbox: SandboxHandle, receiver: Receiver
) -> None:
    """Never acknowledged: the first push and one per retry delay, then the sandbox gives up."""
    receiver.answers = [(503, b"")]
    _register(sandbox, receiver.url, retry_delays=[0.05, 0.05, 0.05])
    aliyun.send(make_requests(1)[0])
    log = settled(sandbox)
    assert [c["outcome"] for c in log] == ["failed"] * 4
    assert log[-1]["gave_up"] is True


def test_aliyun_drop_and_duplicate(aliyun: SmsProvider, sandbox: SandboxHandle, receiver: Receiver) -> None:
    """A dropped report array is lost with its retries; a duplicated one arrives twice."""
    receiver.answers = [(200, b'{"code": 0}')]
    _register(sandbox, receiver.url)
    sandbox.set_faults(drop_callbacks=1, duplicate_callbacks=1)
    aliyun.send(make_requests(1, start=0)[0])
    assert [c["outcome"] for c in settled(sandbox)] == ["dropped"]
    assert receiver.received == []
    aliyun.send(make_requests(1, start=1)[0])
    log = settled(sandbox)
    assert [(c["outcome"], c.get("copy")) for c in log] == [
        ("dropped", None),
        ("delivered", 1),
        ("delivered", 2),
    ]
    assert receiver.received[0][2] == receiver.received[1][2]


def test_no_registered_url_no_aliyun_push(aliyun: SmsProvider, sandbox: SandboxHandle) -> None:
    """Without a registered report URL (the default, and after a reset) nothing is pushed."""
    aliyun.send(make_requests(1)[0])
    assert settled(sandbox) == []
    log = sandbox.admin.get("/_sandbox/callbacks").json()
    assert log["aliyun_url"] is None


def test_registration_refuses_silly_retry_delays(sandbox: SandboxHandle) -> None:
    """Retry delays must be 0-60 s, at most ten of them."""
    for delays in ([-1], [61], [0.1] * 11):
        response = sandbox.admin.post("/_sandbox/callbacks", json={"aliyun_url": "x", "retry_delays": delays})
        assert response.status_code == 422
