"""The webhook server's own guards: bodies capped while they stream in, no start without the secrets
that authenticate callbacks, the URL a proxy's vendor signed, and no Prefect telemetry."""

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from twilio.request_validator import RequestValidator

from arrears.settings import get_settings
from deployments import webhooks
from deployments.webhooks import LifecycleRunner, WebhookConfigError, WebhookServer, create_app
from integrations.errors import ConfigError
from integrations.providers import build_provider
from integrations.sms import SmsProvider


@pytest.fixture
def runner() -> Iterator[LifecycleRunner]:
    r = LifecycleRunner(run=lambda *_: None)
    yield r
    r.close()


@pytest.fixture
def twilio(sms_sandbox: Any) -> Iterator[SmsProvider]:
    with build_provider("sms", "twilio", sms_sandbox.base_url, sms_sandbox.credentials) as provider:
        yield provider


def test_a_huge_chunked_body_is_refused_413_without_being_read(
    engine: Engine, twilio: SmsProvider, runner: LifecycleRunner
) -> None:
    """A 400 MiB chunked POST without Content-Length is answered 413 after about 1 MiB has arrived."""
    app = create_app(engine=engine, sms_providers={"twilio": twilio}, lifecycle=runner)
    chunk = b"x" * 65536
    sent = 0
    with WebhookServer(app, port=0) as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /sms/twilio/status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
            )
            answer = b""
            sock.setblocking(False)
            deadline = time.monotonic() + 30
            while sent < 400 * 2**20 and time.monotonic() < deadline:
                with contextlib.suppress(BlockingIOError):
                    answer += sock.recv(4096)
                if answer:
                    break
                try:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent += len(chunk)
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    time.sleep(0.01)
            sock.setblocking(True)
            while b"\r\n\r\n" not in answer:
                more = sock.recv(4096)
                if not more:
                    break
                answer += more
    assert answer.startswith(b"HTTP/1.1 413")
    assert sent < 8 * 2**20  # refused as the chunks arrived, not after reading 400 MiB


def test_an_empty_twilio_auth_token_is_refused_naming_the_setting(sms_sandbox: Any) -> None:
    """A Twilio provider built with an empty auth token fails naming auth_token: no forged STOP verifies."""
    with pytest.raises(ConfigError, match="auth_token"):
        build_provider("sms", "twilio", sms_sandbox.base_url, {**sms_sandbox.credentials, "auth_token": ""})


def test_the_server_will_not_start_with_a_provider_that_cannot_authenticate_callbacks(
    engine: Engine, sms_sandbox: Any, runner: LifecycleRunner
) -> None:
    """Twilio on an API key without its auth token, or Aliyun without a callback token: create_app refuses."""
    c = dict(sms_sandbox.credentials)
    api_key_only = {
        "account_sid": c["account_sid"],
        "api_key_sid": c["twilio_api_key_sid"],
        "api_key_secret": c["twilio_api_key_secret"],
        "from_number": c["from_number"],
    }
    no_token = {k: v for k, v in c.items() if k != "callback_token"}
    for name, credentials, setting in (
        ("twilio", api_key_only, "auth_token"),
        ("aliyun", no_token, "callback_token"),
    ):
        with (
            build_provider("sms", name, sms_sandbox.base_url, credentials) as provider,
            pytest.raises(ConfigError, match=setting),
        ):
            create_app(engine=engine, sms_providers={name: provider}, lifecycle=runner)


def test_sms_credentials_without_a_token_refuse_the_start_and_an_unused_secret_is_said(
    monkeypatch: pytest.MonkeyPatch, sms_sandbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """SMS credentials without a callback token stop the start. ARREARS_WEBHOOK_SECRET, which no
    provider reads (each verifies with the secret in its own credentials), is said to be unused."""
    import json

    monkeypatch.setenv("ARREARS_WEBHOOK_SECRET", "s3cret")
    get_settings.cache_clear()
    with caplog.at_level("WARNING", logger="arrears.webhooks"):
        webhooks.webhook_config()
    assert any("ARREARS_WEBHOOK_SECRET is not used" in r.getMessage() for r in caplog.records)
    monkeypatch.delenv("ARREARS_WEBHOOK_SECRET")
    credentials = {k: v for k, v in sms_sandbox.credentials.items() if k != "callback_token"}
    monkeypatch.setenv("ARREARS_SMS_PROVIDER", "aliyun")
    monkeypatch.setenv("ARREARS_SMS_BASE_URL", sms_sandbox.base_url)
    monkeypatch.setenv("ARREARS_SMS_CREDENTIALS", json.dumps(credentials))
    get_settings.cache_clear()
    try:
        with pytest.raises(WebhookConfigError, match=r"ARREARS_SMS_CREDENTIALS.*callback_token"):
            webhooks.providers_from_settings()
    finally:
        get_settings.cache_clear()


def test_twilio_signature_over_the_forwarded_host_verifies(
    engine: Engine, twilio: SmsProvider, sms_sandbox: Any, runner: LifecycleRunner
) -> None:
    """Behind a proxy, a callback signed for https://hooks.example:443/… verifies via X-Forwarded-Host."""
    app = create_app(engine=engine, sms_providers={"twilio": twilio}, lifecycle=runner)
    form = {"MessageSid": "SM" + "9" * 32, "MessageStatus": "delivered"}
    signed = RequestValidator(sms_sandbox.credentials["auth_token"]).compute_signature(
        "https://hooks.example:443/sms/twilio/status", form
    )
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signed,
        "X-Forwarded-Host": "hooks.example",
        "X-Forwarded-Proto": "https",
    }
    with TestClient(app) as client:
        response = client.post("/sms/twilio/status", content=urlencode(form).encode(), headers=headers)
    assert response.status_code == 200


def test_the_standalone_server_sends_no_prefect_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting the standalone webhook server turns Prefect's client and server analytics off."""
    for name in ("DO_NOT_TRACK", "PREFECT_SERVER_ANALYTICS_ENABLED"):
        # set first so that teardown removes what main() sets (a bare delenv of an unset
        # variable records nothing to undo, and the suite's later tests would inherit it)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setattr(webhooks, "webhook_config", _stop)
    with pytest.raises(_Stopped):
        webhooks.main()
    assert os.environ["DO_NOT_TRACK"] == "1"
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


class _Stopped(Exception):
    pass


def _stop() -> None:
    raise _Stopped


def test_a_letters_or_agency_provider_with_an_empty_webhook_secret_is_refused(
    engine: Engine, runner: LifecycleRunner
) -> None:
    """Lob and the agency platform with `webhook_secret: ""`: create_app refuses to start naming the
    setting, and a webhook signed with the empty key (which anyone can compute) never verifies."""
    import json

    from integrations._hmac import sign
    from integrations.errors import UnverifiedCallback

    body = json.dumps({"events": []}).encode()
    t = str(int(time.time()))
    signed = sign("", t, body)
    headers = {"Lob-Signature": signed, "Lob-Signature-Timestamp": t}
    headers |= {"X-Agency-Signature": signed, "X-Agency-Timestamp": t}
    for kind, name, credentials in (
        ("letters", "lob", {"api_key": "test_k", "webhook_secret": ""}),
        ("agency", "rest", {"client_id": "L-1", "api_key": "agy_k", "webhook_secret": ""}),
    ):
        with build_provider(kind, name, "http://127.0.0.1:9", credentials) as provider:
            with pytest.raises(UnverifiedCallback) as caught:
                provider.parse_callback(headers, body)
            assert caught.value.code == "signature.unset"
            with pytest.raises(ConfigError, match="webhook_secret"):
                create_app(engine=engine, mail_providers={kind: {name: provider}}, lifecycle=runner)


def test_a_body_trickling_in_is_refused_408_and_its_connection_closed(
    engine: Engine, twilio: SmsProvider, runner: LifecycleRunner
) -> None:
    """A client that declares a body and sends a byte now and then (holding a connection for as
    long as it likes) is answered 408 once the body timeout is up, and the connection is closed."""
    app = create_app(engine=engine, sms_providers={"twilio": twilio}, lifecycle=runner, body_timeout=1.0)
    with WebhookServer(app, port=0) as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /sms/twilio/status HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n\r\nMessageSid="
            )
            started = time.monotonic()
            answer = b""
            while more := sock.recv(4096):  # until the server closes the connection
                answer += more
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - started < 8


def test_a_refused_request_cannot_forge_a_log_line(
    engine: Engine, runner: LifecycleRunner, caplog: pytest.LogCaptureFixture
) -> None:
    """A URL whose path segment holds a newline is refused (404) in one log line: what the caller
    wrote is quoted, so it cannot add a line of its own to the server's log."""
    app = create_app(engine=engine, lifecycle=runner)
    forged = "2026-12-06 INFO arrears.webhooks: all callbacks stored"
    with caplog.at_level("WARNING", logger="arrears.webhooks"), TestClient(app) as client:
        assert client.post(f"/sms%0A{forged}/x/status", content=b"").status_code == 404
    [line] = [r.getMessage() for r in caplog.records if "refused (404)" in r.getMessage()]
    assert "\n" not in line, line


def test_settings_with_an_empty_letters_webhook_secret_refuse_the_start_naming_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ARREARS_LETTERS_CREDENTIALS with an empty webhook_secret: the server's providers are not
    built, and the error names the setting to fix."""
    import json

    monkeypatch.setenv("ARREARS_LETTERS_PROVIDER", "lob")
    monkeypatch.setenv("ARREARS_LETTERS_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ARREARS_LETTERS_CREDENTIALS", json.dumps({"api_key": "test_k", "webhook_secret": ""}))
    get_settings.cache_clear()
    try:
        with contextlib.ExitStack() as stack, pytest.raises(ConfigError, match="ARREARS_LETTERS_CREDENTIALS"):
            webhooks.mail_providers_from_settings(stack)
    finally:
        get_settings.cache_clear()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [
        (
            "ARREARS_DATABASE_URL",
            "postgresql://arrears:s3cret@127.0.0.1:{port}/arrears",
            "cannot open the database of ARREARS_DATABASE_URL (postgresql://arrears:***@127.0.0.1:",
        ),
        ("ARREARS_LENDER_TIMEZONE", "Nowhere/Else", "invalid settings: lender_timezone:"),
    ],
)
def test_the_standalone_server_with_no_database_or_bad_settings_says_so_in_one_line(
    setting: str, value: str, said: str, tmp_path: Any
) -> None:
    """`python -m deployments.webhooks` with the database unreachable (or a setting it cannot
    read) exits non-zero with one line naming the setting and the cause, never a traceback nor
    the URL's password (it printed the driver's traceback)."""
    import subprocess
    import sys

    env = {**os.environ, "ARREARS_HOME": str(tmp_path / "home"), setting: value.format(port=_closed_port())}
    done = subprocess.run(
        [sys.executable, "-m", "deployments.webhooks"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if line]
    assert line.startswith("the webhook server cannot start: ") and said in line
