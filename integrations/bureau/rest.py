"""A client of a bureau's JSON API (and of the sandbox that imitates it).

Wire format, version 1, every request with `Authorization: Bearer <api key>` and
`X-Subscriber-Code: <code>` (the member code the bureau assigned the lender):

- `POST /v1/reports` `{"reference", "subject": {"name", "national_id", "phone"}, "permissible_purpose"}`
  with an `Idempotency-Key` header: 201 with the report (200 and `Idempotent-Replayed: true` for a
  resend of the same key); `GET /v1/reports?idempotency_key=K` finds it again.
- `POST /v1/furnishings?period=YYYY-MM`, the Metro 2 file as `application/octet-stream`, with an
  `Idempotency-Key`: 201 with `{"submission_id", "accepted", "records", "errors", "received_at"}`;
  `GET /v1/furnishings?idempotency_key=K` finds it again.
- Errors: `{"error": {"code", "message"}}`. 401/403 refused credentials or subscription; 400/422
  a request the bureau will never accept (`purpose_not_permissible`, `invalid_subject`);
  404 `no_record` no file on the consumer; 409 an idempotency key reused with another body;
  429 and 503 not executed, with Retry-After; any other 5xx: executed or not, nobody knows.

The bureau deduplicates by key, so after an unknown outcome (a 500, a read timeout) the client
looks the request up by its key and resends (the same key again) only if it is not found.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import suppress
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from integrations._http import ConfiguredClient, error_for_status, exchange, tls
from integrations.bureau._masking import scrub_identity
from integrations.bureau.protocol import (
    Address,
    Bankruptcy,
    BureauProfile,
    FoundPhone,
    FurnishError,
    FurnishRequest,
    FurnishResult,
    PullRequest,
)
from integrations.errors import (
    ConfigError,
    Duplicate,
    Permanent,
    ProviderError,
    UnknownOutcome,
)
from integrations.metadata import ProviderInfo
from integrations.retries import RetryPolicy, call_with_retries

log = logging.getLogger(__name__)  # idempotency keys and periods only: never a subject or a secret

__all__ = ["RestBureauProvider", "RestBureauSettings", "error_from_response", "parse_profile"]

T = TypeVar("T")


class RestBureauSettings(BaseModel):
    """Settings of the REST bureau client; `api_key` is the one secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(description="Root URL of the bureau's API (or of the sandbox imitating it).")
    subscriber_code: str = Field(
        min_length=1, description="Subscriber (member) code the bureau assigned the lender."
    )
    api_key: SecretStr = Field(description="API key, sent as a Bearer token.")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Read timeout of a pull or a lookup.")
    upload_timeout_seconds: float = Field(
        default=120.0, gt=0, description="Read timeout of a Metro 2 upload (large files)."
    )
    connect_timeout_seconds: float = Field(default=3.0, gt=0, description="Connect timeout.")
    retry_attempts: int = Field(default=4, ge=1, description="Attempts per request, the first included.")
    retry_total_seconds: float = Field(
        default=30.0, gt=0, description="Time budget of one call, waits included."
    )
    reconcile_unknown: bool = Field(
        default=True,
        description="After an unknown outcome, look the request up by key and resend only if not found.",
    )


def error_from_response(
    response: httpx.Response, *, key: str | None = None, request: PullRequest | None = None
) -> ProviderError:
    """Translate a non-2xx answer into our error tree (pure: unit-tested with `httpx.MockTransport`)."""
    try:
        error = response.json().get("error") or {}
        code = str(error.get("code") or "") or None
        message = str(error.get("message") or response.reason_phrase or "no error message")
    except (ValueError, AttributeError, TypeError):
        code, message = None, response.reason_phrase or "no error message"
    status = response.status_code
    reason = scrub_identity(
        f"bureau answered {status}: {message}",
        national_id=request.national_id if request else None,
        phone=request.phone if request else None,
    )
    code_text = code or f"http_{status}"
    if (error := error_for_status(response, reason, code_text, idempotency_key=key)) is not None:
        return error
    if status == 409:
        return Duplicate(reason, code=code_text, idempotency_key=key)
    if status == 404 and code != "no_record":
        return ConfigError(reason, code=code_text, idempotency_key=key)  # wrong base URL or API version
    return Permanent(code_text, reason, idempotency_key=key)


def _aware(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError("a naive time from the bureau")
    return parsed


def _day(value: Any) -> date | None:
    return date.fromisoformat(str(value)) if value else None


def _phone(p: Any) -> FoundPhone:
    return FoundPhone(
        number=str(p["number"]),
        confidence=float(p["confidence"]),
        line_type=p.get("line_type") if p.get("line_type") in ("mobile", "landline", "voip") else "unknown",
        carrier=p.get("carrier"),
    )


def _address(a: Any) -> Address:
    return Address(
        line1=str(a["line1"]),
        line2=a.get("line2"),
        city=str(a["city"]),
        region=str(a["region"]),
        postal_code=str(a["postal_code"]),
        country=str(a.get("country") or "US"),
        reported_on=_day(a.get("reported_on")),
    )


def _readable(items: Any, read: Callable[[Any], T], what: str, key: str) -> tuple[tuple[T, ...], int]:
    """The entries of a list the bureau sent that can be read, and how many could not: one
    malformed phone (a confidence of "high", 95 for 95%) must not cost the report its band and its
    bankruptcy indicator, as it did when the whole answer was unreadable and asked again each day."""
    if items is not None and not isinstance(items, list):
        raise TypeError(f"{what}: not a list")  # the whole answer is unreadable: looked up again
    read_ones: list[T] = []
    for item in items or []:
        with suppress(*_UNREADABLE):  # counted below as the entries not read
            read_ones.append(read(item))
    skipped = len(items or []) - len(read_ones)
    if skipped:
        log.warning("bureau.rest: %d of the %s in report %s could not be read: left out", skipped, what, key)
    return tuple(read_ones), skipped


def parse_profile(payload: Mapping[str, Any], key: str) -> BureauProfile:
    """A `BureauProfile` from the JSON of one report; KeyError/ValueError/TypeError if malformed.
    A phone or an address entry that cannot be read is left out (`unreadable_phones` counts them)."""
    income = payload.get("income_estimate")
    bankruptcy = payload.get("bankruptcy") or {}
    phones, unreadable_phones = _readable(payload.get("phones"), _phone, "phones", key)
    addresses, _ = _readable(payload.get("addresses"), _address, "addresses", key)
    return BureauProfile(
        idempotency_key=key,
        report_id=str(payload["report_id"]),
        account_ref=str(payload["reference"]),
        purpose=str(payload["permissible_purpose"]),
        score_band=str(payload["score_band"]),
        income_estimate=Decimal(str(income)) if income is not None else None,
        phones=phones,
        addresses=addresses,
        unreadable_phones=unreadable_phones,
        bankruptcy=(
            Bankruptcy(
                chapter=int(bankruptcy["chapter"]) if bankruptcy.get("chapter") is not None else None,
                filed_on=_day(bankruptcy.get("filed_on")),
            )
            if bankruptcy.get("indicator")
            else None
        ),
        deceased=bool(payload.get("deceased")),
        pulled_at=_aware(payload["pulled_at"]),
    )


def _furnish_result(payload: Mapping[str, Any], key: str) -> FurnishResult:
    return FurnishResult(
        idempotency_key=key,
        submission_id=str(payload["submission_id"]),
        period=str(payload["period"]),
        accepted=bool(payload["accepted"]),
        records=int(payload.get("records") or 0),
        errors=tuple(
            FurnishError(int(e["record"]), str(e["field"]), str(e["reason"]))
            for e in payload.get("errors") or []
        ),
        received_at=_aware(payload["received_at"]),
    )


_UNREADABLE = (ValueError, KeyError, TypeError, AttributeError, InvalidOperation)


class RestBureauProvider(ConfiguredClient):
    """Pulls and furnishings over the bureau's JSON API; one connection pool per provider."""

    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="rest",
        kind="bureau",
        title="Credit bureau JSON API (profile pulls, Metro 2 uploads)",
        settings=RestBureauSettings,
        deduplicates=True,  # the bureau answers a resent key with the first result
    )
    settings_model: ClassVar[type[RestBureauSettings]] = RestBureauSettings

    def __init__(self, settings: RestBureauSettings, *, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.retry_policy = RetryPolicy(
            attempts=settings.retry_attempts, total_seconds=settings.retry_total_seconds
        )
        self._client = httpx.Client(
            base_url=settings.base_url.rstrip("/"),
            transport=transport,
            timeout=httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds),
            headers={
                "User-Agent": "arrears-bureau/1",
                # not in repr: that shows the settings, whose api_key prints as '**********'
                "Authorization": f"Bearer {settings.api_key.get_secret_value()}",
                "X-Subscriber-Code": settings.subscriber_code,
            },
            follow_redirects=False,
            verify=tls(),
        )

    def close(self) -> None:
        self._client.close()

    # -- pulls --------------------------------------------------------------------------------

    def pull(self, request: PullRequest) -> BureauProfile:
        body = {
            "reference": request.account_ref,
            "subject": {"name": request.name, "national_id": request.national_id, "phone": request.phone},
            "permissible_purpose": request.purpose,
        }

        def create() -> BureauProfile:
            response = self._send(
                "POST", "/v1/reports", key=request.idempotency_key, json=body, subject=request
            )
            return self._parse(response, request.idempotency_key, parse_profile)

        def lookup() -> BureauProfile | None:
            return self._lookup(
                "/v1/reports", "reports", request.idempotency_key, parse_profile, subject=request
            )

        return self._exactly_once(create, lookup, request.idempotency_key)

    # -- furnishing ---------------------------------------------------------------------------

    def furnish(self, request: FurnishRequest) -> FurnishResult:
        def create() -> FurnishResult:
            response = self._send(
                "POST",
                "/v1/furnishings",
                key=request.idempotency_key,
                params={"period": request.period},
                content=request.content,
                headers={"Content-Type": "application/octet-stream", "X-Content-SHA256": request.sha256},
                read_timeout=self.settings.upload_timeout_seconds,
            )
            return self._parse(response, request.idempotency_key, _furnish_result)

        def lookup() -> FurnishResult | None:
            return self._lookup("/v1/furnishings", "furnishings", request.idempotency_key, _furnish_result)

        return self._exactly_once(create, lookup, request.idempotency_key)

    # -- plumbing -----------------------------------------------------------------------------

    def _exactly_once(self, create: Callable[[], T], lookup: Callable[[], T | None], key: str) -> T:
        """Create with capped retries; after an unknown outcome, look up by key before resending."""
        try:
            return call_with_retries(create, self.retry_policy)
        except UnknownOutcome:
            if not self.settings.reconcile_unknown:
                raise
            try:
                found = call_with_retries(lookup, self.retry_policy)
            except ProviderError as e:
                raise UnknownOutcome(
                    f"outcome unknown and the lookup failed: {e}", code="lookup_failed", idempotency_key=key
                ) from None
            if found is not None:
                log.warning("bureau.rest: outcome unknown for %s, found it done", key)
                return found
            log.warning("bureau.rest: outcome unknown for %s, not found: sending again", key)
            # The same key goes out again: if the lookup was merely too early, the bureau still
            # answers with the first result rather than doing the work twice.
            return call_with_retries(create, self.retry_policy)

    def _send(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
        subject: PullRequest | None = None,
    ) -> httpx.Response:
        """One HTTP exchange; transport failures become `Transient` (surely not sent) or `UnknownOutcome`.
        `subject`: the pull whose national id and phone are masked if the bureau's error echoes them."""
        all_headers = dict(headers or {})
        if key is not None:
            all_headers["Idempotency-Key"] = key
        timeout = httpx.Timeout(
            read_timeout or self.settings.timeout_seconds, connect=self.settings.connect_timeout_seconds
        )
        response = exchange(
            lambda: self._client.request(
                method, path, params=params, json=json, content=content, headers=all_headers, timeout=timeout
            ),
            "bureau",
            idempotency_key=key,
            no_answer_code="no_answer",
        )
        if response.status_code >= 300:
            raise error_from_response(response, key=key, request=subject)
        return response

    def _parse(self, response: httpx.Response, key: str, parse: Callable[[Mapping[str, Any], str], T]) -> T:
        try:
            return parse(response.json(), key)
        except _UNREADABLE:  # executed, but the answer is unreadable: the lookup will tell
            raise UnknownOutcome(
                "bureau: unreadable answer", code="bad_answer", idempotency_key=key
            ) from None

    def _lookup(
        self,
        path: str,
        items: str,
        key: str,
        parse: Callable[[Mapping[str, Any], str], T],
        *,
        subject: PullRequest | None = None,
    ) -> T | None:
        response = self._send("GET", path, params={"idempotency_key": key}, subject=subject)
        try:
            found = response.json()[items]
            return parse(found[0], key) if found else None
        except _UNREADABLE:
            raise UnknownOutcome(
                "bureau: unreadable lookup answer", code="bad_answer", idempotency_key=key
            ) from None
