"""What the HTTP clients of every provider kind share: construction from settings, one exchange
with transport failures translated, Retry-After, and the status codes every vendor means alike.

Each client keeps its own wire format and its own reading of the vendor's error body; the pieces
here are the ones that were the same in all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Self

import httpx
from pydantic import BaseModel, ValidationError

from integrations.errors import ConfigError, ProviderError, Transient, UnknownOutcome
from integrations.metadata import ProviderInfo

__all__ = ["ConfiguredClient", "error_for_status", "exchange", "retry_after"]


def retry_after(response: httpx.Response) -> float | None:
    """Seconds in the answer's Retry-After (a number or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:  # an HTTP date
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


def error_for_status(
    response: httpx.Response, reason: str, code: str, *, idempotency_key: str | None = None
) -> ProviderError | None:
    """The error a status means whatever the vendor: 429 and 503 not executed (`Transient`, with
    Retry-After), any other 5xx perhaps executed (`UnknownOutcome`), 401 and 403 refused credentials
    (`ConfigError`). None for the statuses the vendor's own codes decide."""
    status = response.status_code
    key = idempotency_key
    if status in (429, 503):
        return Transient(reason, retry_after=retry_after(response), code=code, idempotency_key=key)
    if status >= 500:
        return UnknownOutcome(reason, code=code, idempotency_key=key)
    if status in (401, 403):
        return ConfigError(reason, code=code, idempotency_key=key)
    return None


def exchange(
    send: Callable[[], httpx.Response],
    label: str,
    *,
    idempotency_key: str | None = None,
    no_answer: str = "no answer after the request was sent",
    no_answer_code: str | None = None,
) -> httpx.Response:
    """`send()`, with transport failures as `Transient` (surely not sent: no connection) or
    `UnknownOutcome` (read timeout, reset, protocol error: the request went out)."""
    try:
        return send()
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
        raise Transient(
            f"{label}: could not connect ({type(e).__name__})", idempotency_key=idempotency_key
        ) from None
    except httpx.TransportError as e:
        raise UnknownOutcome(
            f"{label}: {no_answer} ({type(e).__name__})", code=no_answer_code, idempotency_key=idempotency_key
        ) from None


class ConfiguredClient:
    """Base of the provider clients: built from settings, `repr` without secrets, a context manager.

    A subclass sets `info` and `settings_model`, takes its settings in `__init__` and implements
    `close()`."""

    info: ClassVar[ProviderInfo]
    settings_model: ClassVar[type[BaseModel]]
    settings: Any

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    @classmethod
    def from_config(cls, base_url: str, credentials: Mapping[str, str]) -> Self:
        """Build from a base URL and a flat mapping; keys the settings do not know are ignored, so
        one mapping (a sandbox's) can serve every provider. Raises `ConfigError`, naming the
        fields at fault but never their values."""
        known = cls.settings_model.model_fields
        values: dict[str, Any] = {k: v for k, v in credentials.items() if k in known}
        values["base_url"] = base_url
        try:
            settings = cls.settings_model.model_validate(values)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'settings'}: {err['msg']}"
                for err in e.errors(include_input=False, include_url=False)
            )
            raise ConfigError(f"{cls.info.entry_point} settings are invalid: {problems}") from None
        return cls(settings)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"  # SecretStr fields print as '**********'

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
