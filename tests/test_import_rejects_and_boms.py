"""The account and payment import (DESIGN §8 "Import"): what a rejects file, a BOM and an
encoding named otherwise do to what is stored."""

import codecs
import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from arrears.importing import Kind, UnreadableFile, open_source
from arrears.models import Account, AccountHold
from arrears.storage import get_engine, migrate
from arrears.storage.importer import ImportSummary, run_import
from tests.factories import account_record, write_jsonl

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
account = Account.__table__  # type: ignore[attr-defined]
hold = AccountHold.__table__  # type: ignore[attr-defined]


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    engine = get_engine(f"sqlite:///{tmp_path / 'arrears.db'}")
    migrate(engine)
    return engine


def imported(engine: Engine, path: Path, encoding: str = "utf-8") -> ImportSummary:
    with open_source(path, Kind.ACCOUNTS, encoding) as source:
        return run_import(engine, source, now=NOW, parse_workers=0)


def fixed(rejects: Path, to: Path, **cells: str) -> Path:
    """The rejects file with `cells` set on its every row, as an operator saves it after fixing them."""
    with rejects.open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    with to.open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(row | cells for row in rows)
    return to


def test_a_fixed_rejects_file_of_a_json_lines_import_keeps_what_its_record_left_out(
    db: Engine, tmp_path: Path
) -> None:
    """A key a JSON Lines record lacked keeps the stored value when its fixed rejects file is imported:
    the empty cell it became must not lift the import's bankruptcy hold or clear the VIN."""
    day1 = account_record(account_id="A-1", flags="bankruptcy", vin="1HGCM82633A004352")
    assert imported(db, write_jsonl(tmp_path / "day1.jsonl", [day1])).accepted == 1
    # Today's record says nothing of flags or VIN (absent keys keep them), and its phone is bad.
    day2 = account_record(account_id="A-1", phone="12", balance="18000.00")
    summary = imported(db, write_jsonl(tmp_path / "day2.jsonl", [day2]))
    assert summary.rejected == 1 and summary.rejects_file is not None
    again = imported(db, fixed(summary.rejects_file, tmp_path / "day2-fixed.csv", phone="(213) 373-4253"))
    assert (again.accepted, again.rejected, again.counts.holds_lifted) == (1, 0, 0)  # type: ignore[union-attr]
    with db.connect() as connection:
        stored = connection.execute(select(account.c.vin, account.c.balance)).one()
        holds = connection.execute(select(hold.c.kind, hold.c.lifted_at)).all()
    assert (stored.vin, str(stored.balance)) == ("1HGCM82633A004352", "18000.0000")
    assert [(h.kind, h.lifted_at) for h in holds] == [("bankruptcy", None)]


def test_a_cell_filled_in_or_emptied_in_a_json_lines_rejects_file_is_applied(
    db: Engine, tmp_path: Path
) -> None:
    """Of a JSON Lines import's rejects, a cell the operator filled in counts, and a key the record
    had, emptied, clears as an empty cell does."""
    day1 = account_record(account_id="A-1", vin="1HGCM82633A004352", apr="0.0899")
    imported(db, write_jsonl(tmp_path / "day1.jsonl", [day1]))
    day2 = account_record(account_id="A-1", phone="12", apr="0.0750", vin=None)
    summary = imported(db, write_jsonl(tmp_path / "day2.jsonl", [day2]))
    assert summary.rejects_file is not None
    path = fixed(
        summary.rejects_file, tmp_path / "fixed.csv", phone="(213) 373-4253", apr="", vehicle_value="9000"
    )
    assert imported(db, path).accepted == 1
    with db.connect() as connection:
        stored = connection.execute(select(account.c.vin, account.c.apr, account.c.vehicle_value)).one()
    assert (stored.vin, stored.apr, str(stored.vehicle_value)) == ("1HGCM82633A004352", None, "9000.0000")


def test_a_line_break_in_a_json_lines_value_leaves_its_rejects_row_on_one_line(
    db: Engine, tmp_path: Path
) -> None:
    """A JSON Lines value holding a line break (an address in two lines) is written to the rejects
    file on one line, so that the fixed rejects file imports as one record, not two broken halves."""
    record = account_record(
        account_id="A-1",
        phone="12",
        address_line1="12 Main St\nApt 4",
        city="Los Angeles",
        state="CA",
        postal_code="90012",
    )
    summary = imported(db, write_jsonl(tmp_path / "day.jsonl", [record]))
    assert summary.rejects_file is not None
    assert len(summary.rejects_file.read_bytes().splitlines()) == 2  # the header and the one record
    again = imported(db, fixed(summary.rejects_file, tmp_path / "fixed.csv", phone="(213) 373-4253"))
    assert (again.read, again.accepted, again.rejected) == (1, 1, 0)
    with db.connect() as connection:
        assert connection.execute(select(account.c.address_line1)).scalar_one() == "12 Main St Apt 4"


def csv_text(**overrides: str) -> str:
    record = account_record(account_id="A-1", **overrides)
    return ",".join(record) + "\r\n" + ",".join(record.values()) + "\r\n"


def test_encoding_utf8_sig_reads_a_utf8_file_with_its_bom(db: Engine, tmp_path: Path) -> None:
    """`--encoding utf-8-sig`, Python's name for UTF-8 with a BOM, reads such a file; it is not
    refused with "save the file as UTF-8", which it is."""
    path = tmp_path / "a.csv"
    path.write_bytes(csv_text(borrower_name="王伟").encode("utf-8-sig"))
    assert imported(db, path, "utf-8-sig").accepted == 1
    with db.connect() as connection:
        assert connection.execute(select(account.c.account_id)).scalar_one() == "A-1"


def test_a_gb18030_file_saved_with_its_bom_reads_its_header(db: Engine, tmp_path: Path) -> None:
    """GB18030 is a Unicode encoding with a BOM of its own (84 31 95 33): a file saved with it reads
    its first column as `account_id`, not refused for lacking one."""
    path = tmp_path / "a.csv"
    path.write_bytes(("\ufeff" + csv_text(borrower_name="王伟")).encode("gb18030"))
    assert path.read_bytes().startswith(b"\x84\x31\x95\x33")
    assert imported(db, path, "gb18030").accepted == 1


@pytest.mark.parametrize("encoding", ["gb18030", "cp1252"])
def test_a_utf8_file_with_a_bom_read_in_another_encoding_is_refused_saying_it_is_utf8(
    tmp_path: Path, encoding: str
) -> None:
    """A file that starts with UTF-8's BOM is UTF-8: read as another encoding, it is refused saying
    so, not as a file lacking the `account_id` column its header plainly shows."""
    path = tmp_path / "a.csv"
    path.write_bytes(codecs.BOM_UTF8 + csv_text().encode("utf-8"))
    with pytest.raises(UnreadableFile, match="UTF-8 byte-order mark: it is UTF-8 text"):
        open_source(path, Kind.ACCOUNTS, encoding)


def test_a_json_lines_rejects_row_with_no_json_object_keeps_every_cell(tmp_path: Path) -> None:
    """A rejects row of a JSON Lines line that was no object has nothing to go by: every cell counts."""
    path = write_jsonl(tmp_path / "a.jsonl", [account_record(account_id="A-1")])
    with path.open("a", encoding="utf-8") as file:
        file.write("[1, 2]\n")
    with open_source(path, Kind.ACCOUNTS) as source:
        rows = list(source.rows())
    assert rows[1].problem is not None
    header = ("line", "field", "reason", *(source.rejects_header))
    out = tmp_path / "r.csv"
    with out.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerow(("2", "row", "not a JSON object", *rows[1].original))
    with open_source(out, Kind.ACCOUNTS) as source:
        (row,) = source.rows()
    assert row.problem is None and "vin" in row.present and json.loads(row.values["json"]) == [1, 2]
