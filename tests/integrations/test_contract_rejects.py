"""The contract suites reject a provider that breaks the protocol (a suite that passes it is a defect)."""

from collections.abc import Callable
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
