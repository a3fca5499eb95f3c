"""Reading and checking import files: one test per rule of DESIGN §8, no database."""

import codecs
import gzip
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from arrears.importing import (
    ACCOUNT_OPTIONAL,
    AccountRow,
    Kind,
    PaymentRow,
    RawRow,
    Rejection,
    RejectsWriter,
    UnreadableFile,
    check_accounts,
    check_payments,
    open_source,
    parse_account,
    parse_payment,
    rejects_path,
)
from arrears.vocabulary import Hold
from tests.factories import account_record, payment_record, write_csv, write_jsonl


def account(**overrides: str) -> AccountRow:
    result = parse_account(7, account_record(**overrides))
    assert isinstance(result, AccountRow), result
    return result


def rejected(**overrides: str) -> dict[str, str]:
    """The rejections of one accounts record, as {field: reason}."""
    result = parse_account(7, account_record(**overrides))
    assert isinstance(result, list), f"accepted: {result}"
    assert all(r.line == 7 for r in result)
    return {r.field: r.reason for r in result}


def payment_rejected(**overrides: str) -> dict[str, str]:
    result = parse_payment(4, payment_record(**overrides))
    assert isinstance(result, list), f"accepted: {result}"
    return {r.field: r.reason for r in result}


def raw(line: int, record: dict[str, str]) -> RawRow:
    return RawRow(line, record, record.keys(), tuple(record.values()))


def read(path: Path, kind: Kind = Kind.ACCOUNTS) -> list[RawRow]:
    with open_source(path, kind) as source:
        return list(source.rows())


# ---------------------------------------------------------------------------------------------
# One accounts record


def test_valid_record_becomes_a_typed_row() -> None:
    """A valid record becomes an AccountRow with E.164 phone, exact Decimals and a date."""
    row = account(account_id="A-9", balance="18450.10", oldest_due_date="2026-10-28")
    assert row.line == 7
    assert row.phone == "+12133734253" and row.phone_region == "US"
    assert row.balance == Decimal("18450.10") and isinstance(row.balance, Decimal)
    assert row.oldest_due_date == date(2026, 10, 28)
    assert row.holds == frozenset()


def test_borrower_id_defaults_to_account_id_prefixed() -> None:
    """Without borrower_id the borrower is `B-<account_id>`, and the row says it was defaulted."""
    row = account(account_id="A-9")
    assert row.borrower_id == "B-A-9" and row.borrower_defaulted


def test_borrower_id_given_is_kept() -> None:
    """A borrower_id in the file is used as it is."""
    row = account(account_id="A-9", borrower_id="C-77")
    assert row.borrower_id == "C-77" and not row.borrower_defaulted


def test_cells_are_stripped() -> None:
    """Spaces around a cell are not part of its value."""
    row = account(account_id="  A-9 ", currency=" USD", jurisdiction="US-CA ")
    assert (row.account_id, row.currency, row.jurisdiction) == ("A-9", "USD", "US-CA")


@pytest.mark.parametrize(
    "name",
    [
        "account_id",
        "borrower_name",
        "phone",
        "timezone",
        "jurisdiction",
        "currency",
        "balance",
        "installment_amount",
        "past_due_amount",
    ],
)
def test_required_field_empty_is_rejected(name: str) -> None:
    """Every required field but oldest_due_date must have a value."""
    assert rejected(**{name: " "})[name] == "required"


def test_account_id_longer_than_the_column_is_rejected() -> None:
    """An id longer than the database column is refused here, not by PostgreSQL mid-chunk."""
    assert "longer than 64" in rejected(account_id="A" * 65)["account_id"]


def test_local_phone_is_parsed_in_the_jurisdictions_region() -> None:
    """The same local digits are a valid number in China and not in California."""
    assert account(
        jurisdiction="CN", timezone="Asia/Shanghai", currency="CNY", phone="138 0013 8000"
    ).phone == ("+8613800138000")
    assert rejected(phone="138 0013 8000")["phone"] == "not a valid phone number for region US"


def test_international_phone_keeps_its_own_region() -> None:
    """A +44 number of a Californian borrower is valid and its region is GB."""
    row = account(phone="+44 20 7946 0958")
    assert (row.phone, row.phone_region) == ("+442079460958", "GB")


def test_invalid_phone_is_rejected_without_echoing_the_number() -> None:
    """An impossible number is rejected, and the reason does not repeat it (DESIGN §9)."""
    reasons = rejected(phone="213-555-12")
    assert "phone" in reasons and "213" not in reasons["phone"]
    assert rejected(phone="call me")["phone"] == "not a phone number"


@pytest.mark.parametrize("phone", ["(213) 373-4253 ext. 5", "+1 213-373-4253 x12", "213.373.4253;ext=7"])
@pytest.mark.parametrize("field", ["phone", "alt_phone"])
def test_phone_with_an_extension_is_rejected_not_cut_to_the_switchboard(field: str, phone: str) -> None:
    """A number with an extension is rejected: stored without it, texts would reach a switchboard."""
    reason = rejected(**{field: phone})[field]
    assert reason.startswith("has an extension") and "213" not in reason


def test_alt_phone_is_optional_and_normalised() -> None:
    """alt_phone may be empty; when given it is normalised like phone."""
    assert account(alt_phone="").alt_phone is None
    assert account(alt_phone="(415) 555-2671").alt_phone == "+14155552671"


def test_alt_phone_equal_to_phone_is_dropped() -> None:
    """The primary number written again as alt_phone is one contact point, not two."""
    assert account(phone="(213) 373-4253", alt_phone="+1 213 373 4253").alt_phone is None


def test_invalid_alt_phone_is_rejected() -> None:
    """An invalid alt_phone rejects the row: it would otherwise be dropped in silence."""
    assert "alt_phone" in rejected(alt_phone="12")


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "america/los_angeles", "localtime", "PST"])
def test_unknown_time_zone_is_rejected(zone: str) -> None:
    """Only IANA zone names are accepted."""
    assert "unknown IANA time zone" in rejected(timezone=zone)["timezone"]


def test_unknown_jurisdiction_is_rejected_listing_known_ones() -> None:
    """A jurisdiction without a profile is rejected and the reason lists the known ones."""
    reason = rejected(jurisdiction="US-ZZ")["jurisdiction"]
    assert "'US-ZZ'" in reason and "US-CA" in reason and "GB" in reason


@pytest.mark.parametrize("code", ["XYZ", "usd", "HRK", "XAU", "US"])
def test_unknown_or_unusable_currency_is_rejected(code: str) -> None:
    """Currencies must be active ISO 4217 codes a loan can be written in."""
    assert "unknown ISO 4217 currency code" in rejected(currency=code)["currency"]


@pytest.mark.parametrize(
    "text", ["NaN", "inf", "-Infinity", "1e3", "1E+3", "1,000.00", "12.3.4", "$12", "١٢", "0x10"]
)
def test_amount_that_is_not_a_plain_decimal_is_rejected(text: str) -> None:
    """NaN, infinities, exponents, separators and non-ASCII digits are not amounts."""
    assert "not a plain decimal number" in rejected(balance=text)["balance"]


def test_negative_amount_is_rejected() -> None:
    """Amounts must not be negative."""
    assert rejected(installment_amount="-1.00")["installment_amount"] == "must not be negative"


@pytest.mark.parametrize(
    ("currency", "amount", "ok"),
    [
        ("USD", "10.001", False),
        ("USD", "10.500", True),
        ("JPY", "1000.5", False),
        ("JPY", "1000.00", True),
        ("KWD", "1.234", True),
        ("KWD", "1.2345", False),
    ],
)
def test_amount_finer_than_the_currency_is_rejected(currency: str, amount: str, ok: bool) -> None:
    """An amount must be exact in the currency's minor units; trailing zeros do not count."""
    record = {
        "currency": currency,
        "balance": amount,
        "installment_amount": "1",
        "past_due_amount": "0",
        "oldest_due_date": "",
    }
    if ok:
        assert account(**record).balance == Decimal(amount)
    else:
        assert f"more decimal places than {currency} allows" in rejected(**record)["balance"]


def test_amount_too_large_for_storage_is_rejected() -> None:
    """An amount the database cannot hold exactly is rejected instead of failing its chunk."""
    assert "too large" in rejected(balance="100000000000000")["balance"]


def test_past_due_above_balance_is_rejected() -> None:
    """past_due_amount may not exceed the balance."""
    assert "exceeds the balance" in rejected(balance="100.00", past_due_amount="100.01")["past_due_amount"]


def test_oldest_due_date_is_required_when_past_due() -> None:
    """An account with an amount past due must say since when."""
    assert rejected(past_due_amount="10.00", oldest_due_date="")["oldest_due_date"] == (
        "required when past_due_amount is above zero"
    )


def test_oldest_due_date_must_be_empty_when_current() -> None:
    """A current account (nothing past due) has no oldest due date."""
    assert rejected(past_due_amount="0.00", oldest_due_date="2026-10-01")["oldest_due_date"] == (
        "must be empty when past_due_amount is zero"
    )
    assert account(past_due_amount="0", oldest_due_date="").oldest_due_date is None


@pytest.mark.parametrize("text", ["2026-02-30", "28/10/2026", "20261028", "2026-W44-1", "2026-10-28T00:00"])
def test_invalid_date_is_rejected(text: str) -> None:
    """Dates are real calendar dates written YYYY-MM-DD."""
    assert "not a valid date" in rejected(oldest_due_date=text)["oldest_due_date"]


def test_flags_become_holds() -> None:
    """`|`-separated flags become holds; spaces and repeats do not matter."""
    assert account(flags=" dispute | military|dispute").holds == {Hold.DISPUTE, Hold.MILITARY}


def test_unknown_flag_is_rejected() -> None:
    """A flag that is not a known hold is rejected, naming it."""
    assert "unknown hold flag 'vip'" in rejected(flags="dispute|vip")["flags"]


def test_vin_is_checked_and_upper_cased() -> None:
    """A VIN is 17 characters without I, O or Q; case does not matter."""
    assert account(vin="1hgcm82633a004352").vin == "1HGCM82633A004352"
    assert "not a VIN" in rejected(vin="1HGCM82633A00435O")["vin"]
    assert "not a VIN" in rejected(vin="1HGCM826")["vin"]


def test_apr_beyond_storage_precision_is_rejected() -> None:
    """apr is stored with 4 decimal places: a finer one would be rounded in silence."""
    assert account(apr="0.0899").apr == Decimal("0.0899")
    assert "more than 4 decimal places" in rejected(apr="0.08995")["apr"]


def test_optional_columns_not_in_the_file_are_absent() -> None:
    """A column the file lacks is `absent` (kept in storage); an empty cell is not (cleared)."""
    assert set(account().absent) == set(ACCOUNT_OPTIONAL)
    assert "vin" not in account(vin="").absent


def test_several_problems_in_one_row_are_all_reported() -> None:
    """A row with several problems reports each, so one fix round is enough."""
    assert set(rejected(phone="1", currency="ZZZ", flags="nope")) == {"phone", "currency", "flags"}


# ---------------------------------------------------------------------------------------------
# Rules across accounts rows


def test_duplicate_account_id_rejects_the_later_row_naming_the_first() -> None:
    """The second row with an account_id is rejected with the line of the first."""
    results = list(
        check_accounts(
            [
                raw(2, account_record(account_id="A-1")),
                raw(3, account_record(account_id="B")),
                raw(4, account_record(account_id="A-1")),
            ]
        )
    )
    assert [c.row is not None for c in results] == [True, True, False]
    assert results[2].rejections == (Rejection(4, "account_id", "duplicate of line 2"),)


def test_shared_borrower_must_keep_one_name_and_phone() -> None:
    """Accounts of one borrower agree on name and phone, or the later row is rejected."""
    results = list(
        check_accounts(
            [
                raw(2, account_record(borrower_id="C-1", borrower_name="Ann Lee")),
                raw(3, account_record(borrower_id="C-1", borrower_name="Ann Lee")),
                raw(4, account_record(borrower_id="C-1", borrower_name="Anne Lee")),
            ]
        )
    )
    assert [c.row is not None for c in results] == [True, True, False]
    assert results[2].rejections == (Rejection(4, "borrower_name", "differs from line 2 for borrower C-1"),)


def test_rows_are_checked_lazily() -> None:
    """check_accounts yields each verdict before reading the next record: files stream."""

    def records() -> Iterator[RawRow]:
        yield raw(2, account_record())
        raise AssertionError("read past the first record")

    first = next(check_accounts(records()))
    assert first.row is not None


def test_a_row_that_could_not_be_read_is_rejected_as_read() -> None:
    """A reading problem is the row's rejection; the row is not checked further."""
    problem = Rejection(5, "row", "has 3 fields, the header has 10")
    [result] = check_accounts([RawRow(5, {}, (), (), problem)])
    assert result.row is None and result.rejections == (problem,)


# ---------------------------------------------------------------------------------------------
# Payments


def test_valid_payment_has_an_aware_utc_instant() -> None:
    """received_at with an offset becomes the same instant in UTC."""
    row = parse_payment(2, payment_record(amount="412.50", received_at="2026-11-20T10:15:00-08:00"))
    assert isinstance(row, PaymentRow)
    assert row.received_at == datetime(2026, 11, 20, 18, 15, tzinfo=UTC) and row.amount == Decimal("412.50")


@pytest.mark.parametrize(
    ("text", "example"),
    [
        ("2026-11-20T10:15:00", "2026-11-20T10:15:00+08:00"),
        ("2026-11-20 10:15", "2026-11-20T10:15:00+08:00"),
        ("2026-11-20", "2026-11-20T00:00:00+08:00"),
        ("2026-11-20+08:00", "2026-11-20T08:00:00+08:00"),  # a date and a time, to fromisoformat
        ("yesterday", "e.g. 2026-12-01T09:00:00+08:00"),
    ],
)
def test_received_at_without_offset_is_rejected_with_an_instant_that_would_do(
    text: str, example: str
) -> None:
    """A naive time is ambiguous, a date is not an instant, garbage is garbage; the reason shows
    a value that would be taken, written whole."""
    assert example in payment_rejected(received_at=text)["received_at"]


@pytest.mark.parametrize(
    ("amount", "reason"),
    [("0", "must be above zero"), ("-5", "must be above zero"), ("1.00001", "more than 4 decimal places")],
)
def test_payment_amount_must_be_a_positive_storable_decimal(amount: str, reason: str) -> None:
    """A payment moves money: zero and negative amounts, and unstorable precision, are rejected."""
    assert reason in payment_rejected(amount=amount)["amount"]


def test_same_payment_twice_in_a_file_is_accepted() -> None:
    """The same payment_id with the same content is accepted again (storing it is idempotent)."""
    record = payment_record()
    results = list(check_payments([raw(2, record), raw(3, dict(record))]))
    assert all(c.row is not None for c in results)


def test_conflicting_payment_id_in_a_file_is_rejected_naming_the_first_line() -> None:
    """The same payment_id with a different amount is a conflict, not a second payment."""
    record = payment_record()
    results = list(check_payments([raw(2, record), raw(3, {**record, "amount": "1.00"})]))
    assert results[1].rejections == (Rejection(3, "payment_id", "conflicts with line 2"),)


# ---------------------------------------------------------------------------------------------
# Reading files


def test_csv_lines_count_the_header_as_line_one(tmp_path: Path) -> None:
    """The first data row of a CSV is line 2; blank lines are skipped but counted."""
    path = tmp_path / "a.csv"
    write_csv(path, [account_record(), account_record()])
    text = path.read_text().splitlines()
    path.write_text("\n".join([text[0], text[1], "", text[2]]) + "\n")
    assert [r.line for r in read(path)] == [2, 4]


def test_csv_quoted_cell_spanning_lines_rejects_each_of_its_lines(tmp_path: Path) -> None:
    """Every physical line is one record: a quoted cell spanning lines rejects both, later rows keep their
    line."""
    path = write_csv(tmp_path / "a.csv", [account_record(borrower_name="Ann\nLee"), account_record()])
    rows = read(path)
    assert [r.line for r in rows] == [2, 3, 4]
    assert rows[0].problem is not None and rows[0].problem.reason.startswith("unterminated quote")
    assert rows[1].problem is not None and rows[2].problem is None


def test_jsonl_first_record_is_line_one_and_numbers_stay_exact(tmp_path: Path) -> None:
    """JSON Lines count from 1; numbers arrive as their exact text, null as empty, flag lists joined."""
    path = tmp_path / "a.jsonl"
    record = {
        **account_record(),
        "balance": 18450.1,
        "oldest_due_date": "2026-10-28",
        "vin": None,
        "flags": ["dispute", "military"],
    }
    write_jsonl(path, [record, record])
    path.write_text(path.read_text().replace("\n", "\n\n", 1))  # a blank line between the two
    rows = read(path)
    assert [r.line for r in rows] == [1, 3]
    assert rows[0].values["balance"] == "18450.1"
    assert rows[0].values["vin"] == "" and rows[0].values["flags"] == "dispute|military"


def test_jsonl_boolean_value_is_rejected(tmp_path: Path) -> None:
    """A JSON true or an object where text is expected is a problem of that field."""
    path = write_jsonl(tmp_path / "a.jsonl", [account_record(), {**account_record(), "balance": True}])
    assert read(path)[1].problem == Rejection(2, "balance", "expected text or a number, got true")


def test_jsonl_line_that_is_not_an_object_is_a_row_problem(tmp_path: Path) -> None:
    """A broken line after the first is rejected alone; the rest of the file is read."""
    path = write_jsonl(tmp_path / "a.jsonl", [account_record()])
    path.write_text(path.read_text() + '{"account_id": \n[1, 2]\n' + path.read_text())
    rows = read(path)
    assert [(r.line, r.problem is not None) for r in rows] == [(1, False), (2, True), (3, True), (4, False)]


@pytest.mark.parametrize(("name", "first"), [("a.txt", "{"), ("a.data", "account_id")])
def test_format_without_known_extension_is_sniffed(tmp_path: Path, name: str, first: str) -> None:
    """Without .csv/.jsonl/.ndjson, a file starting with `{` is JSON Lines, anything else CSV."""
    record = account_record()
    if first == "{":
        write_jsonl(tmp_path / name, [record])
    else:
        write_csv(tmp_path / name, [record])
    with open_source(tmp_path / name, Kind.ACCOUNTS) as source:
        assert source.format == ("jsonl" if first == "{" else "csv")
        assert [r.values["account_id"] for r in source.rows()] == [record["account_id"]]


def test_semicolon_separated_csv_is_read(tmp_path: Path) -> None:
    """CSV saved by a spreadsheet with `;` separators is read like a comma-separated one."""
    record = account_record()
    path = tmp_path / "a.csv"
    path.write_text(";".join(record) + "\n" + ";".join(record.values()) + "\n")
    assert read(path)[0].values == record


def test_utf8_bom_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    """A byte-order mark written by Excel does not hide the account_id column."""
    path = write_csv(tmp_path / "a.csv", [account_record()])
    path.write_bytes(codecs.BOM_UTF8 + path.read_bytes())
    assert read(path)[0].values["account_id"]


def test_missing_required_columns_make_the_file_unreadable(tmp_path: Path) -> None:
    """A CSV without a required column is refused whole, naming the missing columns."""
    path = write_csv(tmp_path / "a.csv", [account_record(phone=None, currency=None)])
    with pytest.raises(UnreadableFile, match="missing required columns for accounts: phone, currency"):
        open_source(path, Kind.ACCOUNTS)


def test_accounts_file_given_as_payments_is_unreadable(tmp_path: Path) -> None:
    """JSON Lines whose first record lacks the kind's fields is taken for the wrong file."""
    path = write_jsonl(tmp_path / "a.jsonl", [account_record()])
    with pytest.raises(UnreadableFile, match="lacks fields required for payments: payment_id, amount"):
        open_source(path, Kind.PAYMENTS)


@pytest.mark.parametrize("name", ["accounts.json", "accounts.jsonl"])
def test_json_array_is_refused_as_such(tmp_path: Path, name: str) -> None:
    """A JSON array of records (an API's export) is named as one, whatever its extension says."""
    path = tmp_path / name
    path.write_text(json.dumps([account_record(), account_record(account_id="A-2")], indent=2))
    with pytest.raises(UnreadableFile, match="a JSON array, not JSON Lines"):
        open_source(path, Kind.ACCOUNTS)


def test_csv_with_cr_line_ends_is_refused_saying_so(tmp_path: Path) -> None:
    """A file whose lines end in CR alone (Excel's 'CSV (Macintosh)') is refused naming its line ends."""
    path = write_csv(tmp_path / "a.csv", [account_record(), account_record(account_id="A-2")])
    path.write_bytes(path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r"))
    with pytest.raises(UnreadableFile, match=r"lines end in a carriage return \(CR\) alone"):
        open_source(path, Kind.ACCOUNTS)


def test_jsonl_starting_with_garbage_is_unreadable(tmp_path: Path) -> None:
    """A .jsonl file whose first line is not a JSON object is not JSON Lines."""
    path = tmp_path / "a.jsonl"
    path.write_text("account_id,phone\n")
    with pytest.raises(UnreadableFile, match="line 1 is not a JSON object"):
        open_source(path, Kind.ACCOUNTS)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), "binary content"),
        (lambda p: p.write_bytes(gzip.compress(b"account_id,phone\n")), "gzip-compressed: decompress it"),
        (lambda p: p.write_bytes(b"PK\x03\x04\x14\x00\x06\x00"), r"Excel workbook \(.xlsx\)"),
        (lambda p: p.write_bytes("account_id\tphone\n".encode("utf-16")), "UTF-16 text"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("account_id,phone,phone\n"), "column 'phone' appears twice"),
    ],
)
def test_file_that_cannot_be_read_raises_unreadable(tmp_path: Path, setup: object, message: str) -> None:
    """Missing, directory, binary (gzip, xlsx, UTF-16 named), empty and ambiguous files are refused whole."""
    path = tmp_path / "accounts.csv"
    setup(path)  # type: ignore[operator]
    with pytest.raises(UnreadableFile, match=message):
        open_source(path, Kind.ACCOUNTS)


def test_csv_row_with_wrong_field_count_is_a_row_problem(tmp_path: Path) -> None:
    """A row with more or fewer cells than the header is rejected whole, keeping all its cells."""
    path = write_csv(tmp_path / "a.csv", [account_record()])
    path.write_text(path.read_text() + "A-1,Ann,extra\n")
    row = read(path)[1]
    assert row.problem == Rejection(3, "row", "has 3 fields, the header has 10")
    assert row.original == ("A-1", "Ann", "extra")


def test_invalid_utf8_refuses_the_file_naming_the_byte_offset(tmp_path: Path) -> None:
    """A byte that is not UTF-8 makes the file unreadable, naming its offset, instead of storing mojibake."""
    path = write_csv(tmp_path / "a.csv", [account_record(borrower_name="Jos\u00e9")])
    data = path.read_bytes().replace("Jos\u00e9".encode(), b"Jos\xe9")  # Latin-1 in a UTF-8 file
    path.write_bytes(data)
    offset = data.index(b"\xe9")
    with pytest.raises(UnreadableFile, match=f"not valid utf-8 at byte offset {offset} "):
        read(path)


def test_windows_1252_file_read_as_utf8_names_the_encoding_excel_saved_it_in(tmp_path: Path) -> None:
    """A Western Excel "CSV" (Windows-1252) read as UTF-8 is refused pointing at cp1252, not only GB18030."""
    path = tmp_path / "a.csv"
    write_csv(path, [account_record(borrower_name="Zo\u00eb M\u00fcller")])
    path.write_bytes(path.read_text(encoding="utf-8").encode("cp1252"))
    with pytest.raises(UnreadableFile, match="--encoding cp1252"):
        read(path)
    with open_source(path, Kind.ACCOUNTS, "cp1252") as source:
        assert next(source.rows()).values["borrower_name"] == "Zo\u00eb M\u00fcller"


def test_rejects_file_can_be_imported_again(tmp_path: Path) -> None:
    """The line, field and reason columns of a rejects file are skipped when it is read again."""
    path = write_csv(tmp_path / "a.csv", [{"line": "9", "field": "phone", "reason": "x", **account_record()}])
    with open_source(path, Kind.ACCOUNTS) as source:
        assert source.ignored_columns == ()
        assert "line" not in next(source.rows()).values


def test_unknown_columns_are_reported_as_ignored(tmp_path: Path) -> None:
    """A column outside the contract is read past and named, not silently dropped."""
    path = write_csv(tmp_path / "a.csv", [account_record(branch="north")])
    with open_source(path, Kind.ACCOUNTS) as source:
        assert source.ignored_columns == ("branch",)


def test_a_spreadsheets_trailing_unnamed_columns_are_ignored_not_refused(tmp_path: Path) -> None:
    """Excel writes empty columns after the last one used (`…,oldest_due_date,,`): they are read
    past and named by position; a named column twice is still refused."""
    record = account_record()
    path = tmp_path / "a.csv"
    path.write_text(",".join([*record, "", ""]) + "\n" + ",".join([*record.values(), "", ""]) + "\n")
    with open_source(path, Kind.ACCOUNTS) as source:
        assert source.ignored_columns == ("(column 11, no name)", "(column 12, no name)")
        (row,) = source.rows()
        assert row.problem is None and row.values["account_id"] == record["account_id"]
    path.write_text(",".join([*record, "phone"]) + "\n")
    with pytest.raises(UnreadableFile, match="column 'phone' appears twice"):
        read(path)


def test_a_header_spelt_as_a_spreadsheet_spells_it_is_refused_with_the_names_it_meant(tmp_path: Path) -> None:
    """`Account ID` is not `account_id`: the file is refused (names are matched exactly), and the
    error says which header names meant which columns."""
    record = account_record()
    header = [
        name.replace("_", " ").title() if name in ("account_id", "past_due_amount") else name
        for name in record
    ]
    path = tmp_path / "a.csv"
    path.write_text(",".join(header) + "\n" + ",".join(record.values()) + "\n")
    with pytest.raises(UnreadableFile) as refused:
        read(path)
    assert str(refused.value).endswith(
        "missing required columns for accounts: account_id, past_due_amount; the header spells them "
        "otherwise: 'Account Id' (account_id), 'Past Due Amount' (past_due_amount)"
    )


def test_reading_streams_the_file(tmp_path: Path) -> None:
    """Taking the first row of a large file reads a small part of it."""
    path = write_csv(tmp_path / "a.csv", (account_record() for _ in range(20_000)))
    with open_source(path, Kind.ACCOUNTS) as source:
        next(source.rows())
        assert source.bytes_read < source.size / 10


# ---------------------------------------------------------------------------------------------
# Rejects file


def test_rejects_file_has_one_line_per_rejected_row(tmp_path: Path) -> None:
    """Each rejected row is one line: line, fields and reasons joined, then its original cells."""
    record = {"account_id": "A-1", "phone": "1"}
    row = RawRow(5, record, record.keys(), tuple(record.values()))
    with RejectsWriter(rejects_path(tmp_path / "a.csv"), ("account_id", "phone")) as writer:
        writer.write(row, [Rejection(5, "phone", "not a phone number"), Rejection(5, "currency", "required")])
        writer.publish()
    assert (tmp_path / "a.csv.rejects.csv").read_text().splitlines() == [
        "line,field,reason,account_id,phone",
        "5,phone; currency,not a phone number; required,A-1,1",
    ]


def test_rejects_file_is_not_created_when_nothing_is_rejected(tmp_path: Path) -> None:
    """No rejection, no rejects file."""
    with RejectsWriter(tmp_path / "r.csv", ("a",)) as writer:
        assert writer.written == 0
    assert not (tmp_path / "r.csv").exists()
