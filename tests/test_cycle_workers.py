"""Shards advanced and batches dispatched in worker processes decide exactly what the cycle's own
process decides."""

from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from arrears.importing import Kind, open_source
from arrears.simulate import generate_portfolio, write_accounts_file
from arrears.storage import get_engine, migrate
from arrears.storage.importer import run_import
from arrears.storage.snapshot import SNAPSHOT_TABLES, decision_rows

pytestmark = pytest.mark.usefixtures("prefect_harness")

AS_OF = "2026-12-01T01:00:00Z"


def _decisions(url: str) -> dict[str, Any]:
    """What a cycle decided, without ids or wall-clock columns (the snapshot workers.py compares)."""
    with get_engine(url).connect() as connection:
        return {table: list(decision_rows(connection, table)) for table in SNAPSHOT_TABLES}


def _cycle(tmp_path: Path, name: str, workers: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from arrears.settings import get_settings
    from flows.daily_cycle import daily_cycle
    from tasks import workers as pool

    url = f"sqlite:///{tmp_path / name}.db"
    engine = get_engine(url)
    migrate(engine)
    path = tmp_path / "accounts.csv"
    if not path.exists():
        write_accounts_file(generate_portfolio(400, seed=7, business_date=date(2026, 12, 1)), path)
    with open_source(path, Kind.ACCOUNTS) as source:
        assert run_import(engine, source).rejected == 0
    monkeypatch.setenv("ARREARS_DATABASE_URL", url)
    monkeypatch.setenv("ARREARS_SHARD_SIZE", "60")
    monkeypatch.setenv("ARREARS_SHARD_WORKERS", str(workers))
    monkeypatch.setenv("ARREARS_DISPATCH_BATCH", "15")  # several batches: all but the first in workers
    get_settings.cache_clear()

    submitted: list[str] = []

    class Recording(ProcessPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            submitted.append(fn.__name__)
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(pool, "ProcessPoolExecutor", Recording)
    stats = daily_cycle(as_of=AS_OF)
    return {"stats": stats, "submitted": submitted, "decided": _decisions(url)}


def test_worker_processes_decide_as_the_cycle_process_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sms_sandbox: object
) -> None:
    here = _cycle(tmp_path, "here", 1, monkeypatch)
    there = _cycle(tmp_path, "there", 2, monkeypatch)

    assert here["submitted"] == []
    shards = there["stats"]["advance"]["shards"]
    batches = there["stats"]["dispatch"]["batches"]
    assert shards > 2 and batches > 2
    # The two processes are spawned before the refresh (one task each), then serve every shard.
    assert there["submitted"] == ["getpid"] * 2 + ["advance_rows"] * shards + ["send_batch"] * (batches - 1)
    assert there["stats"]["dispatch"] == here["stats"]["dispatch"]
    assert there["stats"]["advance"]["transitions"] > 0
    for part in SNAPSHOT_TABLES:
        assert there["decided"][part] == here["decided"][part], part
    assert there["stats"]["advance"] == here["stats"]["advance"]


def test_worker_processes_leave_when_the_cycle_is_killed(tmp_path: Path) -> None:
    """kill -9 of the process that owns the pool: its workers exit too, instead of waiting on
    their task queue forever with the dead process's stdout (and a database connection) open."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import os, time\n"
        "from tasks.workers import in_worker, worker_processes\n"
        "with worker_processes(2):\n"
        "    print(in_worker(os.getpid), flush=True)\n"
        "    time.sleep(120)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1]
    )
    assert owner.stdout is not None
    worker = int(owner.stdout.readline())
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait(timeout=10)

    def alive(pid: int) -> bool:  # an exited process not yet reaped by its new parent is gone
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and alive(worker):
        time.sleep(0.2)
    if alive(worker):
        os.kill(worker, signal.SIGKILL)
        raise AssertionError("a worker outlived the process that owned the pool")
    # nothing holds the dead process's stdout any more
    assert owner.stdout.read() == ""


def test_worker_processes_collect_garbage_rarely() -> None:
    """A shard or batch keeps thousands of objects alive: Python's collector, at its default
    threshold, would scan them every 700 allocations (a fifth of a shard's CPU). The workers
    collect rarely; the cycle's own process keeps Python's default."""
    import gc

    from arrears.processes import YOUNG_COLLECTION_EVERY
    from tasks.workers import in_worker, worker_processes

    here = gc.get_threshold()
    with worker_processes(2):
        there = in_worker(gc.get_threshold)
    assert there[0] == YOUNG_COLLECTION_EVERY != here[0]
    assert there[1:] == here[1:]
    assert gc.get_threshold() == here


def test_the_collector_is_paused_while_a_shard_advances(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shard keeps its rows and decisions alive until it writes them: collecting would only scan
    them. The collector is off while `advance_rows` runs and on again after it."""
    import gc
    from datetime import UTC, datetime

    from tasks import shards

    seen: list[bool] = []
    monkeypatch.setattr(shards, "_advance", lambda *args: seen.append(gc.isenabled()) or {})
    assert gc.isenabled()
    shards.advance_rows(
        shards.Shard.single("A-1"), datetime(2026, 12, 1, tzinfo=UTC), date(2026, 12, 1), None
    )
    assert seen == [False]
    assert gc.isenabled()


def test_the_collector_is_paused_while_a_dispatch_batch_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dispatch batch keeps its leased rows and their outcomes alive until it records them, as a
    shard does: the collector is off while `send_batch` runs and on again after it."""
    import gc
    from datetime import UTC, datetime

    from tasks import sending

    seen: list[bool] = []
    monkeypatch.setattr(sending, "_send_batch", lambda *args: seen.append(gc.isenabled()))
    assert gc.isenabled()
    sending.send_batch(
        sending.Batch(1, 0, None),
        datetime(2026, 12, 1, tzinfo=UTC),
        None,
        None,  # type: ignore[arg-type]
    )
    assert seen == [False]
    assert gc.isenabled()


def test_a_paused_collection_runs_again_after_the_last_block_of_any_thread() -> None:
    """Two threads' shards overlap: the collector stays off until the later of them ends, runs
    again after a block that raised, and stays off in a process that had turned it off."""
    import gc
    import threading

    from arrears.processes import collection_paused

    first_in, second_done = threading.Event(), threading.Event()

    def first() -> None:
        with collection_paused():
            first_in.set()
            second_done.wait(timeout=10)

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(timeout=10)
    with collection_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the first thread's block is still open
    second_done.set()
    thread.join(timeout=10)
    assert gc.isenabled()

    with pytest.raises(RuntimeError), collection_paused():
        raise RuntimeError("a shard failed")
    assert gc.isenabled()

    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_kept_worker_processes_serve_the_next_block_and_stop_with_the_keeping() -> None:
    """The cycle spawns its workers once: inside `keeping_workers`, the processes of the advance's
    block serve the dispatch's; those of a block that raised are not kept; all stop at the end."""
    import os

    from tasks.workers import in_worker, keeping_workers, worker_processes

    def pids() -> set[int]:
        with worker_processes(2):
            return {in_worker(os.getpid) for _ in range(20)}

    with keeping_workers():
        advance = pids()
        dispatch = pids()
        with pytest.raises(ZeroDivisionError), worker_processes(2):
            broken = {in_worker(os.getpid) for _ in range(20)}
            in_worker(divmod, 1, 0)
        after = pids()
    assert advance & dispatch and broken & dispatch
    assert not after & broken
    assert not (advance | dispatch | broken | after) & {int(p) for p in os.listdir("/proc") if p.isdigit()}
    assert pids().isdisjoint(after)  # outside the keeping, each block spawns its own


def test_started_workers_import_ahead_and_serve_the_next_block() -> None:
    """`start_workers` spawns the next block's processes at once, each importing the modules
    named as it starts (the cycle starts them before its refresh, which uses one core), and the
    next block of that size runs in those very processes. Outside `keeping_workers` it does nothing."""
    import os
    import time

    from tasks.workers import in_worker, keeping_workers, start_workers, worker_processes

    def alive() -> set[int]:
        return {int(p) for p in os.listdir("/proc") if p.isdigit()}

    def children() -> set[int]:  # the pool's processes (not multiprocessing's resource tracker)
        return {p for p in alive() if _parent(p) == os.getpid() and "spawn_main" in _command(p)}

    module = "arrears.metro2"  # imported by nothing a bare worker imports
    start_workers(2, (module,))
    assert not children()  # outside keeping_workers: no process
    with keeping_workers():
        start_workers(2, (module,))
        spawned = children()
        for _ in range(100):  # a process shows its command once its exec is done
            if len(spawned) == 2:
                break
            time.sleep(0.05)
            spawned = children()
        assert len(spawned) == 2  # before any block
        with worker_processes(2):
            used = {in_worker(os.getpid) for _ in range(20)}
            # eval of a builtin expression: a callable every spawned process can unpickle
            imported = in_worker(eval, f"__import__('sys').modules.get({module!r}) is not None")
            assert children() == spawned  # the block spawned none of its own
        assert used <= spawned
        assert imported
    assert not spawned & alive()


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as cmdline:
            return cmdline.read()
    except OSError:
        return ""


def test_several_shards_counts_the_accounts_in_play(engine: Any, tmp_path: Path) -> None:
    """The cycle starts its workers early only when the advance will have several shards: more
    accounts still in play than one shard holds (a closed account is not in play)."""
    from sqlalchemy import update

    from arrears.storage.cycle import several_shards
    from arrears.storage.tables import account
    from tests.later_stage_helpers import import_rows, us_account

    import_rows(engine, tmp_path, [us_account(f"A-S{n}") for n in range(3)])
    with engine.connect() as c:
        assert several_shards(c, size=2)
        assert not several_shards(c, size=3)
    with engine.begin() as c:
        c.execute(update(account).where(account.c.account_id == "A-S0").values(stage="paid_off"))
    with engine.connect() as c:
        assert not several_shards(c, size=2)
