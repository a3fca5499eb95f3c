"""A long file's records parsed in worker processes store and reject exactly what parsing them in
the importer does, and a stop, a bad byte or a failing parse leaves nothing stored and no worker
behind."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from arrears.importing import Kind, RawRow, Rejection, open_source, parallel, read_account
from arrears.models import Account, AccountHold, AuditEvent, Borrower, ContactPoint, Payment
from arrears.storage import get_engine, migrate
from arrears.storage.importer import ImportInterrupted, ImportSummary, run_import
from tests.factories import accounts_records, payment_record, write_csv, write_jsonl

NOW = datetime(2026, 11, 30, 1, tzinfo=UTC)
TABLES = (Account, Borrower, ContactPoint, AccountHold, AuditEvent, Payment)


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Chunks go to the pool from 100 records on; yields the size of each chunk sent to a worker."""
    sizes: list[int] = []

    class Recording(ProcessPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            sizes.append(len(args[1]))
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(parallel, "ProcessPoolExecutor", Recording)
    monkeypatch.setattr(parallel, "POOL_FROM_RECORDS", 100)
    yield sizes


def _broken_file(path: Path, count: int = 600) -> Path:
    """`count` accounts with rejects of every kind spread over the chunks: a stray quote, a bad
    amount, a bad phone, a repeated id, a borrower's second name, a short row, a blank line."""
    records = list(accounts_records(count))
    for n in range(5, count, 37):
        records[n]["balance"] = "12,50"
    for n in range(11, count, 53):
        records[n]["phone"] = "+1234"
    for n in range(17, count, 71):
        records[n]["account_id"] = records[n - 3]["account_id"]
    for n in range(23, count, 89):
        records[n]["borrower_id"] = records[n - 1].setdefault("borrower_id", f"B-shared-{n}")
    write_csv(path, records, columns=[*records[0], "borrower_id"])
    lines = path.read_bytes().split(b"\n")
    lines[40] = lines[40].replace(b"Borrower", b'"Borrower', 1)
    lines[130] = b",".join(lines[130].split(b",")[:5])
    lines.insert(250, b"   ")
    path.write_bytes(b"\n".join(lines))
    return path


def _broken_jsonl(path: Path, count: int = 600) -> Path:
    """The same kinds of reject as JSON Lines: a line that is no JSON object, one that is an
    array, a number where text belongs (kept as text), a nested object, a null, a repeated id."""
    records: list[dict[str, Any]] = list(accounts_records(count))
    for n in range(5, count, 37):
        records[n]["balance"] = 12.5  # a JSON number: read as the text "12.5"
    for n in range(11, count, 53):
        records[n]["phone"] = {"number": "+1234"}
    for n in range(17, count, 71):
        records[n]["account_id"] = records[n - 3]["account_id"]
    for n in range(19, count, 79):
        records[n]["alt_phone"] = None
    write_jsonl(path, records)
    lines = path.read_bytes().split(b"\n")
    lines[40] = lines[40][:-1]  # the closing brace lost
    lines[130] = b"[1, 2]"
    lines.insert(250, b"   ")
    path.write_bytes(b"\n".join(lines))
    return path


def _import(
    directory: Path,
    source_file: Path,
    workers: int,
    *,
    accounts: Path | None = None,
    **options: Any,
) -> tuple[ImportSummary, Engine]:
    """Import `source_file` (payments, when the `accounts` to pay are given first) into a fresh
    database in `directory`."""
    directory.mkdir()
    path = directory / source_file.name
    path.write_bytes(source_file.read_bytes())
    engine = get_engine(f"sqlite:///{directory / 'arrears.db'}")
    migrate(engine)
    if accounts is not None:
        with open_source(accounts, Kind.ACCOUNTS) as source:
            run_import(engine, source, parse_workers=0, now=NOW)
    with open_source(path, Kind.PAYMENTS if accounts else Kind.ACCOUNTS) as source:
        summary = run_import(engine, source, chunk_size=50, parse_workers=workers, now=NOW, **options)
    return summary, engine


def _stored(engine: Engine) -> dict[str, list[Any]]:
    with engine.connect() as connection:
        tables = [model.__table__ for model in TABLES]  # type: ignore[attr-defined]
        return {
            table.name: [tuple(r) for r in connection.execute(select(table).order_by(*table.primary_key))]
            for table in tables
        }


def _same_import(
    tmp_path: Path, name: str, here: tuple[ImportSummary, Engine], there: tuple[ImportSummary, Engine]
) -> None:
    """The same summary, rejects file byte for byte and stored rows, `here` and `there`."""
    unplaced = {"file": None, "rejects_file": None}
    assert there[0].as_dict() | unplaced == here[0].as_dict() | unplaced
    assert there[0].first_rejections == here[0].first_rejections
    assert (tmp_path / "there" / f"{name}.rejects.csv").read_bytes() == (
        tmp_path / "here" / f"{name}.rejects.csv"
    ).read_bytes()
    assert _stored(there[1]) == _stored(here[1])


def _count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(Account.__table__)).scalar_one())  # type: ignore[attr-defined]


def _children() -> dict[int, bytes]:
    """This process's child processes by pid, with their command lines."""
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
    if not children.exists():
        return {}
    found = {}
    for pid in children.read_text().split():
        try:
            found[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
    return found


@pytest.fixture
def children_before() -> dict[int, bytes]:
    """The children already running before the test: servers that other tests' session fixtures
    started live as long as the session and are none of the import's business."""
    return _children()


def _no_children_left(before: dict[int, bytes]) -> None:
    """No worker is left: multiprocessing knows of none, and the kernel of no new child process
    but multiprocessing's resource tracker (one per process that ever spawned, leaving with it)."""
    assert multiprocessing.active_children() == []
    new = [command for pid, command in _children().items() if pid not in before]
    assert [c for c in new if b"resource_tracker" not in c] == []


@pytest.mark.parametrize(("workers", "form"), [(1, "csv"), (2, "csv"), (1, "jsonl")])
def test_file_parsed_in_workers_stores_and_rejects_what_one_process_does(
    tmp_path: Path, submitted: list[int], workers: int, form: str, children_before: dict[int, bytes]
) -> None:
    """Twelve chunks through 1 or 2 workers: the same rows, ids included, the same rejects file
    byte for byte and the same summary as parsing in the importer."""
    broken = _broken_file if form == "csv" else _broken_jsonl
    source = broken(tmp_path / f"accounts.{form}")
    here, here_engine = _import(tmp_path / "here", source, 0)
    assert submitted == []
    there, there_engine = _import(tmp_path / "there", source, workers)

    assert len(submitted) > 10 and all(size <= 50 for size in submitted)
    assert here.rejected > 20 and here.accepted > 500
    _same_import(tmp_path, f"accounts.{form}", (here, here_engine), (there, there_engine))
    _no_children_left(children_before)


def test_payments_parsed_in_workers_store_and_reject_what_one_process_does(
    tmp_path: Path, submitted: list[int], children_before: dict[int, bytes]
) -> None:
    """Payments through a worker: those it accepts but storing rejects (no such account, more
    places than the account's currency) or a later line conflicts with are written to the
    rejects file cell for cell, as when every line is parsed in the importer."""
    portfolio = list(accounts_records(40))
    accounts = write_csv(tmp_path / "accounts.csv", portfolio)
    ids = [record["account_id"] for record in portfolio]
    records = [payment_record(account_id=ids[n % len(ids)], amount=f"{n + 1}.25") for n in range(500)]
    for n in range(7, 500, 61):
        records[n]["account_id"] = f"NO-SUCH-{n}"
    for n in range(13, 500, 67):
        records[n]["amount"] = "10.125"  # USD has two places
    for n in range(29, 500, 83):
        records[n] = records[n - 2] | {"amount": "99.00"}  # the same payment_id, another amount
    for n in range(3, 500, 97):
        records[n]["received_at"] = "yesterday"
    payments = write_csv(tmp_path / "payments.csv", records)

    here, here_engine = _import(tmp_path / "here", payments, 0, accounts=accounts)
    assert submitted == []
    there, there_engine = _import(tmp_path / "there", payments, 1, accounts=accounts)

    assert len(submitted) == 10
    assert here.rejected > 20 and here.accepted > 400
    assert any("no account" in r.reason for r in here.first_rejections)
    _same_import(tmp_path, "payments.csv", (here, here_engine), (there, there_engine))
    _no_children_left(children_before)


def test_stop_requested_mid_file_stores_nothing_and_leaves_no_worker(
    tmp_path: Path, submitted: list[int], children_before: dict[int, bytes]
) -> None:
    """A stop after the third chunk, with the pool parsing ahead: nothing stored, every worker gone."""
    source = write_csv(tmp_path / "accounts.csv", accounts_records(1_000))
    progress: list[int] = []
    with pytest.raises(ImportInterrupted, match="SIGTERM after 150 lines"):
        _import(
            tmp_path / "stopped",
            source,
            2,
            on_progress=lambda summary, _position: progress.append(summary.read),
            stop_requested=lambda: "SIGTERM" if len(progress) >= 3 else None,
        )
    assert submitted and progress == [50, 100, 150]
    assert _count(get_engine(f"sqlite:///{tmp_path / 'stopped' / 'arrears.db'}")) == 0
    _no_children_left(children_before)


def test_bad_byte_after_several_chunks_raises_where_it_did_and_stores_nothing(
    tmp_path: Path, submitted: list[int], children_before: dict[int, bytes]
) -> None:
    """A byte not valid UTF-8 on line 402: UnreadableFile naming it, after the same progress as in
    one process (the 400 records before it), and nothing stored."""
    source = write_csv(tmp_path / "accounts.csv", accounts_records(600))
    lines = source.read_bytes().split(b"\n")
    lines[401] = lines[401].replace(b"Borrower", b"Borrow\xff", 1)
    source.write_bytes(b"\n".join(lines))
    seen: dict[int, list[int]] = {}
    for workers in (0, 1):
        progress = seen.setdefault(workers, [])
        with pytest.raises(Exception, match=r"byte offset \d+ \(line 402\)") as raised:
            _import(
                tmp_path / f"w{workers}",
                source,
                workers,
                on_progress=lambda summary, _position, progress=progress: progress.append(summary.read),
            )
        assert type(raised.value).__name__ == "UnreadableFile"
        assert _count(get_engine(f"sqlite:///{tmp_path / f'w{workers}' / 'arrears.db'}")) == 0
    assert submitted and seen[1] == seen[0] == [50 * n for n in range(1, 9)]
    _no_children_left(children_before)


def failing_on_line_250(raw: RawRow) -> Any:
    """A parse that raises on one record (in a worker process: importable by name)."""
    if raw.line == 250:
        raise ValueError("parse failed on line 250")
    return read_account(raw)


def test_parse_raising_in_a_worker_surfaces_at_its_chunk(
    tmp_path: Path, submitted: list[int], children_before: dict[int, bytes]
) -> None:
    """An error parsing a record in a worker is raised in the importer when its chunk comes up,
    after every record before that chunk, and the pool is shut down."""
    source = write_csv(tmp_path / "accounts.csv", accounts_records(400))
    lines: list[int] = []
    with (
        open_source(source, Kind.ACCOUNTS) as opened,
        pytest.raises(ValueError, match="parse failed on line 250"),
        parallel.parsed_records(
            opened.lines(), opened.layout, failing_on_line_250, chunk_size=50, workers=2
        ) as parsed,
    ):
        for raw, result in parsed:
            assert not isinstance(result, list) and result is not None
            lines.append(raw.line)
    assert lines == list(range(2, 202))
    _no_children_left(children_before)


def signals_ignored(raw: RawRow) -> tuple[bool, bool]:
    """In a worker: whether SIGINT and SIGTERM are ignored there."""
    return (
        signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
        signal.getsignal(signal.SIGTERM) == signal.SIG_IGN,
    )


def test_workers_leave_signals_to_the_importer(tmp_path: Path, submitted: list[int]) -> None:
    """A worker ignores SIGINT and SIGTERM: a Ctrl-C reaching the process group must stop the
    import between chunks (the importer's handler), not kill a worker and break the pool."""
    source = write_csv(tmp_path / "accounts.csv", accounts_records(200))
    with (
        open_source(source, Kind.ACCOUNTS) as opened,
        parallel.parsed_records(
            opened.lines(), opened.layout, signals_ignored, chunk_size=50, workers=1
        ) as parsed,
    ):
        found = {result for _, result in parsed}
    assert submitted and found == {(True, True)}


def test_worker_results_pickle_back_to_equal_rows() -> None:
    """Rows and rejections cross between processes as their field values and come back equal."""
    import pickle

    from tests.factories import account_row, payment_row

    sent = [
        account_row(flags="dispute|bankruptcy"),
        payment_row(),
        Rejection(3, "phone", "not a phone number"),
    ]
    assert pickle.loads(pickle.dumps(sent)) == sent


def test_ctrl_c_reaching_the_workers_too_stops_the_import_cleanly(tmp_path: Path) -> None:
    """Ctrl-C goes to the whole process group: the workers ignore it, the import stops between
    chunks saying SIGINT and nothing stored, and no worker is left in the group."""
    total = 60_000  # beyond POOL_FROM_RECORDS: parsed in a worker
    path = write_csv(tmp_path / "a.csv", accounts_records(total))
    url = f"sqlite:///{tmp_path / 'ctrl-c.db'}"
    migrate(get_engine(url))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "ARREARS_HOME": str(tmp_path / "home")}
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "import", "accounts", str(path), "--database", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    deadline = time.monotonic() + 120
    wal = tmp_path / "ctrl-c.db-wal"
    while time.monotonic() < deadline and process.poll() is None:
        if wal.exists() and wal.stat().st_size > 2_000_000:
            break
        time.sleep(0.05)
    group = os.getpgid(process.pid)
    os.killpg(group, signal.SIGINT)
    _out, err = process.communicate(timeout=120)
    stored = _count(get_engine(url))
    assert stored in (0, total)
    if stored == 0:
        assert process.returncode == 1 and "SIGINT" in err and "nothing was stored" in err, err
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(group, signal.SIGKILL)
        raise AssertionError("a parsing worker outlived the import")
