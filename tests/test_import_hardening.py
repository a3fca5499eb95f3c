"""Issue 10: nothing a file or a crash does loses a record or stores half a file."""

import codecs
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from arrears.compliance.content import check_content
from arrears.importing import Kind, UnreadableFile, open_source, parse_account
from arrears.jurisdictions import profile
from arrears.models import Account, Borrower, Payment
from arrears.storage import get_engine, migrate
from arrears.storage.importer import ImportInterrupted, RejectsUnwritable, run_import
from tests.factories import account_record, accounts_records, payment_record, write_csv, write_jsonl

HEADER = ",".join(account_record())


def count(engine: Engine, model: type = Account) -> int:
    with engine.connect() as connection:
        table = model.__table__  # type: ignore[attr-defined]
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def data_lines(data: bytes, *, header: bool = True) -> int:
    """Non-blank lines after the header, counted from the raw bytes (the import's contract)."""
    lines = data.split(b"\n")[1 if header else 0 :]
    return sum(1 for line in lines if line.decode("utf-8", "replace").strip())


def fresh(tmp_path: Path, name: str = "arrears.db") -> Engine:
    engine = get_engine(f"sqlite:///{tmp_path / name}")
    migrate(engine)
    return engine


def test_stray_quote_rejects_its_own_line_and_loses_none(tmp_path: Path) -> None:
    """A stray quote on line 3 rejects line 3 alone: every other line of the file is stored."""
    records = list(accounts_records(50))
    path = write_csv(tmp_path / "a.csv", records)
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"Borrower 1", b'"Borrower 1', 1)
    path.write_bytes(b"\n".join(lines))
    engine = fresh(tmp_path)
    with open_source(path, Kind.ACCOUNTS) as source:
        summary = run_import(engine, source)
    assert (summary.read, summary.accepted, summary.rejected) == (50, 49, 1)
    assert summary.first_rejections[0].line == 3
    assert "unterminated quote" in summary.first_rejections[0].reason
    assert count(engine) == 49


def test_gbk_file_read_as_utf8_stores_nothing_and_names_the_byte_offset(tmp_path: Path) -> None:
    """A GBK file without --encoding is refused naming the first bad byte, with nothing stored."""
    record = account_record(borrower_name="王小明", phone="13812345678", jurisdiction="CN")
    record |= {"timezone": "Asia/Shanghai", "currency": "CNY"}
    path = write_csv(tmp_path / "a.csv", [account_record(), record])
    text = path.read_text(encoding="utf-8")
    path.write_bytes(text.encode("gbk"))
    engine = fresh(tmp_path)
    offset = text.encode("gbk").index("王".encode("gbk"))
    with (
        pytest.raises(UnreadableFile, match=f"byte offset {offset} "),
        open_source(path, Kind.ACCOUNTS) as source,
    ):
        run_import(engine, source)
    assert count(engine) == 0 and count(engine, Borrower) == 0


def test_gbk_file_with_its_encoding_stores_the_names_as_written(tmp_path: Path) -> None:
    """With --encoding gb18030 the same GBK file stores the Chinese name exactly."""
    record = account_record(borrower_name="王小明", phone="13812345678", jurisdiction="CN")
    record |= {"timezone": "Asia/Shanghai", "currency": "CNY"}
    path = write_csv(tmp_path / "a.csv", [record])
    path.write_bytes(path.read_text(encoding="utf-8").encode("gbk"))
    engine = fresh(tmp_path)
    with open_source(path, Kind.ACCOUNTS, "gb18030") as source:
        summary = run_import(engine, source)
    assert summary.accepted == 1
    with engine.connect() as connection:
        assert connection.execute(select(Borrower.__table__.c.name)).scalar_one() == "王小明"  # type: ignore[attr-defined]


def test_national_number_of_another_region_is_rejected_not_rehomed() -> None:
    """A US-CA row whose number without +1 is Canadian is rejected, not stored as a CA number."""
    result = parse_account(2, account_record(phone="(204) 234-5678"))
    assert isinstance(result, list)
    assert [r.field for r in result] == ["phone"] and "region US" in result[0].reason


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("王小明，逾期不还将报警抓你坐牢", "content:threat"),
        ("老赖", "content:abuse"),
        ("Ann\x1b[2JLee", "content:control"),
    ],
)
def test_name_carrying_a_threat_slur_or_control_is_rejected_naming_the_rule(name: str, rule: str) -> None:
    """A borrower_name holding a threat, a slur or a control character is rejected at import with the rule."""
    result = parse_account(2, account_record(borrower_name=name))
    assert isinstance(result, list)
    assert result[0].field == "borrower_name" and result[0].reason.startswith(rule)


def test_surname_that_is_a_lexicon_word_is_accepted() -> None:
    """A borrower called Crook is not an insult: the lexicon's allowed surnames pass."""
    assert not isinstance(parse_account(2, account_record(borrower_name="Dana Crook")), list)


def test_content_check_reads_the_name_in_the_rendered_text() -> None:
    """A threat carried by the filled-in name is found in the final text, not skipped with the name."""
    name = "王小明，逾期不还将报警抓你坐牢"
    body = f"【汽车金融】{name}您好，您的车贷已逾期，请尽快还款。"
    finding = check_content(
        body, lender="汽车金融", profile=profile("CN"), fill={"name": name, "lender": "汽车金融"}
    )
    assert finding is not None and finding.rule == "content:threat"


def test_rejects_written_as_neutralised_cells_and_imported_again(tmp_path: Path) -> None:
    """Formula cells are written with a leading quote, and the rejects file reads back to the original."""
    path = write_csv(
        tmp_path / "a.csv",
        [account_record(borrower_name='=HYPERLINK("http://x","y")', vin="@SUM(A1)", currency="-1")],
    )
    engine = fresh(tmp_path)
    with open_source(path, Kind.ACCOUNTS) as source:
        summary = run_import(engine, source)
    assert summary.rejects_file is not None
    text = summary.rejects_file.read_text()
    assert "'=HYPERLINK" in text and "'@SUM(A1)" in text and ",'-1," in text
    assert not any(cell.startswith(("=", "@", "-")) for line in text.splitlines() for cell in line.split(","))
    with open_source(summary.rejects_file, Kind.ACCOUNTS) as again:
        row = next(again.rows())
    assert row.values["borrower_name"].startswith("=HYPERLINK") and row.values["phone"].startswith("(213)")


def test_rejects_file_replaces_a_symlink_instead_of_following_it(tmp_path: Path) -> None:
    """A symlink planted at the rejects path is replaced; the file it points to is untouched."""
    path = write_csv(tmp_path / "a.csv", [account_record(currency="XXX1")])
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "a.csv.rejects.csv").symlink_to(victim)
    with open_source(path, Kind.ACCOUNTS) as source:
        summary = run_import(fresh(tmp_path), source)
    assert victim.read_text() == "keep me"
    assert summary.rejects_file is not None and not summary.rejects_file.is_symlink()
    assert summary.rejects_file.stat().st_mode & 0o777 == 0o600


def test_unwritable_rejects_path_commits_nothing(tmp_path: Path) -> None:
    """When the rejects file cannot be written, no accepted row is stored."""
    path = write_csv(tmp_path / "a.csv", [account_record(), account_record(currency="nope")])
    engine = fresh(tmp_path)
    (tmp_path / "a.csv.rejects.csv").mkdir()  # a directory where the file must go
    with (
        pytest.raises(RejectsUnwritable, match="nothing was stored"),
        open_source(path, Kind.ACCOUNTS) as source,
    ):
        run_import(engine, source)
    assert count(engine) == 0


def test_placeholder_and_future_dates_are_rejected_naming_the_field(tmp_path: Path) -> None:
    """A 1900 oldest or next due date, a 9999 next due date and an oldest due date after the import's
    date are rejected naming line and field; an account 7 years behind is taken."""
    now = datetime(2026, 12, 6, 9, tzinfo=UTC)
    records = [
        account_record(account_id="A-1900", oldest_due_date="1900-01-01"),
        account_record(account_id="A-NEXT", next_due_date="1900-01-01"),
        account_record(account_id="A-9999", next_due_date="9999-12-31"),
        account_record(account_id="A-DEFERRED", next_due_date="2027-06-28"),
        account_record(account_id="A-2031", oldest_due_date="2031-01-01"),
        account_record(account_id="A-OLD", oldest_due_date="2019-11-28"),
        account_record(account_id="A-TOMORROW", oldest_due_date="2026-12-07"),  # the lender's today at UTC+14
    ]
    path = write_csv(tmp_path / "a.csv", records, columns=[*account_record(), "next_due_date"])
    engine = fresh(tmp_path)
    with open_source(path, Kind.ACCOUNTS) as source:
        summary = run_import(engine, source, now=now)
    assert (summary.read, summary.accepted, summary.rejected) == (7, 3, 4)
    found = {(r.line, r.field): r.reason for r in summary.first_rejections}
    assert set(found) == {
        (2, "oldest_due_date"),
        (3, "next_due_date"),
        (4, "next_due_date"),
        (6, "oldest_due_date"),
    }
    assert "more than 20 years before this import" in found[2, "oldest_due_date"]
    assert "more than 10 years after this import" in found[4, "next_due_date"]
    assert "after this import's date (2026-12-06)" in found[6, "oldest_due_date"]
    assert count(engine) == 3


def test_payment_dated_the_unix_epoch_is_rejected_naming_the_field(tmp_path: Path) -> None:
    """A payment received_at 1970-01-01 (a null timestamp) is rejected; one of last month is stored."""
    engine = fresh(tmp_path)
    with open_source(
        write_csv(tmp_path / "a.csv", [account_record(account_id="A-1")]), Kind.ACCOUNTS
    ) as source:
        run_import(engine, source)
    path = write_csv(
        tmp_path / "p.csv",
        [
            payment_record(account_id="A-1", received_at="1970-01-01T00:00:00Z"),
            payment_record(account_id="A-1", received_at="2026-11-20T10:15:00-08:00"),
        ],
    )
    with open_source(path, Kind.PAYMENTS) as source:
        summary = run_import(engine, source, now=datetime(2026, 12, 6, tzinfo=UTC))
    assert (summary.accepted, summary.rejected) == (1, 1)
    [rejection] = summary.first_rejections
    assert (rejection.line, rejection.field) == (2, "received_at")
    assert "1970-01-01 is more than 20 years before this import" in rejection.reason
    assert count(engine, Payment) == 1


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-01:00"])
def test_a_payment_instant_outside_the_years_1_to_9999_in_utc_is_a_rejected_row_not_a_crash(
    instant: str, tmp_path: Path
) -> None:
    """`0001-01-01T00:00:00+08:00` (.NET's DateTimeOffset.MinValue in China's zone, a placeholder)
    is valid ISO 8601 whose UTC instant is before year 1: its row is rejected naming received_at,
    and the file's other rows are stored (the import died of an OverflowError, storing nothing)."""
    engine = fresh(tmp_path)
    with open_source(
        write_csv(tmp_path / "a.csv", [account_record(account_id="A-1")]), Kind.ACCOUNTS
    ) as source:
        run_import(engine, source)
    path = write_csv(
        tmp_path / "p.csv",
        [
            payment_record(account_id="A-1", received_at=instant),
            payment_record(account_id="A-1", received_at="2026-11-20T10:15:00-08:00"),
        ],
    )
    with open_source(path, Kind.PAYMENTS) as source:
        summary = run_import(engine, source, now=datetime(2026, 12, 6, tzinfo=UTC))
    assert (summary.accepted, summary.rejected) == (1, 1)
    [rejection] = summary.first_rejections
    assert (rejection.line, rejection.field) == (2, "received_at")
    assert rejection.reason == f"{instant!r} is outside the years 1 to 9999 once taken to UTC"
    assert count(engine, Payment) == 1


def test_a_json_lines_line_that_is_no_object_is_rejected_as_such_null_too(tmp_path: Path) -> None:
    """A line `null` is no JSON object, as `42` or `true` is: rejected as "not a JSON object", not
    as an object lacking every required field."""
    path = tmp_path / "accounts.jsonl"
    lines = [json.dumps(account_record(account_id="A-1")), "null", "42", "true", '"A-2"', "[]"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    engine = fresh(tmp_path)
    with open_source(path, Kind.ACCOUNTS) as source:
        summary = run_import(engine, source)
    assert (summary.read, summary.accepted, summary.rejected) == (6, 1, 5)
    assert [(r.line, r.field, r.reason) for r in summary.first_rejections] == [
        (n, "row", "not a JSON object") for n in range(2, 7)
    ]


@pytest.mark.parametrize(
    ("field", "written"),
    [
        ("balance", "[1.50, 1e3, NaN]"),
        ("borrower_name", '{"姓": "张", "名": "伟"}'),
        ("phone", "true"),
        ("vin", '["\\ud800"]'),
    ],
)
def test_a_json_lines_value_of_the_wrong_kind_is_quoted_as_the_file_wrote_it(
    field: str, written: str, tmp_path: Path
) -> None:
    """A contract key holding a list, an object or a boolean rejects the record, quoting the value
    as written: `[1.50, 1e3, NaN]`, not `["1.50", "1e3", "NaN"]` as numbers read as text dump, and
    `张` rather than its escape (a lone surrogate stays escaped: it cannot be written as UTF-8)."""
    path = tmp_path / "accounts.jsonl"
    record = json.dumps(account_record(account_id="A-1", **{field: None}))
    path.write_text(record[:-1] + f', "{field}": {written}}}\n', encoding="utf-8")
    with open_source(path, Kind.ACCOUNTS) as source:
        [row] = source.rows()
    assert row.problem is not None
    assert (row.problem.field, row.problem.reason) == (field, f"expected text or a number, got {written}")


def test_files_joined_together_reject_the_second_header_and_a_byte_order_mark_saying_so(
    tmp_path: Path,
) -> None:
    """`cat a.csv b.csv` (b saved with a BOM): b's header line is rejected as the header again, a row
    after a BOM is rejected rather than stored as an account whose id starts with U+FEFF."""
    first = write_csv(tmp_path / "a.csv", [account_record(account_id="A-1")]).read_bytes()
    second = write_csv(tmp_path / "b.csv", [account_record(account_id="A-2")]).read_bytes()
    third = write_csv(tmp_path / "c.csv", [account_record(account_id="A-3")]).read_bytes()
    path = tmp_path / "joined.csv"
    path.write_bytes(first + codecs.BOM_UTF8 + second + codecs.BOM_UTF8 + third.split(b"\n", 1)[1])
    engine = fresh(tmp_path)
    with open_source(path, Kind.ACCOUNTS) as source:
        summary = run_import(engine, source)
    assert (summary.read, summary.accepted, summary.rejected) == (4, 2, 2)
    [header, bom] = summary.first_rejections
    assert (header.line, header.field) == (3, "row") and header.reason.startswith("the header again")
    assert (bom.line, bom.field) == (5, "row") and "byte-order mark" in bom.reason
    with engine.connect() as connection:
        assert sorted(connection.execute(select(Account.account_id)).scalars()) == ["A-1", "A-2"]  # type: ignore[call-overload]


def test_json_lines_joined_together_reject_a_byte_order_mark_as_a_csv_file_does(tmp_path: Path) -> None:
    """`cat a.jsonl b.jsonl` (b saved with a BOM): b's first record is rejected for the BOM in the
    words a CSV file's is, not in Python's ("Unexpected UTF-8 BOM (decode using utf-8-sig)")."""
    first = write_jsonl(tmp_path / "a.jsonl", [account_record(account_id="A-1")]).read_bytes()
    second = write_jsonl(tmp_path / "b.jsonl", [account_record(account_id="A-2")]).read_bytes()
    path = tmp_path / "joined.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + first + codecs.BOM_UTF8 + second)
    engine = fresh(tmp_path)
    with open_source(path, Kind.ACCOUNTS) as source:
        summary = run_import(engine, source)
    assert (summary.read, summary.accepted, summary.rejected) == (2, 1, 1)
    [bom] = summary.first_rejections
    assert (bom.line, bom.field, bom.reason) == (
        2,
        "row",
        "a byte-order mark (U+FEFF) inside the file: files joined together? import each file on its own",
    )


@pytest.mark.parametrize(
    ("char", "named"),
    [
        ("\u200b", "ZERO WIDTH SPACE"),  # Cf
        ("\u200d", "ZERO WIDTH JOINER"),  # Cf
        ("\u00ad", "SOFT HYPHEN"),  # Cf
        ("\ufeff", "ZERO WIDTH NO-BREAK SPACE"),  # Cf: a BOM in a JSON value, or escaped
        ("\u202e", "RIGHT-TO-LEFT OVERRIDE"),  # Cf: shows A-1 as 1-A
        ("\u00a0", "NO-BREAK SPACE"),  # Zs
        ("\u3000", "IDEOGRAPHIC SPACE"),  # Zs
        ("\u2028", "LINE SEPARATOR"),  # Zl
        ("\t", "a control character"),  # Cc
        ("\x85", "a control character"),  # Cc
        ("\ue000", "a private-use character"),  # Co
    ],
)
def test_an_id_holding_a_character_nobody_sees_is_rejected_naming_it(char: str, named: str) -> None:
    """Inside an account's or a borrower's id, a control, format, separator (but the space) or
    private-use character rejects the record, naming the field, the character and its place."""
    [rejection] = parse_account(2, account_record(account_id=f"A-{char}1", borrower_id="B-1"))
    assert (rejection.line, rejection.field) == (2, "account_id")
    assert rejection.reason == (
        f"contains an invisible character U+{ord(char):04X} ({named}) at position 3: retype the id"
    )
    [rejection] = parse_account(2, account_record(account_id="A-1", borrower_id=f"B-1{char}0"))
    assert rejection.field == "borrower_id" and "at position 4" in rejection.reason
    assert not isinstance(
        parse_account(2, account_record(account_id=" A 1 ", borrower_id="\tB-1\u00a0")), list
    )


def test_stop_request_between_chunks_rolls_back_every_chunk(tmp_path: Path) -> None:
    """An import asked to stop after its first chunk leaves nothing of the file, not the first chunk."""
    path = write_csv(tmp_path / "a.csv", accounts_records(30))
    engine = fresh(tmp_path)
    with pytest.raises(ImportInterrupted), open_source(path, Kind.ACCOUNTS) as source:
        run_import(engine, source, chunk_size=10, stop_requested=lambda: "SIGTERM")
    assert count(engine) == 0


# Lines as a file may have them: good rows, quotes in every wrong place, CR, blanks, non-ASCII.
_LINE = st.one_of(
    st.just("GOOD"),
    st.text(alphabet=st.sampled_from([*'ab,"\r \t;王é', "\x00"]), max_size=30),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(_LINE, max_size=12),
    encoding=st.sampled_from(["utf-8", "gb18030"]),
    cut=st.integers(min_value=0, max_value=40),
    trailing_newline=st.booleans(),
)
def test_property_every_data_line_is_accepted_or_rejected(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[str],
    encoding: str,
    cut: int,
    trailing_newline: bool,
) -> None:
    """For generated bytes, accepted + rejected equals the data lines, lines of separators alone are
    counted as empty, and a refused file stores nothing."""
    directory = tmp_path_factory.mktemp("prop")
    texts = [",".join(account_record().values()) if line == "GOOD" else line for line in lines]
    data = ("\n".join([HEADER, *texts]) + ("\n" if trailing_newline else "")).encode(encoding)
    if cut:
        data = data[: max(len(HEADER) + 1, len(data) - cut)]  # a truncated file, maybe mid-character
    path = directory / "a.csv"
    path.write_bytes(data)
    engine = fresh(directory)
    try:
        with open_source(path, Kind.ACCOUNTS, encoding) as source:
            summary = run_import(engine, source)
    except UnreadableFile:
        assert count(engine) == 0 and not (directory / "a.csv.rejects.csv").exists()
        return
    finally:
        engine.dispose()
    decoded = data.decode(encoding)
    kept = [line.removesuffix("\r").strip() for line in decoded.split("\n")[1:]]
    empty = sum(1 for line in kept if line and not line.strip(", \t"))
    assert summary.accepted + summary.rejected == sum(1 for line in kept if line) - empty
    assert summary.empty == empty
    assert count(engine) == summary.accepted


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_import_subprocess_leaves_nothing_or_everything(tmp_path: Path, sig: signal.Signals) -> None:
    """`arrears import` killed mid-file (SIGTERM, SIGKILL) leaves none of the file or all, and says which."""
    total = 20_000
    path = write_csv(tmp_path / "a.csv", accounts_records(total))
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    migrate(get_engine(url))
    schema = _schema(url)
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parents[1]),
        "ARREARS_HOME": str(tmp_path / "home"),
        # A page cache smaller than the file's pages: they go out to the WAL as the file is stored,
        # which is how the test knows the import is half-way. (In 128 MiB, not until the commit.)
        "ARREARS_IMPORT_CACHE_MIB": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "import", "accounts", str(path), "--database", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    engine = get_engine(url)
    deadline = time.monotonic() + 60
    # Wait until the import has written into its open transaction (the WAL grows), then kill it.
    wal = tmp_path / "kill.db-wal"
    while time.monotonic() < deadline and process.poll() is None:
        if wal.exists() and wal.stat().st_size > 1_000_000:
            break
        time.sleep(0.05)
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    stored = count(engine)
    assert stored in (0, total)
    # A first load drops indexes in its transaction and builds them at its end: killed, none is lost.
    assert _schema(url) == schema
    if sig == signal.SIGTERM and stored == 0:
        assert process.returncode == 1 and "SIGTERM" in err and "nothing was stored" in err
    if stored == total:
        assert "20,000" in out


def _schema(url: str) -> list[tuple[str, str]]:
    """Every table and index as SQLite stores its definition, after an integrity check."""
    with get_engine(url).connect() as connection:
        assert connection.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
        found = connection.exec_driver_sql("SELECT name, sql FROM sqlite_master ORDER BY name")
        return [(name, sql) for name, sql in found]
