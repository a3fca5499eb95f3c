"""`arrears import accounts|payments FILE` as an operator runs it: exit codes, output, rejects file."""

import csv
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from arrears.models import Account, Payment
from arrears.storage import get_engine
from deployments.cli import main
from deployments.cli._common import console_err
from tests.factories import account_record, accounts_records, payment_record, write_csv, write_jsonl


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


Arrears = Callable[..., Run]


@pytest.fixture
def arrears(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> Arrears:
    """Runs `arrears ...` in this process through `main()`, as the console script does."""

    # main() prints with rich's default wrapping at the console width (80 when not a terminal);
    # unwrapped here, the test sees the message as the command wrote it.
    monkeypatch.setattr(console_err, "soft_wrap", True)

    def run(*args: str) -> Run:
        monkeypatch.setattr(sys, "argv", ["arrears", *args, "--database", sqlite_url])
        with pytest.raises(SystemExit) as exited:
            main()
        out, err = capsys.readouterr()
        return Run(int(exited.value.code or 0), out, err)

    return run


def stored(sqlite_url: str, model: type) -> int:
    with get_engine(sqlite_url).connect() as connection:
        return int(connection.execute(select(func.count()).select_from(model.__table__)).scalar_one())  # type: ignore[attr-defined]


def test_all_rows_accepted_exits_0_and_prints_the_three_counts(
    arrears: Arrears, tmp_path: Path, sqlite_url: str
) -> None:
    """A clean file exits 0, prints rows read, accepted and rejected, and leaves no rejects file."""
    path = write_csv(tmp_path / "accounts.csv", [account_record() for _ in range(3)])
    result = arrears("import", "accounts", str(path))
    assert result.code == 0, result.err
    assert "3 rows read, 3 accepted, 0 rejected" in result.out
    assert stored(sqlite_url, Account) == 3
    assert not (tmp_path / "accounts.csv.rejects.csv").exists()


def test_some_rows_rejected_exits_3_stores_the_rest_and_writes_rejects(
    arrears: Arrears, tmp_path: Path, sqlite_url: str
) -> None:
    """Rejected rows go to FILE.rejects.csv with line, field, reason and their cells; the rest is stored."""
    good, bad = account_record(), account_record(phone="12", currency="ZZZ")
    path = write_csv(tmp_path / "accounts.csv", [good, bad, account_record()])
    result = arrears("import", "accounts", str(path))
    assert result.code == 3
    assert "3 rows read, 2 accepted, 1 rejected" in result.out
    assert stored(sqlite_url, Account) == 2
    with (tmp_path / "accounts.csv.rejects.csv").open(newline="") as file:
        [reject] = list(csv.DictReader(file))
    assert (reject["line"], reject["field"]) == ("3", "phone; currency")
    assert {k: reject[k] for k in bad} == bad


def test_spreadsheets_empty_rows_are_skipped_and_counted_not_rejected(
    arrears: Arrears, tmp_path: Path, sqlite_url: str
) -> None:
    """The `,,,,` rows Excel saves after the last (CRLF) are no record: exit 0, counted as empty."""
    path = write_csv(tmp_path / "accounts.csv", [account_record(), account_record()])
    path.write_bytes(path.read_bytes() + b",,,,,,,,,\r\n" * 3 + b" , ,\t,\r\n")
    result = arrears("import", "accounts", str(path))
    assert result.code == 0, result.out
    assert "2 rows read, 2 accepted, 0 rejected" in result.out
    assert "4 empty rows skipped" in result.out
    assert stored(sqlite_url, Account) == 2
    assert not (tmp_path / "accounts.csv.rejects.csv").exists()
    summary = json.loads(arrears("import", "accounts", str(path), "--json").out)
    assert (summary["read"], summary["empty"]) == (2, 4)


def test_unwritable_rejects_beside_the_file_exit_2_naming_rejects_option_and_store_nothing(
    arrears: Arrears, tmp_path: Path, sqlite_url: str
) -> None:
    """Where FILE.rejects.csv cannot be written, nothing is stored, the exit is 2 and the message
    says to use --rejects; with it, the same file imports (exit 3) and nothing is written beside it."""
    drop, out = tmp_path / "drop", tmp_path / "out"
    drop.mkdir()
    out.mkdir()
    path = write_csv(drop / "accounts.csv", [account_record(), account_record(currency="ZZZ")])
    (drop / "accounts.csv.rejects.csv").mkdir()  # stands for a folder the import may only read
    result = arrears("import", "accounts", str(path))
    assert result.code == 2
    assert "nothing was stored" in result.err and "--rejects PATH" in result.err
    assert stored(sqlite_url, Account) == 0
    result = arrears("import", "accounts", str(path), "--rejects", str(out))
    assert result.code == 3, result.err
    assert f"rejected rows written to {out / 'accounts.csv.rejects.csv'}" in result.out
    with (out / "accounts.csv.rejects.csv").open(newline="") as file:
        [reject] = list(csv.DictReader(file))
    assert (reject["line"], reject["field"], reject["currency"]) == ("3", "currency", "ZZZ")
    assert stored(sqlite_url, Account) == 1
    assert sorted(p.name for p in drop.iterdir()) == ["accounts.csv", "accounts.csv.rejects.csv"]


def test_rejects_option_names_a_file_and_refuses_the_input_or_a_missing_directory(
    arrears: Arrears, tmp_path: Path, sqlite_url: str
) -> None:
    """--rejects FILE writes there; the input itself or a file in no directory is refused with exit 2."""
    path = write_csv(tmp_path / "payments.csv", [payment_record(account_id="A-none")])
    write_csv(tmp_path / "accounts.csv", [account_record()])
    assert arrears("import", "accounts", str(tmp_path / "accounts.csv")).code == 0
    result = arrears("import", "payments", str(path), "--rejects", str(tmp_path / "mine.csv"))
    assert result.code == 3 and "no account 'A-none'" in (tmp_path / "mine.csv").read_text()
    for given, message in (
        (str(path), "that is the file being imported"),
        (str(tmp_path / "no" / "r.csv"), "no such directory"),
        # A trailing slash says a directory: one that does not exist is not taken for a file name.
        (f"{tmp_path / 'wanted'}/", "no such directory"),
    ):
        result = arrears("import", "payments", str(path), "--rejects", given)
        assert result.code == 2 and message in result.err, result.err
    assert path.read_text().startswith("payment_id") and stored(sqlite_url, Payment) == 0
    assert not (tmp_path / "wanted").exists()
    (tmp_path / "wanted").mkdir()
    assert arrears("import", "payments", str(path), "--rejects", f"{tmp_path / 'wanted'}/").code == 3
    assert (tmp_path / "wanted" / "payments.csv.rejects.csv").is_file()


def test_rejects_to_a_fifo_or_a_device_is_refused_never_replaced(arrears: Arrears, tmp_path: Path) -> None:
    """`--rejects /dev/null` run as root would replace the device with a 0600 file (every other
    user's writes to /dev/null then fail): what is no regular file is refused, as `letters pdf
    --output` refuses it, exit 2, nothing stored; shown with a FIFO, which is left as it was."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    path = write_csv(tmp_path / "accounts.csv", [account_record(), account_record(phone="")])
    for given in (fifo, Path(os.devnull)):
        result = arrears("import", "accounts", str(path), "--rejects", str(given))
        assert result.code == 2 and "not a regular file: it would be replaced" in result.err, result.err
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and stat.S_ISCHR(Path(os.devnull).stat().st_mode)
    assert not (tmp_path / "arrears.db").exists()  # refused before the database is opened


def test_fixed_rejects_file_imports_again(arrears: Arrears, tmp_path: Path, sqlite_url: str) -> None:
    """The rejects file, once corrected, is itself an importable accounts file."""
    path = write_csv(tmp_path / "accounts.csv", [account_record(currency="US")])
    assert arrears("import", "accounts", str(path)).code == 3
    rejects = tmp_path / "accounts.csv.rejects.csv"
    rejects.write_text(rejects.read_text().replace(",US,", ",USD,"))
    assert arrears("import", "accounts", str(rejects)).code == 0
    assert stored(sqlite_url, Account) == 1


def test_json_summary_counts_add_up(arrears: Arrears, tmp_path: Path) -> None:
    """--json prints one object whose accepted and rejected add up to the rows read."""
    path = write_jsonl(tmp_path / "accounts.jsonl", [account_record(), account_record(balance="NaN")])
    result = arrears("import", "accounts", str(path), "--json")
    summary = json.loads(result.out)
    assert result.code == 3
    assert (summary["read"], summary["accepted"], summary["rejected"], summary["created"]) == (2, 1, 1, 1)
    assert summary["format"] == "jsonl" and summary["rejects_file"].endswith("accounts.jsonl.rejects.csv")


def test_same_file_twice_changes_nothing(arrears: Arrears, tmp_path: Path) -> None:
    """Importing a file again reports every account unchanged."""
    path = write_csv(tmp_path / "accounts.csv", [account_record(flags="dispute"), account_record(flags="")])
    arrears("import", "accounts", str(path))
    summary = json.loads(arrears("import", "accounts", str(path), "--json").out)
    assert (summary["unchanged"], summary["created"], summary["updated"], summary["holds_placed"]) == (
        2,
        0,
        0,
        0,
    )


def test_payments_import_is_idempotent(arrears: Arrears, tmp_path: Path, sqlite_url: str) -> None:
    """Payments for imported accounts are stored once; the same file again stores nothing more."""
    write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-1")])
    assert arrears("import", "accounts", str(tmp_path / "accounts.csv")).code == 0
    path = write_csv(tmp_path / "payments.csv", [payment_record(account_id="A-1") for _ in range(2)])
    assert arrears("import", "payments", str(path)).code == 0
    again = json.loads(arrears("import", "payments", str(path), "--json").out)
    assert (again["inserted"], again["already_stored"]) == (0, 2)
    assert stored(sqlite_url, Payment) == 2


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "no such file"),
        (
            "accounts.csv",
            "account_id,borrower_name\nA-1,Ann\n",
            "missing required columns for accounts: phone",
        ),
        ("accounts.jsonl", "not json\n", "not a JSON object"),
    ],
)
def test_unreadable_file_exits_2_with_one_line_and_stores_nothing(
    arrears: Arrears, tmp_path: Path, sqlite_url: str, name: str, content: str | None, message: str
) -> None:
    """A file that cannot be read is a one-line error, exit 2, and no database is even created."""
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    result = arrears("import", "accounts", str(path))
    assert result.code == 2
    [line] = result.err.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert not (tmp_path / "arrears.db").exists()


def test_payments_before_any_database_exits_2(arrears: Arrears, tmp_path: Path) -> None:
    """Payments never create a database: without accounts there is nothing to pay."""
    path = write_csv(tmp_path / "payments.csv", [payment_record()])
    result = arrears("import", "payments", str(path))
    assert result.code == 2 and "no database" in result.err


def test_console_script_reports_unreadable_file_without_traceback(tmp_path: Path, sqlite_url: str) -> None:
    """Run as a program, a missing file is an error message without traceback and exit code 2."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from deployments.cli import main; main()",
            "import",
            "accounts",
            str(tmp_path / "nope.csv"),
            "--database",
            sqlite_url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "500"},
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: {tmp_path / 'nope.csv'}: no such file"]


def test_a_failure_after_the_commit_keeps_the_imports_exit_code_and_summary(
    arrears: Arrears, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database error after the commit is a warning: the file is stored, exit 3 (not 1)."""
    from sqlalchemy.exc import OperationalError

    import tasks.lifecycle_letters

    def locked(*args: object, **kwargs: object) -> None:
        raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))

    monkeypatch.setattr(tasks.lifecycle_letters, "readdress_letters", locked)
    path = write_csv(tmp_path / "accounts.csv", [account_record(), account_record(phone="nope")])
    result = arrears("import", "accounts", str(path))
    assert result.code == 3, result.err
    assert "2 rows read, 1 accepted, 1 rejected" in result.out
    assert "warning: the file is stored, but letters waiting for an address were not written" in result.err
    assert "database is locked" in result.err
    assert stored(sqlite_url, Account) == 1


def test_an_accounts_file_delivered_again_after_a_newer_one_is_refused(
    arrears: Arrears, tmp_path: Path, sqlite_url: str
) -> None:
    """The files carry no date: yesterday's file dropped again after today's (here under another
    name) would set every balance back. It is refused, exit 2, naming both files, and nothing is
    stored; the same file twice in a row is not refused, and --reimport imports it anyway.
    `import history` lists every file stored, newest first, with its digest."""
    yesterday = account_record(account_id="A-R1", balance="1000.00")
    today = account_record(account_id="A-R1", balance="900.00")
    older = write_csv(tmp_path / "accounts-1201.csv", [yesterday])
    newer = write_csv(tmp_path / "accounts-1202.csv", [today])
    again = tmp_path / "accounts-1201-resent.csv"
    again.write_bytes(older.read_bytes())

    def balance() -> str:
        with get_engine(sqlite_url).connect() as connection:
            return str(connection.execute(select(Account.balance)).scalar_one())  # type: ignore[arg-type]

    assert arrears("import", "accounts", str(older)).code == 0
    assert arrears("import", "accounts", str(older)).code == 0  # twice in a row: nothing changes
    assert arrears("import", "accounts", str(newer)).code == 0
    refused = arrears("import", "accounts", str(again))
    assert refused.code == 2
    assert "this file was imported on" in refused.err and "(as accounts-1201.csv)" in refused.err
    assert "accounts-1202.csv after it" in refused.err and "--reimport imports it anyway" in refused.err
    assert balance() == "900.0000"
    assert arrears("import", "accounts", str(newer)).code == 0  # the newest again: not refused
    assert arrears("import", "accounts", str(again), "--reimport").code == 0
    assert balance() == "1000.0000"

    listed = json.loads(arrears("import", "history", "--json").out)
    assert [(f["name"], f["accepted"]) for f in listed] == [
        ("accounts-1201-resent.csv", 1),
        ("accounts-1202.csv", 1),
        ("accounts-1202.csv", 1),
        ("accounts-1201.csv", 1),
        ("accounts-1201.csv", 1),
    ]
    assert listed[0]["sha256"] == listed[-1]["sha256"] != listed[1]["sha256"]
    assert "files imported (5; the newest 2 shown" in arrears("import", "history", "--limit", "2").out


@pytest.mark.parametrize("name", ["accounts.csv", "accounts.jsonl"])
def test_a_file_without_records_delivered_again_is_not_refused_as_stale(
    arrears: Arrears, tmp_path: Path, name: str
) -> None:
    """A servicing system's day without changes sends the header alone (CSV) or an empty file (JSON
    Lines), the same bytes every such day: it sets nothing back, so it is imported (exit 0) however
    many files came between, where it was refused as delivered again after a newer one."""
    quiet = tmp_path / name
    if name.endswith(".csv"):
        write_csv(quiet, [], columns=list(account_record()))
    else:
        quiet.write_bytes(b"")
    assert arrears("import", "accounts", str(quiet)).code == 0
    busy = write_csv(tmp_path / "busy.csv", [account_record(account_id="A-S1")])
    assert arrears("import", "accounts", str(busy)).code == 0
    again = arrears("import", "accounts", str(quiet))
    assert again.code == 0, again.err
    # Nor does it make the file before it stale: a file that stored nothing set nothing.
    assert arrears("import", "accounts", str(busy)).code == 0


def test_a_file_given_as_a_pipe_is_read_whole_and_known_by_its_bytes(
    arrears: Arrears, tmp_path: Path, sqlite_url: str
) -> None:
    """`arrears import accounts <(zcat accounts.csv.gz)`: FILE is a pipe, which can be read once.
    Every line is imported (it read only what its first peek held, and the digest drained the
    rest), and the history records the size and SHA-256 of the bytes read, so the same file
    imported from disk next is known as the same (not refused as delivered again)."""
    import hashlib
    import threading

    source = write_csv(tmp_path / "accounts.csv", accounts_records(2_000, prefix="A-F"))
    pipe = tmp_path / "pipe.csv"
    os.mkfifo(pipe)

    def feed() -> None:
        try:
            with pipe.open("wb") as out:
                out.write(source.read_bytes())
        except BrokenPipeError:
            pass

    threading.Thread(target=feed, daemon=True).start()
    result = arrears("import", "accounts", str(pipe), "--json", "--rejects", str(tmp_path / "r.csv"))
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert (summary["read"], summary["accepted"], summary["rejected"]) == (2_000, 2_000, 0), summary
    assert stored(sqlite_url, Account) == 2_000
    [piped] = json.loads(arrears("import", "history", "--json").out)
    content = source.read_bytes()
    assert (piped["size"], piped["sha256"]) == (len(content), hashlib.sha256(content).hexdigest())
    assert arrears("import", "accounts", str(source)).code == 0


def test_json_lines_keys_outside_the_contract_are_read_past_whatever_their_value(
    arrears: Arrears, tmp_path: Path
) -> None:
    """A key the contract does not name is listed as ignored and read past, whatever its value
    (`"active": true`, an object, a list, as many exports carry): it never rejects the record."""
    path = tmp_path / "accounts.jsonl"
    extra = {"active": True, "meta": {"branch": 7}, "tags": [1, 2]}
    path.write_text(json.dumps(account_record(account_id="A-J1") | extra) + "\n", encoding="utf-8")
    result = arrears("import", "accounts", str(path), "--json")
    summary = json.loads(result.out)
    assert sorted(summary["ignored_columns"]) == ["active", "meta", "tags"]
    assert (summary["accepted"], summary["rejected"], result.code) == (1, 0, 0), result.err


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_id_with_an_invisible_character_is_rejected_naming_it_not_stored_beside_the_other(
    arrears: Arrears, tmp_path: Path, sqlite_url: str, fmt: str
) -> None:
    """`A-​1` (a zero-width space after the dash) in an accounts file is rejected, naming the line, the
    field, the character and where it is, instead of being stored as a second account beside A-1
    that no operator can type; `A-1` with a tab or a no-break space after it is A-1."""
    write = write_csv if fmt == "csv" else write_jsonl
    records = [
        account_record(account_id="A-1", borrower_id="B-1"),
        account_record(account_id="A-\u200b1", borrower_id="B-1"),
        account_record(account_id="A-2", borrower_id="B\u00ad-2"),
        account_record(account_id="A-1\t", borrower_id="B-1"),
        account_record(account_id="A-3\u00a0", borrower_id="B-3"),
    ]
    path = write(tmp_path / f"accounts.{fmt}", records)
    result = arrears("import", "accounts", str(path))
    assert result.code == 3, result.err
    with (tmp_path / f"accounts.{fmt}.rejects.csv").open(newline="") as file:
        rejects = {(r["line"], r["field"]): r["reason"] for r in csv.DictReader(file)}
    first = 2 if fmt == "csv" else 1  # a CSV's records start after its header
    assert rejects == {
        (str(first + 1), "account_id"): "contains an invisible character U+200B (ZERO WIDTH SPACE) at "
        "position 3: retype the id",
        (str(first + 2), "borrower_id"): "contains an invisible character U+00AD (SOFT HYPHEN) at "
        "position 2: retype the id",
        (str(first + 3), "account_id"): f"duplicate of line {first}",
    }
    with get_engine(sqlite_url).connect() as connection:
        ids = connection.execute(select(Account.account_id)).scalars().all()  # type: ignore[call-overload]
    assert sorted(ids) == ["A-1", "A-3"]
    assert arrears("show", "A-3").code == 0


def test_a_payment_with_an_invisible_character_in_an_id_is_rejected_naming_it(
    arrears: Arrears, tmp_path: Path, sqlite_url: str
) -> None:
    """A payments file's `payment_id` and `account_id` are ids too: a control character or a
    no-break space inside one rejects the row, naming each."""
    write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-1")])
    assert arrears("import", "accounts", str(tmp_path / "accounts.csv")).code == 0
    records = [
        payment_record(account_id="A-1", payment_id="P-1"),
        payment_record(account_id="A\u00a0-1", payment_id="P\x07-2"),
    ]
    path = write_csv(tmp_path / "payments.csv", records)
    result = arrears("import", "payments", str(path))
    assert result.code == 3, result.err
    with (tmp_path / "payments.csv.rejects.csv").open(newline="") as file:
        [reject] = list(csv.DictReader(file))
    assert (reject["line"], reject["field"]) == ("3", "payment_id; account_id")
    assert reject["reason"] == (
        "contains an invisible character U+0007 (a control character) at position 2: retype the id; "
        "contains an invisible character U+00A0 (NO-BREAK SPACE) at position 2: retype the id"
    )
    assert stored(sqlite_url, Payment) == 1
