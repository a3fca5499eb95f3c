"""The embedded default letters provider: the Lob client pointed at our sandbox Lob, and its controls.

    from integrations.letters.sandbox import start_letters_sandbox, SandboxLettersProvider
    with start_letters_sandbox() as lob:
        p = SandboxLettersProvider.from_config(lob.base_url, lob.credentials)
        letter = p.send(request)
        lob.advance(letter.id, "delivered", deliver=True)

The sandbox (`integrations.letters.sandbox_server`) runs in this process by default, or in its own
(`in_process=False`, through `integrations.sandbox.start_sandbox`, as `arrears sandbox` does).
`start_sandbox` hands every server one credentials mapping; the letters' own (`api_key`,
`webhook_secret`) are taken from it when present and otherwise derived from it, the same way here
and in the server.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from pydantic import Field

from integrations.letters.lob import LobLettersProvider, LobSettings
from integrations.metadata import ProviderInfo
from integrations.sandbox import InProcessServer, SandboxControls, start_sandbox

__all__ = [
    "DEFAULT_CREDENTIALS",
    "SERVER",
    "LettersSandbox",
    "LettersSandboxCredentials",
    "SandboxLettersProvider",
    "SandboxLettersSettings",
    "provider_credentials",
    "start_letters_sandbox",
]


def provider_credentials(mapping: Mapping[str, str]) -> dict[str, str]:
    """The settings mapping a provider needs for a sandbox started with `mapping`."""
    return LettersSandboxCredentials.from_mapping(mapping).as_mapping()


SERVER = "integrations.letters.sandbox_server"
_KEYS = ("api_key", "webhook_secret")


@dataclass(frozen=True)
class LettersSandboxCredentials:
    """What the sandbox Lob accepts; the keys are settings fields of `LobSettings`."""

    api_key: str
    webhook_secret: str

    @classmethod
    def generate(cls) -> LettersSandboxCredentials:
        return cls("test_" + secrets.token_hex(16), secrets.token_hex(16))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str]) -> LettersSandboxCredentials:
        """The letters' own keys if the mapping has them; else ones derived from the whole mapping,
        which `start_sandbox` generates at random, so they are as unguessable as its secrets."""
        if all(mapping.get(k) for k in _KEYS):
            return cls(*(str(mapping[k]) for k in _KEYS))
        seed = json.dumps(dict(mapping), sort_keys=True, default=str)

        def derive(label: str) -> str:
            return hashlib.sha256(f"arrears-letters-sandbox/{label}\0{seed}".encode()).hexdigest()

        return cls("test_" + derive("api_key")[:32], derive("webhook")[:32])

    def as_mapping(self) -> dict[str, str]:
        return asdict(self)

    def __repr__(self) -> str:
        return "LettersSandboxCredentials(...)"


# Well-known values for a sandbox started by hand; never valid anywhere but there.
DEFAULT_CREDENTIALS = LettersSandboxCredentials(
    api_key="test_sandbox-letters-api-key", webhook_secret="sandbox-letters-webhook-secret"
)


class SandboxLettersSettings(LobSettings):
    base_url: str = Field(description="Base URL of a running sandbox Lob (`LettersSandbox.base_url`).")
    timeout_seconds: float = Field(default=5.0, gt=0, description="Read timeout of one HTTP request.")


class SandboxLettersProvider(LobLettersProvider):
    """The Lob client with the sandbox's defaults: the letters the cycle and the demo mail."""

    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="sandbox",
        kind="letters",
        title="Sandbox letters (Lob-shaped API on the local sandbox server)",
        settings=SandboxLettersSettings,
        deduplicates=True,
    )
    settings_model: ClassVar[type[LobSettings]] = SandboxLettersSettings
    # It reaches no one: a letter to any country counts as posted there, so the demo's and the
    # tests' letters go wherever they are addressed (the `lob` client pointed at this server
    # posts in the US only, as Lob does).
    posts_in: ClassVar[frozenset[str] | None] = None


class LettersSandbox(SandboxControls):
    """A running sandbox Lob: `SandboxControls` and what only letters have."""

    def advance(
        self, letter_id: str, to: str | None = None, *, deliver: bool = False, at: str | None = None
    ) -> dict[str, Any]:
        """Move a letter to tracking status `to` (or one step along), passing through the steps
        between, dated `at` (ISO 8601; now by default); `deliver` pushes the webhooks at once.
        Answers the letter and its new events."""
        payload = {"to": to, "deliver": deliver, "at": at}
        return dict(self._post(f"/_sandbox/advance/{letter_id}", payload))

    def signed_callback(
        self, letter_id: str, *, timestamp: int | None = None
    ) -> tuple[dict[str, str], bytes]:
        """A webhook for the letter's latest tracking event, signed as Lob would at `timestamp`."""
        answer = self._post("/_sandbox/callbacks/sign", {"id": letter_id, "timestamp": timestamp})
        return dict(answer["headers"]), answer["body"].encode()

    def letters(self, idempotency_key: str | None = None) -> list[dict[str, Any]]:
        """Letters received, oldest first, as Lob answers them plus what the sandbox recorded."""
        return list(self._get("/_sandbox/letters", idempotency_key=idempotency_key)["letters"])


def start_letters_sandbox(
    *, in_process: bool = True, credentials: LettersSandboxCredentials | None = None
) -> LettersSandbox:
    """Start the sandbox Lob on a free port of 127.0.0.1, in this process or in its own."""
    if in_process:
        from integrations.letters.sandbox_server import create_app  # the server imports this module

        creds = credentials or LettersSandboxCredentials.generate()
        server = InProcessServer(create_app(creds)).start()
        return LettersSandbox(server.base_url, creds.as_mapping(), server.stop)
    handle = start_sandbox(server=SERVER)
    creds = LettersSandboxCredentials.from_mapping(handle.credentials)
    return LettersSandbox(handle.base_url, creds.as_mapping(), handle.stop)
