"""Reviews at portfolio scale (DESIGN §7, issue 13): N accounts in repossession review, one daily
cycle under `arrears serve` against a local `prefect server`.

    python benchmarks/reviews.py [--reviews 5000] [--as-of 2026-12-01T17:00:00Z] [--settle 3600]
                                 [--outbox-runs 4] [--prefect-postgres] [--workdir DIR] [--keep]

Starts `prefect server start` (SQLite in the work directory, or PostgreSQL, as in production,
with `--prefect-postgres`: a throwaway cluster) and `arrears serve` (the review deployment with
its concurrency limit), imports N Iowa accounts and places them in repossession review (the test
suite's setup: their stage set directly), then runs `arrears cycle` once as a subprocess. It
then waits until every review run has suspended for its cure period (or `--settle` seconds pass).
Reviews the cycle had to defer (the server refused their runs) are started by the outbox run:
`arrears dispatch` runs up to `--outbox-runs` times, each a quarter hour later in the business
day, as the served outbox schedule would, each followed by the same wait. The RSS of the serve
process and all its children is sampled every second throughout. The last line on stdout is
one JSON object:

    cycle_exit, cycle_seconds, review_runs_started, review_runs_deferred,
    outbox_runs (per run: started, deferred, seconds), review_runs_on_server,
    runs_by_state (at the end), crashed, stuck_pending, seconds_until_all_suspended,
    serve_peak_rss_mib (serve process + children, sampled), prefect_database

Targets: the cycle exits 0 first time, no run crashed or stuck, every review has a run by the
end, serve + children under 2 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s")


def _rss_mib(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in processes:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def _setup(n: int, workdir: Path, env: dict[str, str]) -> None:
    """Import n accounts and place them in repossession review, in a child process."""
    script = f"""
import os
from pathlib import Path
from sqlalchemy import update
from arrears.clock import parse_instant
from arrears.storage import get_engine, migrate
from tests.later_stage_helpers import account_t, import_rows, us_account
engine = get_engine(os.environ["ARREARS_DATABASE_URL"])
migrate(engine)
rows = [us_account(f"A-{{i:06d}}", phone=f"(515) {{200 + i // 10000:03d}}-{{i % 10000:04d}}",
        oldest_due_date="2026-10-01") for i in range({n})]
import_rows(engine, Path({str(workdir)!r}), rows)
with engine.begin() as c:
    c.execute(update(account_t).values(stage="repossession_review",
              stage_since=parse_instant("2026-12-01T16:00:00Z"), episode=3))
"""
    subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=True)


def _runs(api: str) -> list[Any]:
    os.environ["PREFECT_API_URL"] = api
    from prefect.client.schemas.objects import StateType

    from flows._waiting import runs_in

    return runs_in("repossession-review", list(StateType))


class _Serve:
    """The serve process, and the peak RSS of it and its children seen so far."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.peak = _rss_mib(process.pid)

    def sample(self) -> None:
        self.peak = max(self.peak, _rss_mib(self.process.pid))

    def wait_for(self, child: subprocess.Popen[bytes]) -> float:
        """Sample until `child` exits; the seconds it took."""
        started = time.monotonic()
        while child.poll() is None:
            self.sample()
            time.sleep(1)
        return time.monotonic() - started


def _settle(api: str, serve: _Serve, seconds: float) -> tuple[Counter[str], bool]:
    """Wait until every review run on the server is suspended (True), one crashed or failed, or
    `seconds` pass; the runs by state at the end."""
    deadline = time.monotonic() + seconds
    states: Counter[str] = Counter()
    while time.monotonic() < deadline:
        serve.sample()
        runs = _runs(api)
        states = Counter(r.state.name if r.state else "none" for r in runs)
        if runs and states.get("Suspended", 0) == len(runs):
            return states, True
        if states.get("Crashed") or states.get("Failed"):
            break
        time.sleep(5)
    return states, False


def _cli(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", *args, "--json"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log.open("ab"),
    )


def _json_of(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    out = process.stdout.read().decode() if process.stdout else ""
    return json.loads(out) if process.returncode in (0, 4) and out.strip() else {}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reviews", type=int, default=5000)
    parser.add_argument("--as-of", default="2026-12-01T17:00:00Z")
    parser.add_argument("--settle", type=float, default=3600.0)
    parser.add_argument("--outbox-runs", type=int, default=4)
    parser.add_argument("--prefect-postgres", action="store_true")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    with ExitStack() as stack:
        database = None
        if args.prefect_postgres:
            if str(ROOT) not in sys.path:  # `python benchmarks/reviews.py`
                sys.path.insert(0, str(ROOT))
            from benchmarks._postgres import throwaway_cluster

            database = stack.enter_context(throwaway_cluster())
        _run(args, database)


def _run(args: argparse.Namespace, prefect_database: str | None) -> None:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="arrears-reviews-"))
    workdir.mkdir(parents=True, exist_ok=True)
    port = _port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ARREARS_HOME": str(workdir / "home"),
        "ARREARS_DATABASE_URL": f"sqlite:///{workdir / 'arrears.db'}",
        "PREFECT_HOME": str(workdir / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "ARREARS_WEBHOOK_PORT": str(_port()),
    }
    server_env = dict(env)
    if prefect_database:
        server_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = prefect_database.replace(
            "postgresql://", "postgresql+asyncpg://", 1
        )
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--port", str(port)],
        env=server_env,
        stdout=(logs / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    serve_process = None
    try:
        _wait_http(f"{api}/health", 180)
        _setup(args.reviews, workdir, env)
        serve_process = subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", "serve"],
            env=env,
            cwd=ROOT,
            stdout=(logs / "serve.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        time.sleep(20)  # deployments registered
        serve = _Serve(serve_process)
        started = time.monotonic()
        cycle = _cli(env, logs / "cycle.log", "cycle", "--as-of", args.as_of)
        cycle_seconds = serve.wait_for(cycle)
        reviews = _json_of(cycle).get("reviews", {})
        states, settled = _settle(api, serve, args.settle)
        outbox: list[dict[str, Any]] = []
        deferred = reviews.get("review_runs_deferred") or 0
        as_of = datetime.fromisoformat(args.as_of.replace("Z", "+00:00"))
        while deferred and len(outbox) < args.outbox_runs:
            as_of += timedelta(minutes=15)  # the served outbox schedule's interval
            dispatch = _cli(env, logs / "dispatch.log", "dispatch", "--as-of", as_of.isoformat())
            seconds = serve.wait_for(dispatch)
            counts = _json_of(dispatch)
            deferred = counts.get("review_runs_deferred", 0)
            outbox.append(
                {
                    "exit": dispatch.returncode,
                    "started": counts.get("review_runs_started", 0),
                    "deferred": deferred,
                    "seconds": round(seconds, 1),
                }
            )
            states, settled = _settle(api, serve, args.settle)
        result = {
            "reviews": args.reviews,
            "prefect_database": "postgresql" if prefect_database else "sqlite",
            "cycle_exit": cycle.returncode,
            "cycle_seconds": round(cycle_seconds, 1),
            "review_runs_started": reviews.get("review_runs_started"),
            "review_runs_deferred": reviews.get("review_runs_deferred"),
            "outbox_runs": outbox,
            "review_runs_on_server": sum(states.values()),
            "runs_by_state": dict(states),
            "crashed": states.get("Crashed", 0) + states.get("Failed", 0),
            "stuck_pending": states.get("Pending", 0) + states.get("Submitting", 0),
            "seconds_until_all_suspended": round(time.monotonic() - started, 1) if settled else None,
            "serve_peak_rss_mib": round(serve.peak),
        }
        print(json.dumps(result))
    finally:
        for process in (serve_process, server):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
