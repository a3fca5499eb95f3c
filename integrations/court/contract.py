"""The contract every court provider passes, run against the sandbox court imitating its gateway.

A provider's test module subclasses it and supplies three fixtures:

    class TestMyCourt(CourtProviderContract):
        @pytest.fixture
        def court_sandbox(self): ...   # a reset `integrations.court.sandbox.CourtSandbox`
        @pytest.fixture
        def provider(self, court_sandbox): ...      # built from its base URL and credentials,
                                                    # with a read timeout of at most 0.5 s
        @pytest.fixture
        def bad_provider(self, court_sandbox): ...  # the same, with BAD_SECRET as every secret

`callback_receiver` (a local HTTP server that records what it is sent) comes with the class.
`payment_order_court` names a court code where the gateway takes a Chinese payment order (支付令);
a gateway with no such court sets it to None and the payment-order tests are skipped.
The class runs each test inside `integrations.retries.testing()`, so Retry-After costs no time.
Imports pytest: load it from tests only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from integrations import retries
from integrations.callbacks import UnreadableItem
from integrations.court.protocol import (
    CourtProvider,
    FilingDocument,
    FilingEnvelope,
    FilingNotFound,
    FilingReceipt,
    FilingStatus,
    Party,
)
from integrations.errors import (
    ConfigError,
    Duplicate,
    InvalidCallback,
    Permanent,
    ProviderError,
    Transient,
    UnverifiedCallback,
)
from integrations.sandbox import CallbackReceiver, connections_to, requests_made

__all__ = ["BAD_SECRET", "CallbackReceiver", "CourtProviderContract", "make_envelope", "make_payment_order"]

BAD_SECRET = "not-the-secret-4b8e1d"  # what `bad_provider` is built with


def _statuses(read: list[FilingStatus | UnreadableItem]) -> list[FilingStatus]:
    """The statuses of a parsed callback, and that nothing in it was unreadable."""
    assert all(isinstance(s, FilingStatus) for s in read), read
    return [s for s in read if isinstance(s, FilingStatus)]


def make_envelope(key: str = "f-1", *, court: str = "US-CA-LASC", **overrides: Any) -> FilingEnvelope:
    """A deficiency claim after a repossession sale, with its documents and the SCRA affidavit."""
    fields: dict[str, Any] = {
        "idempotency_key": key,
        "court": court,
        "case_type": "deficiency",
        "parties": [
            Party(role="plaintiff", name="Arrears Auto Finance", kind="organization"),
            Party(
                role="defendant",
                name="Dana Borrower",
                address="1 Main St, Los Angeles",
                national_id="123-45-6789",
            ),
        ],
        "claim_amount": Decimal("4321.09"),
        "currency": "USD",
        "documents": [
            FilingDocument.from_bytes("complaint", "complaint.pdf", b"%PDF-1.7 complaint " + key.encode()),
            FilingDocument.from_bytes("notice_of_sale", "notice-of-sale.pdf", b"%PDF-1.7 notice"),
            FilingDocument.from_bytes("military_affidavit", "scra.pdf", b"%PDF-1.7 affidavit"),
        ],
        "military_affidavit": True,
    }
    fields.update(overrides)
    return FilingEnvelope(**fields)


def make_payment_order(key: str = "po-1", *, court: str = "CN-SH-PD") -> FilingEnvelope:
    """An application for a payment order (支付令): an applicant and a respondent, no SCRA affidavit."""
    return make_envelope(
        key,
        court=court,
        case_type="payment_order",
        currency="CNY",
        parties=[
            Party(role="applicant", name="Arrears Auto Finance", kind="organization"),
            Party(role="respondent", name="王芳", national_id="110101199003074514"),
        ],
        documents=[FilingDocument.from_bytes("application", "application.pdf", b"%PDF-1.7 " + key.encode())],
        military_affidavit=False,
    )


class CourtProviderContract:
    """Behaviour the legal-referral task relies on, whatever the gateway."""

    @pytest.fixture(autouse=True)
    def _retries_do_not_sleep(self) -> Iterator[None]:
        """Waits are computed but not slept, in whichever project the suite runs."""
        with retries.testing():
            yield

    court = "US-CA-LASC"  # a court code on the sandbox's list
    payment_order_court: str | None = "CN-SH-PD"  # None: the gateway files no payment orders

    @pytest.fixture
    def callback_receiver(self) -> Iterator[CallbackReceiver]:
        receiver = CallbackReceiver("/court/callbacks")
        yield receiver
        receiver.close()

    def envelope(self, key: str = "f-1", **overrides: Any) -> FilingEnvelope:
        return make_envelope(key, court=overrides.pop("court", self.court), **overrides)

    def payment_order(self, key: str) -> FilingEnvelope:
        if self.payment_order_court is None:
            pytest.skip("the gateway files no payment orders (payment_order_court is None)")
        return make_payment_order(key, court=self.payment_order_court)

    # -- submitting -----------------------------------------------------------------------------

    def test_is_a_court_provider(self, provider: Any) -> None:
        """The provider satisfies the protocol and declares itself as the court kind."""
        assert isinstance(provider, CourtProvider)
        assert provider.info.kind == "court"

    def test_submit_returns_an_aware_receipt(self, provider: CourtProvider, court_sandbox: Any) -> None:
        """submit() answers the filing id, status `submitted` and an aware time; one filing arrives."""
        before = datetime.now(UTC)
        receipt = provider.submit(self.envelope("f-1"))
        assert isinstance(receipt, FilingReceipt) and receipt.status == "submitted"
        assert receipt.idempotency_key == "f-1" and receipt.filing_id
        assert receipt.submitted_at.tzinfo is not None
        assert abs((receipt.submitted_at - before).total_seconds()) < 60
        [filing] = court_sandbox.filings()
        assert filing["filingId"] == receipt.filing_id and filing["idempotencyKey"] == "f-1"
        assert filing["message"]["claim"] == {"amount": "4321.09", "currency": "USD"}

    def test_resubmit_returns_the_first_filing(self, provider: CourtProvider, court_sandbox: Any) -> None:
        """The same envelope submitted twice is one filing: the second call answers the first receipt."""
        first = provider.submit(self.envelope("f-1"))
        second = provider.submit(self.envelope("f-1"))
        assert second.filing_id == first.filing_id
        assert len(court_sandbox.filings()) == 1

    def test_same_key_other_content_is_duplicate(self, provider: CourtProvider, court_sandbox: Any) -> None:
        """Reusing an idempotency key for another claim raises Duplicate and files nothing new."""
        provider.submit(self.envelope("f-1"))
        with pytest.raises(Duplicate) as caught:
            provider.submit(self.envelope("f-1", claim_amount=Decimal("1.00")))
        assert caught.value.idempotency_key == "f-1"
        assert len(court_sandbox.filings()) == 1

    def test_refused_filing_is_permanent(self, provider: CourtProvider, court_sandbox: Any) -> None:
        """A filing the gateway refuses at the door (unknown court) is Permanent, nothing is filed,
        and it is not tried again: it costs no more requests than a filing accepted."""
        accepted = provider.submit(self.envelope("f-0"))
        accepting = requests_made(court_sandbox)
        with pytest.raises(Permanent) as caught:
            provider.submit(self.envelope("f-1", court="XX-NOWHERE"))
        assert caught.value.code and caught.value.idempotency_key == "f-1"
        assert [f["filingId"] for f in court_sandbox.filings()] == [accepted.filing_id]
        assert requests_made(court_sandbox) - accepting <= accepting

    # -- following the filing --------------------------------------------------------------------

    def test_status_follows_the_court(self, provider: CourtProvider, court_sandbox: Any) -> None:
        """status() reports each step from submitted to judgment, with the case number once accepted."""
        receipt = provider.submit(self.envelope("f-1"))
        seen = [provider.status(receipt.filing_id)]
        for target in ("under_review", "accepted", "served", "judgment"):
            court_sandbox.advance(receipt.filing_id, target)
            seen.append(provider.status(receipt.filing_id))
        assert [s.status for s in seen] == ["submitted", "under_review", "accepted", "served", "judgment"]
        assert all(isinstance(s, FilingStatus) and s.filing_id == receipt.filing_id for s in seen)
        assert all(s.at.tzinfo is not None for s in seen)
        assert (
            seen[0].case_number is None
            and seen[2].case_number
            and seen[-1].case_number == seen[2].case_number
        )
        assert seen[-1].terminal and not seen[2].terminal

    def test_rejection_carries_its_reason(self, provider: CourtProvider, court_sandbox: Any) -> None:
        """A rejected filing's status says rejected, with the clerk's reason."""
        receipt = provider.submit(self.envelope("f-1"))
        court_sandbox.advance(receipt.filing_id, "rejected", reason="missing proof of mailing")
        status = provider.status(receipt.filing_id)
        assert status.status == "rejected" and status.reason == "missing proof of mailing"

    def test_an_objection_ends_a_served_payment_order(
        self, provider: CourtProvider, court_sandbox: Any, callback_receiver: CallbackReceiver
    ) -> None:
        """The respondent objects in writing to a served payment order (书面异议, 支付令失效):
        status() and the callback say `objected`, a terminal status, with the court's reason and
        its own words in vendor_status, the case number kept."""
        court_sandbox.register_callback(callback_receiver.url)
        receipt = provider.submit(self.payment_order("po-1"))
        court_sandbox.advance(receipt.filing_id, "served")
        served = provider.status(receipt.filing_id)
        assert served.status == "served" and not served.terminal
        court_sandbox.advance(
            receipt.filing_id, "objected", reason="respondent disputes the amount", deliver=True
        )
        status = provider.status(receipt.filing_id)
        assert (status.status, status.reason, status.case_number) == (
            "objected",
            "respondent disputes the amount",
            served.case_number,
        )
        assert status.terminal and status.vendor_status and status.vendor_status != served.vendor_status
        [(headers, body)] = callback_receiver.received
        statuses = _statuses(provider.parse_callback(headers, body, url=callback_receiver.url))
        assert [s.status for s in statuses][-2:] == ["served", "objected"]
        assert statuses[-1].reason == "respondent disputes the amount"

    def test_a_payment_order_that_took_effect_is_a_judgment(
        self, provider: CourtProvider, court_sandbox: Any
    ) -> None:
        """Neither paid nor objected to within 15 days of service, the order takes effect (支付令生效)
        and is enforceable like a judgment: status() says `judgment`, terminal, in the court's words."""
        receipt = provider.submit(self.payment_order("po-2"))
        court_sandbox.advance(receipt.filing_id, "judgment")
        status = provider.status(receipt.filing_id)
        assert status.status == "judgment" and status.terminal and status.vendor_status

    def test_time_rules_move_filings(self, provider: CourtProvider, court_sandbox: Any) -> None:
        """Auto-accept after 0 s: a filing reads accepted, dated when due; at a rejecting court, rejected."""
        court_sandbox.set_rules(accept_after_seconds=0, reject_courts="^CN-")
        receipt = provider.submit(self.envelope("f-1"))
        status = provider.status(receipt.filing_id)
        assert status.status == "accepted" and status.at == receipt.submitted_at
        other = provider.submit(self.envelope("f-2", court="CN-SH-PD", currency="CNY"))
        assert provider.status(other.filing_id).status == "rejected"

    def test_unknown_filing_is_not_found(self, provider: CourtProvider, court_sandbox: Any) -> None:
        """Looking up an id the gateway never issued raises FilingNotFound, a Permanent error."""
        with pytest.raises(FilingNotFound) as caught:
            provider.status("ECF-DOES-NOT-EXIST")
        assert isinstance(caught.value, Permanent) and caught.value.filing_id == "ECF-DOES-NOT-EXIST"

    # -- faults -----------------------------------------------------------------------------------

    def test_throttling_is_retried_and_files_once(self, provider: CourtProvider, court_sandbox: Any) -> None:
        """A burst of 429s is retried after Retry-After and the filing arrives exactly once."""
        court_sandbox.set_faults(http_429=2, retry_after=2)
        receipt = provider.submit(self.envelope("f-1"))
        assert court_sandbox.stats()["counters"]["faults.http_429"] == 2
        assert [f["filingId"] for f in court_sandbox.filings()] == [receipt.filing_id]

    def test_retry_after_beyond_the_budget_is_handed_back(
        self, provider: CourtProvider, court_sandbox: Any
    ) -> None:
        """A Retry-After beyond the time budget is not waited for: Transient carries it, nothing is filed."""
        court_sandbox.set_faults(http_503=50, retry_after=3600)
        with pytest.raises(Transient) as caught:
            provider.submit(self.envelope("f-1"))
        assert caught.value.retry_after == 3600
        assert court_sandbox.filings() == []

    def test_server_error_after_filing_is_not_filed_twice(
        self, provider: CourtProvider, court_sandbox: Any
    ) -> None:
        """A 500 after the gateway filed is reconciled through the idempotency key: one filing."""
        court_sandbox.set_faults(http_500=1)
        receipt = provider.submit(self.envelope("f-1"))
        assert [f["filingId"] for f in court_sandbox.filings()] == [receipt.filing_id]

    def test_timeout_after_filing_is_not_filed_twice(
        self, provider: CourtProvider, court_sandbox: Any
    ) -> None:
        """A timeout after the gateway filed is reconciled the same way: one filing, one receipt."""
        court_sandbox.set_faults(operation="ReviewFiling", timeouts=1, timeout_ms=1500)
        receipt = provider.submit(self.envelope("f-1"))
        assert court_sandbox.stats()["counters"]["faults.timeouts"] == 1
        assert [f["filingId"] for f in court_sandbox.filings()] == [receipt.filing_id]

    def test_status_lookup_survives_a_timeout(self, provider: CourtProvider, court_sandbox: Any) -> None:
        """A status lookup that times out or fails with a 500 is repeated: a read is safe to repeat."""
        receipt = provider.submit(self.envelope("f-1"))
        court_sandbox.set_faults(operation="GetFilingStatus", timeouts=1, timeout_ms=1500, http_500=1)
        assert provider.status(receipt.filing_id).status == "submitted"
        counters = court_sandbox.stats()["counters"]
        assert counters["faults.timeouts"] == 1 and counters["faults.http_500"] == 1

    def test_bad_credentials_raise_config_error(
        self, bad_provider: CourtProvider, court_sandbox: Any
    ) -> None:
        """Refused credentials are a ConfigError for submit and status alike, and nothing is filed."""
        with pytest.raises(ConfigError):
            bad_provider.submit(self.envelope("f-1"))
        with pytest.raises(ConfigError):
            bad_provider.status("ECF-ANY")
        assert court_sandbox.filings() == []

    def test_close_releases_the_connections(self, provider: CourtProvider, court_sandbox: Any) -> None:
        """close() releases what the provider opened: once closed, this process holds no more
        connections to the gateway than before the provider filed anything."""
        before = connections_to(court_sandbox.base_url)
        provider.submit(self.envelope("f-1"))
        provider.close()
        assert connections_to(court_sandbox.base_url) <= before

    # -- callbacks --------------------------------------------------------------------------------

    def test_callback_round_trip(
        self, provider: CourtProvider, court_sandbox: Any, callback_receiver: CallbackReceiver
    ) -> None:
        """A signed callback the gateway sends to our webhook parses into its statuses, in order."""
        court_sandbox.register_callback(callback_receiver.url)
        receipt = provider.submit(self.envelope("f-1"))
        court_sandbox.advance(receipt.filing_id, "accepted", deliver=True)
        [(headers, body)] = callback_receiver.received
        statuses = _statuses(provider.parse_callback(headers, body, url=callback_receiver.url))
        assert [(s.filing_id, s.status) for s in statuses] == [
            (receipt.filing_id, "under_review"),
            (receipt.filing_id, "accepted"),
        ]
        assert statuses[-1].case_number and all(s.at.tzinfo is not None for s in statuses)

    def test_forged_callbacks_are_refused(self, provider: CourtProvider, court_sandbox: Any) -> None:
        """A changed body, or a wrong, missing or garbled signature, raises UnverifiedCallback (403)."""
        receipt = provider.submit(self.envelope("f-1"))
        court_sandbox.advance(receipt.filing_id, "rejected", reason="incomplete")
        headers, body = court_sandbox.signed_callback(receipt.filing_id)
        genuine = _statuses(provider.parse_callback(headers, body))
        assert genuine[0].status == "rejected"
        forged_body = body.replace(b'"rejected"', b'"accepted"')
        name = next(k for k in headers if k.lower() == "x-arrears-signature")
        t = headers[name].split(",")[0]
        cases = [
            (headers, forged_body),
            ({**headers, name: f"{t},v1={'0' * 64}"}, body),
            ({k: v for k, v in headers.items() if k != name}, body),
            ({**headers, name: "garbage"}, body),
        ]
        for forged_headers, forged in cases:
            with pytest.raises(UnverifiedCallback):
                provider.parse_callback(forged_headers, forged)

    def test_callbacks_are_acknowledged_and_authenticated(
        self, provider: CourtProvider, court_sandbox: Any
    ) -> None:
        """A configured provider passes check_callbacks, acknowledges with a 2xx, and an authentic
        callback on a route it has no event for is malformed (400), not forged."""
        provider.check_callbacks()
        assert 200 <= provider.acknowledge("status").status < 300
        receipt = provider.submit(self.envelope("f-1"))
        court_sandbox.advance(receipt.filing_id, "under_review")
        headers, body = court_sandbox.signed_callback(receipt.filing_id)
        with pytest.raises(InvalidCallback) as caught:
            provider.parse_callback(headers, body, event="inbound")
        assert not isinstance(caught.value, UnverifiedCallback)

    def test_an_unreadable_event_comes_back_in_its_place_and_the_rest_is_read(
        self, provider: CourtProvider, court_sandbox: Any
    ) -> None:
        """A callback carrying one event the provider cannot read (a status word it does not know,
        no filing id) still gives the readable events; each unreadable one comes back as an
        `UnreadableItem` with its reason and the event as sent, for operators."""
        receipt = provider.submit(self.envelope("f-1"))
        court_sandbox.advance(receipt.filing_id, "rejected", reason="incomplete")
        at = datetime.now(UTC).isoformat()
        odd = {"filingId": "F-ODD", "reviewStatus": "pondering", "statusAt": at}
        headers, body = court_sandbox.signed_callback(
            receipt.filing_id, raw_events=[odd, {"reviewStatus": "accepted", "statusAt": at}]
        )
        read = provider.parse_callback(headers, body)
        statuses = [s for s in read if isinstance(s, FilingStatus)]
        unreadable = [u for u in read if isinstance(u, UnreadableItem)]
        assert [(s.filing_id, s.status) for s in statuses] == [(receipt.filing_id, "rejected")]
        assert len(unreadable) == 2 and len(read) == 3
        assert "pondering" in unreadable[0].reason and "F-ODD" in unreadable[0].item
        assert "filingId" in unreadable[1].reason

    def test_stale_callback_is_refused(self, provider: CourtProvider, court_sandbox: Any) -> None:
        """A well-signed callback over 5 minutes old (or ahead) is refused; one 4 minutes old passes."""
        receipt = provider.submit(self.envelope("f-1"))
        court_sandbox.advance(receipt.filing_id, "under_review")
        now = int(time.time())
        # A few seconds beyond the window either way: the provider reads its clock after this one.
        for skew in (305, -305, 3600):
            headers, body = court_sandbox.signed_callback(receipt.filing_id, timestamp=now - skew)
            with pytest.raises(InvalidCallback):
                provider.parse_callback(headers, body)
        headers, body = court_sandbox.signed_callback(receipt.filing_id, timestamp=now - 240)
        assert _statuses(provider.parse_callback(headers, body))[0].status == "under_review"

    def test_lost_callback_is_recovered_by_status(
        self, provider: CourtProvider, court_sandbox: Any, callback_receiver: CallbackReceiver
    ) -> None:
        """When the gateway drops a callback, nothing arrives, and status() still tells the new status."""
        court_sandbox.register_callback(callback_receiver.url)
        court_sandbox.set_faults(drop_callbacks=1)
        receipt = provider.submit(self.envelope("f-1"))
        court_sandbox.advance(receipt.filing_id, "accepted", deliver=True)
        assert callback_receiver.received == []
        assert [c["outcome"] for c in court_sandbox.callbacks()] == ["dropped"]
        assert provider.status(receipt.filing_id).status == "accepted"

    def test_secrets_never_printed(self, provider: Any, bad_provider: Any, court_sandbox: Any) -> None:
        """No secret, and no party's national id, appears in a provider's repr or str, nor in the
        text of its errors (a refused filing's included)."""
        envelope = self.envelope("f-1")
        secrets = [v for k, v in court_sandbox.credentials.items() if "key" in k or "secret" in k] + [
            BAD_SECRET,
            *(p.national_id for p in envelope.parties if p.national_id),
        ]
        receipt = provider.submit(envelope)
        court_sandbox.advance(receipt.filing_id, "under_review")
        headers, body = court_sandbox.signed_callback(receipt.filing_id)
        texts = [repr(provider), str(provider), repr(bad_provider), str(bad_provider)]
        for call in (
            lambda: bad_provider.submit(self.envelope("f-2")),
            lambda: bad_provider.status(receipt.filing_id),
            lambda: bad_provider.parse_callback(headers, body),
            lambda: provider.submit(self.envelope("f-3", court="XX-NOWHERE")),
        ):
            try:
                call()
            except ProviderError as e:
                texts += [str(e), repr(e), str(e.args), str(e.__dict__)]
            else:
                pytest.fail("a provider with bad secrets was not refused")
        for text in texts:
            assert not any(secret in text for secret in secrets), text
