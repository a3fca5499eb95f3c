"""The sandbox bureau server: its own process, its auth checks, its Metro 2 intake, its controls."""

import os
from collections.abc import Iterator

import pytest

from integrations.bureau import FurnishRequest
from integrations.bureau.contract import make_pull, minimal_metro2
from integrations.bureau.sandbox import start_bureau_sandbox
from integrations.providers import build_provider
from integrations.sandbox import SandboxHandle


@pytest.fixture(scope="module")
def _bureau_process() -> Iterator[SandboxHandle]:
    with start_bureau_sandbox() as handle:
        yield handle


@pytest.fixture
def sandbox(_bureau_process: SandboxHandle) -> SandboxHandle:
    _bureau_process.reset()
    return _bureau_process


def test_runs_in_another_process_with_bureau_credentials(sandbox: SandboxHandle) -> None:
    """The sandbox bureau is a separate live process and its handle carries the client's settings fields."""
    assert sandbox.alive() and sandbox.process.pid != os.getpid()
    assert set(sandbox.credentials) == {"subscriber_code", "api_key"}
    assert sandbox.credentials["api_key"] not in repr(sandbox)


def test_requests_without_key_or_subscriber_are_refused(sandbox: SandboxHandle) -> None:
    """No Bearer key answers 401; the key with another subscriber code answers 403; nothing is pulled."""
    body = {
        "reference": "A-1",
        "subject": {"name": "X", "phone": "+12135550100"},
        "permissible_purpose": "604(a)(3)(A)",
    }
    assert sandbox.admin.post("/v1/reports", json=body, headers={"Idempotency-Key": "k"}).status_code == 401
    wrong = {
        "Authorization": f"Bearer {sandbox.credentials['api_key']}",
        "X-Subscriber-Code": "SUBX",
        "Idempotency-Key": "k",
    }
    answer = sandbox.admin.post("/v1/reports", json=body, headers=wrong)
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "subscriber_unknown"
    assert sandbox.messages() == []


def test_upload_is_kept_as_received_and_checked(sandbox: SandboxHandle) -> None:
    """An upload is fetched back byte for byte; a wrong trailer count and a foreign period are reported."""
    content = minimal_metro2("2026-10", accounts=3)
    broken = content.replace(b"TRAILER000000003", b"TRAILER000000009")
    with build_provider("bureau", "sandbox", sandbox.base_url, sandbox.credentials) as bureau:
        good = bureau.furnish(FurnishRequest("u-1", "2026-10", content))
        bad = bureau.furnish(FurnishRequest("u-2", "2026-11", broken))
    assert good.accepted and sandbox.admin.get(f"/_sandbox/uploads/{good.submission_id}").content == content
    assert {(e.record, e.field) for e in bad.errors} == {(1, "activity date"), (5, "total base records")}


def test_faults_hit_only_their_route(sandbox: SandboxHandle) -> None:
    """Faults set for uploads leave pulls alone, and are consumed by the next upload."""
    sandbox.set_faults(route="furnish", http_503=1, retry_after=0)
    with build_provider("bureau", "sandbox", sandbox.base_url, sandbox.credentials) as bureau:
        bureau.pull(make_pull(1))
        assert "faults.http_503" not in sandbox.stats()["counters"]
        assert bureau.furnish(FurnishRequest("u-3", "2026-11", minimal_metro2("2026-11"))).accepted
    assert sandbox.stats()["counters"]["faults.http_503"] == 1


def test_sandbox_started_without_bureau_credentials_derives_them() -> None:
    """Started by `start_sandbox` with SMS-shaped credentials, the bureau derives its own, as clients do."""
    from integrations.bureau.sandbox import SERVER, provider_credentials
    from integrations.sandbox import start_sandbox

    with start_sandbox(server=SERVER) as handle:
        credentials = provider_credentials(handle.credentials)
        assert set(credentials) == {"subscriber_code", "api_key"}
        with build_provider("bureau", "sandbox", handle.base_url, credentials) as bureau:
            assert bureau.pull(make_pull(2)).account_ref == "A-0000002"
