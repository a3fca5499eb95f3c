"""The built-in court providers pass the court contract against the sandbox court."""

from collections.abc import Iterator

import pytest

from integrations.court.contract import BAD_SECRET, CourtProviderContract
from integrations.court.ecf import EcfCourtProvider
from integrations.court.sandbox import CourtSandbox, SandboxCourtProvider, start_court_sandbox


@pytest.fixture(scope="module")
def _court_process() -> Iterator[CourtSandbox]:
    with start_court_sandbox() as court:
        yield court


class _Built(CourtProviderContract):
    cls: type[EcfCourtProvider]

    @pytest.fixture
    def court_sandbox(self, _court_process: CourtSandbox) -> CourtSandbox:
        _court_process.reset()
        return _court_process

    @pytest.fixture
    def provider(self, court_sandbox: CourtSandbox) -> Iterator[EcfCourtProvider]:
        credentials = {**court_sandbox.credentials, "timeout_seconds": "0.5"}
        with self.cls.from_config(court_sandbox.base_url, credentials) as provider:
            yield provider

    @pytest.fixture
    def bad_provider(self, court_sandbox: CourtSandbox) -> Iterator[EcfCourtProvider]:
        credentials = {**court_sandbox.credentials, "api_key": BAD_SECRET, "callback_secret": BAD_SECRET}
        with self.cls.from_config(court_sandbox.base_url, credentials) as provider:
            yield provider


class TestEcfProvider(_Built):
    cls = EcfCourtProvider


class TestSandboxProvider(_Built):
    cls = SandboxCourtProvider
