"""Every built-in bureau provider passes the same contract against the sandbox bureau."""

from collections.abc import Callable, Iterator

import pytest

from integrations.bureau import BureauProvider
from integrations.bureau.contract import BAD_SECRET, BureauProviderContract
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


@pytest.fixture
def make_provider(sandbox: SandboxHandle) -> Iterator[Callable[..., BureauProvider]]:
    """Build providers against the sandbox (`bad=True`: with a wrong API key); closed after the test."""
    built: list[BureauProvider] = []

    def make(name: str, *, bad: bool = False, **overrides: str) -> BureauProvider:
        if bad:
            overrides["api_key"] = BAD_SECRET
        provider = build_provider("bureau", name, sandbox.base_url, {**sandbox.credentials, **overrides})
        built.append(provider)
        return provider

    yield make
    for provider in built:
        provider.close()


class _Built(BureauProviderContract):
    name: str

    @pytest.fixture
    def provider(self, make_provider: Callable[..., BureauProvider]) -> BureauProvider:
        return make_provider(self.name, timeout_seconds="0.5")

    @pytest.fixture
    def bad_provider(self, make_provider: Callable[..., BureauProvider]) -> BureauProvider:
        return make_provider(self.name, bad=True)


class TestSandboxBureau(_Built):
    name = "sandbox"


class TestRestBureau(_Built):
    name = "rest"
