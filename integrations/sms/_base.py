"""What the HTTP SMS clients share: settings, the httpx client, bounded concurrency, lifecycle.

Concurrency is plain threads sharing one httpx transport (its connection pool is thread-safe
and keeps connections alive). Measured on the 2-core target against the sandbox in another
process, 3,000 one-message requests: threads over `httpx.Client` reached ~900 msg/s, an
`httpx.AsyncClient` on an event loop ~370 msg/s at the same concurrency (4) and less beyond it,
so threads it is, which also keeps the API synchronous with no loop to manage inside Prefect's
worker threads. More than ~8 threads only adds GIL contention.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar, TypeVar
from urllib.parse import urlencode, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from integrations._http import ConfiguredClient, exchange, tls
from integrations.errors import ConfigError, ProviderError
from integrations.metadata import ProviderInfo
from integrations.retries import RetryPolicy

__all__ = ["HttpProviderSettings", "HttpSmsProvider"]

T = TypeVar("T")
R = TypeVar("R")


class HttpProviderSettings(BaseModel):
    """Settings every HTTP provider has; vendors add credentials and sender fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(description="Root URL of the vendor's API (or of the sandbox imitating it).")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Read timeout of one HTTP request.")
    connect_timeout_seconds: float = Field(default=3.0, gt=0, description="Connect timeout.")
    concurrency: int = Field(default=16, ge=1, le=256, description="HTTP requests in flight per batch.")
    retry_attempts: int = Field(default=4, ge=1, description="Attempts per request, the first included.")
    retry_total_seconds: float = Field(
        default=30.0, gt=0, description="Time budget of one send, waits included."
    )
    reconcile_unknown: bool = Field(
        default=True,
        description=(
            "After an unknown outcome, look the message up at once. What is not found is resent where"
            " the vendor's records are current (Twilio), left unknown where they lag (Aliyun)."
        ),
    )
    lookback_days: int = Field(default=2, ge=1, le=30, description="How far back a status search looks.")

    @field_validator("base_url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        # Without a scheme httpx cannot even try, and every send would end as an unknown outcome
        # with the messages left scheduled: refuse it here, where the setting is named.
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL with a host")
        return value.strip()


class HttpSmsProvider(ConfiguredClient):
    """Base of the HTTP clients: construction, `repr` without secrets, pool, close, context manager."""

    info: ClassVar[ProviderInfo]
    settings_model: ClassVar[type[HttpProviderSettings]]

    def __init__(
        self, settings: HttpProviderSettings, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.retry_policy = RetryPolicy(
            attempts=settings.retry_attempts, total_seconds=settings.retry_total_seconds
        )
        # The transport, not an `httpx.Client`: the client's cookie jar, redirect and auth-flow
        # machinery cost ~40% of the per-message CPU on the one-request-per-message path, and we
        # need none of it (benchmarks/sms.py). Connections are pooled and kept alive all the same;
        # idle ones are dropped before servers usually drop them, so that a connection is never
        # reused just as the server closes it (an ambiguous failure after sending).
        self._transport = transport or httpx.HTTPTransport(
            limits=httpx.Limits(
                max_connections=settings.concurrency,
                max_keepalive_connections=settings.concurrency,
                keepalive_expiry=20.0,
            ),
            verify=tls(),
        )
        self._root = settings.base_url.rstrip("/")
        self._headers: dict[str, str] = {"User-Agent": "arrears-sms/1"}
        timeout = settings.timeout_seconds
        self._timeout = {
            "connect": settings.connect_timeout_seconds,
            "read": timeout,
            "write": timeout,
            "pool": timeout,
        }

    def close(self) -> None:
        self._transport.close()

    # -- helpers for subclasses ---------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        form: Mapping[str, str] | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One HTTP exchange; transport failures become `Transient` (surely not sent) or `UnknownOutcome`.
        A `form` given as text is sent as it is: form-encoded already (a signed body)."""
        all_headers = {**self._headers, **(headers or {})}
        content = None
        if form is not None:
            content = (form if isinstance(form, str) else urlencode(form)).encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        url = path if path.startswith(("http://", "https://")) else self._root + path
        request = httpx.Request(
            method,
            url,
            params=params,
            content=content,
            headers=all_headers,
            extensions={"timeout": self._timeout},
        )

        def send() -> httpx.Response:
            response = self._transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
            return response

        return exchange(send, self.info.entry_point)

    def _map_bounded(self, fn: Callable[[T], R], items: Sequence[T], concurrency: int) -> list[R | None]:
        """`fn` over `items` with at most `concurrency` at once, results in order.

        `fn` returns outcomes and raises only `ConfigError`: then no new item starts, the ones in
        flight finish, and the error is re-raised with what happened so far (None: not started).
        """
        results: list[R | None] = [None] * len(items)
        indices = iter(range(len(items)))  # next() on a range iterator is atomic under the GIL
        stop = threading.Event()
        failures: list[BaseException] = []

        def worker() -> None:
            for i in indices:
                if stop.is_set():
                    return
                try:
                    results[i] = fn(items[i])
                except BaseException as e:  # re-raised in the caller's thread below
                    failures.append(e)
                    stop.set()
                    return

        workers = min(concurrency, len(items))
        if workers <= 1:
            worker()
        else:
            threads = [
                threading.Thread(target=worker, name=f"{self.info.name}-send-{n}", daemon=True)
                for n in range(workers)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if failures:
            first = failures[0]
            if isinstance(first, ConfigError):
                first.outcomes = list(results)
            raise first
        return results


def for_request(error: ProviderError, idempotency_key: str) -> ProviderError:
    """A copy of `error` naming one message: a batch-wide error becomes each message's outcome."""
    mine = copy.copy(error)
    mine.idempotency_key = idempotency_key
    return mine
