"""The agency kind: repossession orders sent to an agency, cancelled there when overtaken.

from integrations import registry
from integrations.agency.sandbox import start_agency_sandbox
with start_agency_sandbox() as agency:
    cls = registry.load("agency", "sandbox")
    with cls.from_config(agency.base_url, agency.credentials) as provider:
        assignment = provider.assign(request)
        provider.cancel(assignment.assignment_id, "payment received")
"""

from integrations.agency.protocol import (
    ASSIGNMENT_STATUSES,
    CANCELLABLE_STATUSES,
    TERMINAL_STATUSES,
    AgencyProvider,
    Assignment,
    AssignmentNotCancellable,
    AssignmentNotFound,
    AssignmentRequest,
    AssignmentStatus,
    AssignmentStatusName,
    KnownAddress,
    LenderContact,
    Vehicle,
)

__all__ = [
    "ASSIGNMENT_STATUSES",
    "CANCELLABLE_STATUSES",
    "TERMINAL_STATUSES",
    "AgencyProvider",
    "Assignment",
    "AssignmentNotCancellable",
    "AssignmentNotFound",
    "AssignmentRequest",
    "AssignmentStatus",
    "AssignmentStatusName",
    "KnownAddress",
    "LenderContact",
    "Vehicle",
]
