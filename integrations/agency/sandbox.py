"""The embedded default agency: the REST client pointed at our sandbox agency, and its controls.

    from integrations.agency.sandbox import start_agency_sandbox, SandboxAgencyProvider
    with start_agency_sandbox() as agency:
        p = SandboxAgencyProvider.from_config(agency.base_url, agency.credentials)
        assignment = p.assign(request)
        agency.advance(assignment.assignment_id, "recovered", deliver=True)

The sandbox (`integrations.agency.sandbox_server`) runs in this process by default, or in its own
(`in_process=False`, through `integrations.sandbox.start_sandbox`). Credentials (`client_id`,
`api_key`, `webhook_secret`) are taken from the mapping `start_sandbox` hands every server when
present, and otherwise derived from it, the same way here and in the server.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from pydantic import Field

from integrations.agency.rest import RestAgencyProvider, RestAgencySettings
from integrations.metadata import ProviderInfo
from integrations.sandbox import InProcessServer, SandboxControls, start_sandbox

__all__ = [
    "DEFAULT_CREDENTIALS",
    "SERVER",
    "AgencySandbox",
    "AgencySandboxCredentials",
    "SandboxAgencyProvider",
    "SandboxAgencySettings",
    "provider_credentials",
    "start_agency_sandbox",
]


def provider_credentials(mapping: Mapping[str, str]) -> dict[str, str]:
    """The settings mapping a provider needs for a sandbox started with `mapping`."""
    return AgencySandboxCredentials.from_mapping(mapping).as_mapping()


SERVER = "integrations.agency.sandbox_server"
_KEYS = ("client_id", "api_key", "webhook_secret")


@dataclass(frozen=True)
class AgencySandboxCredentials:
    """What the sandbox agency accepts; the keys are settings fields of `RestAgencySettings`."""

    client_id: str
    api_key: str
    webhook_secret: str

    @classmethod
    def generate(cls) -> AgencySandboxCredentials:
        return cls(
            "LENDER-" + secrets.token_hex(4).upper(), "agy_" + secrets.token_hex(16), secrets.token_hex(16)
        )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str]) -> AgencySandboxCredentials:
        """The agency's own keys if the mapping has them; else ones derived from the whole mapping."""
        if all(mapping.get(k) for k in _KEYS):
            return cls(*(str(mapping[k]) for k in _KEYS))
        seed = json.dumps(dict(mapping), sort_keys=True, default=str)

        def derive(label: str) -> str:
            return hashlib.sha256(f"arrears-agency-sandbox/{label}\0{seed}".encode()).hexdigest()

        return cls(
            "LENDER-" + derive("client")[:8].upper(), "agy_" + derive("api_key")[:32], derive("webhook")[:32]
        )

    def as_mapping(self) -> dict[str, str]:
        return asdict(self)

    def __repr__(self) -> str:
        return f"AgencySandboxCredentials(client_id={self.client_id!r}, ...)"


# Well-known values for a sandbox started by hand; never valid anywhere but there.
DEFAULT_CREDENTIALS = AgencySandboxCredentials(
    client_id="LENDER-SANDBOX",
    api_key="sandbox-agency-api-key",
    webhook_secret="sandbox-agency-webhook-secret",
)


class SandboxAgencySettings(RestAgencySettings):
    base_url: str = Field(description="Base URL of a running sandbox agency (`AgencySandbox.base_url`).")
    timeout_seconds: float = Field(default=5.0, gt=0, description="Read timeout of one HTTP request.")


class SandboxAgencyProvider(RestAgencyProvider):
    """The REST client with the sandbox's defaults: the agency the cycle and the demo assign to."""

    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="sandbox",
        kind="agency",
        title="Sandbox repossession agency (REST on the local sandbox server)",
        settings=SandboxAgencySettings,
        deduplicates=True,
    )
    settings_model: ClassVar[type[RestAgencySettings]] = SandboxAgencySettings


class AgencySandbox(SandboxControls):
    """A running sandbox agency: `SandboxControls` and what only assignments have."""

    def advance(
        self,
        assignment_id: str,
        to: str | None = None,
        *,
        reason: str | None = None,
        deliver: bool = False,
        at: str | None = None,
    ) -> dict[str, Any]:
        """Move an assignment to `to` (or one step along), passing through the statuses between,
        dated `at` (ISO 8601; now by default); `deliver` pushes the webhooks at once. Answers the
        assignment and its new events."""
        payload = {"to": to, "reason": reason, "deliver": deliver, "at": at}
        return dict(self._post(f"/_sandbox/advance/{assignment_id}", payload))

    def signed_callback(
        self, assignment_id: str, *, timestamp: int | None = None
    ) -> tuple[dict[str, str], bytes]:
        """A webhook for the assignment's latest event, signed as the platform would at `timestamp`."""
        answer = self._post("/_sandbox/callbacks/sign", {"id": assignment_id, "timestamp": timestamp})
        return dict(answer["headers"]), answer["body"].encode()

    def assignments(self, idempotency_key: str | None = None) -> list[dict[str, Any]]:
        """Assignments received, oldest first, with the order as received."""
        return list(self._get("/_sandbox/assignments", idempotency_key=idempotency_key)["assignments"])


def start_agency_sandbox(
    *, in_process: bool = True, credentials: AgencySandboxCredentials | None = None
) -> AgencySandbox:
    """Start the sandbox agency on a free port of 127.0.0.1, in this process or in its own."""
    if in_process:
        from integrations.agency.sandbox_server import create_app  # the server imports this module

        creds = credentials or AgencySandboxCredentials.generate()
        server = InProcessServer(create_app(creds)).start()
        return AgencySandbox(server.base_url, creds.as_mapping(), server.stop)
    handle = start_sandbox(server=SERVER)
    creds = AgencySandboxCredentials.from_mapping(handle.credentials)
    return AgencySandbox(handle.base_url, creds.as_mapping(), handle.stop)
