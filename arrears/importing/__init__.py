"""Reading and checking the servicing system's accounts and payments files (DESIGN §8).

The servicing system is the system of record, so a file it exports must never be half-read in
silence: every data line either becomes a typed, checked row (`AccountRow`, `PaymentRow`) or a
list of `Rejection`s naming its line, field and reason, and `accepted + rejected == data lines`
always, whatever the quoting.

- `records`: the kinds of file, their columns, and what is read and decided;
- `reading`: files read one physical line at a time in their encoding (`open_source`), in
  bounded memory; a file that cannot be read raises `UnreadableFile`;
- `checks`: one row on its own, then the rules across rows (`check_accounts`, `check_payments`);
- `parallel`: the rows of a long file parsed in worker processes while the importer stores;
- `rejects`: the rejects file beside the input.

Nothing here touches the database: storage is `arrears.storage.importer`.
"""

from arrears.currencies import CURRENCY_MINOR_UNITS, ISO_4217
from arrears.importing.checks import (
    check_accounts,
    check_parsed_accounts,
    check_parsed_payments,
    check_payments,
    earliest_date,
    fits_currency,
    parse_account,
    parse_payment,
    read_account,
    read_payment,
)
from arrears.importing.reading import DEFAULT_ENCODING, Source, check_encoding, open_source
from arrears.importing.records import (
    ACCOUNT_OPTIONAL,
    ACCOUNT_REQUIRED,
    ADDRESS_COLUMNS,
    PAYMENT_REQUIRED,
    AccountRow,
    Checked,
    Kind,
    PaymentRow,
    RawRow,
    Rejection,
    UnreadableFile,
)
from arrears.importing.rejects import RejectsUnwritable, RejectsWriter, rejects_path

__all__ = [
    "ACCOUNT_OPTIONAL",
    "ACCOUNT_REQUIRED",
    "ADDRESS_COLUMNS",
    "CURRENCY_MINOR_UNITS",
    "DEFAULT_ENCODING",
    "ISO_4217",
    "PAYMENT_REQUIRED",
    "AccountRow",
    "Checked",
    "Kind",
    "PaymentRow",
    "RawRow",
    "Rejection",
    "RejectsUnwritable",
    "RejectsWriter",
    "Source",
    "UnreadableFile",
    "check_accounts",
    "check_encoding",
    "check_parsed_accounts",
    "check_parsed_payments",
    "check_payments",
    "earliest_date",
    "fits_currency",
    "open_source",
    "parse_account",
    "parse_payment",
    "read_account",
    "read_payment",
    "rejects_path",
]
