"""The SQLModel tables as typed SQLAlchemy Core `Table` objects, for the bulk paths.

SQLModel sets `__table__` only at run time, so `Model.__table__` is untyped for mypy; each
table is named here once, with its type, and storage modules import it from here.
"""

from sqlalchemy import ColumnElement, Table, inspect

from arrears.models import (
    Account,
    AccountHold,
    AgencyAssignment,
    AuditEvent,
    Borrower,
    BureauRecord,
    ContactPoint,
    CycleRun,
    EarlyReport,
    ImportedFile,
    Letter,
    Message,
    OptedOutNumber,
    Payment,
    Plan,
    Promise,
    Quarantine,
    Referral,
    Review,
    Settlement,
)

__all__ = [
    "account",
    "assignment",
    "audit",
    "borrower",
    "bureau",
    "contact",
    "cycle_run",
    "early_report",
    "hold",
    "imported_file",
    "letter",
    "mailing_region",
    "message",
    "opted_out_number",
    "payment",
    "plan",
    "promise",
    "quarantine",
    "referral",
    "review",
    "settlement",
    "table_of",
]


def table_of(model: type[object]) -> Table:
    """The Core table of a SQLModel table class."""
    table = inspect(model).local_table
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


account = table_of(Account)
assignment = table_of(AgencyAssignment)
audit = table_of(AuditEvent)
borrower = table_of(Borrower)
bureau = table_of(BureauRecord)
contact = table_of(ContactPoint)
cycle_run = table_of(CycleRun)
early_report = table_of(EarlyReport)
hold = table_of(AccountHold)
imported_file = table_of(ImportedFile)
letter = table_of(Letter)
message = table_of(Message)
opted_out_number = table_of(OptedOutNumber)
payment = table_of(Payment)
plan = table_of(Plan)
promise = table_of(Promise)
quarantine = table_of(Quarantine)
referral = table_of(Referral)
review = table_of(Review)
settlement = table_of(Settlement)


def mailing_region() -> ColumnElement[str]:
    """An account's mailing address as its ISO 3166-2 region (`US-TX`), NULL without a country
    and a state: its zones join the contact window's (`arrears.compliance.hours.contact_zones`).
    Joined by the database, one column for the reads that check a contact."""
    return (account.c.country + "-" + account.c.state).label("region")
