"""The court kind: filings to an e-filing gateway (ECF 5-style), their statuses and callbacks.

from integrations.court import build_provider, FilingEnvelope
from integrations.court.sandbox import start_court_sandbox
with start_court_sandbox() as court, build_provider("sandbox", court.base_url, court.credentials) as p:
    receipt = p.submit(envelope)
    p.status(receipt.filing_id)
"""

from integrations.court.factory import DEFAULT_PROVIDER, available_providers, build_provider, provider_class
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
    "DEFAULT_PROVIDER",
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
    "available_providers",
    "build_provider",
    "provider_class",
]
