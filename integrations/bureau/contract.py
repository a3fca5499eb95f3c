"""The contract every bureau provider passes, run against a sandbox that imitates its bureau.

A provider's test module subclasses it and supplies three fixtures:

    class TestMyBureau(BureauProviderContract):
        @pytest.fixture
        def provider(self, sandbox): ...      # built with the sandbox's base URL and credentials,
                                              # and a read timeout under one second
        @pytest.fixture
        def bad_provider(self, sandbox): ...  # same, with BAD_SECRET as its secret
        # `sandbox`: a reset `integrations.sandbox.SandboxHandle` (faults, messages)

The class runs each test inside `integrations.retries.testing()`, so Retry-After costs no time.
Imports pytest: load it from tests only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest

from integrations import retries
from integrations.bureau.protocol import (
    COLLECTION_PURPOSE,
    SCORE_BANDS,
    BureauProfile,
    BureauProvider,
    FurnishRequest,
    FurnishResult,
    PullRequest,
)
from integrations.errors import ConfigError, Duplicate, Permanent, ProviderError, Transient
from integrations.sandbox import connections_to, requests_made

__all__ = [
    "BAD_SECRET",
    "NATIONAL_ID",
    "BureauProviderContract",
    "make_pull",
    "minimal_metro2",
]

BAD_SECRET = "not-the-secret-5b1e77"  # what `bad_provider` is built with
NATIONAL_ID = "123-45-6789"  # a subject's id the tests check never shows in full


def make_pull(n: int = 0, *, prefix: str = "pull", **overrides: Any) -> PullRequest:
    """A pull for subject number `n` under the collection purpose; any field may be overridden."""
    values: dict[str, Any] = {
        "idempotency_key": f"{prefix}-{n}",
        "account_ref": f"A-{n:07d}",
        "name": f"Dana Whitfield {n}",
        "purpose": COLLECTION_PURPOSE,
        "national_id": f"{100 + n:03d}-45-6789" if n else NATIONAL_ID,
        "phone": f"+1213373{n:04d}",
    }
    return PullRequest(**(values | overrides))


def minimal_metro2(period: str, accounts: int = 2, *, bad_length_at: int | None = None) -> bytes:
    """A structurally sound character-format file (header, `accounts` base records, trailer).

    Only what a bureau's intake checks is filled; `bad_length_at` (1-based record number) makes
    that record one byte short.
    """
    year, month = (int(p) for p in period.split("-"))
    activity = date(year, month, 28).strftime("%m%d%Y")
    header = ("0426HEADER" + " " * 37 + activity + activity).ljust(426)
    base = ["0426" + " " * 38 + f"A-{n:07d}".ljust(30) + "I00" for n in range(accounts)]
    records = [header, *(b.ljust(426) for b in base), ("0426TRAILER" + f"{accounts:09d}").ljust(426)]
    if bad_length_at is not None:
        records[bad_length_at - 1] = records[bad_length_at - 1][:-1]
    return ("\n".join(records) + "\n").encode("ascii")


class BureauProviderContract:
    """Behaviour the bureau tasks rely on, whatever the bureau."""

    @pytest.fixture(autouse=True)
    def _retries_do_not_sleep(self) -> Iterator[None]:
        """Waits are computed but not slept, in whichever project the suite runs."""
        with retries.testing():
            yield

    # -- shape ------------------------------------------------------------------------------------

    def test_is_a_bureau_provider(self, provider: Any) -> None:
        """The provider satisfies the protocol and declares itself as the bureau kind."""
        assert isinstance(provider, BureauProvider)
        assert provider.info.kind == "bureau"

    def test_pull_returns_a_typed_profile_with_aware_time(self, provider: BureauProvider) -> None:
        """A pull returns a BureauProfile: score band A-E, phones with confidences, an aware pulled_at."""
        profile = provider.pull(make_pull(1))
        assert isinstance(profile, BureauProfile)
        assert profile.account_ref == "A-0000001" and profile.purpose == COLLECTION_PURPOSE
        assert profile.score_band in SCORE_BANDS
        assert profile.phones and all(
            0 <= p.confidence <= 1 and p.number.startswith("+") for p in profile.phones
        )
        assert profile.pulled_at.tzinfo is not None and profile.pulled_at.utcoffset() is not None

    def test_same_subject_gives_the_same_profile(self, provider: BureauProvider) -> None:
        """Two pulls of one subject under different keys describe the consumer identically."""
        first = provider.pull(make_pull(2, prefix="a"))
        second = provider.pull(make_pull(2, prefix="b"))
        assert first.report_id != second.report_id
        for name in ("score_band", "income_estimate", "phones", "addresses", "bankruptcy", "deceased"):
            assert getattr(first, name) == getattr(second, name), name

    def test_bankruptcy_and_deceased_indicators(self, provider: BureauProvider) -> None:
        """The sandbox's magic ids yield a chapter 13 bankruptcy and a deceased indicator."""
        bankrupt = provider.pull(make_pull(3, national_id="321-54-0013"))
        deceased = provider.pull(make_pull(4, national_id="321-54-0999"))
        assert bankrupt.bankruptcy is not None and bankrupt.bankruptcy.chapter == 13 and not bankrupt.deceased
        assert deceased.deceased and deceased.bankruptcy is None

    # -- exactly once -----------------------------------------------------------------------------

    def test_resending_a_pull_returns_the_first_report(self, provider: BureauProvider, sandbox: Any) -> None:
        """The same idempotency key twice makes one inquiry and returns the same report."""
        request = make_pull(5)
        assert provider.pull(request).report_id == provider.pull(request).report_id
        assert len(sandbox.messages(route="pull")) == 1

    def test_key_reused_for_another_subject_is_a_duplicate(
        self, provider: BureauProvider, sandbox: Any
    ) -> None:
        """A key already used for another subject raises Duplicate and pulls nothing more."""
        provider.pull(make_pull(6, prefix="same"))
        with pytest.raises(Duplicate) as caught:
            provider.pull(make_pull(7, prefix="same", idempotency_key="same-6"))
        assert caught.value.idempotency_key == "same-6"
        assert len(sandbox.messages(route="pull")) == 1

    def test_resending_a_file_returns_the_first_submission(
        self, provider: BureauProvider, sandbox: Any
    ) -> None:
        """The same upload twice is one submission at the bureau, with one submission id."""
        request = FurnishRequest("metro2-2026-11-a", "2026-11", minimal_metro2("2026-11"))
        first, second = provider.furnish(request), provider.furnish(request)
        assert isinstance(first, FurnishResult) and first.accepted and first.records == 4
        assert first.submission_id == second.submission_id
        assert first.received_at.tzinfo is not None
        assert len(sandbox.messages(route="furnish")) == 1

    # -- the bureau's own refusals ----------------------------------------------------------------

    def test_pull_without_permissible_purpose_is_permanent(
        self, provider: BureauProvider, sandbox: Any
    ) -> None:
        """A purpose outside FCRA 604 is refused as Permanent, no inquiry is recorded, and it is not
        tried again: it costs no more requests than a pull the bureau answers."""
        answered = provider.pull(make_pull(14))
        answering = requests_made(sandbox)
        with pytest.raises(Permanent) as caught:
            provider.pull(make_pull(8, purpose="marketing"))
        assert caught.value.code == "purpose_not_permissible"
        assert [m["id"] for m in sandbox.messages(route="pull")] == [answered.report_id]
        assert requests_made(sandbox) - answering <= answering

    def test_no_file_is_permanent_no_record(self, provider: BureauProvider) -> None:
        """A subject the bureau has no file on raises Permanent with code no_record."""
        with pytest.raises(Permanent) as caught:
            provider.pull(make_pull(9, national_id="321-54-0404"))
        assert caught.value.code == "no_record"

    def test_file_with_a_short_record_is_refused_not_failed(self, provider: BureauProvider) -> None:
        """A file with a record of the wrong length comes back accepted=False naming that record."""
        result = provider.furnish(
            FurnishRequest("metro2-bad", "2026-11", minimal_metro2("2026-11", bad_length_at=2))
        )
        assert not result.accepted
        assert [(e.record, e.field) for e in result.errors] == [(2, "record length")]

    # -- error mapping ----------------------------------------------------------------------------

    def test_burst_of_429_is_retried_and_executed_once(self, provider: BureauProvider, sandbox: Any) -> None:
        """Throttled requests are retried after Retry-After and the pull happens exactly once."""
        sandbox.set_faults(http_429=2, retry_after=2)
        provider.pull(make_pull(10))
        assert sandbox.stats()["counters"]["faults.http_429"] == 2
        assert len(sandbox.messages(route="pull")) == 1

    def test_503_is_transient_and_retried(self, provider: BureauProvider, sandbox: Any) -> None:
        """A 503 with Retry-After is retried like a 429; the upload is executed once."""
        sandbox.set_faults(http_503=1, retry_after=1)
        assert provider.furnish(FurnishRequest("metro2-503", "2026-11", minimal_metro2("2026-11"))).accepted
        assert len(sandbox.messages(route="furnish")) == 1

    def test_retry_after_beyond_the_budget_is_handed_back(
        self, provider: BureauProvider, sandbox: Any
    ) -> None:
        """A Retry-After longer than the time budget is not waited for: the caller gets Transient with it."""
        sandbox.set_faults(http_429=50, retry_after=3600)
        with pytest.raises(Transient) as caught:
            provider.pull(make_pull(11))
        assert caught.value.retry_after == 3600 and caught.value.idempotency_key == "pull-11"
        assert sandbox.messages() == []

    def test_server_error_after_executing_is_not_done_twice(
        self, provider: BureauProvider, sandbox: Any
    ) -> None:
        """A 500 after the bureau executed the upload is reconciled by lookup, never by a second upload."""
        sandbox.set_faults(http_500=1)
        result = provider.furnish(FurnishRequest("metro2-500", "2026-11", minimal_metro2("2026-11")))
        assert result.accepted
        assert len(sandbox.messages(route="furnish")) == 1

    def test_timeout_after_executing_is_not_done_twice(self, provider: BureauProvider, sandbox: Any) -> None:
        """A read timeout after the bureau executed the pull is reconciled by lookup: one inquiry."""
        sandbox.set_faults(timeouts=1, timeout_ms=1500)
        profile = provider.pull(make_pull(12))
        (recorded,) = sandbox.messages(route="pull")
        assert recorded["id"] == profile.report_id

    def test_bad_credentials_raise_config_error(self, bad_provider: BureauProvider, sandbox: Any) -> None:
        """A refused API key raises ConfigError and executes nothing."""
        with pytest.raises(ConfigError):
            bad_provider.pull(make_pull(13))
        with pytest.raises(ConfigError):
            bad_provider.furnish(FurnishRequest("metro2-bad-key", "2026-11", minimal_metro2("2026-11")))
        assert sandbox.messages() == []

    # -- what reaches logs ------------------------------------------------------------------------

    def test_secrets_and_identities_never_printed(
        self, provider: Any, bad_provider: Any, sandbox: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        """No API key, full national id or full phone number appears in reprs, error texts or any
        log record written meanwhile (at any level, from any logger)."""
        caplog.set_level(logging.DEBUG)
        request = make_pull(0)
        profile = provider.pull(request)
        secrets = [v for k, v in sandbox.credentials.items() if "key" in k or "secret" in k] + [BAD_SECRET]
        private = [
            NATIONAL_ID,
            NATIONAL_ID.replace("-", ""),
            request.phone or "",
            *(p.number for p in profile.phones),
        ]
        texts = [repr(provider), str(provider), repr(bad_provider), repr(request), repr(profile)]
        failing_calls: list[Callable[[], object]] = [
            lambda: bad_provider.pull(request),
            lambda: provider.pull(make_pull(0, purpose="x", prefix="q")),
        ]
        for failing in failing_calls:
            try:
                failing()
            except ProviderError as e:
                texts += [str(e), repr(e), str(e.args)]
            else:
                pytest.fail("the request should have failed")
        for text in [*texts, caplog.text]:
            assert not any(s in text for s in secrets + private), text

    def test_close_releases_the_connections(self, provider: BureauProvider, sandbox: Any) -> None:
        """close() releases what the provider opened: once closed, this process holds no more
        connections to the bureau than before the provider pulled anything."""
        before = connections_to(sandbox.base_url)
        provider.pull(make_pull(15))
        provider.close()
        assert connections_to(sandbox.base_url) <= before
