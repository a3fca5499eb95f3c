"""The daily cycle scaled out: shards advanced by Prefect workers of a process work pool, on PostgreSQL.

    python benchmarks/workers.py [--accounts 100000] [--workers 2] [--shard-size N]
                                 [--postgres URL] [--prefect-db postgres|sqlite]
                                 [--as-of 2026-12-01T01:00:00Z] [--seed 1] [--workdir DIR] [--keep]

Starts a throwaway PostgreSQL cluster (as .ci/run does; or uses the server of `--postgres`), a
Prefect server (`prefect server start` with its own PREFECT_HOME, its database on that cluster
or in SQLite), a process work pool, and deploys the `cycle-shard` flow to it. It generates one
portfolio and imports it once into a template database, then runs the same cycle on three fresh
copies of it, each copy its own installation:

1. in-process: `daily_cycle(as_of)`, the shards advanced by the cycle's own task runner;
2. fanned out to 1 worker: `daily_cycle(as_of, fan_out="cycle-shard/shard")`, one
   `prefect worker start --type process --limit 1` serving the pool;
3. fanned out to N workers (`--workers`), each with `--limit 1`.

Every cycle runs in a process of its own, as `arrears cycle` would. The workers of a run get the
arrears environment of that run's copy (ARREARS_DATABASE_URL, ARREARS_HOME, PREFECT_API_URL,
PYTHONPATH) and are stopped after it. The benchmark then checks that the three copies hold the
same decisions (`arrears.storage.snapshot`: accounts' stage, episode and segment, outbox rows by
idempotency key, audit events by account, kind and detail) and that every shard ran as a flow run
of the shard deployment in a process started by one of the workers (their child processes are
sampled while the cycle runs and matched with each run's `infrastructure_pid`).

Prints a table (accounts/s of the advance phase and of the whole cycle, per run) and, last on
stdout, one JSON object (see benchmarks/README.md, "Workers"). Every process it started and the
cluster are removed at exit, on Ctrl-C and on SIGTERM too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import zip_longest
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AS_OF = "2026-12-01T01:00:00Z"  # 09:00 in Shanghai, evening in the US: nearly all may be messaged
POOL = "arrears-bench"
DEPLOYMENT = "cycle-shard/shard"
RUNS = ("in_process", "one_worker", "n_workers")

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# --------------------------------------------------------------------------------------------
# Child processes: each one is started here, in a session of its own, and ended by its id.
# --------------------------------------------------------------------------------------------


def _base_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without anything that would point a child at another server or database."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ARREARS_", "PREFECT_")) or k in ("ARREARS_SHARD_WORKERS",)
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return env | extra


def _stop(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """End a child we started and everything it started (its session), politely first."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)
    except ProcessLookupError:
        pass


def _child(what: str, env: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    """Run `_child_main(what, kwargs)` in a new Python process with `env`; its JSON result."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from benchmarks.workers import _child_main; _child_main()"],
        env=env,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(json.dumps({"what": what, **kwargs}))
    finally:
        _stop(process)
    lines = out.strip().splitlines()
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"child {what!r} exited {process.returncode}:\n{err[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _child_main() -> None:
    """Entry point of `_child`: read the request from stdin, print the result as the last line."""
    request = json.loads(sys.stdin.read())
    what = request.pop("what")
    handlers: dict[str, Callable[..., dict[str, Any]]] = {"load": _load, "deploy": _deploy, "cycle": _cycle}
    handler = handlers[what]
    print(json.dumps(handler(**request), default=str), flush=True)


@contextmanager
def prefect_server(home: Path, database_url: str | None, say: Say = _quiet) -> Iterator[str]:
    """`prefect server start` on a free port with its own PREFECT_HOME (its database on
    PostgreSQL when `database_url` is given: asyncpg); yields its API URL."""
    from benchmarks._postgres import free_port

    port = free_port()
    env = _base_env({"PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "false"})
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url.replace(
            "postgresql://", "postgresql+asyncpg://", 1
        )
    home.mkdir(parents=True, exist_ok=True)
    log = (home / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        import httpx

        started = time.monotonic()
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > started + 180:
                raise RuntimeError(f"prefect server did not start: see {home / 'server.log'}")
            time.sleep(0.5)
        say(f"  prefect server up at {url} in {time.monotonic() - started:.1f} s")
        yield url
    finally:
        _stop(process)
        log.close()


class Worker:
    """One `prefect worker start --type process --limit 1` on the pool, and the flow-run processes
    it starts (sampled: they are matched with each run's `infrastructure_pid` afterwards)."""

    def __init__(self, name: str, env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "prefect", "worker", "start"),
                *("--pool", POOL, "--type", "process", "--name", name, "--limit", "1"),
            ],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.children: set[int] = set()

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while "started!" not in self.log_path.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {self.name} did not start: see {self.log_path}")
            time.sleep(0.3)

    def sample(self) -> None:
        import psutil  # type: ignore[import-untyped]  # no stubs in the project's environment

        with suppress(psutil.Error):  # the worker is gone: nothing more to see
            self.children.update(c.pid for c in psutil.Process(self.process.pid).children(recursive=True))

    def stop(self) -> None:
        _stop(self.process)
        self._log.close()


class Sampler(threading.Thread):
    """Records the child processes of every worker every 0.1 s while a cycle runs."""

    def __init__(self, workers: list[Worker]) -> None:
        super().__init__(name="worker-children", daemon=True)
        self.workers = workers
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.1):
            for worker in self.workers:
                worker.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join()


# --------------------------------------------------------------------------------------------
# What the children do (run in their own process, environment set by the parent)
# --------------------------------------------------------------------------------------------


def _load(accounts: int, seed: int, as_of: str, url: str, file: str) -> dict[str, Any]:
    """Generate and import the portfolio (benchmarks/cycle.py's loader, the real importer)."""
    from arrears.clock import business_date, parse_instant
    from arrears.settings import get_settings
    from benchmarks.cycle import load_portfolio

    instant = parse_instant(as_of)
    day = business_date(instant, get_settings().lender_timezone)
    # The file arrived the day before: stage_since is the same in every copy.
    return load_portfolio(accounts, seed, day, url, Path(file), instant - timedelta(days=1))


def _deploy(concurrency_limit: int) -> dict[str, Any]:
    """The process pool and the `shard` deployment of `cycle_shard` on it, from this checkout."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"), overwrite=True)
    shard = flow.from_source(source=str(ROOT), entrypoint="flows/daily_cycle.py:cycle_shard")
    deployment_id = shard.deploy(  # type: ignore[union-attr]
        name="shard",
        work_pool_name=POOL,
        concurrency_limit=concurrency_limit,
        build=False,
        push=False,
        print_next_steps=False,
        ignore_warnings=True,
    )
    return {"deployment_id": str(deployment_id)}


def _cycle(as_of: str, fan_out: str | None) -> dict[str, Any]:
    """One `daily_cycle` call, timed: the whole call, and the advance phase from the start of
    `plan-shards` to the moment the cycle has every shard's outcome. With `fan_out`, the shard
    flow runs it started, as the server recorded them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterTags,
        TaskRunFilter,
        TaskRunFilterName,
    )

    from arrears.settings import get_settings
    from flows.daily_cycle import daily_cycle, watch_progress

    advanced_at: list[datetime] = []

    def listen(phase: str, done: int, total: int) -> None:
        if phase == "advance" and done == total:
            advanced_at.append(datetime.now(UTC))

    load_before = os.getloadavg()
    started = time.perf_counter()
    called_at = datetime.now(UTC)
    with watch_progress(listen):
        state = daily_cycle(as_of=as_of, fan_out=fan_out, return_state=True)
    wall_s = time.perf_counter() - started
    if not state.is_completed():
        raise RuntimeError(f"the cycle ended {state.type.value}: {state.message}")
    stats: dict[str, Any] = state.result()
    flow_run_id = state.state_details.flow_run_id
    shard_runs: list[dict[str, Any]] = []
    with get_client(sync_client=True) as client:
        plan = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="plan-shards")),
        )
        if fan_out:
            deployment = client.read_deployment_by_name(fan_out)
            for run in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["stage:advance"])), limit=200
            ):
                began = run.start_time
                if run.name.endswith(f"of cycle {stats['cycle_id']}") and began and began >= called_at:
                    shard_runs.append(
                        {
                            "name": run.name,
                            "id": str(run.id),
                            "state": run.state.type.value if run.state else None,
                            "deployment": deployment.name if run.deployment_id == deployment.id else None,
                            "work_pool": run.work_pool_name,
                            "pid": run.infrastructure_pid,
                            "seconds": run.total_run_time.total_seconds(),
                        }
                    )
    advance_s = None
    if plan and plan[0].start_time and advanced_at:
        advance_s = (advanced_at[-1] - plan[0].start_time).total_seconds()
    return {
        "stats": stats,
        "wall_s": wall_s,
        "advance_s": advance_s,
        "shard_runs": shard_runs,
        "shard_workers": get_settings().shard_workers,
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }


# --------------------------------------------------------------------------------------------
# Sameness of decisions
# --------------------------------------------------------------------------------------------


def compare(url_a: str, url_b: str) -> dict[str, Any]:
    """Whether two databases hold the same decisions; the first difference per table if not."""
    from arrears.storage import get_engine
    from arrears.storage.snapshot import SNAPSHOT_TABLES, decision_counts, decision_rows

    differences: dict[str, str] = {}
    with get_engine(url_a).connect() as a, get_engine(url_b).connect() as b:
        counts = decision_counts(a)
        for table in SNAPSHOT_TABLES:
            for left, right in zip_longest(decision_rows(a, table), decision_rows(b, table)):
                if left != right:
                    differences[table] = f"{left} != {right}"
                    break
    return {"same": not differences, "rows": counts, "differences": differences}


# --------------------------------------------------------------------------------------------
# The comparison, usable from a test
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One cycle of the three, with what it took."""

    label: str
    url: str
    workers: int  # 0: in process
    result: dict[str, Any] = field(default_factory=dict)
    by_worker: dict[str, int] = field(default_factory=dict)  # shard runs per worker
    unmatched: list[str] = field(default_factory=list)  # shard runs no worker's child ran


def compare_runs(
    admin_url: str,
    *,
    accounts: int,
    workers: int,
    shard_size: int | None = None,
    seed: int = 1,
    as_of: str = DEFAULT_AS_OF,
    workdir: Path,
    prefect_db: str = "postgres",
    one_worker: bool = True,
    say: Say = _quiet,
) -> dict[str, Any]:
    """Load one portfolio, run the cycle in process, on 1 worker (unless `one_worker` is false:
    the test suite's short version) and on `workers` workers, each on a fresh copy, against one
    Prefect server; the figures and the sameness of decisions.

    `admin_url` names a PostgreSQL server where we may create and drop databases."""
    from arrears.storage import get_engine
    from arrears.storage.installation import new_installation_id
    from benchmarks._postgres import clone_database, drop_database

    databases: list[str] = []
    figures: dict[str, Any] = {"accounts": accounts, "workers": workers, "cpus": os.cpu_count()}
    with ExitStack() as stack:

        def database(template: str | None, prefix: str) -> str:
            url = clone_database(admin_url, template, prefix)
            databases.append(url)
            return url

        @stack.callback
        def drop_all() -> None:
            for url in reversed(databases):
                drop_database(admin_url, url)

        shared = {"ARREARS_SMS_PROVIDER": "sandbox"}
        if shard_size:
            shared["ARREARS_SHARD_SIZE"] = str(shard_size)
        say(f"generating and importing {accounts:,} accounts into a template database …")
        template_url = database(None, "arrears_bench_tpl")
        loaded = _child(
            "load",
            _base_env(shared | {"ARREARS_HOME": str(workdir / "load")}),
            accounts=accounts,
            seed=seed,
            as_of=as_of,
            url=template_url,
            file=str(workdir / "accounts.csv"),
        )
        get_engine(template_url).dispose()
        generated, imported = loaded["generate_s"], loaded["import_s"]
        say(f"  generated in {generated:.1f} s, imported {loaded['accepted']:,} in {imported:.1f} s")
        figures["import_s"] = round(loaded["import_s"], 2)
        template = template_url.rsplit("/", 1)[1]

        prefect_url = database(None, "prefect_bench") if prefect_db == "postgres" else None
        api = stack.enter_context(prefect_server(workdir / "prefect", prefect_url, say))
        prefect_env = {"PREFECT_API_URL": api, "PREFECT_HOME": str(workdir / "prefect-client")}
        _child("deploy", _base_env(shared | prefect_env), concurrency_limit=workers)
        say(f"  process pool {POOL!r}, deployment {DEPLOYMENT} (concurrency limit {workers})")

        runs = [Run("in_process", database(template, "arrears_bench"), 0)]
        if one_worker:
            runs += [Run("one_worker", database(template, "arrears_bench"), 1)]
        runs += [Run("n_workers", database(template, "arrears_bench"), workers)]
        for run in runs:
            engine = get_engine(run.url)
            with engine.begin() as connection:
                new_installation_id(connection)  # a copy is an installation of its own
            engine.dispose()

        for run in runs:
            home = workdir / run.label
            env = _base_env(
                shared
                | prefect_env
                | {
                    "ARREARS_DATABASE_URL": run.url,
                    "ARREARS_HOME": str(home),
                    # Workers poll every second: the default 10 s would be most of a small shard.
                    "PREFECT_WORKER_QUERY_SECONDS": "1",
                }
            )
            home.mkdir(parents=True, exist_ok=True)
            pool = [Worker(f"{run.label}-{i + 1}", env, home) for i in range(run.workers)]
            try:
                for worker in pool:
                    worker.wait_ready()
                say(f"cycle {run.label} ({run.workers or 'no'} worker{'s' if run.workers != 1 else ''}) …")
                sampler = Sampler(pool)
                sampler.start()
                try:
                    run.result = _child("cycle", env, as_of=as_of, fan_out=DEPLOYMENT if pool else None)
                finally:
                    sampler.stop()
            finally:
                for worker in pool:
                    worker.stop()
            for shard in run.result["shard_runs"]:
                owner = next((w.name for w in pool if shard["pid"] and int(shard["pid"]) in w.children), None)
                if owner is None:
                    run.unmatched.append(shard["name"])
                else:
                    run.by_worker[owner] = run.by_worker.get(owner, 0) + 1
            say(
                f"  {run.result['wall_s']:.1f} s whole cycle, advance {run.result['advance_s'] or 0:.1f} s"
                + (f"; shard runs by worker {run.by_worker}" if pool else "")
            )

        baseline = runs[0]
        same = {run.label: compare(baseline.url, run.url) for run in runs[1:]}
        figures |= _figures(runs, accounts, same, loaded)
    return figures


def _figures(runs: list[Run], accounts: int, same: dict[str, Any], loaded: dict[str, Any]) -> dict[str, Any]:
    def rate(seconds: float | None) -> float | None:
        return round(accounts / seconds, 1) if seconds else None

    per_run: dict[str, Any] = {}
    for run in runs:
        r = run.result
        stats = r["stats"]
        per_run[run.label] = {
            "workers": run.workers,
            "wall_s": round(r["wall_s"], 2),
            "advance_s": round(r["advance_s"], 2) if r["advance_s"] else None,
            "accounts_per_s": rate(r["wall_s"]),
            "advance_accounts_per_s": rate(r["advance_s"]),
            "shards": stats["advance"]["shards"],
            "shard_runs": len(r["shard_runs"]),
            "shard_runs_completed": sum(s["state"] == "COMPLETED" for s in r["shard_runs"]),
            "shard_runs_on_deployment": sum(s["deployment"] == "shard" for s in r["shard_runs"]),
            "shard_runs_by_worker": run.by_worker,
            "shard_runs_unmatched": run.unmatched,
            "shard_run_s": [round(s["seconds"], 2) for s in r["shard_runs"]],
            "sent": int(stats["dispatch"].get("sent", 0)) + int(stats["dispatch"].get("delivered", 0)),
            "shard_workers_setting": r["shard_workers"],
            "load_avg_before": [round(x, 2) for x in r["load_before"]],
            "load_avg_after": [round(x, 2) for x in r["load_after"]],
        }
    base = per_run["in_process"]
    return {
        "runs": per_run,
        "same_decisions": all(s["same"] for s in same.values()),
        "sameness": same,
        "ratio_n_to_1_worker": round(per_run["one_worker"]["wall_s"] / per_run["n_workers"]["wall_s"], 2)
        if "one_worker" in per_run
        else None,
        "ratio_n_workers_to_in_process": round(base["wall_s"] / per_run["n_workers"]["wall_s"], 2),
        "import_s": round(loaded["import_s"], 2),
    }


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def _print_table(figures: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"daily cycle, {figures['accounts']:,} accounts, PostgreSQL; {figures['cpus']} cores")
    for column in ("run", "whole cycle s", "accounts/s", "advance s", "advance accounts/s", "note"):
        table.add_column(column, justify="left" if column in ("run", "note") else "right")
    for label, run in figures["runs"].items():
        note = f"{run['shards']} shards; load {run['load_avg_before'][0]} → {run['load_avg_after'][0]}"
        if run["workers"]:
            note += f"; shard runs by worker {run['shard_runs_by_worker']}"
        else:
            note += f"; ARREARS_SHARD_WORKERS={run['shard_workers_setting']}"
        table.add_row(
            label.replace("_", " ").replace("n ", f"{figures['workers']} "),
            f"{run['wall_s']:.1f}",
            f"{run['accounts_per_s'] or 0:,.0f}",
            f"{run['advance_s'] or 0:.1f}",
            f"{run['advance_accounts_per_s'] or 0:,.0f}",
            note,
        )
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    print(f"same decisions as in process: {figures['same_decisions']} {figures['sameness']}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000, help="portfolio size (default 100,000)")
    parser.add_argument("--workers", type=int, default=2, help="workers of the last run (default 2)")
    parser.add_argument("--shard-size", type=int, default=None, help="accounts per shard (default: settings)")
    parser.add_argument(
        "--postgres", default=None, metavar="URL", help="use this server, not a throwaway one"
    )
    parser.add_argument("--prefect-db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument(
        "--as-of", default=DEFAULT_AS_OF, help=f"the cycle's instant (default {DEFAULT_AS_OF})"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="where to put files (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()
    if args.accounts < 1 or args.workers < 1 or (args.shard_size is not None and args.shard_size < 1):
        parser.error("--accounts, --workers and --shard-size must be positive")

    # SIGTERM unwinds like Ctrl-C, so every `finally` stops what it started; SIGINT is restored in
    # case it was inherited ignored (a background job of a non-interactive shell).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    say: Say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="arrears-workers-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with ExitStack() as stack:
            if args.postgres:
                admin = args.postgres
            else:
                from benchmarks._postgres import throwaway_cluster

                admin = stack.enter_context(throwaway_cluster())
                say(f"throwaway PostgreSQL at {admin}")
            figures = compare_runs(
                admin,
                accounts=args.accounts,
                workers=args.workers,
                shard_size=args.shard_size,
                seed=args.seed,
                as_of=args.as_of,
                workdir=workdir,
                prefect_db=args.prefect_db,
                say=say,
            )
    except KeyboardInterrupt:
        say("interrupted: stopped every process and the cluster")
        raise SystemExit(130) from None
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    _print_table(figures)
    sys.stdout.flush()
    print(json.dumps(figures), flush=True)
    if not figures["same_decisions"]:
        raise SystemExit(1)


if __name__ == "__main__":
    if str(ROOT) not in sys.path:  # `python benchmarks/workers.py`: the children import benchmarks.*
        sys.path.insert(0, str(ROOT))
    main()
