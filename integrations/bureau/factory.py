"""One obvious way to get a bureau provider object: by name, base URL and credentials."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from integrations import registry
from integrations.bureau.protocol import BureauProvider
from integrations.metadata import ProviderInfo

__all__ = ["DEFAULT_PROVIDER", "available_providers", "build_provider", "provider_class"]

DEFAULT_PROVIDER = "sandbox"  # the REST client against a sandbox bureau started for the run


def provider_class(name: str) -> type[BureauProvider]:
    """The class registered as `bureau.<name>`; LookupError if there is none, TypeError if it is broken."""
    return cast("type[BureauProvider]", registry.load("bureau", name))


def build_provider(name: str, base_url: str, credentials: Mapping[str, str]) -> BureauProvider:
    """A ready provider: `name` as in settings (`sandbox`, `rest`, or a plugin's), `base_url` of the
    gateway or sandbox, `credentials` a flat mapping of its settings fields (extra keys ignored).
    Raises `ConfigError` naming the missing or invalid fields, never their values."""
    cls = provider_class(name)
    return cast(BureauProvider, cls.from_config(base_url, credentials))  # type: ignore[attr-defined]


def available_providers() -> dict[str, ProviderInfo]:
    """Metadata of every bureau provider that loads; broken plugins are left out (see `registry.discover`)."""
    found, _ = registry.discover("bureau")
    return {name: cls.info for name, cls in found.items()}  # type: ignore[attr-defined]
