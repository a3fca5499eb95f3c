"""Kill the daily cycle at random points and check that the rerun leaves it exactly once (DESIGN §5).

    python benchmarks/chaos.py [--trials 20] [--accounts 10000] [--postgres URL] [--seed 1]
                               [--as-of 2026-12-01T01:00:00Z] [--workdir DIR] [--keep] [--from-outside]

Each trial loads the same generated portfolio into a fresh database (SQLite, or a database of its
own on the PostgreSQL server of `--postgres`), runs a real `arrears cycle` process
(`python -m deployments.cli cycle --as-of …`) that SIGKILLs itself at a random point of refresh,
advance (after the n-th shard), dispatch (after the n-th batch was sent, before its outcome was
written), letters (after the provider took the n-th letter, before it was recorded) or report
(`ARREARS_CRASH_AT`, see `tasks.drill.crash_point`), then reruns the cycle,
then runs it once more (which must change nothing). With `--from-outside` the kill comes from
this script instead, as an operator's `kill -9 PID` would: at a random instant between the
process's start and the end of a first, uninterrupted cycle of the same portfolio (timed on a
database of its own), wherever the process and its worker processes are then: inside an HTTP
request, a commit, a worker's batch. A last trial starts two cycles at once:
one must exit 2. All of them send to one long-lived sandbox SMS server and one long-lived sandbox
Lob, each in its own process, and record into one Prefect server (`prefect server start`, started
here), as in operations: a provider outlives the process that calls it, and what it took before a
kill is there for the rerun to find. The simulated borrowers have mailing addresses, so the
reviews the cycle opens write right-to-cure letters, and every letter a cycle writes is mailed in
that cycle (`ARREARS_LETTERS_PER_RUN` is raised for it): a kill can fall among letters in the
provider's hands. The sandbox Lob keeps no idempotency key here (`idempotency_window_seconds` 0,
where Lob keeps one for 24 hours): a letter handed over again after a kill would be a second
letter in the post, so only our own lookup of the letters in doubt keeps each mailed once.

After each trial `audit` compares what the sandbox received with what the database recorded:

| figure | what counts |
|---|---|
| duplicates | extra copies of one message at the sandbox (by its reference, `tasks.sending.reference`) |
| lost | messages the sandbox received that the outbox does not record as sent (still scheduled) |
| misrecorded | rows recorded blocked or failed that the sandbox received, or sent that it never got |
| doubled_events | audit events written twice (same account, kind, instant, detail and data) |
| running_rows | cycle rows still `running` after the rerun (a crashed one must be closed) |
| rerun_changes | events or messages the third run (same instant, after a finished one) added |
| extra_pulls | bureau pulls beyond a day's `bureau_pulls_per_cycle` (the killed run's and the rerun's) |
| letters_doubled | letters at the provider beyond one per key (one mailed twice) |
| letters_unrecorded | letters at the provider that no letter row records as handed over with their id |
| letters_misrecorded | letter rows recorded as handed over whose provider id the provider does not have |

`letters_mailed` counts the letters at the provider.

The last line on stdout is one JSON object with the totals, per-trial rows before it; the
target is 0 of each.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AS_OF = "2026-12-01T01:00:00Z"  # 09:00 in Shanghai, evening in the US: nearly all may be messaged
POINTS = ("refresh", "advance", "dispatch", "letters", "report")
SENT = ("sent", "delivered")


# --------------------------------------------------------------------------------------------
# What the sandbox received against what the database recorded
# --------------------------------------------------------------------------------------------


def audit(url: str, received: list[Mapping[str, Any]], mailed: list[Mapping[str, Any]]) -> dict[str, int]:
    """The figures of one trial (see the module docstring); every one is 0 when the cycle was exact.
    `received`: the messages at the sandbox SMS server; `mailed`: the letters at the sandbox Lob."""
    from sqlalchemy import func, select

    from arrears.storage import get_engine
    from arrears.storage.installation import installation_id
    from arrears.storage.letters import provider_key
    from arrears.storage.tables import audit as audit_table
    from arrears.storage.tables import bureau, cycle_run, letter, message
    from tasks.sending import reference, travelling_key

    copies = Counter(str((m.get("params") or {}).get("ref", m.get("id"))) for m in received)
    engine = get_engine(url)
    with engine.connect() as c:
        installation = installation_id(c)
        rows = c.execute(select(message.c.idempotency_key, message.c.status)).all()
        events = c.execute(
            select(
                audit_table.c.account_id,
                audit_table.c.kind,
                audit_table.c.at,
                audit_table.c.detail,
                audit_table.c.data,
            )
        ).all()
        running = c.execute(select(cycle_run.c.id).where(cycle_run.c.running.is_not(None))).all()
        pulls = c.execute(select(func.count()).where(bureau.c.kind == "pull")).scalar_one()
        handed = {
            provider_key(key, attempt): provider_id
            for key, attempt, provider_id in c.execute(
                select(letter.c.idempotency_key, letter.c.attempt, letter.c.provider_id).where(
                    letter.c.provider_id.is_not(None)
                )
            )
        }
    status = {reference(travelling_key(r.idempotency_key, installation)): r.status for r in rows}
    lost = sum(1 for ref in copies if status.get(ref) == "scheduled")
    misrecorded = sum(1 for ref in copies if status.get(ref) not in (*SENT, "scheduled"))
    misrecorded += sum(1 for ref, s in status.items() if s in SENT and ref not in copies)
    seen = Counter(
        (e.account_id, e.kind, e.at, e.detail, json.dumps(e.data, sort_keys=True, default=str))
        for e in events
    )
    at_provider = Counter(str(m["idempotency_key"]) for m in mailed)
    provider_ids = {str(m["id"]) for m in mailed}
    return {
        "received": len(received),
        "letters_mailed": len(mailed),
        "letters_doubled": sum(n - 1 for n in at_provider.values() if n > 1),
        "letters_unrecorded": sum(1 for m in mailed if handed.get(str(m["idempotency_key"])) != m["id"]),
        "letters_misrecorded": sum(1 for provider_id in handed.values() if provider_id not in provider_ids),
        "duplicates": sum(n - 1 for n in copies.values() if n > 1),
        "lost": lost,
        "misrecorded": misrecorded,
        "doubled_events": sum(n - 1 for n in seen.values() if n > 1),
        "running_rows": len(running),
        "events": len(events),
        "pulls": pulls,
    }


# --------------------------------------------------------------------------------------------
# Processes: the CLI under test, a Prefect server, a sandbox
# --------------------------------------------------------------------------------------------


def cycle_process(env: Mapping[str, str], as_of: str, crash_at: str | None = None) -> subprocess.Popen[str]:
    """A real `arrears cycle` process; with `crash_at`, it kills itself at that point."""
    child = {**env, "ARREARS_CRASH_AT": crash_at or ""}
    return subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "cycle", "--as-of", as_of, "--json"],
        cwd=ROOT,
        env=child,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cycle(env: Mapping[str, str], as_of: str, crash_at: str | None = None, timeout: float = 900) -> Any:
    process = cycle_process(env, as_of, crash_at)
    out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """`prefect server start` on a free port, with its own PREFECT_HOME; yields its API URL."""
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("prefect server did not start")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


# --------------------------------------------------------------------------------------------
# Databases
# --------------------------------------------------------------------------------------------


def fresh_database(workdir: Path, postgres: str | None, name: str) -> str:
    if not postgres:
        return f"sqlite:///{workdir / f'{name}.db'}"
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(
        postgres.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(postgres).set(database=name).render_as_string(hide_password=False)


def load(url: str, accounts_file: Path) -> None:
    from arrears.importing import Kind, open_source
    from arrears.storage import get_engine, migrate
    from arrears.storage.importer import run_import

    engine = get_engine(url)
    migrate(engine)
    with open_source(accounts_file, Kind.ACCOUNTS) as source:
        summary = run_import(engine, source, now=datetime(2026, 11, 30, tzinfo=UTC))
    if summary.rejected:
        raise RuntimeError(f"{summary.rejected} accounts rejected")


# --------------------------------------------------------------------------------------------
# Trials
# --------------------------------------------------------------------------------------------


def killed_from_outside(env: Mapping[str, str], as_of: str, after: float) -> subprocess.CompletedProcess[str]:
    """A cycle process sent SIGKILL `after` seconds from its start (if it is still running then)."""
    process = cycle_process(env, as_of)
    try:
        out, err = process.communicate(timeout=after)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def crash_trial(
    env: dict[str, str], url: str, sandbox: Any, lob: Any, as_of: str, point: str
) -> dict[str, Any]:
    """Kill a cycle at `point` (`after:S`: from outside, S seconds after its start), rerun it, run
    it once more; the figures of the result."""
    env = {**env, "ARREARS_DATABASE_URL": url}
    sandbox.reset()
    forgetful(lob)
    if point.startswith("after:"):
        crashed = killed_from_outside(env, as_of, float(point.removeprefix("after:")))
    else:
        crashed = run_cycle(env, as_of, point)
    killed_in = progress(url)
    rerun = run_cycle(env, as_of)
    before = audit(url, sandbox.messages(route="aliyun"), lob.letters())
    third = run_cycle(env, as_of)
    after = audit(url, sandbox.messages(route="aliyun"), lob.letters())
    changes = (
        (after["events"] - before["events"])
        + (after["received"] - before["received"])
        + (after["letters_mailed"] - before["letters_mailed"])
    )
    return {
        "trial": f"kill at {point}",
        "killed": crashed.returncode == -signal.SIGKILL,
        "killed_in": killed_in,
        "exit_codes": [crashed.returncode, rerun.returncode, third.returncode],
        "stderr": (rerun.stderr.strip().splitlines() or [""])[-1][:200] if rerun.returncode else "",
        **after,
        "rerun_changes": changes,
        "extra_pulls": max(0, after["pulls"] - pulls_a_day(env)),
    }


def forgetful(lob: Any) -> None:
    """The sandbox Lob emptied, and keeping no idempotency key: a second hand-over of a letter
    mails a second letter, as a provider without idempotency would."""
    lob.reset()
    lob.set_rules(idempotency_window_seconds=0)


def pulls_a_day(env: Mapping[str, str]) -> int:
    """The bureau pulls a business day may make, as the cycle processes of `env` read it."""
    from arrears.settings import Settings

    limit = env.get("ARREARS_BUREAU_PULLS_PER_CYCLE")
    return int(limit) if limit else Settings.model_fields["bureau_pulls_per_cycle"].default


def progress(url: str) -> dict[str, int]:
    """How far the killed run got, read from what it left: where the kill fell."""
    from sqlalchemy import func, select

    from arrears.storage import get_engine
    from arrears.storage.tables import audit as audit_table
    from arrears.storage.tables import bureau, letter, message

    with get_engine(url).connect() as c:
        return {
            "transitions": c.execute(
                select(func.count()).where(audit_table.c.kind == "transition")
            ).scalar_one(),
            "messages": c.execute(select(func.count()).select_from(message)).scalar_one(),
            "sent": c.execute(select(func.count()).where(message.c.status.in_(SENT))).scalar_one(),
            "pulls": c.execute(select(func.count()).where(bureau.c.kind == "pull")).scalar_one(),
            "letters": c.execute(select(func.count()).select_from(letter)).scalar_one(),
            "letters_handed": c.execute(
                select(func.count()).where(letter.c.provider_id.is_not(None))
            ).scalar_one(),
            "letters_in_doubt": c.execute(
                select(func.count()).where(letter.c.status == "pending", letter.c.submitted_at.is_not(None))
            ).scalar_one(),
        }


def double_start_trial(env: dict[str, str], url: str, sandbox: Any, lob: Any, as_of: str) -> dict[str, Any]:
    """Two cycles for the same instant started together: one runs, the other exits 2."""
    env = {**env, "ARREARS_DATABASE_URL": url}
    sandbox.reset()
    forgetful(lob)
    first = cycle_process(env, as_of)
    time.sleep(random.uniform(0.0, 1.0))
    second = cycle_process(env, as_of)
    codes = sorted([first.wait(900), second.wait(900)])
    assert first.stderr is not None and second.stderr is not None
    said = (first.stderr.read() + second.stderr.read()).lower()
    figures = audit(url, sandbox.messages(route="aliyun"), lob.letters())
    return {
        "trial": "double start",
        "exit_codes": codes,
        # Exact: one ran and the other refused (2), or the second came after the first finished (0, no-op).
        "double_start_refused": codes == [0, 2] and "is running on this database" in said,
        **figures,
        "rerun_changes": 0,
        "extra_pulls": max(0, figures["pulls"] - pulls_a_day(env)),
    }


def timed_cycle(env: Mapping[str, str], url: str, accounts_file: Path, as_of: str) -> float:
    """Seconds from the start of an uninterrupted cycle process to its end, on a database of its
    own: the span the kills from outside are drawn from."""
    load(url, accounts_file)
    started = time.perf_counter()
    done = run_cycle({**env, "ARREARS_DATABASE_URL": url}, as_of)
    if done.returncode:
        raise RuntimeError(f"the uninterrupted cycle failed: {done.stderr[-500:]}")
    return time.perf_counter() - started


def pick_point(rng: random.Random, accounts: int, shard: int, batch: int) -> str:
    point = rng.choice(POINTS)
    if point == "advance":
        return f"advance:{rng.randint(1, max(1, accounts // shard))}"
    if point == "dispatch":
        return f"dispatch:{rng.randint(1, max(1, accounts // (2 * batch)))}"
    if point == "letters":  # a right-to-cure letter for ~3% of the accounts: 1 in 200 is surely there
        return f"letters:{rng.randint(1, max(1, accounts // 200))}"
    return point


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--trials", type=int, default=20, help="kill trials (default 20), plus one double start"
    )
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--as-of", default=DEFAULT_AS_OF)
    parser.add_argument("--postgres", help="a PostgreSQL server URL: each trial gets a database there")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--from-outside",
        action="store_true",
        help="kill each cycle from this script at a random instant instead of at a drill point",
    )
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from arrears.clock import business_date, parse_instant
    from arrears.simulate import generate_portfolio, write_accounts_file
    from integrations.letters.sandbox import start_letters_sandbox
    from integrations.sandbox import start_sandbox

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="arrears-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    shard = max(100, args.accounts // 8)
    batch = max(100, args.accounts // 20)
    day = business_date(parse_instant(args.as_of), "Asia/Shanghai")
    accounts_file = workdir / "accounts.csv"
    write_accounts_file(generate_portfolio(args.accounts, seed=args.seed, business_date=day), accounts_file)
    rows: list[dict[str, Any]] = []
    try:
        with (
            start_sandbox() as sandbox,
            start_letters_sandbox(in_process=False) as lob,
            prefect_server(workdir / "prefect") as api,
        ):
            env = {
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "ARREARS_HOME": str(workdir / "home"),
                "ARREARS_SMS_PROVIDER": "sandbox",
                "ARREARS_SMS_BASE_URL": sandbox.base_url,
                "ARREARS_SMS_CREDENTIALS": json.dumps(dict(sandbox.credentials)),
                "ARREARS_LETTERS_PROVIDER": "sandbox",
                "ARREARS_LETTERS_BASE_URL": lob.base_url,
                "ARREARS_LETTERS_CREDENTIALS": json.dumps(dict(lob.credentials)),
                "ARREARS_LETTERS_PER_RUN": str(args.accounts),  # every letter a cycle writes, in it
                "ARREARS_SHARD_SIZE": str(shard),
                "ARREARS_DISPATCH_BATCH": str(batch),
                "PREFECT_API_URL": api,
                "PREFECT_HOME": str(workdir / "prefect"),
            }
            if args.from_outside:
                timing = fresh_database(workdir, args.postgres, "chaos_timing")
                whole = timed_cycle(env, timing, accounts_file, args.as_of)
                print(json.dumps({"uninterrupted_cycle_s": round(whole, 1)}), flush=True)
                plan = [f"after:{rng.uniform(0, whole):.2f}" for _ in range(args.trials)]
            else:
                plan = [pick_point(rng, args.accounts, shard, batch) for _ in range(args.trials)]
            for n, point in enumerate([*plan, None]):
                url = fresh_database(workdir, args.postgres, f"chaos_{n}_{uuid.uuid4().hex[:6]}")
                started = time.perf_counter()
                load(url, accounts_file)
                if point is None:
                    row = double_start_trial(env, url, sandbox, lob, args.as_of)
                else:
                    row = crash_trial(env, url, sandbox, lob, args.as_of, point)
                row["seconds"] = round(time.perf_counter() - started, 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    figures = (
        "duplicates",
        "lost",
        "misrecorded",
        "doubled_events",
        "running_rows",
        "rerun_changes",
        "extra_pulls",
        "letters_doubled",
        "letters_unrecorded",
        "letters_misrecorded",
    )
    totals: dict[str, Any] = {k: sum(int(r[k]) for r in rows) for k in figures}
    totals |= {
        "trials": len(rows) - 1,
        "accounts": args.accounts,
        "database": "postgresql" if args.postgres else "sqlite",
        "killed": sum(1 for r in rows if r.get("killed")),
        "messages_received": sum(int(r["received"]) for r in rows),
        "letters_mailed": sum(int(r["letters_mailed"]) for r in rows),
        "double_start_refused": all(r.get("double_start_refused", True) for r in rows),
        "exit_codes": dict(Counter(str(r["exit_codes"]) for r in rows)),
        "targets_met": all(totals.get(k, 0) == 0 for k in figures),
    }
    totals["targets_met"] = all(totals[k] == 0 for k in figures) and totals["double_start_refused"]
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
