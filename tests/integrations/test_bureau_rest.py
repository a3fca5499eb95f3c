"""The REST bureau client on its own: error translation, reconciliation, settings, masking."""

import json
import pickle
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from integrations.bureau import (
    COLLECTION_PURPOSE,
    FurnishRequest,
    PullRequest,
)
from integrations.bureau._masking import mask_national_id, scrub_identity
from integrations.bureau.contract import NATIONAL_ID, make_pull, minimal_metro2
from integrations.bureau.rest import RestBureauProvider, RestBureauSettings, error_from_response
from integrations.errors import ConfigError, Duplicate, Permanent, ProviderError, Transient, UnknownOutcome
from integrations.providers import available_providers, build_provider, provider_class

SECRET = "bk_test_secret_value_1234"


def _provider(handler: Callable[[httpx.Request], httpx.Response], **settings: Any) -> RestBureauProvider:
    values = {"base_url": "https://bureau.test", "subscriber_code": "SUB1", "api_key": SECRET} | settings
    return RestBureauProvider(
        RestBureauSettings.model_validate(values), transport=httpx.MockTransport(handler)
    )


def _answer(status: int, code: str, message: str = "m", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}}, headers=headers)


def _report(reference: str, purpose: str = COLLECTION_PURPOSE) -> dict[str, Any]:
    return {
        "report_id": "RPT-1",
        "reference": reference,
        "permissible_purpose": purpose,
        "score_band": "B",
        "income_estimate": "52000.00",
        "phones": [{"number": "+12135550100", "confidence": 0.9, "line_type": "mobile", "carrier": None}],
        "addresses": [],
        "bankruptcy": {"indicator": False, "chapter": None, "filed_on": None},
        "deceased": False,
        "pulled_at": "2026-11-28T10:00:00-05:00",
    }


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (401, "unauthorized", ConfigError),
        (403, "subscriber_unknown", ConfigError),
        (429, "rate_limited", Transient),
        (503, "unavailable", Transient),
        (500, "internal", UnknownOutcome),
        (502, "bad_gateway", UnknownOutcome),
        (400, "purpose_not_permissible", Permanent),
        (422, "invalid_subject", Permanent),
        (404, "no_record", Permanent),
        (404, "not_found", ConfigError),
        (409, "idempotency_conflict", Duplicate),
    ],
)
def test_error_translation(status: int, code: str, expected: type[ProviderError]) -> None:
    """Each HTTP status the bureau answers maps to one class of our error tree, keeping the bureau's code."""
    error = error_from_response(_answer(status, code, "Retry-After: 7"), key="k-1")
    assert type(error) is expected
    assert error.code == code and error.idempotency_key == "k-1"


def test_retry_after_is_read_from_the_header() -> None:
    """A 429's Retry-After, in seconds or as an HTTP date, becomes the Transient's retry_after."""
    assert error_from_response(_answer(429, "rate_limited", **{"Retry-After": "7"})).retry_after == 7  # type: ignore[attr-defined]
    dated = error_from_response(
        _answer(503, "unavailable", **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    )
    assert dated.retry_after == 0  # type: ignore[attr-defined]  # a date in the past: no wait
    assert error_from_response(_answer(429, "rate_limited")).retry_after is None  # type: ignore[attr-defined]


def test_identity_echoed_by_the_bureau_is_masked_in_errors() -> None:
    """A national id or phone that the bureau echoes in its message is masked before it reaches our error."""
    request = make_pull(0)
    message = f"subject {NATIONAL_ID} / {NATIONAL_ID.replace('-', '')} / {request.phone} not valid"
    error = error_from_response(_answer(422, "invalid_subject", message), request=request)
    text = str(error)
    assert (
        NATIONAL_ID not in text
        and NATIONAL_ID.replace("-", "") not in text
        and str(request.phone) not in text
    )
    assert "6789" in text  # the last four stay, so a person can still tell subjects apart


def test_errors_pickle_with_their_attributes() -> None:
    """A translated error survives pickling (Prefect stores task exceptions) with code and retry_after."""
    error = error_from_response(_answer(429, "rate_limited", **{"Retry-After": "3"}), key="k")
    again = pickle.loads(pickle.dumps(error))
    assert isinstance(again, Transient) and again.retry_after == 3 and again.code == "rate_limited"


def test_requests_carry_key_credentials_and_purpose() -> None:
    """A pull sends the Bearer key, the subscriber code, the Idempotency-Key and the permissible purpose."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = json.loads(request.content)
        return httpx.Response(201, json=_report(body["reference"], body["permissible_purpose"]))

    with _provider(handler) as bureau:
        profile = bureau.pull(make_pull(1))
    (request,) = seen
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.headers["x-subscriber-code"] == "SUB1" and request.headers["idempotency-key"] == "pull-1"
    assert json.loads(request.content)["permissible_purpose"] == COLLECTION_PURPOSE
    assert profile.pulled_at.utcoffset() is not None and str(profile.income_estimate) == "52000.00"


def test_unreadable_answer_is_reconciled_by_lookup() -> None:
    """A 201 whose body cannot be read is an unknown outcome: the client finds the report by its key."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if request.method == "POST":
            return httpx.Response(201, content=b"<html>proxy</html>")
        assert request.url.params["idempotency_key"] == "pull-2"
        return httpx.Response(200, json={"reports": [_report("A-0000002")]})

    with _provider(handler) as bureau:
        assert bureau.pull(make_pull(2)).report_id == "RPT-1"
    assert calls == ["POST", "GET"]


def test_a_report_with_a_malformed_phone_or_address_is_read_without_it() -> None:
    """One phone entry the client cannot read (a confidence of "high", 95 for 95 %, no number) or a
    malformed address is left out and counted: the report's band and its bankruptcy indicator are
    kept. The whole answer was unreadable before, looked up, unreadable again: the pull failed
    and was asked again every cycle, and the bankruptcy never stopped collection."""
    report = _report("A-0000003") | {
        "phones": [
            {"number": "+12135550100", "confidence": 0.9, "line_type": "mobile"},
            {"number": "+12135550101", "confidence": "high"},
            {"number": "+12135550102", "confidence": 95},
            {"confidence": 0.8},
        ],
        "addresses": [{"line1": "1 Main St"}],
        "bankruptcy": {"indicator": True, "chapter": 13, "filed_on": "2026-10-01"},
    }
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return httpx.Response(201, json=report)

    with _provider(handler) as bureau:
        profile = bureau.pull(make_pull(3))
    assert calls == ["POST"]
    assert [p.number for p in profile.phones] == ["+12135550100"]
    assert (profile.unreadable_phones, profile.addresses) == (3, ())
    assert (profile.score_band, profile.bankrupt, profile.bankruptcy and profile.bankruptcy.chapter) == (
        "B",
        True,
        13,
    )


def test_unknown_outcome_not_found_is_sent_again_with_the_same_key() -> None:
    """After a 500 and an empty lookup, the client sends the request again under the same key."""
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"furnishings": []})
        keys.append(request.headers["idempotency-key"])
        if len(keys) == 1:
            return _answer(500, "internal")
        return httpx.Response(
            201,
            json={
                "submission_id": "SUB-1",
                "period": "2026-11",
                "accepted": True,
                "records": 4,
                "errors": [],
                "received_at": datetime.now(UTC).isoformat(),
            },
        )

    with _provider(handler) as bureau:
        result = bureau.furnish(FurnishRequest("f-1", "2026-11", minimal_metro2("2026-11")))
    assert result.submission_id == "SUB-1" and keys == ["f-1", "f-1"]


def test_without_reconciliation_an_unknown_outcome_is_raised() -> None:
    """With reconcile_unknown off, a read timeout reaches the caller as UnknownOutcome, nothing resent."""
    posts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal posts
        posts += 1
        raise httpx.ReadTimeout("slow", request=request)

    with _provider(handler, reconcile_unknown=False) as bureau, pytest.raises(UnknownOutcome) as caught:
        bureau.pull(make_pull(3))
    assert posts == 1 and caught.value.idempotency_key == "pull-3"


def test_connect_failure_is_transient_and_capped() -> None:
    """A bureau that cannot be reached raises Transient after the capped number of attempts."""
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ConnectError("refused", request=request)

    with _provider(handler, retry_attempts=3) as bureau, pytest.raises(Transient):
        bureau.pull(make_pull(4))
    assert attempts == 3


def test_settings_errors_name_fields_not_values() -> None:
    """Missing or invalid settings raise ConfigError naming the fields, never echoing a secret."""
    with pytest.raises(ConfigError) as caught:
        build_provider("bureau", "rest", "https://bureau.test", {"api_key": SECRET})
    assert "subscriber_code" in str(caught.value) and SECRET not in str(caught.value)


def test_registry_finds_the_built_in_bureaus() -> None:
    """`sandbox` and `rest` load as bureau providers; an unknown name is a LookupError."""
    assert provider_class("bureau", "sandbox").info.name == "sandbox"
    assert provider_class("bureau", "bureau.rest") is RestBureauProvider
    assert {"sandbox", "rest"} <= set(available_providers("bureau"))
    assert "api_key" in available_providers("bureau")["rest"].secret_fields()
    with pytest.raises(LookupError):
        provider_class("bureau", "nonesuch")


def test_request_types_refuse_what_cannot_be_sent() -> None:
    """A pull without a subject key or purpose, or a file without a YYYY-MM period, is refused at once."""
    with pytest.raises(ValueError):
        PullRequest("k", "A-1", "Dana", COLLECTION_PURPOSE)  # neither national id nor phone
    with pytest.raises(ValueError):
        PullRequest("k", "A-1", "Dana", "", phone="+12135550100")
    with pytest.raises(ValueError):
        FurnishRequest("k", "2026-13", b"x")
    assert "bytes" in repr(FurnishRequest("k", "2026-11", b"DANA WHITFIELD")) and "DANA" not in repr(
        FurnishRequest("k", "2026-11", b"DANA WHITFIELD")
    )


def test_masking_helpers() -> None:
    """National ids keep their last four characters; SSN-shaped numbers in free text are masked."""
    assert mask_national_id("123-45-6789") == "*******6789"
    assert mask_national_id(None) is None
    assert scrub_identity("ids 123456789 and 987-65-4321") == "ids *****6789 and *******4321"
