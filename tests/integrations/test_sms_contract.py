"""Every built-in SMS provider passes the same contract against the sandbox."""

from collections.abc import Callable

import pytest

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


class TestSandboxProvider(_Built):
    name = "sandbox"


class TestTwilioProvider(_Built):
    name = "twilio"


class TestAliyunProvider(_Built):
    name = "aliyun"
