"""The embedded default: the REST bureau client, pointed at our own sandbox bureau server.

It needs nothing but the sandbox's base URL and credentials, which
`integrations.bureau.sandbox.start_bureau_sandbox` hands out. A real deployment chooses
`bureau.rest` (or a plugin) in settings instead.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from integrations.bureau.rest import RestBureauProvider, RestBureauSettings
from integrations.metadata import ProviderInfo

__all__ = ["SandboxBureauProvider", "SandboxBureauSettings"]


class SandboxBureauSettings(RestBureauSettings):
    base_url: str = Field(description="Base URL of a running sandbox (`SandboxHandle.base_url`).")
    timeout_seconds: float = Field(default=5.0, gt=0, description="Read timeout of a pull or a lookup.")
    upload_timeout_seconds: float = Field(default=30.0, gt=0, description="Read timeout of a Metro 2 upload.")


class SandboxBureauProvider(RestBureauProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="sandbox",
        kind="bureau",
        title="Sandbox bureau (the REST client against the local sandbox server)",
        settings=SandboxBureauSettings,
        deduplicates=True,
    )
    settings_model: ClassVar[type[RestBureauSettings]] = SandboxBureauSettings
