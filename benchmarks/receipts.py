"""A cycle's delivery receipts pushed back at once: how fast `python -m deployments.webhooks` takes them.

    python benchmarks/receipts.py [--accounts 50000] [--vendor aliyun|twilio] [--per-post 100]
                                  [--concurrency 8] [--as-of 2026-12-01T01:00:00Z] [--workdir DIR] [--keep]

After a daily cycle a vendor reports on every message it sent: Aliyun pushes its SmsReport
arrays to our callback URL as they come, several requests in flight. A webhook that falls behind
is a webhook the vendor times out on, and a report it gives up on is a message that stays `sent`
until `arrears dispatch` looks it up an hour on.

This runs one real `arrears cycle` (`python -m deployments.cli cycle`) on a generated portfolio
(SQLite, the Aliyun-shaped sandbox SMS server in its own process, Prefect's local server), takes
the sandbox's SmsReport of every message it received (`/_sandbox/reports/aliyun`, the vendor's
JSON exactly), starts the webhook server alone in its own process as an operator would, and
posts every report to it as Aliyun does (unsigned JSON arrays of `--per-post`, our token in the
query string, `--concurrency` requests in flight), or with `--vendor twilio` (the cycle sent
through the Twilio-shaped provider) as Twilio does: one status-callback form a message, signed.
Then it posts them all again (a vendor's redelivery: nothing may change), and checks the outbox:
every reported message moved to what its report said, once.

The last line is JSON: reports/s for the first pass and the redelivery, the slowest request,
the webhook process's CPU, and `exact` (true when every message is at its reported status and
the redelivery changed no row and wrote no event).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._postgres import free_port  # noqa: E402
from benchmarks.chaos import DEFAULT_AS_OF, load, run_cycle  # noqa: E402


@contextmanager
def webhook_process(env: Mapping[str, str]) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m deployments.webhooks` on a free port; yields its URL and the process."""
    import httpx

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.webhooks"],
        cwd=ROOT,
        env={**env, "ARREARS_WEBHOOK_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the webhook server did not start") from None
                time.sleep(0.2)
        yield url, process
    finally:  # uvicorn finishes the requests in flight first: a vendor's retries may still come
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a live process so far."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def aliyun_posts(
    credentials: Mapping[str, str], base: str, reports: Sequence[Mapping[str, Any]], per_post: int
) -> list[dict[str, Any]]:
    """SmsReport arrays as Aliyun pushes them: unsigned JSON, our token in the query string."""
    return [
        {
            "url": "/sms/sandbox/status",
            "params": {"token": credentials["callback_token"]},
            "content": json.dumps(list(reports[i : i + per_post]), ensure_ascii=False).encode(),
            "headers": {"Content-Type": "application/json"},
        }
        for i in range(0, len(reports), per_post)
    ]


def twilio_posts(
    credentials: Mapping[str, str], base: str, reports: Sequence[Mapping[str, Any]], per_post: int
) -> list[dict[str, Any]]:
    """Status callbacks as Twilio posts them: one form a message, signed with the account's auth
    token over the URL it posts to (its own SDK's `RequestValidator` signs them)."""
    from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

    validator = RequestValidator(credentials["auth_token"])
    path = "/sms/twilio/status"
    return [
        {
            "url": path,
            "content": urlencode(form).encode(),
            "headers": {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": validator.compute_signature(base + path, dict(form)),
            },
        }
        for form in reports
    ]


# What each vendor's report says becomes of its message, in the outbox's words.
VENDORS: dict[str, dict[str, Any]] = {
    "aliyun": {
        "provider": "sandbox",
        "route": "aliyun",
        "posts": aliyun_posts,
        "status": lambda r: "delivered" if r["success"] in (True, "true") else "failed",
    },
    "twilio": {
        "provider": "twilio",
        "route": "twilio",
        "posts": twilio_posts,
        "status": lambda r: {"delivered": "delivered", "undelivered": "failed", "failed": "failed"}.get(
            r["MessageStatus"], "sent"
        ),
    },
}


def push(url: str, posts: Sequence[Mapping[str, Any]], reports: int, concurrency: int) -> dict[str, Any]:
    """Send every post, `concurrency` in flight; the figures of the pass."""
    import httpx

    slowest = 0.0
    refused: Counter[str] = Counter()

    with httpx.Client(base_url=url, timeout=60) as client:

        def post(request: Mapping[str, Any]) -> None:
            nonlocal slowest
            started = time.perf_counter()
            response = client.post(**request)
            slowest = max(slowest, time.perf_counter() - started)
            if response.status_code != 200:
                refused[f"{response.status_code} {response.text[:80]}"] += 1

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(post, posts))
        seconds = time.perf_counter() - started
    return {
        "reports": reports,
        "posts": len(posts),
        "seconds": round(seconds, 2),
        "reports_per_s": round(reports / seconds, 1),
        "slowest_post_s": round(slowest, 3),
        "refused": dict(refused),
    }


def outbox_state(url: str) -> tuple[dict[str, str], int]:
    """Each message's status by provider id (the messages a provider took), and the audit events
    written so far."""
    from sqlalchemy import func, select

    from arrears.storage import get_engine
    from arrears.storage.tables import audit, message

    with get_engine(url).connect() as c:
        rows = c.execute(
            select(message.c.provider_id, message.c.status).where(message.c.provider_id.is_not(None))
        )
        status = {str(p): str(s) for p, s in rows}
        events = int(c.execute(select(func.count()).select_from(audit)).scalar_one())
    return status, events


def live(sandbox: Any, env: Mapping[str, str], url: str, as_of: str) -> dict[str, Any]:
    """A cycle whose receipts the sandbox pushes to the webhook as it takes each send (retried
    after 1, 5 and 10 s, Aliyun's minutes scaled down), racing the dispatch that records them;
    then every message must be where its report says, with no report left waiting."""
    from sqlalchemy import func, select

    from arrears.storage import get_engine
    from arrears.storage.delivery_reports import UNMATCHED_REPORT
    from arrears.storage.tables import audit, early_report

    with webhook_process(env) as (webhooks, process):
        token = sandbox.credentials["callback_token"]
        target = {"aliyun_url": f"{webhooks}/sms/sandbox/status?token={token}", "retry_delays": [1, 5, 10]}
        sandbox.admin.post("/_sandbox/callbacks", json=target).raise_for_status()
        started = time.perf_counter()
        cycle = run_cycle(env, as_of, timeout=3600)
        if cycle.returncode:
            raise SystemExit(f"the cycle failed: {cycle.stderr[-2000:]}")
        cycle_s = time.perf_counter() - started
        deadline = time.monotonic() + 300
        while (pushes := sandbox.admin.get("/_sandbox/callbacks", timeout=60).json())["pending"]:
            if time.monotonic() > deadline:
                raise SystemExit(f"{pushes['pending']} pushes still pending after 300 s")
            time.sleep(1)
        webhook_cpu = cpu_seconds(process.pid)
    received = len(sandbox.messages(route="aliyun"))
    reports = sandbox.admin.get("/_sandbox/reports/aliyun", params={"limit": received}, timeout=300).json()
    wanted = Counter(VENDORS["aliyun"]["status"](r) for r in reports)
    wanted["sent"] += received - len(reports)
    status, _ = outbox_state(url)
    found = Counter(status.values())
    attempts = pushes["callbacks"]
    with get_engine(url).connect() as c:
        waiting = c.execute(select(func.count()).select_from(early_report)).scalar_one()
        unmatched = c.execute(select(func.count()).where(audit.c.kind == UNMATCHED_REPORT)).scalar_one()
    figures = {
        "live": True,
        "cycle_s": round(cycle_s, 1),
        "messages_received": received,
        "pushes": len({tuple(a["message_ids"]) for a in attempts}),
        "push_attempts": len(attempts),
        "pushes_given_up": sum(1 for a in attempts if a.get("gave_up")),
        "reports_before_their_send_was_recorded": unmatched,
        "reports_left_waiting": waiting,
        "not_at_reported_status": sum(abs(found[s] - n) for s, n in (wanted | found).items()),
        "webhook_cpu_s": round(webhook_cpu, 2),
    }
    figures["exact"] = not (figures["pushes_given_up"] or waiting or figures["not_at_reported_status"])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument(
        "--vendor", choices=sorted(VENDORS), default="aliyun", help="whose callbacks (default aliyun)"
    )
    parser.add_argument(
        "--per-post", type=int, default=100, help="reports in one pushed Aliyun array (default 100)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--as-of", default=DEFAULT_AS_OF)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--live",
        action="store_true",
        help="Aliyun only: the sandbox pushes each send's reports to the webhook as it takes it, "
        "racing the dispatch that records the sends, instead of posting them after the cycle",
    )
    args = parser.parse_args()
    vendor = VENDORS[args.vendor]
    if args.live and args.vendor != "aliyun":
        parser.error("--live needs --vendor aliyun: the sandbox pushes only Aliyun-shaped reports")

    from arrears.clock import business_date, parse_instant
    from arrears.simulate import generate_portfolio, write_accounts_file
    from integrations.sandbox import start_sandbox

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="arrears-receipts-"))
    workdir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{workdir / 'arrears.db'}"
    accounts_file = workdir / "accounts.csv"
    day = business_date(parse_instant(args.as_of), "Asia/Shanghai")
    write_accounts_file(generate_portfolio(args.accounts, seed=args.seed, business_date=day), accounts_file)
    load(url, accounts_file)
    try:
        with start_sandbox() as sandbox:
            env = {
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "ARREARS_HOME": str(workdir / "home"),
                "ARREARS_DATABASE_URL": url,
                "ARREARS_SMS_PROVIDER": vendor["provider"],
                "ARREARS_SMS_BASE_URL": sandbox.base_url,
                "ARREARS_SMS_CREDENTIALS": json.dumps(dict(sandbox.credentials)),
                "PREFECT_HOME": str(workdir / "prefect"),
            }
            env.pop("PREFECT_API_URL", None)
            if args.live:
                print(json.dumps(live(sandbox, env, url, args.as_of)))
                return
            started = time.perf_counter()
            cycle = run_cycle(env, args.as_of, timeout=3600)
            if cycle.returncode:
                raise SystemExit(f"the cycle failed: {cycle.stderr[-2000:]}")
            cycle_s = time.perf_counter() - started
            received = len(sandbox.messages(route=vendor["route"]))
            reports = sandbox.admin.get(
                f"/_sandbox/reports/{vendor['route']}", params={"limit": received}, timeout=300
            ).json()
            _, events_before = outbox_state(url)
            with webhook_process(env) as (webhooks, process):
                posts = vendor["posts"](sandbox.credentials, webhooks, reports, args.per_post)
                cpu = cpu_seconds(process.pid)
                first = push(webhooks, posts, len(reports), args.concurrency)
                cpu_first = cpu_seconds(process.pid) - cpu
                status, events_first = outbox_state(url)
                again = push(webhooks, posts, len(reports), args.concurrency)
                cpu_again = cpu_seconds(process.pid) - cpu - cpu_first
            after, events_again = outbox_state(url)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    # One report a message (Aliyun's only once it ends, so the rest stay sent): every message the
    # sandbox took ends where its report says.
    wanted = Counter(vendor["status"](r) for r in reports)
    wanted["sent"] += received - len(reports)
    found = Counter(status.values())
    wrong = sum(abs(found[s] - n) for s, n in (wanted | found).items())
    figures = {
        "accounts": args.accounts,
        "vendor": args.vendor,
        "cycle_s": round(cycle_s, 1),
        "messages_received": received,
        "per_post": args.per_post,
        "concurrency": args.concurrency,
        "first": first
        | {"webhook_cpu_s": round(cpu_first, 2), "events_written": events_first - events_before},
        "redelivery": again | {"webhook_cpu_s": round(cpu_again, 2)},
        "not_at_reported_status": wrong,
        "redelivery_changed_rows": sum(1 for pid in status if after.get(pid) != status[pid]),
        "redelivery_events": events_again - events_first,
        "cpus": os.cpu_count(),
    }
    figures["exact"] = (
        wrong == 0
        and figures["redelivery_changed_rows"] == 0
        and figures["redelivery_events"] == 0
        and not first["refused"]
        and not again["refused"]
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
