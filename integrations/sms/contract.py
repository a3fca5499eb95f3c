"""The contract every SMS provider passes, run against a sandbox that imitates its vendor.

A provider's test module subclasses it and supplies four fixtures:

    class TestMyProvider(SmsProviderContract):
        @pytest.fixture
        def provider(self, sandbox): ...      # built with the sandbox's base URL and credentials
        @pytest.fixture
        def bad_provider(self, sandbox): ...  # same, with BAD_SECRET as every secret
        @pytest.fixture
        def vendor_callback(self, sandbox): ...
            # (event, number, text="") -> (headers, body, url): a callback exactly as the vendor
            # would post it to our webhook. `status`: the report of the latest message to
            # `number`; `inbound`: `number` sending us `text`.
        # `sandbox`: a reset `integrations.sandbox.SandboxHandle` (faults, messages)

The class runs each test inside `integrations.retries.testing()`, so Retry-After costs no time.
Imports pytest: load it from tests only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from integrations import retries
from integrations.errors import ConfigError, InvalidAddress, ProviderError, Transient, UnverifiedCallback
from integrations.sandbox import connections_to, requests_made
from integrations.sms.protocol import DeliveryReport, InboundMessage, SmsProvider, SmsRequest, SmsResult

__all__ = ["BAD_SECRET", "SmsProviderContract", "make_requests", "shows_number"]

BAD_SECRET = "not-the-secret-7f3a9c"  # what `bad_provider` is built with


def shows_number(text: str, number: str) -> bool:
    """`text` gives `number` away: its last eight digits, in E.164 or national form (a masked
    number keeps four)."""
    return number[-8:] in text


def make_requests(n: int, prefix: str = "c", start: int = 0) -> list[SmsRequest]:
    """`n` distinct reminders to distinct Chinese mobile numbers."""
    return [
        SmsRequest(
            idempotency_key=f"{prefix}-{i}",
            to=f"+86138{i:08d}",
            template="SMS_REMINDER",
            params={"name": f"Borrower {i}", "amount": f"{100 + i}.00"},
            body=f"Borrower {i}, {100 + i}.00 is past due.",
        )
        for i in range(start, start + n)
    ]


class SmsProviderContract:
    """Behaviour the dispatch task relies on, whatever the vendor."""

    @pytest.fixture(autouse=True)
    def _retries_do_not_sleep(self) -> Iterator[None]:
        """Waits are computed but not slept, in whichever project the suite runs."""
        with retries.testing():
            yield

    def test_is_an_sms_provider(self, provider: Any) -> None:
        """The provider satisfies the protocol and declares itself as the SMS kind."""
        assert isinstance(provider, SmsProvider)
        assert provider.info.kind == "sms"

    def test_batch_gives_one_result_per_request_in_order(self, provider: SmsProvider, sandbox: Any) -> None:
        """send_batch returns one SmsResult per request, in request order, and each is sent once."""
        requests = make_requests(130)
        outcomes = provider.send_batch(requests)
        assert [o.idempotency_key for o in outcomes] == [r.idempotency_key for r in requests]
        assert all(isinstance(o, SmsResult) and o.status == "queued" for o in outcomes)
        assert len({o.provider_id for o in outcomes if isinstance(o, SmsResult)}) == 130
        received = sandbox.messages()
        assert sorted(m["to"] for m in received) == sorted(r.to for r in requests)

    def test_empty_batch_sends_nothing(self, provider: SmsProvider, sandbox: Any) -> None:
        """An empty batch returns an empty list without a request to the vendor."""
        assert provider.send_batch([]) == []
        assert not any(k.startswith("requests.") for k in sandbox.stats()["counters"])

    def test_invalid_number_fails_alone(self, provider: SmsProvider, sandbox: Any) -> None:
        """A number the vendor refuses becomes an InvalidAddress outcome; the rest of the batch is sent."""
        sandbox.set_faults(invalid_numbers=r"0005$")
        requests = make_requests(12)
        outcomes = provider.send_batch(requests)
        assert isinstance(outcomes[5], InvalidAddress) and outcomes[5].invalid_address
        assert outcomes[5].idempotency_key == "c-5"
        assert all(isinstance(o, SmsResult) for n, o in enumerate(outcomes) if n != 5)
        assert len(sandbox.messages()) == 11
        error = outcomes[5]
        for text in (str(error), repr(error), str(error.args), str(error.__dict__)):
            assert not shows_number(text, requests[5].to), text

    def test_a_refused_number_is_not_retried(self, provider: SmsProvider, sandbox: Any) -> None:
        """A number the vendor refused is refused again: sending it costs no more requests than
        sending a good one (only Transient is retried)."""
        good, bad = make_requests(2, start=4)
        sandbox.set_faults(invalid_numbers=re.escape(bad.to) + "$")
        before = requests_made(sandbox)
        assert isinstance(provider.send_batch([good])[0], SmsResult)
        accepting = requests_made(sandbox) - before
        assert isinstance(provider.send_batch([bad])[0], InvalidAddress)
        assert requests_made(sandbox) - before - accepting <= accepting

    def test_burst_of_429_is_retried_without_sending_twice(self, provider: SmsProvider, sandbox: Any) -> None:
        """Throttled requests are retried after Retry-After and each message still arrives exactly once."""
        sandbox.set_faults(http_429=2, retry_after=2)
        requests = make_requests(3)
        outcomes = provider.send_batch(requests)
        assert all(isinstance(o, SmsResult) for o in outcomes)
        assert sandbox.stats()["counters"]["faults.http_429"] == 2
        assert sorted(m["to"] for m in sandbox.messages()) == sorted(r.to for r in requests)

    def test_retry_after_beyond_the_budget_is_handed_back(self, provider: SmsProvider, sandbox: Any) -> None:
        """A Retry-After longer than the time budget is not waited for: the caller gets Transient with it."""
        sandbox.set_faults(http_429=50, retry_after=3600)
        outcome = provider.send_batch(make_requests(1))[0]
        assert isinstance(outcome, Transient) and outcome.retry_after == 3600
        assert sandbox.messages() == []

    def test_server_error_after_executing_is_not_sent_twice(
        self, provider: SmsProvider, sandbox: Any
    ) -> None:
        """A 500 after the vendor executed the request is reconciled by lookup, never by a blind resend."""
        sandbox.set_faults(http_500=1)
        requests = make_requests(4)
        outcomes = provider.send_batch(requests)
        assert all(isinstance(o, SmsResult) for o in outcomes)
        assert sorted(m["to"] for m in sandbox.messages()) == sorted(r.to for r in requests)

    def test_status_finds_a_sent_message_and_not_an_unsent_one(
        self, provider: SmsProvider, sandbox: Any
    ) -> None:
        """status() finds a message by its provider id or by search, and answers None for one never sent."""
        sent, unsent = make_requests(2)
        result = provider.send(sent)
        by_id = provider.status(sent, result.provider_id)
        by_search = provider.status(sent)
        assert by_id is not None and by_id.provider_id == result.provider_id
        assert by_search is not None and by_search.provider_id == result.provider_id
        assert provider.status(unsent) is None

    def test_the_same_request_twice_is_one_message_where_the_vendor_deduplicates(
        self, provider: SmsProvider, sandbox: Any
    ) -> None:
        """With `info.deduplicates`, sending a request again (as after a crash) answers the first
        message and the gateway holds one; skipped for a vendor that does not deduplicate, where the
        caller asks status() before sending again."""
        if not provider.info.deduplicates:
            pytest.skip(f"{provider.info.entry_point} declares that its vendor does not deduplicate")
        (request,) = make_requests(1)
        first, second = provider.send(request), provider.send(request)
        assert second.provider_id == first.provider_id
        again = provider.send_batch([request])[0]
        assert isinstance(again, SmsResult) and again.provider_id == first.provider_id
        assert len(sandbox.messages()) == 1

    def test_status_of_a_message_the_vendor_forgot_is_none(self, provider: SmsProvider, sandbox: Any) -> None:
        """status() with the id of a message the vendor has no record of (the sandbox was reset
        since) answers None, which tells the caller to send: not an error."""
        (request,) = make_requests(1)
        result = provider.send(request)
        sandbox.reset()
        assert provider.status(request, result.provider_id) is None
        assert provider.status(request) is None

    def test_close_releases_the_connections(self, provider: SmsProvider, sandbox: Any) -> None:
        """close() releases what the provider opened: once closed, this process holds no more
        connections to the vendor than before the provider sent anything."""
        before = connections_to(sandbox.base_url)
        provider.send(make_requests(1)[0])
        provider.close()
        assert connections_to(sandbox.base_url) <= before

    def test_bad_credentials_raise_config_error(self, bad_provider: SmsProvider, sandbox: Any) -> None:
        """Refused credentials stop the batch with ConfigError, whose outcomes say nothing was sent."""
        with pytest.raises(ConfigError) as caught:
            bad_provider.send_batch(make_requests(3))
        assert caught.value.outcomes is not None and len(caught.value.outcomes) == 3
        assert not any(isinstance(o, SmsResult) for o in caught.value.outcomes)
        assert sandbox.messages() == []

    def test_secrets_never_printed(self, provider: Any, bad_provider: Any, sandbox: Any) -> None:
        """No secret of the sandbox appears in a provider's repr or str, nor in the text of its errors."""
        secrets = [v for k, v in sandbox.credentials.items() if "token" in k or "secret" in k] + [BAD_SECRET]
        texts = [repr(provider), str(provider), repr(bad_provider)]
        try:
            bad_provider.send(make_requests(1)[0])
        except ProviderError as e:
            texts += [str(e), repr(e), str(e.args)]
        for text in texts:
            assert not any(secret in text for secret in secrets), text

    def test_numbers_and_texts_never_logged(
        self, provider: SmsProvider, sandbox: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Sending, one by one or in a batch, with a refusal among them, logs no full number and no
        message text, at any level and from any logger (the HTTP client's included)."""
        caplog.set_level(logging.DEBUG)
        sandbox.set_faults(invalid_numbers=r"0002$")
        requests = make_requests(4)
        provider.send(requests[0])
        provider.send_batch(requests[1:])
        for request in requests:
            assert not shows_number(caplog.text, request.to), caplog.text
            assert request.body not in caplog.text, caplog.text

    # -- inbound ------------------------------------------------------------------------------------

    def test_delivery_callback_reports_the_sent_message(
        self, provider: SmsProvider, sandbox: Any, vendor_callback: Any
    ) -> None:
        """The vendor's status callback for a sent message parses into a report with that message's id."""
        (request,) = make_requests(1)
        result = provider.send(request)
        headers, body, url = vendor_callback("status", request.to)
        reports = provider.parse_callback(headers, body, url=url, event="status")
        assert [r.provider_id for r in reports if isinstance(r, DeliveryReport)] == [result.provider_id]
        assert all(r.at.utcoffset() is not None for r in reports if isinstance(r, DeliveryReport))

    def test_reply_callback_gives_the_sender_and_text(
        self, provider: SmsProvider, vendor_callback: Any
    ) -> None:
        """The vendor's incoming-message callback parses into an InboundMessage: E.164 sender, text."""
        headers, body, url = vendor_callback("inbound", "+8613900001111", "退订")
        (message,) = provider.parse_callback(headers, body, url=url, event="inbound")
        assert isinstance(message, InboundMessage)
        assert (message.sender, message.text) == ("+8613900001111", "退订")
        assert message.at.utcoffset() is not None and message.message_id

    def test_callback_without_its_authentication_is_unverified(
        self, provider: SmsProvider, vendor_callback: Any
    ) -> None:
        """The callback stripped of its signature headers and URL query raises UnverifiedCallback."""
        headers, body, url = vendor_callback("inbound", "+8613900001111", "STOP")
        bare = urlunsplit(urlsplit(url)._replace(query=""))
        kept = {k: v for k, v in headers.items() if k.lower() == "content-type"}
        with pytest.raises(UnverifiedCallback):
            provider.parse_callback(kept, body, url=bare, event="inbound")

    def test_callback_authenticated_with_another_secret_is_unverified(
        self, bad_provider: SmsProvider, vendor_callback: Any
    ) -> None:
        """A provider holding other secrets refuses the vendor's genuine callback: the signature or
        token is checked against its value, not only for being there."""
        headers, body, url = vendor_callback("inbound", "+8613900001111", "STOP")
        with pytest.raises(UnverifiedCallback):
            bad_provider.parse_callback(headers, body, url=url, event="inbound")

    def test_acknowledgements_are_2xx_and_callbacks_can_be_authenticated(self, provider: SmsProvider) -> None:
        """A configured provider passes check_callbacks and acknowledges both events with a 2xx."""
        provider.check_callbacks()
        for event in ("status", "inbound"):
            assert 200 <= provider.acknowledge(event).status < 300
