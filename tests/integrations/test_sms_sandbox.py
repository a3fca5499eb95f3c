"""The sandbox server: its own process, its checks of auth and signatures, its controls."""

import logging
import os
import re
import socket
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from integrations.sandbox import SandboxCredentials, SandboxHandle, start_sandbox
from integrations.sms._signing import aliyun_signature


def _aliyun_params(sandbox: SandboxHandle, **extra: str) -> dict[str, str]:
    params = {
        "AccessKeyId": sandbox.credentials["access_key_id"],
        "Action": "SendSms",
        "Format": "JSON",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": uuid.uuid4().hex,
        "SignatureVersion": "1.0",
        "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Version": "2017-05-25",
        "PhoneNumbers": "13800000000",
        "SignName": sandbox.credentials["sign_name"],
        "TemplateCode": "T",
        "TemplateParam": "{}",
        **extra,
    }
    params["Signature"] = aliyun_signature(sandbox.credentials["access_key_secret"], "POST", params.items())
    return params


def test_runs_in_another_process(sandbox: SandboxHandle) -> None:
    """The sandbox is a separate, live process answering its health check."""
    assert sandbox.alive() and sandbox.process.pid != os.getpid()
    assert sandbox.admin.get("/_sandbox/health").json()["ok"] is True


def test_start_on_a_given_port_and_stop() -> None:
    """start_sandbox(port=N) listens on N; stop() ends the process and frees it."""
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with start_sandbox(port=port) as handle:
        assert handle.base_url.endswith(f":{port}")
    assert not handle.alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{handle.base_url}/_sandbox/health")


def test_replayed_nonce_is_refused(sandbox: SandboxHandle) -> None:
    """The same signed request sent twice is refused the second time (SignatureNonceUsed)."""
    params = _aliyun_params(sandbox)
    first = sandbox.admin.post("/", data=params)
    second = sandbox.admin.post("/", data=params)
    assert first.json()["Code"] == "OK"
    assert second.status_code == 400 and second.json()["Code"] == "SignatureNonceUsed"
    assert len(sandbox.messages()) == 1


def test_tampered_request_is_refused(sandbox: SandboxHandle) -> None:
    """Changing a parameter after signing fails the signature check and records nothing."""
    params = _aliyun_params(sandbox)
    params["PhoneNumbers"] = "13900000000"
    answer = sandbox.admin.post("/", data=params)
    assert answer.json()["Code"] == "SignatureDoesNotMatch"
    assert sandbox.messages() == []


def test_twilio_route_needs_basic_auth(sandbox: SandboxHandle) -> None:
    """The Twilio-shaped route answers 401 with code 20003 without credentials."""
    answer = sandbox.admin.post(
        f"/2010-04-01/Accounts/{sandbox.credentials['account_sid']}/Messages.json",
        data={"To": "+14155550100", "Body": "x", "From": "+15005550006"},
    )
    assert answer.status_code == 401 and answer.json()["code"] == 20003


def test_faults_are_validated_and_reset(sandbox: SandboxHandle) -> None:
    """Unknown fault names are refused; reset clears faults and messages."""
    assert sandbox.admin.post("/_sandbox/faults", json={"explode": True}).status_code == 422
    sandbox.set_faults(http_429=3)
    sandbox.reset()
    assert sandbox.admin.get("/_sandbox/faults").json()["http_429"] == 0


def test_latency_is_injected(sandbox: SandboxHandle) -> None:
    """latency_ms delays each send by at least that much."""
    sandbox.set_faults(latency_ms=300)
    answer = sandbox.admin.post("/", data=_aliyun_params(sandbox))
    assert answer.json()["Code"] == "OK" and answer.elapsed.total_seconds() >= 0.3


def test_a_client_gone_mid_request_is_counted_and_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    """A run killed while it sends its request (`kill -9` mid-dispatch): the sandbox takes no
    message, counts the disconnect, and logs no error (a client that went away is no fault of the
    server's); the next request is answered as usual."""
    from integrations.sandbox import InProcessServer
    from integrations.sms._sandbox_state import Credentials, SandboxState
    from integrations.sms.sandbox_server import create_app

    state = SandboxState(Credentials.generate())
    with InProcessServer(create_app(state=state)) as server, caplog.at_level(logging.ERROR):
        url = httpx.URL(server.base_url)
        assert url.host and url.port
        cut_short = (
            f"POST / HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n"
            "Action=SendSms&PhoneNumbers=13800000000"
        )
        with socket.create_connection((url.host, url.port)) as client:
            client.sendall(cut_short.encode())
        deadline = time.monotonic() + 10
        while state.counters.get("disconnects", 0) < 1:
            assert time.monotonic() < deadline, "the sandbox never saw the client go"
            time.sleep(0.02)
        assert httpx.get(f"{server.base_url}/_sandbox/health").json()["ok"] is True
    assert state.messages == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_the_guide_names_every_credential_a_plugins_sandbox_gets() -> None:
    """docs/adding-a-provider.md lists exactly the keys `start_sandbox` hands a plugin's server:
    they come from a class a plugin may not import, so the guide is where an integrator learns them."""
    guide = (Path(__file__).resolve().parents[2] / "docs" / "adding-a-provider.md").read_text()
    table = guide.split("exactly these string keys", 1)[1].split("\n\n", 2)[1]
    listed = set(re.findall(r"`([a-z_]+)`", "\n".join(line.split("|")[1] for line in table.splitlines()[2:])))
    assert listed == set(SandboxCredentials.generate().as_mapping())


def test_a_sandbox_keeps_an_idle_connection_longer_than_a_client_does() -> None:
    """A client reuses a connection it kept idle up to 5 s (httpx's keep-alive); a server that
    closed it at 5 s itself (uvicorn's default) made the reuse fail now and then with "connection
    reset by peer" (a suite's reset of the agency sandbox did). After 6 s idle the same connection
    still answers."""
    import http.client

    from integrations.agency.sandbox import start_agency_sandbox

    sandbox = start_agency_sandbox()
    try:
        url = httpx.URL(sandbox.base_url)
        assert url.host and url.port
        connection = http.client.HTTPConnection(url.host, url.port, timeout=10)
        try:
            for pause in (0, 6):
                time.sleep(pause)
                connection.request(
                    "POST", "/_sandbox/reset", body=b"null", headers={"Content-Type": "application/json"}
                )
                answer = connection.getresponse()  # RemoteDisconnected once the server closed it
                assert (answer.status, answer.read()) == (200, b'{"ok":true}')
        finally:
            connection.close()
    finally:
        sandbox.stop()
