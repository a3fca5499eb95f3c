"""The sandbox court: its own process, its checks at the door, its controls and its callbacks."""

import base64
import hashlib
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from integrations.court.contract import CallbackReceiver, make_envelope
from integrations.court.ecf import EcfCourtProvider
from integrations.court.sandbox import SERVER, CourtSandbox, CourtSandboxCredentials, provider_credentials
from integrations.errors import Permanent
from integrations.sandbox import start_sandbox


@pytest.fixture(scope="module")
def _court_process() -> Iterator[CourtSandbox]:
    with CourtSandbox(start_sandbox(server=SERVER)) as court:
        yield court


@pytest.fixture
def court(_court_process: CourtSandbox) -> CourtSandbox:
    _court_process.reset()
    return _court_process


@pytest.fixture
def provider(court: CourtSandbox) -> Iterator[EcfCourtProvider]:
    with EcfCourtProvider.from_config(court.base_url, court.credentials) as provider:
        yield provider


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    yield receiver
    receiver.close()


def _review(
    court: CourtSandbox, message: dict[str, Any], *, key: str = "k-1", token: str | None = None
) -> httpx.Response:
    token = token if token is not None else court.credentials["api_key"]
    return court.admin.post(
        "/ecf/v5/ReviewFiling",
        json={"filerId": court.credentials["filer_id"], **message},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
    )


def _message(**overrides: Any) -> dict[str, Any]:
    content = b"%PDF-1.7"
    message = {
        "court": "US-CA-LASC",
        "caseType": "deficiency",
        "claim": {"amount": "10.00", "currency": "USD"},
        "parties": [{"role": "plaintiff", "name": "Lender"}, {"role": "defendant", "name": "Borrower"}],
        "documents": [
            {
                "kind": "complaint",
                "name": "c.pdf",
                "sha256": hashlib.sha256(content).hexdigest(),
                "content": base64.b64encode(content).decode(),
            }
        ],
    }
    message.update(overrides)
    return message


def test_runs_in_another_process_with_its_own_health(court: CourtSandbox) -> None:
    """start_sandbox(server=…court…) runs a live, separate process that says it is the court sandbox."""
    assert court.alive()
    assert court.admin.get("/_sandbox/health").json() == {"ok": True, "kind": "court", "filings": 0}


def test_door_checks_token_then_filer(court: CourtSandbox) -> None:
    """A wrong token is a 401, another filer's id a 403, and neither files anything."""
    assert _review(court, _message(), token="wrong").status_code == 401
    forbidden = court.admin.post(
        "/ecf/v5/ReviewFiling",
        json={**_message(), "filerId": "FILER-OTHER"},
        headers={"Authorization": f"Bearer {court.credentials['api_key']}", "Idempotency-Key": "k"},
    )
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "filer.forbidden"
    assert court.filings() == []


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"court": "US-XX-NOPE"}, "court.unknown"),
        ({"caseType": "payment_order"}, "case_type.unsupported"),
        ({"claim": {"amount": "-1", "currency": "USD"}}, "claim.invalid"),
        ({"parties": [{"role": "plaintiff", "name": "Lender"}]}, "parties.invalid"),
        (
            {"documents": [{"kind": "c", "name": "c.pdf", "sha256": "0" * 64, "content": "JVBERg=="}]},
            "document.hash_mismatch",
        ),
        ({"militaryStatusAffidavit": True}, "affidavit.missing"),
    ],
)
def test_refusals_at_the_door(court: CourtSandbox, overrides: dict[str, Any], code: str) -> None:
    """Unknown courts, a payment order outside China, bad money, parties, hashes or affidavit are 400s."""
    answer = _review(court, _message(**overrides))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == code
    assert court.filings() == []


def test_resend_is_marked_as_a_replay(court: CourtSandbox) -> None:
    """A resend with the same key and content answers 200, the first filing id, and Idempotent-Replayed."""
    first = _review(court, _message())
    again = _review(court, _message())
    assert first.status_code == 202 and again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["filingId"] == first.json()["filingId"]


def test_advance_only_moves_forward(court: CourtSandbox, provider: EcfCourtProvider) -> None:
    """A filing cannot go back, past judgment, or to a status that does not exist."""
    filing_id = provider.submit(make_envelope("k-1")).filing_id
    assert court.advance(filing_id)["filing"]["reviewStatus"] == "pending"  # one step by default
    court.advance(filing_id, "accepted")
    for target, status in (("under_review", 409), ("rejected", 409), ("teleported", 422)):
        answer = court.admin.post(f"/_sandbox/advance/{filing_id}", json={"to": target})
        assert answer.status_code == status, target
    court.advance(filing_id, "judgment")
    assert court.admin.post(f"/_sandbox/advance/{filing_id}", json={}).status_code == 409


def test_cancel_before_review_ends_only(court: CourtSandbox, provider: EcfCourtProvider) -> None:
    """CancelFiling withdraws a filing under review (twice is harmless), never an accepted one."""
    pending = provider.submit(make_envelope("k-1")).filing_id
    court.advance(pending, "under_review")
    assert provider.cancel(pending, "paid in full").status == "cancelled"
    again = provider.cancel(pending, "paid in full")
    assert again.status == "cancelled" and again.reason == "paid in full"
    accepted = provider.submit(make_envelope("k-2")).filing_id
    court.advance(accepted, "accepted")
    with pytest.raises(Permanent, match="already accepted") as caught:
        provider.cancel(accepted, "paid")
    assert caught.value.code == "filing.not_cancellable"


def test_time_rules_chain_and_date_each_step(court: CourtSandbox, provider: EcfCourtProvider) -> None:
    """Rules move a filing through each due step, dated when it fell due, and stop at the first not due."""
    court.set_rules(
        review_after_seconds=0, accept_after_seconds=0, serve_after_seconds=0, judgment_after_seconds=3600
    )
    receipt = provider.submit(make_envelope("k-1"))
    status = provider.status(receipt.filing_id)
    assert status.status == "served" and status.at == receipt.submitted_at
    [filing] = court.filings()
    assert [e["reviewStatus"] + "/" + str(e["serviceStatus"]) for e in filing["events"]] == [
        "pending/None",
        "accepted/None",
        "accepted/delivered",
    ]


def test_failed_callbacks_stay_pending_until_delivered(
    court: CourtSandbox, provider: EcfCourtProvider, receiver: CallbackReceiver
) -> None:
    """Events whose delivery fails are kept and sent, together, once the webhook answers."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    court.register_callback(dead)
    filing_id = provider.submit(make_envelope("k-1")).filing_id
    court.advance(filing_id, "under_review", deliver=True)
    court.advance(filing_id, "accepted")
    assert court.deliver_callbacks() == {"delivered": 0, "dropped": 0, "failed": 2, "pending": 2}
    court.register_callback(receiver.url)
    assert court.deliver_callbacks() == {"delivered": 2, "dropped": 0, "failed": 0, "pending": 0}
    [(headers, body)] = receiver.received
    assert [s.status for s in provider.parse_callback(headers, body)] == ["under_review", "accepted"]
    assert court.deliver_callbacks()["delivered"] == 0  # nothing is sent twice


def test_webhook_error_keeps_events_pending(
    court: CourtSandbox, provider: EcfCourtProvider, receiver: CallbackReceiver
) -> None:
    """A webhook answering 500 counts as a failed delivery, not a delivered one."""
    receiver.status = 500
    court.register_callback(receiver.url)
    filing_id = provider.submit(make_envelope("k-1")).filing_id
    assert court.advance(filing_id, deliver=True)["delivery"]["failed"] == 1
    assert [c["outcome"] for c in court.callbacks()] == ["failed"] and court.stats()["pending_callbacks"] == 1


def test_filings_own_callback_url_wins(court: CourtSandbox, receiver: CallbackReceiver) -> None:
    """A callback URL sent with the filing is used instead of the sandbox's registered one."""
    court.register_callback("http://127.0.0.1:9/never")
    credentials = {**court.credentials, "callback_url": receiver.url}
    with EcfCourtProvider.from_config(court.base_url, credentials) as provider:
        filing_id = provider.submit(make_envelope("k-1")).filing_id
        court.advance(filing_id, deliver=True)
    assert len(receiver.received) == 1 and [c["url"] for c in court.callbacks()] == [receiver.url]


def test_reset_forgets_filings_rules_and_faults(court: CourtSandbox, provider: EcfCourtProvider) -> None:
    """After reset, no filing, rule, fault or idempotency record is left."""
    provider.submit(make_envelope("k-1"))
    court.set_rules(accept_after_seconds=5)
    court.set_faults(http_429=3)
    court.reset()
    assert court.filings() == [] and court.admin.get("/_sandbox/rules").json()["accept_after_seconds"] is None
    assert court.admin.get("/_sandbox/faults").json()["http_429"] == 0
    assert (
        provider.submit(make_envelope("k-1", claim_amount=make_envelope().claim_amount * 2)).status
        == "submitted"
    )


def test_court_credentials_from_a_sandbox_mapping() -> None:
    """Court credentials are the mapping's own if present, else derived: stable, distinct, unprinted."""
    own = {"filer_id": "F-1", "api_key": "k", "callback_secret": "s", "extra": "x"}
    assert provider_credentials(own) == {"filer_id": "F-1", "api_key": "k", "callback_secret": "s"}
    a = provider_credentials({"auth_token": "one"})
    assert a == provider_credentials({"auth_token": "one"}) and a != provider_credentials(
        {"auth_token": "two"}
    )
    assert a["api_key"] not in repr(CourtSandboxCredentials(**a)) and a["callback_secret"] not in repr(
        CourtSandboxCredentials(**a)
    )
