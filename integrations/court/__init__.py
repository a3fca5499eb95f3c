"""The court kind: filings to an e-filing gateway (ECF 5-style), their statuses and callbacks.

from integrations.court import FilingEnvelope
from integrations.court.sandbox import start_court_sandbox
from integrations.providers import build_provider
with start_court_sandbox() as court:
    with build_provider("court", "sandbox", court.base_url, court.credentials) as p:
        receipt = p.submit(envelope)
        p.status(receipt.filing_id)
"""

from integrations.court.protocol import (
    CASE_TYPES,
    FILING_STATUSES,
    TERMINAL_STATUSES,
    CaseType,
    CourtProvider,
    FilingDocument,
    FilingEnvelope,
    FilingNotFound,
    FilingReceipt,
    FilingStatus,
    FilingStatusName,
    Party,
)

__all__ = [
    "CASE_TYPES",
    "FILING_STATUSES",
    "TERMINAL_STATUSES",
    "CaseType",
    "CourtProvider",
    "FilingDocument",
    "FilingEnvelope",
    "FilingNotFound",
    "FilingReceipt",
    "FilingStatus",
    "FilingStatusName",
    "Party",
]
