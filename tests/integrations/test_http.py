"""What the court, letters and agency clients share (`integrations._http`): one client
construction, one mapping of vendor errors, safe reads and deduplicated sends."""

import logging
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, ClassVar

import httpx
import pytest
from pydantic import BaseModel, SecretStr

from integrations._http import (
    BearerAuth,
    VendorClient,
    VendorError,
    read_once,
    retry_after,
    send_deduplicated,
    tls,
    vendor_error,
)
from integrations.errors import (
    MAX_RETRY_AFTER,
    ConfigError,
    Duplicate,
    Permanent,
    ProviderError,
    Transient,
    UnknownOutcome,
)
from integrations.metadata import ProviderInfo
from integrations.providers import build_provider
from integrations.retries import RetryPolicy


class _Settings(BaseModel):
    base_url: str
    api_key: SecretStr
    timeout_seconds: float = 3.0
    connect_timeout_seconds: float = 1.0
    retry_attempts: int = 3
    retry_total_seconds: float = 10.0


class _Client(VendorClient):
    info: ClassVar[ProviderInfo] = ProviderInfo(name="test", kind="court", title="test", settings=_Settings)
    settings_model: ClassVar[type[_Settings]] = _Settings
    api_root: ClassVar[str] = "/v9"
    user_agent: ClassVar[str] = "arrears-test/1"


def _answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers, request=httpx.Request("POST", "http://x/y"))


def test_a_vendor_client_sends_to_its_root_with_the_token_and_never_shows_it() -> None:
    """Requests go to the API root under the base URL with our user agent and the Bearer token;
    neither the client's repr nor its default headers hold the token; redirects are not followed."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"Location": "http://elsewhere/"})

    settings = _Settings(base_url="http://vendor.test/", api_key=SecretStr("tok-123"))
    with _Client(settings, transport=httpx.MockTransport(handler)) as client:
        answer = client._client.get("/things")
        assert "tok-123" not in repr(client) and "tok-123" not in str(client._client.headers)
    assert answer.status_code == 302 and len(seen) == 1
    assert str(seen[0].url) == "http://vendor.test/v9/things"
    assert seen[0].headers["Authorization"] == "Bearer tok-123"
    assert seen[0].headers["User-Agent"] == "arrears-test/1"
    assert "tok-123" not in repr(BearerAuth(SecretStr("tok-123")).__dict__)


@pytest.mark.parametrize(
    ("status", "body", "expected", "code"),
    [
        (429, {"error": {"code": "slow_down", "message": "later"}}, Transient, "slow_down"),
        (503, None, Transient, "http_503"),
        (500, {"error": {"code": "boom"}}, UnknownOutcome, "boom"),
        (401, {"error": {"code": "auth", "message": "bad key"}}, ConfigError, "auth"),
        (404, {"error": {"code": "no_route", "message": "?"}}, ConfigError, "no_route"),
        (409, {"error": {"code": "key.reused", "message": "other content"}}, Duplicate, "key.reused"),
        (409, {"error": {"code": "busy", "message": "locked"}}, Permanent, "busy"),
        (422, "not json at all", Permanent, "http_422"),
    ],
)
def test_vendor_errors_map_alike_for_every_vendor(
    status: int, body: Any, expected: type[ProviderError], code: str
) -> None:
    """429/503 are transient, other 5xx unknown, 401 and a 404 route configuration errors, a 409
    with the vendor's conflict code a duplicate, the rest permanent; a body without our error
    object still maps, with the fallback reason."""
    found = vendor_error(
        _answer(status, body), idempotency_key="k-1", no_message="HTTP error", duplicate_code="key.reused"
    )
    assert type(found) is expected
    assert found.code == code and found.idempotency_key in ("k-1", None)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120),
        ("1.5", 1.5),
        ("-5", 0),
        ("1000000000000", MAX_RETRY_AFTER),
        ("1000000000", MAX_RETRY_AFTER),
        ("inf", MAX_RETRY_AFTER),
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER),
        ("Mon, 01 Jan 2001 00:00:00 GMT", 0),
    ],
)
def test_retry_after_is_bounded_to_an_hour(header: str, expected: float) -> None:
    """Retry-After is the wait, from none (a negative number, a past date) to an hour at most: a
    hint of years (10^12 seconds, `inf`, a date in 9999) is an hour, so that no client waits and no
    message is parked for decades, and a date can always be computed from it."""
    assert MAX_RETRY_AFTER == 3600
    assert retry_after(_answer(429, headers={"Retry-After": header})) == expected


def test_retry_after_given_as_an_http_date_is_the_time_until_then() -> None:
    """RFC 9110 allows Retry-After as an HTTP date: two minutes ahead is about 120 seconds."""
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    seconds = retry_after(_answer(503, headers={"Retry-After": when}))
    assert seconds is not None and 100 < seconds <= 120, seconds


@pytest.mark.parametrize("header", [None, "soon", "nan", ""])
def test_a_missing_or_unreadable_retry_after_leaves_the_wait_to_our_backoff(header: str | None) -> None:
    """No Retry-After, or one that is neither a number nor a date, is None: our backoff decides."""
    headers = {} if header is None else {"Retry-After": header}
    assert retry_after(_answer(503, headers=headers)) is None


def test_the_vendors_own_reading_comes_first() -> None:
    """A vendor's specific error (its not-found, its refusal) wins over the common mapping, and
    sees the error object's other fields."""
    seen: list[VendorError] = []

    def specific(error: VendorError) -> ProviderError | None:
        seen.append(error)
        return Permanent("gone", error.reason) if error.body.get("status") == "closed" else None

    body = {"error": {"code": "nope", "message": "closed case", "status": "closed"}}
    found = vendor_error(
        _answer(404, body), idempotency_key=None, no_message="-", duplicate_code=None, specific=specific
    )
    assert isinstance(found, Permanent) and found.code == "gone"
    assert seen == [VendorError(404, "nope", "closed case", body["error"])]


def test_a_read_turns_every_unknown_outcome_into_a_transient_one() -> None:
    """A safe read retries a 5xx, a lost answer and an unreadable one; a 404 goes up as itself."""

    def answers(*responses: httpx.Response | Exception) -> Any:
        queue = list(responses)

        def send() -> httpx.Response:
            item = queue.pop(0)
            if isinstance(item, Exception):
                raise item
            return item

        return send

    def error(response: httpx.Response) -> ProviderError:
        return vendor_error(response, idempotency_key=None, no_message="-", duplicate_code=None)

    def read(send: Any) -> Any:
        return read_once(send, "court.test", what="GET /x", error=error, parse=lambda p: p["ok"])

    request = httpx.Request("GET", "http://x/")
    for failing in (_answer(500, {}), httpx.ReadTimeout("slow", request=request), _answer(200, ["no"])):
        with pytest.raises(Transient):
            read(answers(failing))
    with pytest.raises(ConfigError):
        read(answers(_answer(404, {})))
    assert read(answers(_answer(200, {"ok": 7}))) == 7


def test_a_deduplicated_send_is_repeated_once_after_an_unknown_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unknown outcome sends the same call again once (the vendor answers the first result);
    a second unknown outcome goes up."""
    calls: list[int] = []

    def once_then(results: list[Any]) -> Any:
        def once() -> Any:
            calls.append(1)
            result = results.pop(0)
            if isinstance(result, Exception):
                raise result
            return result

        return once

    policy = RetryPolicy(attempts=1, total_seconds=5)
    log = logging.getLogger("test.http")
    sent = send_deduplicated(
        once_then([UnknownOutcome("lost"), "first"]), policy, log=log, label="court.test", key="k-9"
    )
    assert (sent, len(calls)) == ("first", 2)
    assert "outcome unknown for k-9" in caplog.text
    with pytest.raises(UnknownOutcome):
        send_deduplicated(
            once_then([UnknownOutcome("lost"), UnknownOutcome("lost again")]),
            policy,
            log=log,
            label="court.test",
            key="k-10",
        )


def test_every_client_of_a_process_shares_one_tls_context(
    make_provider: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading the certificate authorities takes ~30 ms, and dispatch makes an SMS provider for each
    batch: the clients of a process (SMS, bureau, court, letters, agency) load them once."""
    made: list[ssl.SSLContext] = []
    create = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(create(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    tls.cache_clear()
    for name in ("aliyun", "twilio", "aliyun"):
        make_provider(name)
    bureau = build_provider(
        "bureau", "rest", "https://bureau.test", {"api_key": "k", "subscriber_code": "S1"}
    )
    settings = _Settings(base_url="https://vendor.test/", api_key=SecretStr("tok-123"))
    with bureau, _Client(settings), _Client(settings):
        pass
    assert len(made) == 1 and tls() is made[0]
