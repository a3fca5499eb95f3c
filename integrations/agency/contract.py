"""The contract every agency provider passes, run against the sandbox agency over real HTTP.

A provider's test module subclasses it and supplies three fixtures:

    class TestMyAgency(AgencyProviderContract):
        @pytest.fixture
        def agency_sandbox(self): ...          # a reset `integrations.agency.sandbox.AgencySandbox`
        @pytest.fixture
        def provider(self, agency_sandbox): ...      # built from its base URL and credentials,
                                                     # with a read timeout of at most 0.5 s
        @pytest.fixture
        def bad_provider(self, agency_sandbox): ...  # the same, with BAD_SECRET as every secret

`callback_receiver` comes with the class. Each test runs inside `integrations.retries.testing()`.
Imports pytest: load it from tests only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from integrations import retries
from integrations.agency.protocol import (
    AgencyProvider,
    Assignment,
    AssignmentNotCancellable,
    AssignmentNotFound,
    AssignmentRequest,
    KnownAddress,
    LenderContact,
    Vehicle,
)
from integrations.errors import ConfigError, Duplicate, InvalidCallback, ProviderError, Transient
from integrations.sandbox import CallbackReceiver

__all__ = ["BAD_SECRET", "VIN", "AgencyProviderContract", "make_request"]

BAD_SECRET = "not-the-secret-19d3e0"
VIN = "1HGCM82633A004352"


def make_request(key: str = "a-1", **overrides: Any) -> AssignmentRequest:
    """An involuntary repossession of a 2021 Honda Accord, two known addresses."""
    fields: dict[str, Any] = {
        "idempotency_key": key,
        "account_reference": "INST1-A-1042",
        "vehicle": Vehicle(vin=VIN, year=2021, make="Honda", model="Accord", colour="grey"),
        "borrower_name": "Dana Borrower",
        "addresses": [
            KnownAddress(kind="home", line1="1 Main St", city="Ames", state="IA", postal_code="50010"),
            KnownAddress(kind="work", line1="2 Plant Rd", city="Ames", state="IA", postal_code="50011"),
        ],
        "lender": LenderContact(name="Recovery desk", phone="+15155550100", email="recovery@lender.example"),
    }
    fields.update(overrides)
    return AssignmentRequest(**fields)


class AgencyProviderContract:
    """Behaviour the repossession task relies on, whatever the agency's platform."""

    @pytest.fixture(autouse=True)
    def _retries_do_not_sleep(self) -> Iterator[None]:
        """Waits are computed but not slept, in whichever project the suite runs."""
        with retries.testing():
            yield

    @pytest.fixture
    def callback_receiver(self) -> Iterator[CallbackReceiver]:
        receiver = CallbackReceiver("/agency/callbacks")
        yield receiver
        receiver.close()

    def test_is_an_agency_provider(self, provider: Any) -> None:
        """The provider satisfies the protocol and declares itself as the agency kind."""
        assert isinstance(provider, AgencyProvider)
        assert provider.info.kind == "agency"

    def test_assign_returns_an_assignment(self, provider: AgencyProvider, agency_sandbox: Any) -> None:
        """assign() answers the agency's id, status `assigned` and an aware time; one order arrives."""
        before = datetime.now(UTC)
        assignment = provider.assign(make_request("a-1"))
        assert isinstance(assignment, Assignment) and assignment.status == "assigned"
        assert assignment.idempotency_key == "a-1" and assignment.assignment_id
        assert abs((assignment.assigned_at - before).total_seconds()) < 60
        [stored] = agency_sandbox.assignments()
        assert stored["id"] == assignment.assignment_id
        assert stored["order"]["vehicle"]["vin"] == VIN and len(stored["order"]["addresses"]) == 2

    def test_reassign_returns_the_first(self, provider: AgencyProvider, agency_sandbox: Any) -> None:
        """The same order sent twice is one assignment: the second call answers the first."""
        first = provider.assign(make_request("a-1"))
        second = provider.assign(make_request("a-1"))
        assert second.assignment_id == first.assignment_id
        assert len(agency_sandbox.assignments()) == 1

    def test_same_key_other_order_is_duplicate(self, provider: AgencyProvider, agency_sandbox: Any) -> None:
        """Reusing an idempotency key for another order raises Duplicate and places nothing new."""
        provider.assign(make_request("a-1"))
        with pytest.raises(Duplicate):
            provider.assign(make_request("a-1", account_reference="INST1-A-9999"))
        assert len(agency_sandbox.assignments()) == 1

    def test_status_follows_the_agency(self, provider: AgencyProvider, agency_sandbox: Any) -> None:
        """status() reports each step to closed, with the recovery's date, place and condition."""
        assignment = provider.assign(make_request("a-1"))
        seen = [provider.status(assignment.assignment_id)]
        for target in ("accepted", "located", "recovered", "closed"):
            agency_sandbox.advance(assignment.assignment_id, target)
            seen.append(provider.status(assignment.assignment_id))
        assert [s.status for s in seen] == ["assigned", "accepted", "located", "recovered", "closed"]
        recovered = seen[3]
        assert recovered.recovered_at is not None and recovered.recovery_location and recovered.condition
        assert seen[-1].terminal and not recovered.terminal and not recovered.cancellable

    def test_cancel_before_recovery(self, provider: AgencyProvider, agency_sandbox: Any) -> None:
        """A located car's order is cancelled with its reason; cancelling again is harmless."""
        assignment = provider.assign(make_request("a-1"))
        agency_sandbox.advance(assignment.assignment_id, "located")
        cancelled = provider.cancel(assignment.assignment_id, "payment received")
        assert cancelled.status == "cancelled" and cancelled.reason == "payment received"
        assert provider.cancel(assignment.assignment_id, "payment received").status == "cancelled"
        assert provider.status(assignment.assignment_id).status == "cancelled"

    def test_cancel_after_recovery_is_refused(self, provider: AgencyProvider, agency_sandbox: Any) -> None:
        """Once the car is recovered, cancel raises AssignmentNotCancellable naming that status."""
        assignment = provider.assign(make_request("a-1"))
        agency_sandbox.advance(assignment.assignment_id, "recovered")
        with pytest.raises(AssignmentNotCancellable) as caught:
            provider.cancel(assignment.assignment_id, "payment received")
        assert caught.value.status == "recovered"
        assert provider.status(assignment.assignment_id).status == "recovered"

    def test_recovery_after_a_delay(self, provider: AgencyProvider, agency_sandbox: Any) -> None:
        """With a recovery due after a configured delay, the order reads recovered, dated when it fell due."""
        agency_sandbox.set_rules(accept_after_seconds=0, locate_after_seconds=0, recover_after_seconds=0)
        assignment = provider.assign(make_request("a-1"))
        status = provider.status(assignment.assignment_id)
        assert status.status == "recovered" and status.recovered_at == assignment.assigned_at

    def test_unknown_assignment_is_not_found(self, provider: AgencyProvider, agency_sandbox: Any) -> None:
        """Looking up or cancelling an id the agency never issued raises AssignmentNotFound."""
        with pytest.raises(AssignmentNotFound):
            provider.status("asg_doesnotexist")
        with pytest.raises(AssignmentNotFound):
            provider.cancel("asg_doesnotexist", "cure")

    def test_throttling_is_retried_and_assigns_once(
        self, provider: AgencyProvider, agency_sandbox: Any
    ) -> None:
        """A burst of 429s is retried after Retry-After and the order arrives exactly once."""
        agency_sandbox.set_faults(http_429=2, retry_after=2)
        assignment = provider.assign(make_request("a-1"))
        assert agency_sandbox.stats()["counters"]["faults.http_429"] == 2
        assert [a["id"] for a in agency_sandbox.assignments()] == [assignment.assignment_id]

    def test_retry_after_beyond_the_budget_is_handed_back(
        self, provider: AgencyProvider, agency_sandbox: Any
    ) -> None:
        """A Retry-After beyond the time budget is not waited for: Transient carries it, nothing is placed."""
        agency_sandbox.set_faults(http_503=50, retry_after=3600)
        with pytest.raises(Transient) as caught:
            provider.assign(make_request("a-1"))
        assert caught.value.retry_after == 3600
        assert agency_sandbox.assignments() == []

    def test_unknown_outcome_is_not_assigned_twice(
        self, provider: AgencyProvider, agency_sandbox: Any
    ) -> None:
        """A 500, then a timeout, after the agency took the order are reconciled by key: one assignment."""
        agency_sandbox.set_faults(operation="assign", http_500=1)
        first = provider.assign(make_request("a-1"))
        agency_sandbox.set_faults(operation="assign", timeouts=1, timeout_ms=1500)
        again = provider.assign(make_request("a-1"))
        assert again.assignment_id == first.assignment_id
        assert [a["id"] for a in agency_sandbox.assignments()] == [first.assignment_id]

    def test_cancel_survives_a_timeout(self, provider: AgencyProvider, agency_sandbox: Any) -> None:
        """A cancel that times out is repeated, and the order ends cancelled once."""
        assignment = provider.assign(make_request("a-1"))
        agency_sandbox.set_faults(operation="cancel", timeouts=1, timeout_ms=1500)
        assert provider.cancel(assignment.assignment_id, "plan agreed").status == "cancelled"
        [stored] = agency_sandbox.assignments()
        assert [e["status"] for e in stored["events"]] == ["cancelled"]

    def test_bad_credentials_raise_config_error(
        self, bad_provider: AgencyProvider, agency_sandbox: Any
    ) -> None:
        """Refused credentials are a ConfigError for assign, cancel and status, and nothing is placed."""
        with pytest.raises(ConfigError):
            bad_provider.assign(make_request("a-1"))
        with pytest.raises(ConfigError):
            bad_provider.cancel("asg_any", "cure")
        with pytest.raises(ConfigError):
            bad_provider.status("asg_any")
        assert agency_sandbox.assignments() == []

    def test_webhook_round_trip(
        self, provider: AgencyProvider, agency_sandbox: Any, callback_receiver: CallbackReceiver
    ) -> None:
        """Signed webhooks the agency pushes to our URL parse into its statuses, in order."""
        agency_sandbox.register_callback(callback_receiver.url)
        assignment = provider.assign(make_request("a-1"))
        agency_sandbox.advance(assignment.assignment_id, "recovered", deliver=True)
        statuses = [s for h, b in callback_receiver.received for s in provider.parse_callback(h, b)]
        assert [s.status for s in statuses] == ["accepted", "located", "recovered"]
        assert statuses[-1].recovered_at is not None and all(s.event_id for s in statuses)

    def test_recovery_pushed_by_the_agency_over_time(
        self, provider: AgencyProvider, agency_sandbox: Any, callback_receiver: CallbackReceiver
    ) -> None:
        """With a recovery delay and pushing on, the agency pushes accepted and recovered unasked."""
        agency_sandbox.register_callback(callback_receiver.url)
        agency_sandbox.set_rules(accept_after_seconds=0, recover_after_seconds=0.2, push_every_seconds=0.05)
        assignment = provider.assign(make_request("a-1"))
        received = callback_receiver.wait_for(3)
        statuses = [s for h, b in received for s in provider.parse_callback(h, b)]
        assert [s.status for s in statuses] == ["accepted", "located", "recovered"]
        assert {s.assignment_id for s in statuses} == {assignment.assignment_id}

    def test_duplicated_webhook_carries_the_same_event_id(
        self, provider: AgencyProvider, agency_sandbox: Any, callback_receiver: CallbackReceiver
    ) -> None:
        """A webhook the agency sends twice parses to the same event both times, so it can be deduplicated."""
        agency_sandbox.register_callback(callback_receiver.url)
        agency_sandbox.set_faults(duplicate_callbacks=1)
        assignment = provider.assign(make_request("a-1"))
        agency_sandbox.advance(assignment.assignment_id, "accepted", deliver=True)
        first, second = (provider.parse_callback(h, b) for h, b in callback_receiver.received)
        assert first == second and first[0].status == "accepted"

    def test_forged_webhooks_are_refused(self, provider: AgencyProvider, agency_sandbox: Any) -> None:
        """A changed body, or a wrong, missing or garbled signature or timestamp, raises InvalidCallback."""
        assignment = provider.assign(make_request("a-1"))
        agency_sandbox.advance(assignment.assignment_id, "located")
        headers, body = agency_sandbox.signed_callback(assignment.assignment_id)
        assert provider.parse_callback(headers, body)[0].status == "located"
        sig = next(k for k in headers if k.lower() == "x-agency-signature")
        ts = next(k for k in headers if k.lower() == "x-agency-timestamp")
        cases = [
            (headers, body.replace(b'"located"', b'"closed"')),
            ({**headers, sig: "0" * 64}, body),
            ({k: v for k, v in headers.items() if k != sig}, body),
            ({k: v for k, v in headers.items() if k != ts}, body),
            ({**headers, ts: str(int(headers[ts]) + 1)}, body),
        ]
        for forged_headers, forged in cases:
            with pytest.raises(InvalidCallback):
                provider.parse_callback(forged_headers, forged)

    def test_stale_webhook_is_refused(self, provider: AgencyProvider, agency_sandbox: Any) -> None:
        """A well-signed webhook over 5 minutes old (or ahead) is refused; one 4 minutes old passes."""
        assignment = provider.assign(make_request("a-1"))
        agency_sandbox.advance(assignment.assignment_id, "accepted")
        now = int(time.time())
        for skew in (305, -305, 3600):
            headers, body = agency_sandbox.signed_callback(assignment.assignment_id, timestamp=now - skew)
            with pytest.raises(InvalidCallback):
                provider.parse_callback(headers, body)
        headers, body = agency_sandbox.signed_callback(assignment.assignment_id, timestamp=now - 240)
        assert provider.parse_callback(headers, body)[0].status == "accepted"

    def test_lost_webhook_is_recovered_by_status(
        self, provider: AgencyProvider, agency_sandbox: Any, callback_receiver: CallbackReceiver
    ) -> None:
        """When the agency drops a webhook, nothing arrives, and status() still tells the new status."""
        agency_sandbox.register_callback(callback_receiver.url)
        agency_sandbox.set_faults(drop_callbacks=1)
        assignment = provider.assign(make_request("a-1"))
        agency_sandbox.advance(assignment.assignment_id, "accepted", deliver=True)
        assert callback_receiver.received == []
        assert [c["outcome"] for c in agency_sandbox.callbacks()] == ["dropped"]
        assert provider.status(assignment.assignment_id).status == "accepted"

    def test_secrets_and_vin_never_printed(
        self, provider: Any, bad_provider: Any, agency_sandbox: Any
    ) -> None:
        """No secret appears in a provider's repr or its errors, and no full VIN in a request's repr."""
        secrets = [
            agency_sandbox.credentials["api_key"],
            agency_sandbox.credentials["webhook_secret"],
            BAD_SECRET,
        ]
        assignment = provider.assign(make_request("a-1"))
        agency_sandbox.advance(assignment.assignment_id, "accepted")
        headers, body = agency_sandbox.signed_callback(assignment.assignment_id)
        texts = [repr(provider), str(provider), repr(bad_provider), repr(make_request())]
        for call in (
            lambda: bad_provider.assign(make_request("a-2")),
            lambda: bad_provider.status(assignment.assignment_id),
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
        assert VIN not in repr(make_request()) and "Main St" not in repr(make_request())
