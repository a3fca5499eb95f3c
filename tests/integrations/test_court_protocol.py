"""The court kind's frozen types: what they refuse, and what their reprs leave out."""

import dataclasses
import pickle
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from integrations.court import FilingDocument, FilingNotFound, FilingReceipt, FilingStatus, Party
from integrations.court.contract import make_envelope
from integrations.errors import Permanent

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"claim_amount": Decimal(0)}, "positive"),
        ({"claim_amount": Decimal("-5.00")}, "positive"),
        ({"currency": "usd"}, "ISO 4217"),
        ({"case_type": "eviction"}, "case type"),
        ({"court": " "}, "court"),
        ({"idempotency_key": ""}, "idempotency key"),
        ({"documents": []}, "document"),
        ({"parties": [Party(role="plaintiff", name="Lender")]}, "defendant"),
        (
            {"documents": [FilingDocument(kind="complaint", name="c.pdf", sha256="a" * 64)]},
            "military_affidavit",
        ),
    ],
)
def test_envelope_refuses_what_a_court_would(overrides: dict, message: str) -> None:
    """No money, a bad currency, missing parties or documents, or a flag without its affidavit is refused."""
    with pytest.raises(ValueError, match=message):
        make_envelope("k", **overrides)


def test_claim_amount_must_be_a_decimal() -> None:
    """A float claim amount is refused: money never travels as a float."""
    with pytest.raises(TypeError):
        make_envelope("k", claim_amount=4321.09)


def test_envelope_is_frozen_and_holds_tuples() -> None:
    """Envelopes cannot be changed after construction, and their lists become tuples."""
    envelope = make_envelope("k")
    assert isinstance(envelope.parties, tuple) and isinstance(envelope.documents, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        envelope.court = "GB-CCBC"  # type: ignore[misc]


def test_reprs_leave_out_personal_data() -> None:
    """Envelope, party and document reprs show no name, address, national id or document content."""
    envelope = make_envelope("k")
    text = repr(envelope) + repr(list(envelope.parties)) + repr(list(envelope.documents))
    for private in ("Dana Borrower", "1 Main St", "123-45-6789", "%PDF"):
        assert private not in text
    assert "4321.09 USD" in repr(envelope) and "*******89" in text


def test_document_hash_is_computed_and_checked() -> None:
    """A document's SHA-256 is computed from its bytes; a given hash that disagrees is refused."""
    document = FilingDocument.from_bytes("complaint", "c.pdf", b"abc")
    assert document.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert document.size == 3
    with pytest.raises(ValueError, match="does not match"):
        FilingDocument(kind="complaint", name="c.pdf", sha256="0" * 64, content=b"abc")
    with pytest.raises(ValueError, match="SHA-256"):
        FilingDocument(kind="complaint", name="c.pdf", sha256="not-hex")


def test_results_need_aware_times_and_known_statuses() -> None:
    """Receipts and statuses refuse a naive datetime or a status outside the court vocabulary."""
    naive = datetime(2026, 12, 1, 9, 0)
    with pytest.raises(ValueError, match="aware"):
        FilingReceipt("k", "ECF-1", "submitted", naive)
    with pytest.raises(ValueError, match="aware"):
        FilingStatus("ECF-1", "accepted", naive)
    with pytest.raises(ValueError, match="unknown filing status"):
        FilingStatus("ECF-1", "received", NOW)  # type: ignore[arg-type]
    assert (
        FilingStatus("ECF-1", "judgment", NOW).terminal and not FilingStatus("ECF-1", "served", NOW).terminal
    )


def test_filing_not_found_is_permanent_and_pickles() -> None:
    """FilingNotFound is a Permanent error that survives pickling with its filing id (Prefect stores it)."""
    error = pickle.loads(pickle.dumps(FilingNotFound("ECF-9")))
    assert isinstance(error, Permanent) and error.filing_id == "ECF-9" and error.code == "filing.not_found"
