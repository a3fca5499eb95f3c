"""The contract suites reject a provider that breaks the protocol (a suite that passes it is a defect)."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from integrations.sandbox import SandboxHandle
from integrations.sms import SmsProvider
from integrations.sms.contract import SmsProviderContract


def _twilio_callback(sandbox: SandboxHandle) -> Callable[..., tuple[dict[str, str], bytes, str]]:
    def render(event: str, number: str, text: str = "") -> tuple[dict[str, str], bytes, str]:
        url = f"https://hooks.example/sms/twilio/{event}"
        fields: dict[str, Any] = {"to": number} if event == "status" else {"sender": number, "text": text}
        answer = sandbox.admin.post(
            "/_sandbox/render", json={"route": "twilio", "event": event, "url": url, **fields}
        ).json()
        return answer["headers"], answer["body"].encode(), answer["url"]

    return render


class _AcceptsAnySignature:
    """Refuses a callback without a signature, but never compares it with its own secret."""

    def __init__(self, verifier: SmsProvider) -> None:
        self._verifier = verifier  # holds the vendor's real secret, whatever this one was given

    def parse_callback(
        self, headers: Any, body: bytes, *, url: str | None = None, event: str = "status"
    ) -> Any:
        return self._verifier.parse_callback(headers, body, url=url, event=event)


def test_sms_contract_rejects_a_provider_that_only_checks_a_signature_is_there(
    make_provider: Callable[..., SmsProvider], sandbox: SandboxHandle
) -> None:
    suite = SmsProviderContract()
    honest = make_provider("twilio", bad=True)
    suite.test_callback_authenticated_with_another_secret_is_unverified(honest, _twilio_callback(sandbox))
    broken = _AcceptsAnySignature(make_provider("twilio"))
    with pytest.raises(pytest.fail.Exception):
        suite.test_callback_authenticated_with_another_secret_is_unverified(
            broken,  # type: ignore[arg-type]
            _twilio_callback(sandbox),
        )


_PLUGIN_SUITE = """
from integrations import retries
from integrations.agency.contract import AgencyProviderContract
from integrations.bureau.contract import BureauProviderContract
from integrations.court.contract import CourtProviderContract
from integrations.letters.contract import LettersProviderContract
from integrations.sms.contract import SmsProviderContract


class _Probe:
    def test_waits_are_not_slept(self):
        assert retries.is_testing()


class TestSms(_Probe, SmsProviderContract): ...
class TestCourt(_Probe, CourtProviderContract): ...
class TestBureau(_Probe, BureauProviderContract): ...
class TestLetters(_Probe, LettersProviderContract): ...
class TestAgency(_Probe, AgencyProviderContract): ...


class TestOutsideASuite:
    def test_waits_are_slept(self):
        assert not retries.is_testing()
"""


def test_every_contract_suite_turns_waiting_off_in_a_plugins_own_project(tmp_path: Path) -> None:
    """A plugin's test module, without this project's conftest.py, still runs the suites with waits
    off: each contract class does it itself, not the conftest that only our own tests load."""
    (tmp_path / "test_plugin.py").write_text(_PLUGIN_SUITE)
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull, "-k", "waits"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and "6 passed" in run.stdout, run.stdout + run.stderr
