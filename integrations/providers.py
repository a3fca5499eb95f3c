"""One way to get a provider of any kind from settings: its class, a ready object, what is installed.

    from integrations.providers import build_provider
    with build_provider("sms", "sandbox", handle.base_url, handle.credentials) as sms:
        outcomes = sms.send_batch(requests)

`kind` is a provider kind (`sms`, `bureau`, `court`, or one added later); `name` is the provider's
name within it as settings give it (`sandbox`, `twilio`, `rest`, `ecf`, or a plugin's), with or
without the `<kind>.` prefix. Classes are found by `integrations.registry` and checked against
their kind's protocol before they are returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, cast, overload

from integrations import registry
from integrations.metadata import ProviderInfo

if TYPE_CHECKING:
    from integrations.bureau.protocol import BureauProvider
    from integrations.court.protocol import CourtProvider
    from integrations.sms.protocol import SmsProvider

__all__ = ["DEFAULT_PROVIDER", "ProviderClass", "available_providers", "build_provider", "provider_class"]

DEFAULT_PROVIDER = "sandbox"  # every kind's embedded default: its client against a local sandbox server

P_co = TypeVar("P_co", covariant=True)


class ProviderClass(Protocol[P_co]):
    """What the registry hands out, besides the kind's protocol: a class that declares its metadata
    and builds itself from settings."""

    @property
    def info(self) -> ProviderInfo: ...

    def from_config(self, base_url: str, credentials: Mapping[str, str]) -> P_co:
        """A ready provider; `ConfigError` names missing or invalid fields, never their values."""
        ...


@overload
def provider_class(kind: Literal["sms"], name: str) -> ProviderClass[SmsProvider]: ...
@overload
def provider_class(kind: Literal["bureau"], name: str) -> ProviderClass[BureauProvider]: ...
@overload
def provider_class(kind: Literal["court"], name: str) -> ProviderClass[CourtProvider]: ...
@overload
def provider_class(kind: str, name: str) -> ProviderClass[Any]: ...
def provider_class(kind: str, name: str) -> ProviderClass[Any]:
    """The class registered as `<kind>.<name>`; LookupError if there is none, TypeError if it is broken."""
    return cast("ProviderClass[Any]", registry.load(kind, name))


@overload
def build_provider(
    kind: Literal["sms"], name: str, base_url: str, credentials: Mapping[str, str]
) -> SmsProvider: ...
@overload
def build_provider(
    kind: Literal["bureau"], name: str, base_url: str, credentials: Mapping[str, str]
) -> BureauProvider: ...
@overload
def build_provider(
    kind: Literal["court"], name: str, base_url: str, credentials: Mapping[str, str]
) -> CourtProvider: ...
@overload
def build_provider(kind: str, name: str, base_url: str, credentials: Mapping[str, str]) -> Any: ...
def build_provider(kind: str, name: str, base_url: str, credentials: Mapping[str, str]) -> Any:
    """A ready provider of `kind`: `base_url` of the vendor or sandbox, `credentials` a flat mapping
    of its settings fields (extra keys ignored). Raises `ConfigError` naming the missing or invalid
    fields, never their values."""
    return provider_class(kind, name).from_config(base_url, credentials)


def available_providers(kind: str) -> dict[str, ProviderInfo]:
    """Metadata of every provider of `kind` that loads; broken plugins are left out (see
    `registry.discover`, which reports them)."""
    found, _ = registry.discover(kind)
    return {name: cast("ProviderClass[Any]", cls).info for name, cls in found.items()}
