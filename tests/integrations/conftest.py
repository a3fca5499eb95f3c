"""A real sandbox server in its own process for the whole session, reset before each test."""

from collections.abc import Callable, Iterator

import pytest

from integrations import retries
from integrations.providers import build_provider
from integrations.sandbox import SandboxHandle, start_sandbox
from integrations.sms import SmsProvider
from integrations.sms.contract import BAD_SECRET


@pytest.fixture(scope="session")
def _sandbox_process() -> Iterator[SandboxHandle]:
    with start_sandbox() as handle:
        yield handle


@pytest.fixture(autouse=True)
def _no_waiting() -> Iterator[None]:
    """Retry schedules are computed as in production, but nothing sleeps."""
    retries.set_testing(True)
    yield
    retries.set_testing(False)


@pytest.fixture
def sandbox(_sandbox_process: SandboxHandle) -> SandboxHandle:
    _sandbox_process.reset()
    return _sandbox_process


def _build(name: str, sandbox: SandboxHandle, **overrides: str) -> SmsProvider:
    return build_provider("sms", name, sandbox.base_url, {**sandbox.credentials, **overrides})


@pytest.fixture
def make_provider(sandbox: SandboxHandle) -> Iterator[Callable[..., SmsProvider]]:
    """Build providers against the sandbox (`bad=True`: with a wrong secret); closed after the test."""
    built: list[SmsProvider] = []

    def make(name: str, *, bad: bool = False, **overrides: str) -> SmsProvider:
        if bad:
            overrides |= {
                "auth_token": BAD_SECRET,
                "access_key_secret": BAD_SECRET,
                "callback_token": BAD_SECRET,
            }
        provider = _build(name, sandbox, **overrides)
        built.append(provider)
        return provider

    yield make
    for provider in built:
        provider.close()


@pytest.fixture
def twilio(sandbox: SandboxHandle) -> Iterator[SmsProvider]:
    with _build("twilio", sandbox, timeout_seconds="0.5") as provider:
        yield provider


@pytest.fixture
def aliyun(sandbox: SandboxHandle) -> Iterator[SmsProvider]:
    with _build("aliyun", sandbox, timeout_seconds="0.5") as provider:
        yield provider
