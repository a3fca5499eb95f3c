"""CPU per account (advance) and per message (dispatch), in one process, compared with another checkout.

    python benchmarks/phases.py [--accounts 30000] [--trials 3] [--against DIR] [--workdir DIR]
                                [--old-messages K] [--profile DIR]

Issue 14's advance and dispatch targets are CPU-bound on two cores: they need less work per
account and per message, and `cycle.py`'s wall-clock phases move by 20% from one run to the next
on a shared machine (the Prefect server, the sandbox and two worker processes share the cores).
This measures the work itself: the CPU seconds this process spends advancing every shard and
dispatching every batch, one after the other, without Prefect (the task bodies are called as the
worker processes call them) and with the sandbox SMS server in a child process of its own. The
advance and the dispatch run with the garbage collection of a worker process
(`arrears.processes.collect_rarely`), where every shard of a cycle of several shards runs, and
every dispatch batch but the first.

A portfolio of `--accounts` (`--seed`, business date of `--as-of`) is generated and imported
once into a pristine SQLite database. Each trial copies it, refreshes, advances every shard
(`tasks.shards.advance_rows`) and dispatches every batch (`tasks.sending.send_batch`) in a child
process of its own. With `--against DIR` (another checkout of arrears, e.g. a `git worktree` of
the commit before), each trial runs this checkout and that one, alternating which goes first,
with that checkout's code on `PYTHONPATH`: the pairs see the same machine at the same minutes.
Both must decide the same: the counts of transitions, messages and sends are compared, and a
digest of every decision stored (`arrears.storage.snapshot`).

`--old-messages K` gives every account a history first, as years of daily cycles leave it: K
messages sent and delivered in past stage episodes (three reminders an episode, the last episode
over 40 days before the business date, outside every cap window), and the account's episode
counter past them. The first day's decisions do not count them, but the reads that find an
account's caps and outbox keys (`storage.history.contact_history`, `storage.decided.decided_keys`)
must not pay for them. Each checkout works on its own schema: the database is taken down to the
other checkout's migration head when it is behind this one's.

Prints one row per trial and, as the last line, a JSON object: per checkout the median over the
trials of `advance_cpu_us` (CPU microseconds an account), `dispatch_cpu_us` (a message sent),
their wall seconds, `advance_load_us` and `dispatch_load_us` (the CPU of those spent loading: a
shard's accounts with their facts, `load_shard`, an account; a batch's rows with their holds and
history, `load_batch`, a message), and what was decided (`accounts`, `transitions`, `messages`,
`sent`, `snapshot`).

`--profile DIR` runs one more trial of this checkout, after the timed ones, under cProfile:
`DIR/advance.prof` and `DIR/dispatch.prof`, each with its top functions by own and by cumulative
time as text. Methods a dataclass generates (`__init__`, `__eq__`, `__hash__`) are all compiled
from a string, so cProfile labels every one of them `<string>:2(__init__)` and pstats keeps one
entry per label: the others' time vanishes from the lists. Here each is relabelled with its class
(`<dataclass arrears.lifecycle.Facts>:2(__init__)`) before the trial, so building records shows.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import hashlib
import json
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cycle import DEFAULT_AS_OF, load_in_child  # this directory: on sys.path as the script's own

HERE = Path(__file__).resolve().parent


def _cpu() -> float:
    """CPU seconds of this process, every thread (the SMS client sends from threads of its own)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def trial(database: Path, as_of: datetime, profile: Path | None = None) -> dict[str, Any]:
    """Advance and dispatch the whole portfolio in `database`; runs in a child process with the
    checkout under test first on `sys.path`, and the environment `main` set. With `profile`, each
    phase runs under cProfile and its statistics are written there."""
    from arrears.settings import get_settings
    from tasks import cycle, dispatch

    try:
        from tasks.sending import send_batch
        from tasks.shards import advance_rows
    except ImportError:  # a checkout (--against) from before they left the Prefect tasks' modules
        from tasks.cycle import advance_rows  # type: ignore[attr-defined,no-redef]
        from tasks.dispatch import send_batch  # type: ignore[attr-defined,no-redef]
    from tasks.providers import sms_config, sms_session

    settings = get_settings()
    loading = _LoadTimer()

    day = as_of.date()
    # A cycle row, as the flow opens one: dispatch re-checks what it sent for the cycle's report.
    cycle_id = cycle.begin_cycle.fn(as_of, day).cycle_id
    cycle.refresh.fn(as_of, day, cycle_id)
    shards = cycle.plan_shards.fn(settings.shard_size)
    profiler = _Profiler(profile)
    started, wall = _cpu(), time.perf_counter()
    decided: dict[str, int] = {"accounts": 0, "transitions": 0, "messages": 0}
    # As a cycle's worker process advances its shards (`tasks.workers`): with Python's default
    # threshold the cyclic collector scanned the growing shard again and again, ~40 µs an account
    # the cycle does not spend (a third of what this printed).
    with _collecting_rarely(), profiler.phase("advance"):
        for shard in shards:
            counts = advance_rows(shard, as_of, day, cycle_id)
            for key in decided:
                decided[key] += counts.get(key, 0)
    advance_cpu, advance_wall = _cpu() - started, time.perf_counter() - wall
    with sms_session():
        config = sms_config()
        batches = dispatch.plan_dispatch.fn(as_of, settings.dispatch_batch)
        started, wall = _cpu(), time.perf_counter()
        sent = 0
        # Every batch but the first (500 rows) runs in a worker process too.
        with _collecting_rarely(), profiler.phase("dispatch"):
            for batch in batches:
                sent += send_batch(batch, as_of, cycle_id, config).counts.get("sent", 0)
        dispatch_cpu, dispatch_wall = _cpu() - started, time.perf_counter() - wall
    return {
        **decided,
        "sent": sent,
        "snapshot": _snapshot(),
        "advance_cpu_us": round(advance_cpu / max(decided["accounts"], 1) * 1e6, 1),
        "advance_wall_s": round(advance_wall, 2),
        "dispatch_cpu_us": round(dispatch_cpu / max(sent, 1) * 1e6, 1),
        "dispatch_wall_s": round(dispatch_wall, 2),
        "advance_load_us": round(loading.spent["load_shard"] / max(loading.items["load_shard"], 1) * 1e6, 1),
        "dispatch_load_us": round(loading.spent["load_batch"] / max(loading.items["load_batch"], 1) * 1e6, 1),
    }


class _LoadTimer:
    """CPU spent in the advance's and the dispatch's loads, and the accounts and messages loaded:
    `storage.cycle.load_shard` and `storage.outbox.load_batch` are wrapped where the tasks look
    them up (as module attributes)."""

    def __init__(self) -> None:
        from arrears.storage import cycle, outbox

        self.spent = {"load_shard": 0.0, "load_batch": 0.0}
        self.items = {"load_shard": 0, "load_batch": 0}
        for module, name in ((cycle, "load_shard"), (outbox, "load_batch")):
            setattr(module, name, self._timed(name, getattr(module, name)))

    def _timed(self, name: str, load: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = _cpu()
            rows = load(*args, **kwargs)
            self.spent[name] += _cpu() - started
            self.items[name] += len(rows)
            return rows

        return timed


def _collecting_rarely() -> AbstractContextManager[None]:
    """The garbage collection of a worker process (`arrears.processes`); nothing else for a
    checkout from before it collected rarely."""
    try:
        from arrears.processes import collecting_rarely
    except ImportError:
        return nullcontext()
    return collecting_rarely()


def _snapshot() -> str | None:
    """A digest of every decision the trial stored (`arrears.storage.snapshot`: each account's
    stage, each outbox row's status, template and body, each audit event's detail): the same
    counts of transitions and messages can hide different ones. None for a checkout without it."""
    try:
        from arrears.storage.snapshot import SNAPSHOT_TABLES, decision_rows
        from tasks.database import engine
    except ImportError:
        return None
    digest = hashlib.sha256()
    with engine().connect() as connection:
        for table in SNAPSHOT_TABLES:
            for row in decision_rows(connection, table):
                digest.update(repr(row).encode())
    return digest.hexdigest()[:16]


class _Profiler:
    """cProfile around each phase of a trial, when asked for a directory to write to."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            _label_generated_methods()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self.directory is None:
            yield
            return
        profile = cProfile.Profile()
        profile.enable()
        try:
            yield
        finally:
            profile.disable()
            profile.dump_stats(self.directory / f"{name}.prof")
            for order in ("tottime", "cumulative"):
                with open(self.directory / f"{name}.{order}.txt", "w") as out:
                    pstats.Stats(profile, stream=out).sort_stats(order).print_stats(60)


def _label_generated_methods() -> None:
    """Give each method a dataclass generated a label of its own (see the module docstring)."""
    for module in list(sys.modules.values()):
        if module is None or not module.__name__.startswith(("arrears", "tasks", "integrations", "flows")):
            continue
        for cls in list(vars(module).values()):
            if not (
                isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__
            ):
                continue
            for method in list(vars(cls).values()):
                code = getattr(method, "__code__", None)
                if code is not None and code.co_filename == "<string>":
                    method.__code__ = code.replace(
                        co_filename=f"<dataclass {cls.__module__}.{cls.__qualname__}>"
                    )


def age(pristine: Path, old_messages: int, as_of: str) -> None:
    """Give every account `old_messages` delivered reminders of past episodes, three an episode,
    the newest episode's sent from 40 days before the business date back (outside every cap
    window), and set its episode counter to the last of them, as a cured account's would be."""
    from sqlalchemy import func, insert, select, update

    from arrears.clock import parse_instant
    from arrears.storage.engine import get_engine
    from arrears.storage.tables import account, contact, message

    day = parse_instant(as_of)
    episodes = -(-old_messages // 3)
    engine = get_engine(f"sqlite:///{pristine}")
    with engine.begin() as connection:
        numbers = dict(
            connection.execute(
                select(contact.c.borrower_id, func.min(contact.c.address)).group_by(contact.c.borrower_id)
            ).all()
        )
        owners = connection.execute(select(account.c.account_id, account.c.borrower_id)).all()
        rows = []
        for account_id, borrower_id in owners:
            for n in range(old_messages):
                episode, reminder = 1 + n // 3, (1, 5, 10)[n % 3]
                sent = day - timedelta(days=40 + 30 * (episodes - episode) + 10 - reminder, hours=1)
                rows.append(
                    {
                        "idempotency_key": f"{account_id}:reminder:{episode}:day-{reminder}",
                        "account_id": account_id,
                        "channel": "sms",
                        "address": numbers.get(borrower_id, "+10000000000"),
                        "template": "reminder",
                        "params": {},
                        "body": f"Reminder {reminder} of episode {episode}",
                        "stage": "reminder",
                        "episode": episode,
                        "not_before": sent,
                        "status": "delivered",
                        "provider": "sandbox",
                        "provider_id": f"old-{account_id}-{n}",
                        "attempts": 1,
                        "created_at": sent,
                        "sent_at": sent,
                    }
                )
            if len(rows) >= 50_000:
                connection.execute(insert(message), rows)
                rows = []
        if rows:
            connection.execute(insert(message), rows)
        connection.execute(update(account).values(episode=episodes))
    engine.dispose()


def schema_of(checkout: Path, pristine: Path, workdir: Path) -> Path:
    """The pristine database at `checkout`'s own migration head: a copy taken down to it with this
    checkout's migrations when that checkout is behind, so each runs on the indexes it ships."""
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from arrears.storage.engine import get_engine

    head = ScriptDirectory(str(checkout / "arrears/storage/migrations")).get_current_head()
    config = Config()
    config.set_main_option("script_location", str(HERE.parent / "arrears/storage/migrations"))
    if head == ScriptDirectory.from_config(config).get_current_head():
        return pristine
    copy = workdir / f"pristine-{head}.db"
    shutil.copy(pristine, copy)
    engine = get_engine(f"sqlite:///{copy}")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, str(head))
    engine.dispose()
    return copy


def run_trial(
    checkout: Path, pristine: Path, workdir: Path, as_of: str, profile: Path | None = None
) -> dict[str, Any]:
    """One trial of `checkout` on a copy of the pristine database, in a child process (profiled
    into `profile`, if given)."""
    home = workdir / "trial"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    database = home / "arrears.db"
    shutil.copy(pristine, database)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(checkout), str(HERE)]),
        "ARREARS_HOME": str(home),
        "ARREARS_DATABASE_URL": f"sqlite:///{database}",
        "ARREARS_SMS_PROVIDER": "sandbox",
        "ARREARS_SHARD_WORKERS": "1",
    }
    env.pop("ARREARS_SMS_BASE_URL", None)
    done = subprocess.run(
        [sys.executable, __file__, "--trial", str(database), "--as-of", as_of]
        + (["--profile", str(profile.resolve())] if profile is not None else []),
        env=env,
        cwd=checkout,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"trial of {checkout} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def prepare(accounts: int, seed: int, as_of: str, pristine: Path) -> float:
    """Generate and import the portfolio once, with this checkout's importer (cycle.py's loader)."""
    from arrears.clock import parse_instant

    instant = parse_instant(as_of)
    started = time.perf_counter()
    url, file = f"sqlite:///{pristine}", pristine.with_suffix(".csv")
    load_in_child(accounts, seed, instant.date(), url, file, instant)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=30_000, help="portfolio size (default 30,000)")
    parser.add_argument("--trials", type=int, default=3, help="trials of each checkout (default 3)")
    parser.add_argument("--against", type=Path, help="another checkout to alternate with")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--as-of", default=DEFAULT_AS_OF)
    parser.add_argument("--workdir", type=Path, help="where the databases go (default: a temp dir)")
    parser.add_argument("--profile", type=Path, help="also one profiled trial of this checkout, into DIR")
    parser.add_argument(
        "--old-messages",
        type=int,
        default=0,
        help="delivered messages of past episodes an account (default 0)",
    )
    parser.add_argument("--trial", type=Path, help=argparse.SUPPRESS)  # the child's side
    args = parser.parse_args()
    if args.trial is not None:
        from arrears.clock import parse_instant

        instant = parse_instant(args.as_of)
        print(json.dumps(trial(args.trial, instant, args.profile)))
        return

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="arrears-phases-"))
    workdir.mkdir(parents=True, exist_ok=True)
    pristine = workdir / "pristine.db"
    print(f"generating and importing {args.accounts:,} accounts into {pristine} …", flush=True)
    prepare(args.accounts, args.seed, args.as_of, pristine)
    if args.old_messages:
        print(f"giving each account {args.old_messages} old messages …", flush=True)
        age(pristine, args.old_messages, args.as_of)
    checkouts = {"this": HERE.parent}
    if args.against is not None:
        checkouts["against"] = args.against.resolve()
    databases = {name: schema_of(checkout, pristine, workdir) for name, checkout in checkouts.items()}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in checkouts}
    for n in range(args.trials):
        order = list(checkouts) if n % 2 == 0 else list(reversed(checkouts))
        for name in order:
            found = run_trial(checkouts[name], databases[name], workdir, args.as_of)
            results[name].append(found)
            print(f"trial {n + 1} {name:8s} {json.dumps(found)}", flush=True)
    if args.profile is not None:
        profiled = run_trial(checkouts["this"], pristine, workdir, args.as_of, args.profile)
        print(
            f"profiled trial (times inflated) {json.dumps(profiled)}; profiles in {args.profile}", flush=True
        )
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)

    decided = ("accounts", "transitions", "messages", "sent", "snapshot")
    summary: dict[str, Any] = {}
    for name, runs in results.items():
        summary[name] = {
            key: round(statistics.median(r[key] for r in runs), 2)
            for key in (
                "advance_cpu_us",
                "dispatch_cpu_us",
                "advance_wall_s",
                "dispatch_wall_s",
                "advance_load_us",
                "dispatch_load_us",
            )
        } | {key: runs[0][key] for key in decided}
    if "against" in summary:
        summary["same_decisions"] = all(
            r[key] == results["this"][0][key] for runs in results.values() for r in runs for key in decided
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
