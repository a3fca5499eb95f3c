"""Throughput of one daily cycle (DESIGN §4) on the embedded default, against the sandbox SMS server.

    python benchmarks/cycle.py [--accounts 100000] [--naive 300] [--as-of 2026-12-01T01:00:00Z]
                               [--seed 1] [--addresses] [--workdir DIR] [--keep] [--cold-prefect]
                               [--profile DIR]

Generates a portfolio (`arrears.simulate`; without mailing addresses unless `--addresses`, as
when issue 14's figures were first measured), loads it through the real importer in a child process
(timed apart: the import is not part of the cycle), then calls `flows.daily_cycle.daily_cycle`
once, in this process, with a fresh ARREARS_HOME, SQLite database and PREFECT_HOME and no
PREFECT_API_URL: Prefect's ephemeral server and the sandbox SMS server are started by the cycle
itself, as on a laptop. Prefect's own database is migrated beforehand, as it is after a first
use (`--cold-prefect` leaves that to the cycle). Phase times are read back from the Prefect task
runs of that flow run.

`--naive M` loads the first M accounts of the same portfolio into a database of their own and
advances them with one Prefect task run per account (each the body of `advance-shard` for a
shard of one account), in one flow with the same task runner as the cycle; the ratio compares
the advance phase of both designs (accounts/s), dispatch left out of both.

The last line printed on stdout is one JSON object (see benchmarks/README.md). `targets_met`
holds issue 14's targets for 1,000,000 accounts on a 2-core machine: at most 180 s wall, 1 GiB
peak RSS in the cycle process, advance at 30,000 accounts/s or more, dispatch at 20,000 messages/s
through a batch API (the sandbox is Aliyun-shaped: SendBatchSms), bureau pulls never the longest
phase, reviews + referrals within 10 s, report + close within 5 s, the import within 60 s, and at
least 100 times the naive design's accounts/s.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

DEFAULT_AS_OF = "2026-12-01T01:00:00Z"  # 09:00 in Shanghai, evening of Nov 30 in the US zones
# Issue 14's targets for 1,000,000 accounts on 2 cores (rates hold at any size; times are for 1M).
TARGET_WALL_S = 180.0
TARGET_RSS_MIB = 1024.0
TARGET_ADVANCE_PER_S = 30_000.0
TARGET_DISPATCH_PER_S = {"batch": 20_000.0, "single": 5_000.0}  # by the provider's send API
TARGET_REVIEWS_S = 10.0
TARGET_REPORT_S = 5.0
TARGET_IMPORT_S = 60.0
TARGET_NAIVE_RATIO = 100.0
MIB = 1024 * 1024

# Task-run names of the daily cycle (flows/daily_cycle.py), by phase.
PHASE_TASKS = {
    "open": ("open-cycle",),
    "refresh": ("refresh",),
    "advance": ("plan-shards", "advance-shard"),
    "later": ("prepare-reviews", "set-review-runs", "referral-work", "referral-accounts"),
    "bureau": ("pull-bureau-profiles",),
    "letters": ("mail-letters",),
    "dispatch": ("plan-dispatch", "dispatch-sms"),
    "report": ("report", "close-cycle"),
}
# open-cycle, refresh, plan-shards, prepare-reviews, referral-work, referral-accounts,
# mail-letters, plan-dispatch, report, close-cycle
FIXED_TASKS = 10


# --------------------------------------------------------------------------------------------
# Environment: set before anything reads arrears or Prefect settings (both are cached).
# --------------------------------------------------------------------------------------------


def prepare_environment(workdir: Path) -> dict[str, str]:
    """A fresh ARREARS_HOME, SQLite database and PREFECT_HOME under `workdir`; ephemeral Prefect."""
    home, prefect_home = workdir / "home", workdir / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    prefect_home.mkdir(parents=True, exist_ok=True)
    values = {
        "ARREARS_HOME": str(home),
        "ARREARS_DATABASE_URL": f"sqlite:///{home / 'arrears.db'}",
        "ARREARS_SMS_PROVIDER": "sandbox",
        "PREFECT_HOME": str(prefect_home),  # also hides the user's profiles.toml
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # as the CLI; offline, its failure logs an ERROR
    }
    os.environ.update(values)
    # As the CLI does: a loaded machine can take longer than Prefect's 20 s to start its server.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    for name in ("PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH", "ARREARS_SMS_BASE_URL"):
        os.environ.pop(name, None)
    return values


def migrate_prefect() -> float:
    """Create the ephemeral server's database ahead of time, as it is after its first use."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------------
# Portfolio: generated and imported in a child process, so the cycle process's peak RSS is its own.
# --------------------------------------------------------------------------------------------


def load_portfolio(
    n: int,
    seed: int,
    business_day: date,
    url: str,
    file: Path,
    imported_at: datetime,
    addresses: bool = False,
) -> dict[str, Any]:
    """Generate `n` accounts to `file` and import them into `url` (runs in a spawned child). Without
    `addresses`, the portfolio issue 14 was measured on: no mailing addresses, so every
    right-to-cure letter is written blocked instead of pending, to be rendered and mailed."""
    from arrears.importing import Kind, open_source
    from arrears.simulate import generate_portfolio, write_accounts_file
    from arrears.storage import get_engine, migrate
    from arrears.storage.importer import run_import

    started = time.perf_counter()
    write_accounts_file(
        generate_portfolio(n, seed=seed, business_date=business_day, addresses=addresses), file
    )
    generated = time.perf_counter()
    engine = get_engine(url)
    migrate(engine)
    migrated = time.perf_counter()
    with open_source(file, Kind.ACCOUNTS) as source:
        summary = run_import(engine, source, now=imported_at)
    done = time.perf_counter()
    engine.dispose()
    return {
        "generate_s": generated - started,
        "migrate_s": migrated - generated,
        "import_s": done - migrated,
        "read": summary.read,
        "accepted": summary.accepted,
        "rejected": summary.rejected,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def load_in_child(*args: Any) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(load_portfolio, *args).result()


# --------------------------------------------------------------------------------------------
# Memory: this process from getrusage; child processes (sandbox, Prefect server) sampled.
# --------------------------------------------------------------------------------------------


def self_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _high_water_mark(pid: int) -> int | None:
    """Peak RSS of a live process in bytes (VmHWM), None where /proc is not available."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


class ChildMemory(threading.Thread):
    """Samples the peak RSS of every child process while the cycle runs, labelled by role.

    A process's high-water mark is kept by the kernel, so a sample shortly before it exits is
    its true peak (where /proc is missing, the RSS at each sample is used instead).
    """

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(name="child-memory", daemon=True)
        self.interval = interval
        self.peaks: dict[int, tuple[str, int]] = {}
        self.cpu: dict[int, float] = {}  # CPU seconds of each child, at its last sample
        self.own: list[tuple[datetime, int]] = []  # this process's RSS over time, to place its peak
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while True:
            self.own.append((datetime.now(UTC), me.memory_info().rss))
            for child in me.children(recursive=True):
                try:
                    if child.pid not in self.peaks:
                        self.peaks[child.pid] = (_role(child.cmdline()), 0)
                    peak = _high_water_mark(child.pid) or child.memory_info().rss
                    times = child.cpu_times()
                    self.cpu[child.pid] = times.user + times.system  # since it started, in the cycle
                except (psutil.Error, OSError):
                    continue
                role, before = self.peaks[child.pid]
                self.peaks[child.pid] = (role, max(before, peak))
            if self._halt.wait(self.interval):
                return

    def stop(self) -> tuple[dict[str, float], dict[str, float]]:
        """Peak RSS (MiB) and CPU seconds by role."""
        self._halt.set()
        self.join()
        peaks: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for pid, (role, peak) in self.peaks.items():
            peaks[role] = max(peaks.get(role, 0.0), peak / MIB)
            cpu[role] = cpu.get(role, 0.0) + self.cpu.get(pid, 0.0)
        return peaks, cpu

    def own_peak_by_phase(self, phases: dict[str, Span]) -> dict[str, float]:
        """This process's highest sampled RSS (MiB) while each phase ran: where the memory goes."""
        return {
            name: round(
                max((rss for at, rss in self.own if span.start <= at <= span.end), default=0) / MIB, 1
            )
            for name, span in phases.items()
        }


def _sandboxes(by_role: dict[str, float], digits: int) -> dict[str, float]:
    """The sandbox servers' figures by kind: `{"sms": …, "bureau": …}`."""
    return {
        role.removesuffix("_sandbox"): round(value, digits)
        for role, value in sorted(by_role.items())
        if role.endswith("_sandbox")
    }


def _role(cmdline: list[str]) -> str:
    text = " ".join(cmdline)
    if "multiprocessing" in text:
        return "shard_workers"
    if sandbox := re.search(r"integrations\.(\w+)\.sandbox_server", text):
        return f"{sandbox.group(1)}_sandbox"  # sms_sandbox, bureau_sandbox: each its own figure
    if "uvicorn" in text or "prefect" in text:
        return "prefect_server"
    return "other"


# --------------------------------------------------------------------------------------------
# Phases from the Prefect task runs of a flow run.
# --------------------------------------------------------------------------------------------


@dataclass
class Span:
    start: datetime
    end: datetime
    runs: int = 1
    busy_s: float = 0.0  # sum of the task runs' own durations

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def read_task_runs(flow_run_id: Any, expected: int, timeout: float = 60.0) -> list[Any]:
    """Every task run of the flow run, waiting until `expected` of them have finished.

    Prefect 3 records task runs from client-side events, a moment after they happen.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs: list[Any] = []
            while True:
                page = client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                    limit=200,
                    offset=len(runs),
                )
                runs += page
                if len(page) < 200:
                    break
            finished = [r for r in runs if r.start_time is not None and r.end_time is not None]
            if len(finished) >= expected or time.monotonic() > deadline:
                return finished
            time.sleep(0.5)


def read_flow_run(flow_run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def _task_name(run_name: str) -> str:
    """`advance-shard-12` -> advance-shard, `refresh-2a7` -> refresh, `naive-A-000001` -> naive."""
    if run_name.startswith("naive-"):
        return "naive"
    for names in PHASE_TASKS.values():
        for name in names:
            if run_name.startswith(name + "-"):
                return name
    return re.sub(r"-[^-]*$", "", run_name)


def spans(runs: list[Any], groups: dict[str, tuple[str, ...]]) -> dict[str, Span]:
    found: dict[str, Span] = {}
    for run in runs:
        name = _task_name(run.name)
        for phase, names in groups.items():
            if name in names:
                busy = (run.end_time - run.start_time).total_seconds()
                span = found.get(phase)
                if span is None:
                    found[phase] = Span(run.start_time, run.end_time, 1, busy)
                else:
                    span.start, span.end = min(span.start, run.start_time), max(span.end, run.end_time)
                    span.runs += 1
                    span.busy_s += busy
    return found


# --------------------------------------------------------------------------------------------
# Profiling: the bodies of advance-shard and dispatch-batch, in the threads they run in.
# --------------------------------------------------------------------------------------------


class TaskProfiler:
    """Wraps a Prefect task's function with cProfile per call (one profile per worker thread call)."""

    def __init__(self) -> None:
        self.profiles: dict[str, list[Any]] = {}
        self._lock = threading.Lock()

    def wrap(self, task: Any, label: str) -> None:
        import cProfile
        import functools

        inner: Callable[..., Any] = task.fn

        @functools.wraps(inner)
        def profiled(*args: Any, **kwargs: Any) -> Any:
            profile = cProfile.Profile()
            try:
                return profile.runcall(inner, *args, **kwargs)
            finally:
                with self._lock:
                    self.profiles.setdefault(label, []).append(profile)

        task.fn = profiled  # with_options() copies fn, so shards made later get the wrapper too

    def report(self, directory: Path, top: int = 25) -> None:
        import io
        import pstats

        directory.mkdir(parents=True, exist_ok=True)
        for label, profiles in self.profiles.items():
            stats = pstats.Stats(profiles[0])
            for profile in profiles[1:]:
                stats.add(profile)
            stats.dump_stats(directory / f"{label}.prof")
            for order in ("tottime", "cumulative"):
                out = io.StringIO()
                pstats.Stats(str(directory / f"{label}.prof"), stream=out).sort_stats(order).print_stats(top)
                (directory / f"{label}.{order}.txt").write_text(out.getvalue())
            print(
                f"profile of {label} ({len(profiles)} task runs): {directory / (label + '.prof')} "
                f"(+ .tottime.txt, .cumulative.txt)",
                file=sys.stderr,
            )


# --------------------------------------------------------------------------------------------
# The naive design: one task run per account.
# --------------------------------------------------------------------------------------------


def naive_flow() -> Any:
    """A flow that advances each account in a task run of its own (what DESIGN §4 rules out).

    Each task run is the body of `advance-shard` for the shard of one account (`Shard.single`,
    as the single-account path uses it): load that account's facts, `advance`, write. The flow
    uses the database of the current settings.
    """
    from prefect import flow, task, unmapped
    from prefect.cache_policies import NO_CACHE
    from prefect.task_runners import ThreadPoolTaskRunner

    from tasks.cycle import Shard, advance_shard, begin_cycle, plan_shards, refresh

    body = getattr(advance_shard.fn, "__wrapped__", advance_shard.fn)  # never the --profile wrapper

    @task(name="naive-account", task_run_name="naive-{account_id}", cache_policy=NO_CACHE)
    def advance_account(
        account_id: str, as_of: datetime, business_day: date, cycle_id: int
    ) -> dict[str, int]:
        return body(Shard.single(account_id), as_of, business_day, cycle_id)

    @flow(name="naive-cycle", task_runner=ThreadPoolTaskRunner(max_workers=2))  # type: ignore[arg-type]
    def naive_cycle(as_of: datetime, business_day: date) -> dict[str, Any]:
        cycle_id = begin_cycle.fn(as_of, business_day).cycle_id
        assert cycle_id is not None, "a fresh database has no finished cycle"
        refresh.fn(as_of, business_day, cycle_id)
        ids = [shard.lo for shard in plan_shards.fn(1)]  # shards of one account: their first ids
        started = time.perf_counter()
        futures = advance_account.map(ids, unmapped(as_of), unmapped(business_day), unmapped(cycle_id))
        totals: dict[str, Any] = {}
        for result in futures.result():
            for key, value in result.items():
                totals[key] = totals.get(key, 0) + value
        totals["body_s"] = time.perf_counter() - started
        totals["task_runs"] = len(ids)
        return totals

    return naive_cycle


def same_outcome(url_a: str, url_b: str, account_ids: list[str]) -> bool:
    """Whether both databases hold the same stage, episode, segment and messages for these accounts."""
    from sqlalchemy import func, select

    from arrears.storage import cycle as store
    from arrears.storage import get_engine

    def snapshot(url: str) -> tuple[list[Any], list[Any]]:
        with get_engine(url).connect() as connection:
            accounts = connection.execute(
                select(
                    store.account.c.account_id,
                    store.account.c.stage,
                    store.account.c.episode,
                    store.account.c.segment,
                )
                .where(store.account.c.account_id.in_(account_ids))
                .order_by(store.account.c.account_id)
            ).all()
            messages = connection.execute(
                select(store.message.c.account_id, func.count())
                .where(store.message.c.account_id.in_(account_ids))
                .group_by(store.message.c.account_id)
                .order_by(store.message.c.account_id)
            ).all()
        return [tuple(r) for r in accounts], [tuple(r) for r in messages]

    return snapshot(url_a) == snapshot(url_b)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _rate(count: float, seconds: float | None) -> float | None:
    return round(count / seconds, 1) if seconds else None


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


@dataclass
class Row:
    phase: str
    seconds: float | None
    count: int | None = None
    unit: str = ""
    note: str = ""
    rate: float | None = field(init=False)

    def __post_init__(self) -> None:
        self.rate = _rate(self.count, self.seconds) if self.count is not None else None


def print_table(title: str, rows: list[Row]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("phase")
    table.add_column("seconds", justify="right")
    table.add_column("count", justify="right")
    table.add_column("per second", justify="right")
    table.add_column("note", overflow="fold")
    for row in rows:
        table.add_row(
            row.phase, _fmt(row.seconds, 2), _fmt(row.count), f"{_fmt(row.rate)} {row.unit}".strip(), row.note
        )
    Console(width=None if sys.stdout.isatty() else 140).print(table)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def slow_letters_sandbox(latency_ms: int) -> dict[str, str]:
    """Start a sandbox Lob in its own process that answers every request `latency_ms` late, and
    point the cycle at it: the settings it needs, set in this process's environment too."""
    from integrations.letters.sandbox import start_letters_sandbox

    sandbox = start_letters_sandbox(in_process=False)
    atexit.register(sandbox.stop)
    sandbox.set_faults(latency_ms=latency_ms)
    settings = {
        "ARREARS_LETTERS_PROVIDER": "sandbox",
        "ARREARS_LETTERS_BASE_URL": sandbox.base_url,
        "ARREARS_LETTERS_CREDENTIALS": json.dumps(dict(sandbox.credentials)),
    }
    os.environ.update(settings)
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000, help="portfolio size (default 100,000)")
    parser.add_argument(
        "--naive",
        type=int,
        default=None,
        metavar="M",
        help="also advance M accounts with one task run per account (e.g. 300; slow)",
    )
    parser.add_argument(
        "--as-of", default=DEFAULT_AS_OF, help=f"the cycle's instant (default {DEFAULT_AS_OF})"
    )
    parser.add_argument("--seed", type=int, default=1, help="portfolio seed (default 1)")
    parser.add_argument(
        "--addresses",
        action="store_true",
        help="give borrowers mailing addresses, so that right-to-cure letters are written to be mailed",
    )
    parser.add_argument(
        "--letters-latency-ms",
        type=int,
        default=None,
        metavar="MS",
        help="mail through a sandbox Lob that answers each request MS ms late, as Lob over the network",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where to put the databases (default: a temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument(
        "--cold-prefect",
        action="store_true",
        help="do not migrate Prefect's database ahead: the cycle's wall time then includes it",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="cProfile the advance-shard and dispatch-batch bodies into DIR (times are inflated)",
    )
    args = parser.parse_args()
    if args.accounts < 1 or (args.naive is not None and args.naive < 1):
        parser.error("--accounts and --naive must be positive")

    if args.workdir is not None and args.workdir.exists() and any(args.workdir.iterdir()):
        parser.error(f"--workdir {args.workdir} is not empty: the benchmark needs fresh databases")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="arrears-bench-"))
    if not args.keep and args.workdir is None:
        # Registered before Prefect's own exit handler, so it runs after the server has stopped.
        atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    env = prepare_environment(workdir)
    if args.letters_latency_ms is not None:
        env.update(slow_letters_sandbox(args.letters_latency_ms))

    from arrears.clock import business_date, parse_instant
    from arrears.settings import get_settings

    settings = get_settings()
    instant = parse_instant(args.as_of)
    day = business_date(instant, settings.lender_timezone)
    imported_at = instant - timedelta(days=1)  # the file arrived the day before: deterministic stage_since
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    say(
        f"workdir {workdir}; as of {instant.isoformat()} (business date {day}); shard_size "
        f"{settings.shard_size}, "
        f"dispatch_batch {settings.dispatch_batch}"
    )

    load_before = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews every figure
    prefect_migrate_s = None if args.cold_prefect else migrate_prefect()

    say(f"generating and importing {args.accounts:,} accounts …")
    loaded = load_in_child(
        args.accounts,
        args.seed,
        day,
        env["ARREARS_DATABASE_URL"],
        workdir / "accounts.csv",
        imported_at,
        args.addresses,
    )
    say(
        f"  generated in {loaded['generate_s']:.1f} s, imported {loaded['accepted']:,} "
        f"({loaded['rejected']:,} rejected) in {loaded['import_s']:.1f} s"
    )

    started = time.perf_counter()
    from flows.daily_cycle import daily_cycle

    prefect_import_s = time.perf_counter() - started

    profiler: TaskProfiler | None = None
    if args.profile is not None:
        from tasks.bureau_pull import pull_bureau_profiles
        from tasks.cycle import advance_shard
        from tasks.dispatch import dispatch_batch
        from tasks.mailing import mail_letters
        from tasks.report import report_cycle
        from tasks.review import prepare_reviews

        profiler = TaskProfiler()
        profiler.wrap(advance_shard, "advance")  # the calling side: the body runs in a worker process
        profiler.wrap(dispatch_batch, "dispatch")
        profiler.wrap(prepare_reviews, "reviews")
        profiler.wrap(pull_bureau_profiles, "bureau")
        profiler.wrap(mail_letters, "letters")
        profiler.wrap(report_cycle, "report")

    # ---- the cycle -------------------------------------------------------------------------
    children = ChildMemory()
    children.start()
    cpu_before = os.times()
    called_at = datetime.now(UTC)
    started = time.perf_counter()
    state = daily_cycle(as_of=args.as_of, return_state=True)
    wall_s = time.perf_counter() - started
    returned_at = datetime.now(UTC)
    cpu_after = os.times()
    peak_rss_mib = self_peak_mib()
    child_peaks, child_cpu = children.stop()
    load_after = [round(x, 2) for x in os.getloadavg()]
    if not state.is_completed():
        raise SystemExit(f"the cycle ended in state {state.type.value}: {state.message}")
    stats: dict[str, Any] = state.result()
    cpu_s = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)

    advanced, dispatched = stats["advance"], stats["dispatch"]
    accounts = int(advanced.get("accounts", 0))
    sent = int(dispatched.get("sent", 0)) + int(dispatched.get("delivered", 0))
    outcomes = sum(v for k, v in dispatched.items() if k != "batches")
    expected = (
        FIXED_TASKS
        + int(advanced["shards"])
        + int(dispatched.get("batches", 0))
        + ("bureau" in stats)
        # send-letters, when letters waited to go: it counts waiting ones (`letters_sent` is always
        # there, counted over the cycle's runs by `tasks.mailing.cycle_letters`)
        + ("letters_waiting" in stats["letters"])
        + ("letters_looked_up" in stats["reviews"])  # track-letters, when letters were in the post
        + bool(stats["reviews"]["review_runs_started"])
    )
    runs = read_task_runs(state.state_details.flow_run_id, expected)
    phases = spans(runs, {k: v for k, v in PHASE_TASKS.items()})
    shard_runs = spans(runs, {"shards": ("advance-shard",), "batches": ("dispatch-sms",)})

    def seconds(phase: str) -> float | None:
        return round(phases[phase].seconds, 3) if phase in phases else None

    first_task = min((r.start_time for r in runs), default=None)
    last_task = max((r.end_time for r in runs), default=None)
    startup_s = (first_task - called_at).total_seconds() if first_task else None
    flow_run = read_flow_run(state.state_details.flow_run_id)
    server_s = (flow_run.created - called_at).total_seconds() if flow_run.created else None
    exit_s = (returned_at - last_task).total_seconds() if last_task else None
    advance_s, dispatch_s = seconds("advance"), seconds("dispatch")

    def gap(planner: str, work: str) -> float | None:
        """From the end of a planning task run to the start of the first task run it planned."""
        plan = next((r for r in runs if _task_name(r.name) == planner), None)
        if plan is None or work not in shard_runs:
            return None
        return (shard_runs[work].start - plan.end_time).total_seconds()

    shards_start_s = gap("plan-shards", "shards")  # the flow submits the shards (and an artifact)
    sandbox_start_s = gap("plan-dispatch", "batches")  # the flow starts the sandbox and the client

    missing = expected - len(runs)
    rows = [
        Row(
            "prefect start-up",
            startup_s,
            note=f"call → first task run; of which {_fmt(server_s, 2)} s until the flow run was created "
            "(ephemeral server start)",
        ),
        Row("open cycle", seconds("open"), note="schema check, cycle row"),
        Row(
            "refresh",
            seconds("refresh"),
            int(stats["refresh"]["accounts_refreshed"]),
            "accounts/s",
            f"{stats['refresh']['payments_applied']:,} payments applied",
        ),
        Row(
            "advance",
            advance_s,
            accounts,
            "accounts/s",
            f"{advanced['shards']} shards (busy {shard_runs['shards'].busy_s:.1f} s; first starts "
            f"{_fmt(shards_start_s, 2)} s after plan-shards), "
            f"{advanced.get('transitions', 0):,} transitions, {advanced.get('messages', 0):,} messages"
            if "shards" in shard_runs
            else "",
        ),
        Row(
            "reviews + referrals",
            seconds("later"),
            int(stats["reviews"]["reviews_opened"]),
            "reviews/s",
            ", ".join(
                f"{k.replace('_', ' ')} {v:,}"
                for k, v in {**stats["reviews"], **stats["referrals"]}.items()
                if v
            ),
        ),
        Row(
            "bureau pulls",
            seconds("bureau"),
            sum(int(stats.get("bureau", {}).get(k, 0)) for k in ("bureau_pulls", "skip_traces")),
            "pulls/s",
            "beside dispatch; "
            + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in stats.get("bureau", {}).items()),
        ),
        Row(
            "letters",
            seconds("letters"),
            int(stats["letters"].get("letters_sent", 0)),
            "letters/s",
            "beside dispatch; "
            + (
                ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in stats["letters"].items() if v)
                or "none waiting"
            ),
        ),
        Row(
            "dispatch",
            dispatch_s,
            sent,
            "messages/s",
            f"{dispatched.get('batches', 0)} batches; "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(dispatched.items()) if k != "batches")
            + f"; sandbox start {_fmt(sandbox_start_s, 2)} s",
        ),
        Row("report + close", seconds("report")),
        Row("flow exit", exit_s, note="last task run → call returns"),
        Row(
            "wall (daily_cycle call)",
            wall_s,
            accounts,
            "accounts/s",
            f"CPU {cpu_s:.1f} s here ({cpu_s / wall_s:.2f} cores), "
            + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(child_cpu.items()))
            + f"; load average {load_before[0]} before, {load_after[0]} after",
        ),
    ]
    print_table(
        f"daily cycle, {accounts:,} accounts as of {args.as_of}"
        + (f" ({missing} task runs not recorded)" if missing else ""),
        rows,
    )

    # ---- the naive design --------------------------------------------------------------------
    naive: dict[str, Any] | None = None
    if args.naive:
        naive_url = f"sqlite:///{workdir / 'home' / 'naive.db'}"
        say(f"importing {args.naive:,} accounts for the naive run …")
        load_in_child(args.naive, args.seed, day, naive_url, workdir / "naive.csv", imported_at)
        os.environ["ARREARS_DATABASE_URL"] = naive_url  # the tasks' engine follows the settings
        get_settings.cache_clear()
        naive_state = naive_flow()(as_of=instant, business_day=day, return_state=True)
        os.environ["ARREARS_DATABASE_URL"] = env["ARREARS_DATABASE_URL"]
        get_settings.cache_clear()
        if not naive_state.is_completed():
            raise SystemExit(f"the naive run ended in state {naive_state.type.value}: {naive_state.message}")
        result = naive_state.result()
        naive_runs = read_task_runs(naive_state.state_details.flow_run_id, result["task_runs"])
        naive_span = spans(naive_runs, {"advance": ("naive",)}).get("advance")
        complete = naive_span is not None and naive_span.runs == result["task_runs"]
        naive_s = naive_span.seconds if complete else result["body_s"]
        naive_rate = result["accounts"] / naive_s
        real_rate = accounts / advance_s if advance_s else 0.0
        ids = _first_ids(naive_url)
        naive = {
            "accounts": result["accounts"],
            "advance_s": round(naive_s, 3),
            "body_s": round(result["body_s"], 3),
            "accounts_per_s": round(naive_rate, 1),
            "ratio": round(real_rate / naive_rate, 1) if naive_rate else None,
            "same_decisions": same_outcome(env["ARREARS_DATABASE_URL"], naive_url, ids),
            "timed_from": "task runs" if complete else "flow body",
        }
        print_table(
            f"advance: one task run per account vs shards of {settings.shard_size:,} (dispatch left out "
            "of both)",
            [
                Row(
                    "naive (task run per account)",
                    naive_s,
                    result["accounts"],
                    "accounts/s",
                    f"{result['accounts']} task runs, 2 threads; same decisions as the cycle: "
                    f"{naive['same_decisions']}",
                ),
                Row(
                    "sharded (daily cycle)", advance_s, accounts, "accounts/s", f"{advanced['shards']} shards"
                ),
                Row(
                    "ratio",
                    None,
                    note=(
                        f"{naive['ratio']}× the naive design's accounts/s (target ≥ {TARGET_NAIVE_RATIO:g}×)"
                    ),
                ),
            ],
        )

    if profiler is not None:
        profiler.report(args.profile)

    figures: dict[str, Any] = {
        "accounts": accounts,
        "wall_s": round(wall_s, 3),
        "accounts_per_s": _rate(accounts, wall_s),
        "messages_per_s": _rate(sent, dispatch_s),
        "peak_rss_mib": round(peak_rss_mib, 1),
        "rss_by_phase_mib": children.own_peak_by_phase(phases),
        "shard_workers_peak_rss_mib": round(child_peaks["shard_workers"], 1)
        if "shard_workers" in child_peaks
        else None,
        "naive_ratio": naive["ratio"] if naive else None,
        "phases_s": {
            "prefect_startup": round(startup_s, 3) if startup_s is not None else None,
            "open": seconds("open"),
            "refresh": seconds("refresh"),
            "advance": advance_s,
            "reviews": seconds("later"),
            "bureau": seconds("bureau"),
            "letters": seconds("letters"),
            "dispatch": dispatch_s,
            "report": seconds("report"),
            "exit": round(exit_s, 3) if exit_s is not None else None,
        },
        "prefect_startup_s": round(startup_s, 3) if startup_s is not None else None,
        "prefect_server_start_s": round(server_s, 3) if server_s is not None else None,
        "advance_accounts_per_s": _rate(accounts, advance_s),
        "refresh_accounts_per_s": _rate(int(stats["refresh"]["accounts_refreshed"]), seconds("refresh")),
        "messages_sent": sent,
        "dispatch_outcomes": outcomes,
        "transitions": int(advanced.get("transitions", 0)),
        "shards": int(advanced["shards"]),
        "batches": int(dispatched.get("batches", 0)),
        "cpu_s": round(cpu_s, 2),
        "sandbox_cpu_s": _sandboxes(child_cpu, 2),
        "prefect_server_cpu_s": round(child_cpu["prefect_server"], 2)
        if "prefect_server" in child_cpu
        else None,
        "sandbox_peak_rss_mib": _sandboxes(child_peaks, 1),
        "prefect_server_peak_rss_mib": round(child_peaks["prefect_server"], 1)
        if "prefect_server" in child_peaks
        else None,
        "import_s": round(loaded["import_s"], 3),
        "generate_s": round(loaded["generate_s"], 3),
        "import_peak_rss_mib": round(loaded["peak_rss_mib"], 1),
        "prefect_import_s": round(prefect_import_s, 3),
        "prefect_migrate_s": round(prefect_migrate_s, 3) if prefect_migrate_s is not None else None,
        "task_runs_missing": missing,
        "naive": naive,
        "profiled": args.profile is not None,
        "cpus": os.cpu_count(),
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        "targets_met": targets_met(
            wall_s=wall_s,
            peak_rss_mib=peak_rss_mib,
            advance_per_s=_rate(accounts, advance_s),
            dispatch_per_s=_rate(sent, dispatch_s),
            phases={k: v for k, v in {p: seconds(p) for p in PHASE_TASKS}.items() if v is not None},
            import_s=loaded["import_s"],
            naive_ratio=naive["ratio"] if naive else None,
        ),
    }
    sys.stdout.flush()
    print(json.dumps(figures), flush=True)
    if args.keep or args.workdir is not None:
        say(f"kept {workdir}")


def targets_met(
    *,
    wall_s: float,
    peak_rss_mib: float,
    advance_per_s: float | None,
    dispatch_per_s: float | None,
    phases: dict[str, float],
    import_s: float,
    naive_ratio: float | None,
    send_api: str = "batch",
) -> dict[str, bool | None]:
    """Each of issue 14's targets, met or not (None: not measured in this run)."""
    bureau = phases.get("bureau")
    return {
        "wall_s": wall_s <= TARGET_WALL_S,
        "peak_rss_mib": peak_rss_mib <= TARGET_RSS_MIB,
        "advance_accounts_per_s": (advance_per_s or 0) >= TARGET_ADVANCE_PER_S,
        f"dispatch_messages_per_s_{send_api}": (dispatch_per_s or 0) >= TARGET_DISPATCH_PER_S[send_api],
        "bureau_not_longest": None if bureau is None else bureau < max(phases.values()),
        "reviews_s": phases.get("later", 0.0) <= TARGET_REVIEWS_S,
        "report_s": phases.get("report", 0.0) <= TARGET_REPORT_S,
        "import_s": import_s <= TARGET_IMPORT_S,
        "naive_ratio": None if naive_ratio is None else naive_ratio >= TARGET_NAIVE_RATIO,
    }


def _first_ids(url: str) -> list[str]:
    from sqlalchemy import select

    from arrears.storage import cycle as store
    from arrears.storage import get_engine

    with get_engine(url).connect() as connection:
        return list(connection.execute(select(store.account.c.account_id)).scalars())


if __name__ == "__main__":
    main()
