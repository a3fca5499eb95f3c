"""Where letters and repossession assignments go: an account's mailing address, as imported,
and its borrower's name.

Functions take the caller's connection and do not commit.
"""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select

from arrears.addresses import MailingAddress, mailable
from arrears.storage.bulk import among
from arrears.storage.tables import account, borrower

__all__ = ["ADDRESS_COLUMNS", "address_of", "borrower_of", "mailing_address", "mailing_facts"]

# An account's address as imported: select these, then `address_of` the row.
ADDRESS_COLUMNS = (
    account.c.address_line1,
    account.c.address_line2,
    account.c.city,
    account.c.state,
    account.c.postal_code,
    account.c.country,
)


def address_of(a: Any) -> MailingAddress | None:
    """The address of a row holding `ADDRESS_COLUMNS`, or None when it has none that can be mailed to."""
    return mailable(a.address_line1, a.address_line2, a.city, a.state, a.postal_code, a.country)


def mailing_address(connection: Connection, account_id: str) -> MailingAddress | None:
    """The account's mailing address, or None when it has none that can be mailed to."""
    a = connection.execute(select(*ADDRESS_COLUMNS).where(account.c.account_id == account_id)).first()
    return None if a is None else address_of(a)


def mailing_facts(
    connection: Connection, account_ids: Sequence[str]
) -> dict[str, tuple[MailingAddress | None, str]]:
    """Per account: its mailing address (None when it has none that can be mailed to, as
    `mailing_address` says) and its borrower's name. One query, the ids bound as one value
    (`among`), not two per account: the daily cycle writes the letters of thousands of new
    reviews at once."""
    found: dict[str, tuple[MailingAddress | None, str]] = {}
    for a in connection.execute(
        select(account.c.account_id, *ADDRESS_COLUMNS, borrower.c.name)
        .join(borrower, borrower.c.borrower_id == account.c.borrower_id)
        .where(among(account.c.account_id, sorted(set(account_ids))))
    ):
        found[a.account_id] = (address_of(a), a.name)
    return found


def borrower_of(connection: Connection, account_id: str) -> tuple[str, str | None]:
    """The borrower's name and the account's VIN (what letters and assignments name)."""
    r = connection.execute(
        select(borrower.c.name, account.c.vin)
        .join(account, account.c.borrower_id == borrower.c.borrower_id)
        .where(account.c.account_id == account_id)
    ).one()
    return r.name, r.vin
