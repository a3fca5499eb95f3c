"""Metro 2 records: the field table, the writer's formatting, and the validator on good and broken files."""

from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from arrears.addresses import MailingAddress
from arrears.metro2 import FurnishAccount, Furnisher, Period, Problem, build_file, validate
from arrears.metro2.furnish import Previous, furnish_account, split_name
from arrears.metro2.layout import BASE, HEADER, RECORD_LENGTH, TRAILER, Layout
from arrears.metro2.writer import format_record, text, whole_dollars

D = Decimal
NOV = Period(2026, 11)
FURNISHER = Furnisher("ARREARS0001", "Arrears Auto Finance", "1 Main St Los Angeles CA 90001", "2135550100")


def _account(account_id: str = "A-1", **overrides: Any) -> FurnishAccount:
    """A US-CA borrower 45 days behind on a $412.50 instalment, with 24 current months before."""
    values: dict[str, Any] = {
        "account_id": account_id,
        "borrower_name": "Dana Whitfield",
        "jurisdiction": "US-CA",
        "stage": "negotiation",
        "days_past_due": 45,
        "balance": D("18450.75"),
        "past_due_amount": D("825.00"),
        "installment_amount": D("412.50"),
        "history": "0" * 24,
        "oldest_due_date": date(2026, 10, 16),
        "phone": "+12133734253",
    }
    return FurnishAccount(**(values | overrides))


def _file(*accounts: FurnishAccount) -> bytes:
    return build_file(accounts or (_account(),), NOV, FURNISHER, created=date(2026, 12, 1)).content


def _records(content: bytes) -> list[str]:
    return content.decode("ascii").splitlines()


def _with(record: str, layout: Layout, name: str, value: str) -> str:
    f = layout[name]
    assert len(value) == f.length
    return record[: f.start] + value + record[f.end :]


@pytest.mark.parametrize("layout", [HEADER, BASE, TRAILER], ids=lambda layout: layout.name)
def test_layouts_tile_426_bytes(layout: Layout) -> None:
    """Each record layout covers its 426 bytes exactly, without gap or overlap."""
    position = 0
    for f in layout:
        assert f.start == position, f.name
        position = f.end
    assert position == RECORD_LENGTH


def test_fields_metro2_md_names_are_where_it_says() -> None:
    """The base segment fields that metro2.md lists sit at its 0-based starts and lengths."""
    expected = {
        "Consumer Account Number": (42, 30),
        "Portfolio Type": (72, 1),
        "Account Type": (73, 2),
        "Account Status": (123, 2),
        "Payment Rating": (125, 1),
        "Payment History Profile": (126, 24),
        "Special Comment": (150, 2),
        "Compliance Condition Code": (152, 2),
        "Current Balance": (154, 9),
        "Amount Past Due": (163, 9),
        "Original Charge-off Amount": (172, 9),
        "Date of Account Information": (181, 8),
        "Date of First Delinquency": (189, 8),
        "ECOA Code": (324, 1),
        "Consumer Information Indicator": (325, 2),
    }
    assert {name: (BASE[name].start, BASE[name].length) for name in expected} == expected


def test_formatting_rules() -> None:
    """Text is upper-case ASCII left-justified, numbers zero-filled, money whole dollars, dates MMDDYYYY."""
    record = format_record(
        BASE,
        {
            "Surname": "Núñez-O'Brien",
            "Current Balance": whole_dollars(D("18450.99")),
            "Date of Account Information": date(2026, 11, 30),
        },
    )
    assert BASE["Surname"].slice(record) == "NUNEZ-O'BRIEN".ljust(25)
    assert BASE["Current Balance"].slice(record) == "000018450"
    assert BASE["Date of Account Information"].slice(record) == "11302026"
    assert BASE["Date of First Delinquency"].slice(record) == "00000000"
    assert text("Zoë #5 @home") == "ZOE #5  HOME"


def test_values_that_do_not_fit_are_errors() -> None:
    """A code or number too long for its field raises instead of being cut; free text is cut."""
    with pytest.raises(ValueError):
        format_record(BASE, {"Consumer Account Number": "A" * 31})
    with pytest.raises(ValueError):
        format_record(BASE, {"Current Balance": 10**9})
    with pytest.raises(ValueError):
        format_record(BASE, {"Current Balance": -1})
    assert BASE["First Name"].slice(format_record(BASE, {"First Name": "X" * 40})) == "X" * 20


def test_names_split_in_western_order() -> None:
    """Surname last, first name first, the rest middle; a trailing Jr becomes the generation code."""
    assert split_name("Dana Whitfield") == ("Whitfield", "Dana", "", "")
    assert split_name("Mary Ann Smith Jr.") == ("Smith", "Mary", "Ann", "J")
    assert split_name("Cher") == ("Cher", "", "", "")


def test_built_file_passes_the_validator() -> None:
    """A file of accounts in every condition arrears reports passes its own validator."""
    content = _file(
        _account("A-1"),
        _account(
            "A-2",
            stage="cured",
            days_past_due=0,
            past_due_amount=D(0),
            holds=frozenset({"dispute"}),
            plan=("instalment", "active"),
        ),
        _account("A-3", stage="charged_off", days_past_due=200, history="6543210" + "B" * 17),
        _account(
            "A-4",
            stage="paid_off",
            balance=D(0),
            past_due_amount=D(0),
            history="3210" + "0" * 20,
            closed_on=date(2026, 11, 20),
        ),
        _account(
            "A-5",
            stage="legal_referral",
            days_past_due=140,
            holds=frozenset({"bankruptcy", "deceased"}),
            bankruptcy_chapter=13,
        ),
        _account("A-6", stage="repossession_review", days_past_due=75, repossessed=True),
        _account("A-7", stage="settled", balance=D("900"), history="G" * 24),
    )
    assert validate(content) == []
    records = _records(content)
    assert [BASE["Account Status"].slice(r) for r in records[1:-1]] == [
        "71",
        "11",
        "97",
        "13",
        "93",
        "96",
        "13",
    ]
    assert BASE["Compliance Condition Code"].slice(records[2]) == "XB"
    assert (
        BASE["Special Comment"].slice(records[2]) == "AC"
        and BASE["Special Comment"].slice(records[7]) == "AU"
    )
    assert BASE["Consumer Information Indicator"].slice(records[5]) == "D "
    assert BASE["ECOA Code"].slice(records[5]) == "X"
    assert BASE["Payment Rating"].slice(records[4]) == "3"  # paid after being 90-119 days late
    assert TRAILER["Total Base Records"].slice(records[-1]) == "000000007"
    assert TRAILER["Total of Status Code 13"].slice(records[-1]) == "000000002"


def test_cents_left_past_due_report_a_dollar_not_a_file_refused() -> None:
    """45 days late on the last 50 cents of an instalment: dropping the cents made a 71 with no
    amount past due, which the bureau rejects and our validator refused, and with it the whole
    month's file. The delinquency reports the least whole dollar there is."""
    content = _file(_account("A-1"), _account("A-2", days_past_due=45, past_due_amount=D("0.50")))
    assert validate(content) == []
    small = _records(content)[2]
    assert (BASE["Account Status"].slice(small), BASE["Amount Past Due"].slice(small)) == ("71", "000000001")


def test_a_month_that_ends_in_payment_after_a_charge_off_or_repossession_reports_them() -> None:
    """Charged off on 3 November and paid in full on the 20th: 64 with its charge-off, not 13 (a
    final status: the bureau would never have learnt of the charge-off). A car recovered and the
    rest paid the same month: 63. Settled after the repossession months (`KK321…`): 13 with AU,
    rated by the delinquency before (3), keeping its Date of First Delinquency."""
    charged = _account(
        "A-1",
        stage="charged_off",
        balance=D(0),
        past_due_amount=D(0),
        days_past_due=0,
        history="543210" + "0" * 18,
        charge_off_amount=D("17900"),
        closed_on=date(2026, 11, 3),
    )
    recovered = _account(
        "A-2",
        stage="closed",
        balance=D(0),
        past_due_amount=D(0),
        days_past_due=0,
        repossessed=True,
        history="3210" + "0" * 20,
    )
    settled = _account(
        "A-3",
        stage="settled",
        balance=D("4000"),
        past_due_amount=D("4000"),
        days_past_due=130,
        history="KK3210" + "0" * 18,
        repossessed=True,
        previous=Previous("2026-10", "96", first_delinquency=date(2026, 7, 16)),
    )
    content = _file(charged, recovered, settled)
    assert validate(content) == []
    one, two, three = _records(content)[1:4]
    assert (BASE["Account Status"].slice(one), BASE["Original Charge-off Amount"].slice(one)) == (
        "64",
        "000017900",
    )
    assert BASE["Account Status"].slice(two) == "63"
    assert [BASE[f].slice(three) for f in ("Account Status", "Payment Rating", "Special Comment")] == [
        "13",
        "3",
        "AU",
    ]
    assert BASE["Date of First Delinquency"].slice(three) == "07162026"


def test_the_consumer_address_is_the_accounts_us_mailing_address() -> None:
    """A US mailing address fills the address fields (upper case, ZIP+4 without its hyphen, long
    lines cut as the CRRG allows); without one, or with one abroad, they stay blank and the State
    is the jurisdiction's."""
    home = MailingAddress("1207 Sunset Blvd", "Apt 4", "Los Angeles", "CA", "90026-1234", "US")
    long_line = replace(home, line1="12345 North Very Long Boulevard Of The Pacific Coast")
    abroad = replace(home, state="", postal_code="200120", country="CN")
    content = _file(
        _account("A-1", address=home),
        _account("A-2", address=long_line, jurisdiction="US-IA"),
        _account("A-3"),
        _account("A-4", address=abroad),
    )
    assert validate(content) == []
    fields = ("First Line of Address", "Second Line of Address", "City", "State", "Postal/Zip Code")
    found = [tuple(BASE[f].slice(r).rstrip() for f in fields) for r in _records(content)[1:-1]]
    assert found == [
        ("1207 SUNSET BLVD", "APT 4", "LOS ANGELES", "CA", "900261234"),
        ("12345 NORTH VERY LONG BOULEVARD", "APT 4", "LOS ANGELES", "CA", "900261234"),
        ("", "", "", "CA", ""),
        ("", "", "", "CA", ""),
    ]


def test_only_us_accounts_are_furnished() -> None:
    """Accounts of CN or GB are left out of the file with their reason; US and US-* are in."""
    built = build_file(
        [
            _account("A-1", jurisdiction="US"),
            _account("A-2", jurisdiction="CN"),
            _account("A-3", jurisdiction="GB"),
        ],
        NOV,
        FURNISHER,
        created=date(2026, 12, 1),
    )
    assert [r.account_id for r in built.reported] == ["A-1"]
    assert [a for a, _ in built.skipped] == ["A-2", "A-3"]


def test_broken_file_names_each_field() -> None:
    """A hand-broken file is reported field by field, with the record number of each problem."""
    records = _records(_file(_account("A-1"), _account("A-2"), _account("A-3")))
    records[1] = _with(records[1], BASE, "Account Status", "7X")
    records[1] = _with(records[1], BASE, "Current Balance", "00001845A")
    records[2] = _with(records[2], BASE, "Payment Rating", "1")  # rating with status 71
    records[2] = _with(records[2], BASE, "Payment History Profile", "00Z0" + "0" * 20)
    records[2] = _with(records[2], BASE, "Date of First Delinquency", "13452026")
    records[3] = _with(records[3], BASE, "Date of First Delinquency", "00000000")  # 71 needs it
    records[3] = _with(records[3], BASE, "Surname", "whitfield".ljust(25))
    records[3] = records[3][:-1]  # short record: reported once, fields not read
    records[4] = _with(records[4], TRAILER, "Total Base Records", "000000009")
    problems = validate(("\n".join(records) + "\n").encode())
    found = {(p.record, p.field) for p in problems}
    assert found == {
        (2, "Account Status"),
        (2, "Current Balance"),
        (3, "Payment Rating"),
        (3, "Payment History Profile"),
        (3, "Date of First Delinquency"),
        (4, "Record Descriptor Word"),
        (5, "Total Base Records"),
        (5, "Total of Status Code 71"),  # records 2 and 4 no longer count as 71
    }
    assert all(isinstance(p, Problem) and p.reason for p in problems)


def test_content_rules_are_checked() -> None:
    """Rating presence, first-delinquency presence, zero balance when paid and history after B are checked."""
    records = _records(
        _file(
            _account("A-1", stage="paid_off", balance=D(0), past_due_amount=D(0)),
            _account("A-2", stage="cured", days_past_due=0, past_due_amount=D(0)),
            _account("A-3"),
        )
    )
    records[1] = _with(records[1], BASE, "Payment Rating", " ")  # 13 without a rating
    records[1] = _with(records[1], BASE, "Current Balance", "000000100")  # 13 owes nothing
    records[2] = _with(records[2], BASE, "Date of First Delinquency", "10012026")  # 11 is current
    records[2] = _with(records[2], BASE, "Payment History Profile", "0B0" + "B" * 21)
    records[3] = _with(records[3], BASE, "Date of First Delinquency", "12152026")  # after 11302026
    records[3] = _with(records[3], BASE, "Amount Past Due", "000000000")  # 71 with nothing past due
    problems = validate(("\n".join(records) + "\n").encode())
    assert {(p.record, p.field) for p in problems} == {
        (2, "Payment Rating"),
        (2, "Current Balance"),
        (3, "Date of First Delinquency"),
        (3, "Payment History Profile"),
        (4, "Date of First Delinquency"),
        (4, "Amount Past Due"),
    }


def test_file_structure_problems() -> None:
    """Empty files, files without header or trailer, and non-ASCII bytes are reported as such."""
    assert validate(b"") == [Problem(0, "file", "empty: a file needs a header and a trailer")]
    records = _records(_file())
    no_header = ("\n".join(records[1:]) + "\n").encode()
    assert (1, "Record Identifier") in {(p.record, p.field) for p in validate(no_header)}
    accented = _file().replace(b"WHITFIELD", "WHITFIELÉ".encode("latin-1"))
    assert (2, "record") in {(p.record, p.field) for p in validate(accented)}


def test_records_without_line_breaks_are_read() -> None:
    """A file of back-to-back 426-byte records, with no line breaks, validates the same as one per line."""
    content = _file(_account("A-1"), _account("A-2"))
    assert validate(content.replace(b"\n", b"")) == [] == validate(content.replace(b"\n", b"\r\n"))


def test_a_month_is_reported_with_its_own_days_past_due_not_those_of_the_day_it_is_furnished() -> None:
    """An instalment due on 1 November is 29 days past due on 30 November (status 11, current),
    though 32 on 3 December, when the November file is furnished (FURNISHING_CRON): the Date of
    Account Information is 30 November, so the file reports no 30-day delinquency that month."""
    late = _account(days_past_due=32, oldest_due_date=date(2026, 11, 1), past_due_amount=D("412.50"))
    reported = furnish_account(late, NOV, FURNISHER)
    assert (reported.account_status, reported.history_char, reported.first_delinquency) == ("11", "0", None)
    # A month already 30 days behind at its end is reported so, however late it is furnished.
    older = replace(late, days_past_due=33, oldest_due_date=date(2026, 10, 31))
    reported = furnish_account(older, NOV, FURNISHER)
    assert (reported.account_status, reported.first_delinquency) == ("71", date(2026, 11, 30))


def _skipped(*accounts: FurnishAccount) -> dict[str, str]:
    return dict(build_file(accounts, NOV, FURNISHER, created=date(2026, 12, 1)).skipped)


def test_letters_without_an_ascii_decomposition_are_transliterated_not_deleted() -> None:
    """NFKD folding dropped ø, ß and ł (Sørensen → SRENSEN, Strauß → STRAU, Łukasz → UKASZ), another
    consumer's name on the credit file; they are transliterated as a person would."""
    assert text("Sørensen") == "SORENSEN"
    assert text("Strauß") == "STRAUSS"
    assert text("Łukasz") == "LUKASZ"
    assert text("(Dana)") == "DANA "  # left-justified: a blanked first character goes
    assert text("Dana \U0001f600") == "DANA  "  # a pictograph is blanked, not spelled out (GRINNING)


def test_a_name_without_latin_letters_is_skipped_with_its_reason_not_furnished_blank() -> None:
    """A US borrower whose name is stored in Chinese characters got a base segment with no surname
    and no warning; a romanization would be a guess at the name their US records spell their own
    way. The account is left out with its reason, the others furnished; the validator requires a
    surname, so a nameless tradeline never reaches the bureau."""
    built = build_file(
        [_account("A-1"), _account("A-2", borrower_name="王小明"), _account("A-3", borrower_name="- .")],
        NOV,
        FURNISHER,
        created=date(2026, 12, 1),
    )
    assert [r.account_id for r in built.reported] == ["A-1"]
    why = dict(built.skipped)
    assert "Latin letters" in why["A-2"] and "surname" in why["A-3"]
    nameless = _with(_records(built.content)[1], BASE, "Surname", " " * 25)
    problems = validate(built.content.replace(_records(built.content)[1].encode(), nameless.encode()))
    assert [(p.record, p.field) for p in problems] == [(2, "Surname")]


def test_an_account_id_that_folds_empty_or_longer_than_30_is_skipped_not_the_whole_file() -> None:
    """An id with nothing Metro 2 can write made a blank Consumer Account Number that our validator
    refused, and an id that transliteration lengthens (the ligature ﬁ is FI) made the writer raise:
    either way no file that month. Each is skipped with its reason, the others furnished."""
    built = build_file(
        [_account("A-1"), _account("A" * 29 + "ﬁ"), _account("()")], NOV, FURNISHER, created=date(2026, 12, 1)
    )
    assert [r.account_id for r in built.reported] == ["A-1"]
    why = dict(built.skipped)
    assert "longer than the 30" in why["A" * 29 + "ﬁ"] and "no character" in why["()"]
    assert validate(built.content) == []


def test_ids_written_alike_are_never_furnished_under_one_account_number() -> None:
    """Consumer Account Number is our account id as Metro 2 writes it: a-1 and A-1 are both A-1, which
    the bureau takes for one account. The id written as it is keeps the number, in any order; the
    other is skipped naming it; two ids that both change (b-2, a full-width b-2) are both skipped."""
    wide = "\uff42-2"  # FULLWIDTH LATIN SMALL LETTER B
    ids = ["a-1", "A-1", wide, "b-2", "贷款-001"]
    for order in (ids, ids[::-1]):
        built = build_file([_account(i) for i in order], NOV, FURNISHER, created=date(2026, 12, 1))
        numbers = [BASE["Consumer Account Number"].slice(r.record).strip() for r in built.reported]
        assert sorted(numbers) == ["A-1", "DAIKUAN-001"]
        why = dict(built.skipped)
        assert sorted(why) == sorted(["a-1", "b-2", wide]) and "A-1" in why["a-1"]


def test_a_value_too_large_for_its_field_skips_that_account_not_the_months_file() -> None:
    """A balance of $1,000,000,000 does not fit the 9 digits of Current Balance: the writer raised and
    no account was furnished that month. That account is skipped with its reason."""
    built = build_file(
        [_account("A-1"), _account("A-2", balance=D("1000000000.00"))],
        NOV,
        FURNISHER,
        created=date(2026, 12, 1),
    )
    assert [r.account_id for r in built.reported] == ["A-1"]
    assert "Current Balance" in dict(built.skipped)["A-2"]
    assert validate(built.content) == []


def test_an_account_kept_in_another_currency_is_skipped_not_furnished_as_dollars() -> None:
    """metro2.md: money is in whole dollars. ¥2,500,000 was furnished as a $2,500,000 balance."""
    why = _skipped(_account("A-1"), _account("A-2", currency="JPY", balance=D("2500000")))
    assert list(why) == ["A-2"] and "JPY" in why["A-2"]


def _paid(**previous: Any) -> FurnishAccount:
    return _account(
        stage="paid_off",
        balance=D(0),
        past_due_amount=D(0),
        days_past_due=0,
        oldest_due_date=None,
        history="E" + "L" * 23,
        previous=Previous(
            "2026-10", "64", first_delinquency=date(2026, 3, 1), charge_off_amount=9000, **previous
        ),
    )


def test_a_dispute_resolved_after_the_final_report_is_reported_resolved_once() -> None:
    """An account paid while disputed was reported closed with XB; once the dispute is resolved it was
    skipped for good ("already reported closed") and the bureau showed it disputed forever. It is
    furnished once more with XH, saying what its final report said, then no more."""
    paid = _paid(compliance_condition="XB")
    built = build_file([paid], NOV, FURNISHER, created=date(2026, 12, 1))
    [again] = built.reported
    assert (again.compliance_condition, again.account_status, again.charge_off_amount) == ("XH", "64", 9000)
    assert again.first_delinquency == date(2026, 3, 1)
    assert validate(built.content) == []
    still = replace(paid, holds=frozenset({"dispute"}))
    assert "already reported closed" in _skipped(still)["A-1"]
    resolved = replace(paid, previous=replace(paid.previous, compliance_condition="XH"))  # type: ignore[type-var]
    assert "already reported closed" in _skipped(resolved)["A-1"]


def test_a_bankruptcy_lifted_after_the_final_report_is_removed_once() -> None:
    """A petition code left by a final report is removed (Q) when the hold is lifted, then no more."""
    paid = _account(
        stage="paid_off",
        balance=D(0),
        past_due_amount=D(0),
        days_past_due=0,
        oldest_due_date=None,
        previous=Previous("2026-10", "13", consumer_information="A", payment_rating="0"),
    )
    [again] = build_file([paid], NOV, FURNISHER, created=date(2026, 12, 1)).reported
    assert (again.consumer_information, again.account_status, again.payment_rating) == ("Q", "13", "0")
    removed = replace(paid, previous=replace(paid.previous, consumer_information="Q"))  # type: ignore[type-var]
    assert "already reported closed" in _skipped(removed)["A-1"]


def test_a_delinquency_after_a_month_reported_current_starts_its_first_delinquency_over() -> None:
    """metro2.md: the date is set "until it becomes current". Partial payments brought the account to
    under 30 days and October was reported 11 without a cure of the stage; 40 days past due in
    November on a due date of 21 October, the date is 20 November, not the old episode's 1 July."""
    late = _account(
        days_past_due=40,
        oldest_due_date=date(2026, 10, 21),
        episode_due=date(2026, 6, 1),
        previous=Previous("2026-10", "11"),
    )
    reported = furnish_account(late, NOV, FURNISHER)
    assert (reported.account_status, reported.first_delinquency) == ("71", date(2026, 11, 20))
    # Reported delinquent in October instead: the date told then stands.
    kept = replace(late, previous=Previous("2026-10", "78", first_delinquency=date(2026, 7, 1)))
    assert furnish_account(kept, NOV, FURNISHER).first_delinquency == date(2026, 7, 1)
