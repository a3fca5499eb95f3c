"""Every built-in SMS provider passes the same contract against the sandbox."""

from collections.abc import Callable
from typing import Any

import pytest

from integrations.sandbox import SandboxHandle
from integrations.sms import SmsProvider
from integrations.sms.contract import SmsProviderContract


class _Built(SmsProviderContract):
    name: str

    @pytest.fixture
    def provider(self, make_provider: Callable[..., SmsProvider]) -> SmsProvider:
        return make_provider(self.name, timeout_seconds="0.5")

    @pytest.fixture
    def bad_provider(self, make_provider: Callable[..., SmsProvider]) -> SmsProvider:
        return make_provider(self.name, bad=True)

    @pytest.fixture
    def vendor_callback(self, sandbox: SandboxHandle) -> Callable[..., tuple[dict[str, str], bytes, str]]:
        """Callbacks as the sandbox's vendor posts them; Aliyun's URL carries our token."""
        route = "twilio" if self.name == "twilio" else "aliyun"

        def render(event: str, number: str, text: str = "") -> tuple[dict[str, str], bytes, str]:
            url = f"https://hooks.example/sms/{self.name}/{event}"
            if route == "aliyun":
                url += f"?token={sandbox.credentials['callback_token']}"
            fields: dict[str, Any] = {"to": number} if event == "status" else {"sender": number, "text": text}
            answer = sandbox.admin.post(
                "/_sandbox/render", json={"route": route, "event": event, "url": url, **fields}
            ).json()
            return answer["headers"], answer["body"].encode(), answer["url"]

        return render


class TestSandboxProvider(_Built):
    name = "sandbox"


class TestTwilioProvider(_Built):
    name = "twilio"


class TestAliyunProvider(_Built):
    name = "aliyun"
