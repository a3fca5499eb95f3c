"""One obvious way to get a court provider object: by name, base URL and credentials."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from integrations import registry
from integrations.court.protocol import CourtProvider
from integrations.metadata import ProviderInfo

__all__ = ["DEFAULT_PROVIDER", "available_providers", "build_provider", "provider_class"]

DEFAULT_PROVIDER = "sandbox"  # the ECF client against the local sandbox court


def provider_class(name: str) -> type[CourtProvider]:
    """The class registered as `court.<name>`; LookupError if there is none, TypeError if it is broken."""
    return cast("type[CourtProvider]", registry.load("court", name))


def build_provider(name: str, base_url: str, credentials: Mapping[str, str]) -> CourtProvider:
    """A ready provider: `name` as in settings (`sandbox`, `ecf`, or a plugin's), `base_url` of the
    gateway or sandbox, `credentials` a flat mapping of its settings fields (extra keys ignored).
    Raises `ConfigError` naming the missing or invalid fields, never their values."""
    cls = provider_class(name)
    return cast(CourtProvider, cls.from_config(base_url, credentials))  # type: ignore[attr-defined]


def available_providers() -> dict[str, ProviderInfo]:
    """Metadata of every court provider that loads; broken plugins are left out (see `registry.discover`)."""
    found, _ = registry.discover("court")
    return {name: cls.info for name, cls in found.items()}  # type: ignore[attr-defined]
