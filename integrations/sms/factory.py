"""One obvious way to get an SMS provider object: by name, base URL and credentials."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from integrations import registry
from integrations.metadata import ProviderInfo
from integrations.sms.protocol import SmsProvider

__all__ = ["DEFAULT_PROVIDER", "available_providers", "build_provider", "provider_class"]

DEFAULT_PROVIDER = "sandbox"  # the fast default: Aliyun-shaped batches of 100 against the sandbox


def provider_class(name: str) -> type[SmsProvider]:
    """The class registered as `sms.<name>`; LookupError if there is none, TypeError if it is broken."""
    return cast("type[SmsProvider]", registry.load("sms", name))


def build_provider(name: str, base_url: str, credentials: Mapping[str, str]) -> SmsProvider:
    """A ready provider: `name` as in settings (`sandbox`, `twilio`, `aliyun`, or a plugin's),
    `base_url` of the vendor or sandbox, `credentials` a flat mapping of its settings fields
    (extra keys ignored). Raises `ConfigError` naming the missing or invalid fields."""
    cls = provider_class(name)
    return cast(SmsProvider, cls.from_config(base_url, credentials))  # type: ignore[attr-defined]


def available_providers() -> dict[str, ProviderInfo]:
    """Metadata of every SMS provider that loads; broken plugins are left out (see `registry.discover`)."""
    found, _ = registry.discover("sms")
    return {name: cls.info for name, cls in found.items()}  # type: ignore[attr-defined]
