"""What a provider class declares about itself, next to its code (name, kind, settings schema).

The registry reads it to build a provider from settings; operators read it (`arrears sandbox`,
docs) to learn which settings a provider needs. Secrets are `pydantic.SecretStr` fields of the
settings model, so the schema itself says which values must never be printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from pydantic import BaseModel, SecretStr

__all__ = ["ProviderInfo"]


@dataclass(frozen=True)
class ProviderInfo:
    """Static facts about one provider implementation."""

    name: str  # entry-point name within its kind: "twilio" for "sms.twilio"
    kind: str  # "sms", "bureau", "court"
    title: str
    settings: type[BaseModel]  # validated from the credentials mapping plus the base URL
    batch_size: int = 1  # messages per vendor request
    deduplicates: bool = False  # the vendor itself drops a resend with the same idempotency key
    # Its messages reach no one (a sandbox): a run as of another instant (a simulated day) may check
    # and record its sends at that instant. A provider that reaches phones is checked at the hour it
    # sends, the only hour the law counts (`tasks.sending`); a plugin is one unless it says not.
    simulated: bool = False
    setup_url: str | None = None

    @property
    def entry_point(self) -> str:
        return f"{self.kind}.{self.name}"

    def secret_fields(self) -> list[str]:
        """Names of the settings that hold secrets (`SecretStr`, or an optional one)."""
        return [
            name
            for name, field in self.settings.model_fields.items()
            if field.annotation is SecretStr or SecretStr in get_args(field.annotation)
        ]
