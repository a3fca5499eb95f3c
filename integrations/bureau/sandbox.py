"""The embedded default bureau: the REST client pointed at our sandbox bureau, and its starter.

`SandboxBureauProvider` needs nothing but the sandbox's base URL and credentials, which
`start_bureau_sandbox` hands out; a real deployment chooses `bureau.rest` (or a plugin) in
settings instead.

`integrations.sandbox.start_sandbox` does the work (socket handed to the child, health check,
exit with the parent); `start_bureau_sandbox` only names the server module and makes the
credentials the bureau client needs, so that `handle.credentials` builds a `bureau.sandbox`
provider as it is. A sandbox started by `start_sandbox(server=SERVER)` alone (as
`arrears sandbox` does) gets SMS-shaped credentials; the server then derives its own from them,
and `provider_credentials(handle.credentials)` gives a client the same ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, cast

from pydantic import Field

from integrations.bureau._sandbox_state import BureauCredentials
from integrations.bureau.rest import RestBureauProvider, RestBureauSettings
from integrations.metadata import ProviderInfo
from integrations.sandbox import SandboxHandle, start_sandbox

__all__ = [
    "SERVER",
    "BureauCredentials",
    "SandboxBureauProvider",
    "SandboxBureauSettings",
    "provider_credentials",
    "start_bureau_sandbox",
]

SERVER = "integrations.bureau.sandbox_server"


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


def start_bureau_sandbox(
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    credentials: BureauCredentials | None = None,
    startup_timeout: float = 30.0,
    log_level: str = "warning",
) -> SandboxHandle:
    """Start the sandbox bureau on `host:port` (0: any free port) with fresh credentials unless given.

    `handle.set_faults(...)`, `handle.messages(route="furnish")`, `handle.reset()` work as for
    the SMS sandbox; `handle.admin.get(f"/_sandbox/uploads/{id}")` returns a file as received.
    """
    return start_sandbox(
        port,
        host=host,
        server=SERVER,
        # start_sandbox only calls `.as_mapping()` on it; its annotation names the SMS credentials
        credentials=cast(Any, credentials or BureauCredentials.generate()),
        startup_timeout=startup_timeout,
        log_level=log_level,
    )


def provider_credentials(mapping: Mapping[str, str]) -> dict[str, str]:
    """The settings a bureau provider needs for a sandbox started with `mapping` (see above)."""
    return BureauCredentials.from_mapping(mapping).as_mapping()
