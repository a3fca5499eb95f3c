"""`arrears contact confirm`: a person confirms that a number is the borrower's
(`arrears.storage.accounts.confirm_number`)."""

from typing import Annotated

import typer

from deployments.cli._common import (
    Agent,
    AsOf,
    CliError,
    DatabaseOption,
    Why,
    as_of_instant,
    audit_actor,
    audit_reason,
    command_group,
    console,
    existing_database,
)

__all__ = ["contact_app"]

contact_app = command_group(
    "contact",
    "The borrower's numbers: confirm one skip tracing found, add one they gave (audited with who and why).",
)

Account = Annotated[str, typer.Argument(help="The account, e.g. A-0000042.")]
Number = Annotated[
    str,
    typer.Argument(
        help="The number: with its country code (+1 515 281 1006), or as the account's country writes it."
    ),
]


def _e164(text: str, jurisdiction: str) -> str:
    """The number as stored (E.164): with its country code, or national in the account's country."""
    import phonenumbers

    from arrears.jurisdictions import profile

    try:
        number = phonenumbers.parse(text, profile(jurisdiction).phone_region or None)
    except (phonenumbers.NumberParseException, KeyError):
        raise CliError("NUMBER: not a phone number (give it with its country code, +...)") from None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _valid_number(text: str, jurisdiction: str) -> tuple[str, str | None]:
    """The number in E.164 and its region, refused (exit 2) unless it is a valid phone number."""
    import phonenumbers

    address = _e164(text, jurisdiction)
    number = phonenumbers.parse(address)
    if number.extension or not phonenumbers.is_valid_number(number):
        raise CliError("NUMBER: not a valid phone number (give it with its country code, +...)")
    return address, phonenumbers.region_code_for_number(number)


@contact_app.command("add")
def add(
    account_id: Account,
    number: Number,
    reason: Why,
    agent: Agent = "agent",
    database: DatabaseOption = None,
    as_of: AsOf = None,
) -> None:
    """Add a number the borrower told you is theirs (a new phone after the old one went dead or
    was disowned): confirmed, so from the next cycle the messages the account's stage calls for go
    to it while the borrower has no number of the file that works (the file's working number comes
    first). Refused, nothing changed (exit 2): a number that is no valid phone number, one the
    borrower has already (`contact confirm` it), one another borrower holds. A number that opted
    out stays opted out."""
    from arrears.masking import mask_phone
    from arrears.storage.accounts import account_row, add_number

    why, who, at = audit_reason(reason), audit_actor(agent), as_of_instant(as_of)
    with existing_database(database).begin() as connection:
        row = account_row(connection, account_id)
        if row is None:
            raise CliError(f"no account {account_id!r}")
        address, region = _valid_number(number, row.jurisdiction)
        refused = add_number(
            connection, account_id=account_id, address=address, region=region, by=who, why=why, at=at
        )
    if refused is not None:
        hint = ": `arrears contact confirm` it" if refused == "the borrower's already" else ""
        raise CliError(f"NUMBER: {mask_phone(address)} is {refused}{hint}; nothing changed")
    console.print(f"{account_id}: {mask_phone(address)} added, the borrower's", markup=False, highlight=False)


@contact_app.command("confirm")
def confirm(
    account_id: Account,
    number: Number,
    reason: Why,
    agent: Agent = "agent",
    database: DatabaseOption = None,
    as_of: AsOf = None,
) -> None:
    """Confirm that one of the borrower's numbers is theirs, having spoken with them. A number a
    skip trace found is unconfirmed (`arrears show`: "found by a skip trace and unverified"): it may
    be a third party's, so no text telling of the debt goes to it; from the next cycle the messages
    the account's stage calls for go to it, unless it is marked invalid or opted out (which a
    confirmation does not change: the output says so)."""
    from arrears.masking import mask_phone
    from arrears.storage.accounts import account_row, confirm_number

    why, who, at = audit_reason(reason), audit_actor(agent), as_of_instant(as_of)
    with existing_database(database).begin() as connection:
        row = account_row(connection, account_id)
        if row is None:
            raise CliError(f"no account {account_id!r}")
        address = _e164(number, row.jurisdiction)
        confirmed = confirm_number(connection, account_id=account_id, address=address, by=who, why=why, at=at)
    if confirmed is None:
        raise CliError(f"{account_id}: {mask_phone(address)} is not one of the borrower's numbers")
    said = "confirmed the borrower's" if confirmed.now else "was confirmed already: nothing changed"
    if confirmed.unusable:  # confirming does not make it usable: say so rather than promise texts
        said += f"; nothing is sent to it: {confirmed.unusable}"
    console.print(f"{account_id}: {mask_phone(address)} {said}", markup=False, highlight=False)
