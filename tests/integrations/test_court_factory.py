"""Finding and building court providers by name, through the registry (entry points `court.<name>`)."""

from collections.abc import Iterator

import pytest

from integrations.court import (
    CourtProvider,
    FilingNotFound,
)
from integrations.court.sandbox import CourtSandbox, start_court_sandbox
from integrations.errors import ConfigError
from integrations.providers import DEFAULT_PROVIDER, available_providers, build_provider


@pytest.fixture(scope="module")
def court() -> Iterator[CourtSandbox]:
    with start_court_sandbox() as court:
        yield court


@pytest.mark.parametrize("name", ["sandbox", "ecf", "court.ecf"])
def test_builtin_providers_build_and_answer(name: str, court: CourtSandbox) -> None:
    """Each built-in name (with or without the kind prefix) builds a provider that the sandbox answers."""
    with build_provider("court", name, court.base_url, court.credentials) as provider:
        assert isinstance(provider, CourtProvider)
        assert provider.info.entry_point == (name if "." in name else f"court.{name}")
        with pytest.raises(FilingNotFound):
            provider.status("ECF-NONE")


def test_default_is_the_sandbox_court() -> None:
    """The default court provider is registered and deduplicates by idempotency key."""
    assert available_providers("court")[DEFAULT_PROVIDER].deduplicates


def test_unknown_name_lists_the_known_ones() -> None:
    """An unknown court provider name is a LookupError that names the known ones."""
    with pytest.raises(LookupError, match=r"court\.ecf"):
        build_provider("court", "carrier-pigeon", "http://x", {})


def test_missing_settings_are_named() -> None:
    """Building without the filer's secrets raises ConfigError naming them, and echoes no value."""
    with pytest.raises(ConfigError, match="callback_secret") as caught:
        build_provider("court", "ecf", "http://x", {"filer_id": "F-1", "api_key": "key-0a9b"})
    assert "key-0a9b" not in str(caught.value)
