"""The example plugin (examples/arrears-sms-example) is found by its entry point and passes the contract.

It must be installed for its entry point to exist: `pip install --no-deps -e examples/arrears-sms-example`.
Without it these tests skip on a developer's machine and fail under CI (`CI` set).
"""

import json
import os
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any

import pytest
from typer.testing import CliRunner

from integrations.errors import InvalidCallback
from integrations.providers import build_provider
from integrations.sandbox import SandboxHandle, start_sandbox
from integrations.sms import SmsProvider
from integrations.sms.contract import BAD_SECRET, SmsProviderContract, make_requests

ENTRY_POINT = "sms.jsonhttp"
INSTALL = "pip install --no-deps -e examples/arrears-sms-example"


def _require_plugin() -> None:
    if ENTRY_POINT in {ep.name for ep in entry_points(group="arrears.providers")}:
        return
    message = f"the example SMS plugin is not installed (no {ENTRY_POINT} entry point): run `{INSTALL}`"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the example plugin's contract suite, but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def _example_process() -> Iterator[SandboxHandle]:
    _require_plugin()
    with start_sandbox(server="arrears_sms_example.sandbox_server") as handle:
        yield handle


@pytest.fixture
def sandbox(_example_process: SandboxHandle) -> SandboxHandle:
    """The example gateway's sandbox, emptied (overrides the SMS sandbox of conftest.py)."""
    _example_process.reset()
    return _example_process


@pytest.fixture
def make_example(sandbox: SandboxHandle) -> Iterator[Callable[..., SmsProvider]]:
    built: list[SmsProvider] = []

    def make(**overrides: str) -> SmsProvider:
        provider = build_provider("sms", "jsonhttp", sandbox.base_url, {**sandbox.credentials, **overrides})
        built.append(provider)
        return provider

    yield make
    for provider in built:
        provider.close()


def test_plugin_is_installed() -> None:
    """The example's `sms.jsonhttp` entry point is installed (skipped locally without it, failed under CI)."""
    _require_plugin()
    from arrears_sms_example import JsonHttpSmsProvider

    assert JsonHttpSmsProvider.info.entry_point == ENTRY_POINT


class TestExampleProvider(SmsProviderContract):
    """The SMS contract suite, unchanged, against the plugin built by name through the registry."""

    @pytest.fixture
    def provider(self, make_example: Callable[..., SmsProvider]) -> SmsProvider:
        return make_example(timeout_seconds="0.5")

    @pytest.fixture
    def bad_provider(self, make_example: Callable[..., SmsProvider]) -> SmsProvider:
        return make_example(auth_token=BAD_SECRET)

    @pytest.fixture
    def vendor_callback(self, sandbox: SandboxHandle) -> Callable[..., tuple[dict[str, str], bytes, str]]:
        return lambda event, number, text="": _gateway_callback(sandbox, event, number, text)


def _gateway_callback(
    sandbox: SandboxHandle, event: str, number: str, text: str = ""
) -> tuple[dict[str, str], bytes, str]:
    """What the example gateway posts: its delivery reports as its sandbox renders them, or a reply
    signed as the README documents (`X-Gateway-Signature`, HMAC-SHA256 of the body)."""
    from arrears_sms_example.provider import SIGNATURE_HEADER, signature

    url = f"https://hooks.example/sms/jsonhttp/{event}"
    if event == "status":
        report = sandbox.admin.get("/_sandbox/reports").json()
        return report["headers"], report["body"].encode(), url
    reply = {
        "id": f"in-{number}-{len(text)}",
        "from": number,
        "text": text,
        "at": "2026-12-01T09:00:00+00:00",
    }
    body = json.dumps({"events": [reply]}, ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(sandbox.credentials["auth_token"], body),
    }
    return headers, body, url


def test_the_example_plugin_receives_a_stop_through_the_webhook_server(
    make_example: Callable[..., SmsProvider], sandbox: SandboxHandle, engine: Any
) -> None:
    """The plugin, with arrears unchanged, receives a signed STOP at /sms/jsonhttp/inbound: an opt-out."""
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from arrears.models import AuditEvent
    from deployments.webhooks import LifecycleRunner, create_app

    runner = LifecycleRunner(run=lambda *_: None)
    app = create_app(engine=engine, sms_providers={"jsonhttp": make_example()}, lifecycle=runner)
    headers, body, _ = _gateway_callback(sandbox, "inbound", "+8613900001111", "STOP")
    with TestClient(app) as client:
        assert client.post("/sms/jsonhttp/inbound", content=body, headers=headers).status_code == 204
        assert client.post("/sms/jsonhttp/inbound", content=body + b" ", headers=headers).status_code == 403
    runner.close()
    audit = AuditEvent.__table__  # type: ignore[attr-defined]
    with engine.connect() as c:
        kinds = c.execute(select(audit.c.kind, audit.c.data)).all()
    assert [k for k, _ in kinds] == ["opt_out"] and kinds[0][1]["provider"] == "jsonhttp"


def test_delivery_reports_verify_and_parse(
    make_example: Callable[..., SmsProvider], sandbox: SandboxHandle
) -> None:
    """The gateway's signed delivery report parses into one report per message; a forged one is refused."""
    provider = make_example()
    results = provider.send_batch(make_requests(2))
    report = sandbox.admin.get("/_sandbox/reports").json()
    body = report["body"].encode()
    parsed = provider.parse_callback(report["headers"], body)
    assert {(r.provider_id, r.status) for r in parsed} == {(r.provider_id, "delivered") for r in results}
    assert len(parsed) == 2
    with pytest.raises(InvalidCallback):
        provider.parse_callback(report["headers"], body.replace(b"delivered", b"failed"))


def test_listed_and_checked_by_the_cli(sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    """`arrears providers list --check` finds the plugin's package, selects it by name and gets an answer."""
    from arrears.settings import get_settings
    from deployments.cli import (
        app,
        providers,  # noqa: F401  (registers the commands)
    )

    monkeypatch.setenv("ARREARS_SMS_PROVIDER", "jsonhttp")
    monkeypatch.setenv("ARREARS_SMS_BASE_URL", sandbox.base_url)
    monkeypatch.setenv(
        "ARREARS_SMS_CREDENTIALS", json.dumps({"auth_token": sandbox.credentials["auth_token"]})
    )
    monkeypatch.setenv("ARREARS_COURT_PROVIDER", "nothing-selected")  # keep the check to SMS
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["providers", "list", "--check", "--json"], catch_exceptions=False)
    sms = json.loads(result.stdout)["kinds"]["sms"]
    [plugin] = [p for p in sms["providers"] if p["name"] == "jsonhttp"]
    assert plugin["package"].startswith("arrears-sms-example ") and plugin["selected"]
    assert sms["check"]["ok"], sms["check"]
