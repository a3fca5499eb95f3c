"""Reviews at portfolio scale (DESIGN §7, issue 13): N accounts in repossession review, one daily
cycle under `arrears serve` against a local `prefect server`.

    python benchmarks/reviews.py [--reviews 5000] [--as-of 2026-12-01T17:00:00Z] [--settle 3600]
                                 [--workdir DIR] [--keep]

Starts `prefect server start` (SQLite, in the work directory) and `arrears serve` (the review
deployment with its concurrency limit), imports N Iowa accounts and places them in repossession
review (the test suite's setup: their stage set directly), then runs `arrears cycle` once as a
subprocess. It then waits until every review run has suspended for its cure period (or
`--settle` seconds pass), sampling the RSS of the serve process and all its children every
second. The last line on stdout is one JSON object:

    cycle_exit, cycle_seconds, review_runs_started, review_runs_deferred,
    runs_by_state (at the end), crashed, stuck_pending, seconds_until_all_suspended,
    serve_peak_rss_mib (serve process + children, sampled), reviews_bound

Targets: the cycle exits 0 first time, no run crashed or stuck, serve + children under 2 GiB.
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reviews", type=int, default=5000)
    parser.add_argument("--as-of", default="2026-12-01T17:00:00Z")
    parser.add_argument("--settle", type=float, default=3600.0)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

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
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--port", str(port)],
        env=env,
        stdout=(logs / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    serve = None
    try:
        _wait_http(f"{api}/health", 180)
        _setup(args.reviews, workdir, env)
        serve = subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", "serve"],
            env=env,
            cwd=ROOT,
            stdout=(logs / "serve.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        time.sleep(20)  # deployments registered
        peak = _rss_mib(serve.pid)
        started = time.monotonic()
        cycle = subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", "cycle", "--as-of", args.as_of, "--json"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=(logs / "cycle.log").open("wb"),
        )
        while cycle.poll() is None:
            peak = max(peak, _rss_mib(serve.pid))
            time.sleep(1)
        cycle_seconds = time.monotonic() - started
        out = cycle.stdout.read().decode() if cycle.stdout else ""
        stats = json.loads(out) if cycle.returncode in (0, 4) and out.strip() else {}
        reviews = stats.get("reviews", {})
        suspended_at = None
        deadline = time.monotonic() + args.settle
        states: Counter[str] = Counter()
        while time.monotonic() < deadline:
            peak = max(peak, _rss_mib(serve.pid))
            runs = _runs(api)
            states = Counter(r.state.name if r.state else "none" for r in runs)
            if runs and states.get("Suspended", 0) == len(runs):
                suspended_at = time.monotonic() - started
                break
            if states.get("Crashed") or states.get("Failed"):
                break
            time.sleep(5)
        result = {
            "reviews": args.reviews,
            "cycle_exit": cycle.returncode,
            "cycle_seconds": round(cycle_seconds, 1),
            "review_runs_started": reviews.get("review_runs_started"),
            "review_runs_deferred": reviews.get("review_runs_deferred"),
            "runs_by_state": dict(states),
            "crashed": states.get("Crashed", 0) + states.get("Failed", 0),
            "stuck_pending": states.get("Pending", 0) + states.get("Submitting", 0),
            "seconds_until_all_suspended": round(suspended_at, 1) if suspended_at else None,
            "serve_peak_rss_mib": round(peak),
        }
        print(json.dumps(result))
    finally:
        for process in (serve, server):
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
