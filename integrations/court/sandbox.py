"""The embedded default court: the ECF client pointed at our sandbox court, and the sandbox's controls.

    from integrations.court.sandbox import start_court_sandbox
    with start_court_sandbox() as court:
        with build_provider("court", "sandbox", court.base_url, court.credentials) as p:
            receipt = p.submit(envelope)
            court.advance(receipt.filing_id, "accepted", deliver=True)

The sandbox runs in its own process (`integrations.sandbox.start_sandbox`, server
`integrations.court.sandbox_server`). `start_sandbox` hands every server one credentials mapping;
the court's own (`filer_id`, `api_key`, `callback_secret`) are taken from it when present and
otherwise derived from it, the same way here and in the server: `provider_credentials()`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import httpx
from pydantic import Field

from integrations.court._sandbox_state import CourtSandboxCredentials
from integrations.court.ecf import EcfCourtProvider, EcfSettings
from integrations.metadata import ProviderInfo
from integrations.sandbox import SandboxHandle, start_sandbox

__all__ = [
    "SERVER",
    "CourtSandbox",
    "CourtSandboxCredentials",
    "SandboxCourtProvider",
    "SandboxCourtSettings",
    "provider_credentials",
    "start_court_sandbox",
]

SERVER = "integrations.court.sandbox_server"


def provider_credentials(mapping: Mapping[str, str]) -> dict[str, str]:
    """The settings mapping a court provider needs for a sandbox started with `mapping`."""
    return CourtSandboxCredentials.from_mapping(mapping).as_mapping()


class SandboxCourtSettings(EcfSettings):
    base_url: str = Field(description="Base URL of a running sandbox court (`CourtSandbox.base_url`).")
    timeout_seconds: float = Field(default=5.0, gt=0, description="Read timeout of one HTTP request.")


class SandboxCourtProvider(EcfCourtProvider):
    """The ECF client with the sandbox's defaults: the court the cycle and the demo file with."""

    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="sandbox",
        kind="court",
        title="Sandbox court (ECF-style JSON against the local sandbox server)",
        settings=SandboxCourtSettings,
        deduplicates=True,
    )
    settings_model: ClassVar[type[EcfSettings]] = SandboxCourtSettings


@dataclass
class CourtSandbox:
    """A running sandbox court: where it listens, what it accepts, and its controls."""

    handle: SandboxHandle

    @property
    def base_url(self) -> str:
        return self.handle.base_url

    @property
    def credentials(self) -> dict[str, str]:
        """`filer_id`, `api_key`, `callback_secret`: what `build_provider` needs."""
        return provider_credentials(self.handle.credentials)

    @property
    def admin(self) -> httpx.Client:
        return self.handle.admin

    def _post(self, path: str, payload: Any = None) -> Any:
        response = self.admin.post(path, json=payload)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        """Forget every filing, idempotency record, rule, fault, callback URL and callback sent."""
        self.handle.reset()

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Replace the faults (`integrations.court._sandbox_state.Faults`: latency, 429/503 with
        Retry-After, 500 or a timeout after executing, callbacks dropped)."""
        return self.handle.set_faults(**faults)

    def set_rules(self, **rules: Any) -> dict[str, Any]:
        """Replace the rules that move filings over time (`Rules`: `accept_after_seconds`…,
        `reject_courts`, `object_courts`: payment orders there are objected to, not made effective)."""
        return dict(self._post("/_sandbox/rules", rules))

    def advance(
        self, filing_id: str, to: str | None = None, *, reason: str | None = None, deliver: bool = False
    ) -> dict[str, Any]:
        """Move a filing to status `to` (or one step along the happy path), passing through the
        statuses between (`objected`: a payment order's, after `served`); `deliver` sends the
        callbacks at once. Answers the filing and its events."""
        return dict(
            self._post(f"/_sandbox/advance/{filing_id}", {"to": to, "reason": reason, "deliver": deliver})
        )

    def register_callback(self, url: str | None) -> None:
        """Where callbacks go for filings that named no callback URL of their own (None: nowhere)."""
        self._post("/_sandbox/callbacks/url", {"url": url})

    def deliver_callbacks(self) -> dict[str, Any]:
        """Send every pending status event now; answers how many were delivered, dropped, failed."""
        return dict(self._post("/_sandbox/callbacks/deliver"))

    def callbacks(self) -> list[dict[str, Any]]:
        """Every callback attempt, oldest first: url, outcome, status code, headers, body."""
        response = self.admin.get("/_sandbox/callbacks")
        response.raise_for_status()
        return list(response.json()["callbacks"])

    def signed_callback(
        self, filing_id: str, *, timestamp: int | None = None, raw_events: Sequence[Mapping[str, Any]] = ()
    ) -> tuple[dict[str, str], bytes]:
        """A callback for the filing's current status, signed as the gateway would at `timestamp`;
        `raw_events` follow it as they are (events a provider may not be able to read)."""
        answer = self._post(
            "/_sandbox/callbacks/sign",
            {"filing_id": filing_id, "timestamp": timestamp, "raw_events": [dict(e) for e in raw_events]},
        )
        return dict(answer["headers"]), answer["body"].encode()

    def filings(self, **filters: Any) -> list[dict[str, Any]]:
        """Filings received, oldest first; filters: idempotency_key, court, status."""
        response = self.admin.get("/_sandbox/filings", params=filters)
        response.raise_for_status()
        return list(response.json()["filings"])

    def stats(self) -> dict[str, Any]:
        return self.handle.stats()

    def alive(self) -> bool:
        return self.handle.alive()

    def stop(self) -> None:
        self.handle.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_court_sandbox(
    port: int = 0, *, host: str = "127.0.0.1", startup_timeout: float = 30.0, log_level: str = "warning"
) -> CourtSandbox:
    """Start the sandbox court in its own process on `host:port` (0: any free port)."""
    return CourtSandbox(
        start_sandbox(port, host=host, server=SERVER, startup_timeout=startup_timeout, log_level=log_level)
    )
