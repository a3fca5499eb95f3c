"""The contract every letters provider passes, run against the sandbox Lob over real HTTP.

A provider's test module subclasses it and supplies three fixtures:

    class TestMyLetters(LettersProviderContract):
        @pytest.fixture
        def letters_sandbox(self): ...          # a reset `integrations.letters.sandbox.LettersSandbox`
        @pytest.fixture
        def provider(self, letters_sandbox): ...      # built from its base URL and credentials,
                                                      # with a read timeout of at most 0.5 s
        @pytest.fixture
        def bad_provider(self, letters_sandbox): ...  # the same, with BAD_SECRET as every secret

`callback_receiver` (a local HTTP server that records what it is sent) comes with the class.
The class runs each test inside `integrations.retries.testing()`, so Retry-After costs no time.
Imports pytest: load it from tests only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from integrations import retries
from integrations.errors import (
    ConfigError,
    Duplicate,
    InvalidAddress,
    InvalidCallback,
    ProviderError,
    Transient,
)
from integrations.letters.protocol import (
    Letter,
    LetterNotFound,
    LetterRequest,
    LettersProvider,
    PostalAddress,
)
from integrations.sandbox import CallbackReceiver

__all__ = ["BAD_SECRET", "LettersProviderContract", "make_request"]

BAD_SECRET = "not-the-secret-7c2a9f"  # what `bad_provider` is built with
MINIMAL_PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"

LENDER = PostalAddress(
    name="Arrears Auto Finance", line1="100 Lender Way", city="Des Moines", state="IA", postal_code="50309"
)


def make_request(key: str = "l-1", *, line1: str = "1 Main St", **overrides: Any) -> LetterRequest:
    """A right-to-cure notice to a borrower in Iowa, certified."""
    fields: dict[str, Any] = {
        "idempotency_key": key,
        "recipient": PostalAddress(
            name="Dana Borrower", line1=line1, city="Ames", state="IA", postal_code="50010"
        ),
        "sender": LENDER,
        "pdf": MINIMAL_PDF + key.encode(),
        "mail_type": "usps_first_class_certified",
        "description": "right_to_cure",
    }
    fields.update(overrides)
    return LetterRequest(**fields)


class LettersProviderContract:
    """Behaviour the legal-notice task relies on, whatever the print-and-mail vendor."""

    @pytest.fixture(autouse=True)
    def _retries_do_not_sleep(self) -> Iterator[None]:
        """Waits are computed but not slept, in whichever project the suite runs."""
        with retries.testing():
            yield

    @pytest.fixture
    def callback_receiver(self) -> Iterator[CallbackReceiver]:
        receiver = CallbackReceiver("/letters/callbacks")
        yield receiver
        receiver.close()

    # -- sending ----------------------------------------------------------------------------------

    def test_is_a_letters_provider(self, provider: Any) -> None:
        """The provider satisfies the protocol and declares itself as the letters kind."""
        assert isinstance(provider, LettersProvider)
        assert provider.info.kind == "letters"

    def test_send_returns_a_created_letter(self, provider: LettersProvider, letters_sandbox: Any) -> None:
        """send() answers the letter's id, status `created`, an aware time and an expected delivery."""
        before = datetime.now(UTC)
        request = make_request("l-1")
        letter = provider.send(request)
        assert isinstance(letter, Letter) and letter.status == "created" and letter.id
        assert letter.idempotency_key == "l-1" and letter.mailed_at is None and letter.tracking == ()
        assert abs((letter.created_at - before).total_seconds()) < 60
        assert letter.expected_delivery is not None and letter.expected_delivery >= before.date()
        assert letter.mail_type == "usps_first_class_certified" and letter.tracking_number
        [stored] = letters_sandbox.letters()
        assert stored["id"] == letter.id and stored["pdf_sha256"] == request.sha256
        assert stored["to"]["address_zip"] == "50010" and stored["from"]["name"] == LENDER.name

    def test_resend_returns_the_first_letter(self, provider: LettersProvider, letters_sandbox: Any) -> None:
        """The same letter sent twice is mailed once: the second call answers the first letter."""
        first = provider.send(make_request("l-1"))
        second = provider.send(make_request("l-1"))
        assert second.id == first.id
        assert len(letters_sandbox.letters()) == 1

    def test_same_key_other_content_is_duplicate(
        self, provider: LettersProvider, letters_sandbox: Any
    ) -> None:
        """Reusing an idempotency key for another PDF raises Duplicate and mails nothing new."""
        provider.send(make_request("l-1"))
        with pytest.raises(Duplicate) as caught:
            provider.send(make_request("l-1", pdf=MINIMAL_PDF + b"other"))
        assert caught.value.idempotency_key == "l-1"
        assert len(letters_sandbox.letters()) == 1

    def test_undeliverable_address_is_invalid_address(
        self, provider: LettersProvider, letters_sandbox: Any
    ) -> None:
        """An address the vendor will not mail to raises InvalidAddress, and nothing is mailed."""
        with pytest.raises(InvalidAddress) as caught:
            provider.send(make_request("l-1", line1="1 Undeliverable Rd"))
        assert caught.value.invalid_address and caught.value.idempotency_key == "l-1"
        assert letters_sandbox.letters() == []

    def test_find_answers_the_letter_sent_under_a_key(
        self, provider: LettersProvider, letters_sandbox: Any
    ) -> None:
        """find() answers the letter sent under our key, also once the vendor no longer keeps the key
        (a resend then mails a second letter, which find() does not take for the first), and None
        for a key never sent."""
        letters_sandbox.set_rules(idempotency_window_seconds=0)
        first = provider.send(make_request("l-1"))
        provider.send(make_request("l-2"))
        found = provider.find("l-1")
        assert found is not None
        assert (found.id, found.idempotency_key, found.status) == (first.id, "l-1", "created")
        again = provider.send(make_request("l-1"))  # the key has expired: the vendor mails another
        assert again.id != first.id and len(letters_sandbox.letters()) == 3
        assert (found := provider.find("l-1")) is not None and found.id == first.id
        assert provider.find("l-never-sent") is None

    # -- tracking ---------------------------------------------------------------------------------

    def test_status_follows_the_post(self, provider: LettersProvider, letters_sandbox: Any) -> None:
        """status() reports each step from created to delivered, with mailed_at from the mailed event."""
        letter = provider.send(make_request("l-1"))
        seen = [provider.status(letter.id)]
        for target in ("mailed", "in_transit", "delivered"):
            letters_sandbox.advance(letter.id, target)
            seen.append(provider.status(letter.id))
        assert [s.status for s in seen] == ["created", "mailed", "in_transit", "delivered"]
        assert seen[0].mailed_at is None and seen[1].mailed_at is not None
        assert seen[-1].mailed_at == seen[1].mailed_at and seen[-1].terminal and not seen[2].terminal
        assert [e.kind for e in seen[-1].tracking] == ["mailed", "in_transit", "delivered"]
        assert all(e.at.tzinfo is not None and e.letter_id == letter.id for e in seen[-1].tracking)

    def test_marked_address_is_returned_to_sender(
        self, provider: LettersProvider, letters_sandbox: Any
    ) -> None:
        """A letter to an address the post cannot deliver to comes back: returned_to_sender, not delivered."""
        letter = provider.send(make_request("l-1", line1="9 Return To Sender Ave"))
        for _ in range(3):
            letters_sandbox.advance(letter.id)
        status = provider.status(letter.id)
        assert status.status == "returned_to_sender" and status.terminal
        assert "delivered" not in [e.kind for e in status.tracking]

    def test_time_rules_move_letters(self, provider: LettersProvider, letters_sandbox: Any) -> None:
        """With every step due at once, a letter reads delivered, each step dated when it fell due."""
        letters_sandbox.set_rules(mail_after_seconds=0, transit_after_seconds=0, deliver_after_seconds=0)
        letter = provider.send(make_request("l-1"))
        status = provider.status(letter.id)
        assert status.status == "delivered" and status.mailed_at == letter.created_at

    def test_unknown_letter_is_not_found(self, provider: LettersProvider, letters_sandbox: Any) -> None:
        """Looking up an id the vendor never issued raises LetterNotFound, a Permanent error."""
        with pytest.raises(LetterNotFound) as caught:
            provider.status("ltr_doesnotexist")
        assert caught.value.letter_id == "ltr_doesnotexist"

    # -- faults -----------------------------------------------------------------------------------

    def test_throttling_is_retried_and_mails_once(
        self, provider: LettersProvider, letters_sandbox: Any
    ) -> None:
        """A burst of 429s is retried after Retry-After and the letter is mailed exactly once."""
        letters_sandbox.set_faults(http_429=2, retry_after=2)
        letter = provider.send(make_request("l-1"))
        assert letters_sandbox.stats()["counters"]["faults.http_429"] == 2
        assert [s["id"] for s in letters_sandbox.letters()] == [letter.id]

    def test_retry_after_beyond_the_budget_is_handed_back(
        self, provider: LettersProvider, letters_sandbox: Any
    ) -> None:
        """A Retry-After beyond the time budget is not waited for: Transient carries it, nothing is mailed."""
        letters_sandbox.set_faults(http_503=50, retry_after=3600)
        with pytest.raises(Transient) as caught:
            provider.send(make_request("l-1"))
        assert caught.value.retry_after == 3600
        assert letters_sandbox.letters() == []

    def test_server_error_after_mailing_is_not_mailed_twice(
        self, provider: LettersProvider, letters_sandbox: Any
    ) -> None:
        """A 500 after the vendor took the letter is reconciled through the idempotency key: one letter."""
        letters_sandbox.set_faults(http_500=1)
        letter = provider.send(make_request("l-1"))
        assert [s["id"] for s in letters_sandbox.letters()] == [letter.id]

    def test_timeout_after_mailing_is_not_mailed_twice(
        self, provider: LettersProvider, letters_sandbox: Any
    ) -> None:
        """A timeout after the vendor took the letter is reconciled the same way: one letter."""
        letters_sandbox.set_faults(operation="create", timeouts=1, timeout_ms=1500)
        letter = provider.send(make_request("l-1"))
        assert letters_sandbox.stats()["counters"]["faults.timeouts"] == 1
        assert [s["id"] for s in letters_sandbox.letters()] == [letter.id]

    def test_status_lookup_survives_a_timeout(self, provider: LettersProvider, letters_sandbox: Any) -> None:
        """A lookup that times out or fails with a 500 is repeated: a read is safe to repeat."""
        letter = provider.send(make_request("l-1"))
        letters_sandbox.set_faults(operation="retrieve", timeouts=1, timeout_ms=1500, http_500=1)
        assert provider.status(letter.id).status == "created"
        counters = letters_sandbox.stats()["counters"]
        assert counters["faults.timeouts"] == 1 and counters["faults.http_500"] == 1

    def test_bad_credentials_raise_config_error(
        self, bad_provider: LettersProvider, letters_sandbox: Any
    ) -> None:
        """A refused API key is a ConfigError for send and status alike, and nothing is mailed."""
        with pytest.raises(ConfigError):
            bad_provider.send(make_request("l-1"))
        with pytest.raises(ConfigError):
            bad_provider.status("ltr_any")
        assert letters_sandbox.letters() == []

    # -- webhooks ---------------------------------------------------------------------------------

    def test_webhook_round_trip(
        self, provider: LettersProvider, letters_sandbox: Any, callback_receiver: CallbackReceiver
    ) -> None:
        """Signed webhooks the vendor pushes to our URL parse into the tracking events, one each."""
        letters_sandbox.register_callback(callback_receiver.url)
        letter = provider.send(make_request("l-1"))
        letters_sandbox.advance(letter.id, "in_transit", deliver=True)
        events = [
            e for headers, body in callback_receiver.received for e in provider.parse_callback(headers, body)
        ]
        assert [(e.letter_id, e.kind) for e in events] == [(letter.id, "mailed"), (letter.id, "in_transit")]
        assert all(e.event_id and e.at.tzinfo is not None for e in events)

    def test_webhooks_pushed_by_the_vendor_over_time(
        self, provider: LettersProvider, letters_sandbox: Any, callback_receiver: CallbackReceiver
    ) -> None:
        """With time rules and pushing on, the vendor pushes mailed, in transit and delivered unasked."""
        letters_sandbox.register_callback(callback_receiver.url)
        letters_sandbox.set_rules(
            mail_after_seconds=0, transit_after_seconds=0, deliver_after_seconds=0, push_every_seconds=0.05
        )
        letter = provider.send(make_request("l-1"))
        received = callback_receiver.wait_for(3)
        kinds = [e.kind for h, b in received for e in provider.parse_callback(h, b)]
        assert kinds == ["mailed", "in_transit", "delivered"]
        assert all(e.letter_id == letter.id for h, b in received for e in provider.parse_callback(h, b))

    def test_duplicated_webhook_carries_the_same_event_id(
        self, provider: LettersProvider, letters_sandbox: Any, callback_receiver: CallbackReceiver
    ) -> None:
        """A webhook the vendor sends twice parses to the same event id both times: it can be deduplicated."""
        letters_sandbox.register_callback(callback_receiver.url)
        letters_sandbox.set_faults(duplicate_callbacks=1)
        letter = provider.send(make_request("l-1"))
        letters_sandbox.advance(letter.id, "mailed", deliver=True)
        first, second = (provider.parse_callback(h, b) for h, b in callback_receiver.received)
        assert first == second and first[0].kind == "mailed"

    def test_forged_webhooks_are_refused(self, provider: LettersProvider, letters_sandbox: Any) -> None:
        """A changed body, or a wrong, missing or garbled signature or timestamp, raises InvalidCallback."""
        letter = provider.send(make_request("l-1"))
        letters_sandbox.advance(letter.id, "mailed")
        headers, body = letters_sandbox.signed_callback(letter.id)
        assert provider.parse_callback(headers, body)[0].kind == "mailed"  # the genuine one passes
        sig = next(k for k in headers if k.lower() == "lob-signature")
        ts = next(k for k in headers if k.lower() == "lob-signature-timestamp")
        cases = [
            (headers, body.replace(b"letter.mailed", b"letter.delivered")),
            ({**headers, sig: "0" * 64}, body),
            ({k: v for k, v in headers.items() if k != sig}, body),
            ({k: v for k, v in headers.items() if k != ts}, body),
            ({**headers, ts: "yesterday"}, body),
            ({**headers, ts: str(int(headers[ts]) - 1)}, body),
        ]
        for forged_headers, forged in cases:
            with pytest.raises(InvalidCallback):
                provider.parse_callback(forged_headers, forged)

    def test_stale_webhook_is_refused(self, provider: LettersProvider, letters_sandbox: Any) -> None:
        """A well-signed webhook over 5 minutes old (or ahead) is refused; one 4 minutes old passes."""
        letter = provider.send(make_request("l-1"))
        letters_sandbox.advance(letter.id, "mailed")
        now = int(time.time())
        for skew in (305, -305, 3600):
            headers, body = letters_sandbox.signed_callback(letter.id, timestamp=now - skew)
            with pytest.raises(InvalidCallback):
                provider.parse_callback(headers, body)
        headers, body = letters_sandbox.signed_callback(letter.id, timestamp=now - 240)
        assert provider.parse_callback(headers, body)[0].kind == "mailed"

    def test_lost_webhook_is_recovered_by_status(
        self, provider: LettersProvider, letters_sandbox: Any, callback_receiver: CallbackReceiver
    ) -> None:
        """When the vendor drops a webhook, nothing arrives, and status() still says the letter was mailed."""
        letters_sandbox.register_callback(callback_receiver.url)
        letters_sandbox.set_faults(drop_callbacks=1)
        letter = provider.send(make_request("l-1"))
        letters_sandbox.advance(letter.id, "mailed", deliver=True)
        assert callback_receiver.received == []
        assert [c["outcome"] for c in letters_sandbox.callbacks()] == ["dropped"]
        assert provider.status(letter.id).mailed_at is not None

    def test_secrets_never_printed(self, provider: Any, bad_provider: Any, letters_sandbox: Any) -> None:
        """No secret appears in a provider's repr or str, nor in the text of its errors."""
        secrets = [*letters_sandbox.credentials.values(), BAD_SECRET]
        letter = provider.send(make_request("l-1"))
        letters_sandbox.advance(letter.id, "mailed")
        headers, body = letters_sandbox.signed_callback(letter.id)
        texts = [repr(provider), str(provider), repr(bad_provider), str(bad_provider), repr(make_request())]
        for call in (
            lambda: bad_provider.send(make_request("l-2")),
            lambda: bad_provider.status(letter.id),
            lambda: bad_provider.parse_callback(headers, body),
        ):
            try:
                call()
            except ProviderError as e:
                texts += [str(e), repr(e), str(e.args), str(e.__dict__)]
            else:
                pytest.fail("a provider with bad secrets was not refused")
        for text in texts:
            assert not any(secret in text for secret in secrets), text
        assert "Main St" not in repr(make_request())
