"""The built-in agency providers pass the agency contract against the sandbox agency, over real HTTP."""

from collections.abc import Iterator

import pytest

from integrations import registry
from integrations.agency.contract import BAD_SECRET, AgencyProviderContract
from integrations.agency.rest import RestAgencyProvider
from integrations.agency.sandbox import AgencySandbox, start_agency_sandbox


@pytest.fixture(scope="module")
def _agency_server() -> Iterator[AgencySandbox]:
    with start_agency_sandbox() as sandbox:
        yield sandbox


class _Built(AgencyProviderContract):
    name: str

    @pytest.fixture
    def agency_sandbox(self, _agency_server: AgencySandbox) -> AgencySandbox:
        _agency_server.reset()
        return _agency_server

    @pytest.fixture
    def provider(self, agency_sandbox: AgencySandbox) -> Iterator[RestAgencyProvider]:
        cls = registry.load("agency", self.name)
        credentials = {**agency_sandbox.credentials, "timeout_seconds": "0.5"}
        with cls.from_config(agency_sandbox.base_url, credentials) as provider:  # type: ignore[attr-defined]
            yield provider

    @pytest.fixture
    def bad_provider(self, agency_sandbox: AgencySandbox) -> Iterator[RestAgencyProvider]:
        cls = registry.load("agency", self.name)
        credentials = {
            "client_id": agency_sandbox.credentials["client_id"],
            "api_key": BAD_SECRET,
            "webhook_secret": BAD_SECRET,
            "timeout_seconds": "0.5",
        }
        with cls.from_config(agency_sandbox.base_url, credentials) as provider:  # type: ignore[attr-defined]
            yield provider


class TestRestProvider(_Built):
    name = "rest"


class TestSandboxProvider(_Built):
    name = "sandbox"
