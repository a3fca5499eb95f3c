"""A real `arrears cycle` process killed (SIGKILL) at each step, then rerun, against a long-lived
sandbox SMS server in its own process and a long-lived sandbox Lob keeping no idempotency key, on
SQLite and PostgreSQL: nothing twice, nothing lost, nothing recorded otherwise than it happened,
messages and letters alike. Also: one cycle at a time, and loud outages."""

import json
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from arrears.clock import business_date, parse_instant
from arrears.simulate import generate_portfolio, write_accounts_file
from arrears.storage import get_engine
from arrears.storage.tables import cycle_run, letter, message
from benchmarks.chaos import audit, forgetful, load, run_cycle

pytestmark = pytest.mark.usefixtures("prefect_harness")

AS_OF = "2026-12-01T01:00:00Z"  # 09:00 in Shanghai: nearly every borrower may be messaged
ROOT = Path(__file__).resolve().parent.parent
PULLS_A_DAY = 10  # fewer than the portfolio has entering negotiation: a second day's worth would show


@pytest.fixture
def portfolio(tmp_path: Path) -> Path:
    """A few hundred generated accounts, many of them due a message and some entering negotiation."""
    day = business_date(parse_instant(AS_OF), "Asia/Shanghai")
    path = tmp_path / "accounts.csv"
    write_accounts_file(generate_portfolio(300, seed=7, business_date=day), path)
    return path


@pytest.fixture
def lob(letters_sandbox_server: Any) -> Any:
    """The session's sandbox Lob, emptied, keeping no idempotency key: a letter handed over twice
    after a kill is two letters in the post."""
    forgetful(letters_sandbox_server)
    return letters_sandbox_server


@pytest.fixture
def cli_env(sms_sandbox: Any, lob: Any, tmp_path: Path) -> dict[str, str]:
    """What a `python -m deployments.cli` process needs: the shared sandboxes and Prefect server."""
    from prefect.settings import PREFECT_API_URL

    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ARREARS_HOME": str(tmp_path / "home"),
        "ARREARS_LETTERS_PROVIDER": "sandbox",
        "ARREARS_LETTERS_BASE_URL": lob.base_url,
        "ARREARS_LETTERS_CREDENTIALS": json.dumps(dict(lob.credentials)),
        "ARREARS_SHARD_SIZE": "60",
        "ARREARS_DISPATCH_BATCH": "40",
        "ARREARS_BUREAU_PULLS_PER_CYCLE": str(PULLS_A_DAY),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
    }


def _loaded(db_url: str, portfolio: Path) -> str:
    load(db_url, portfolio)
    return db_url


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _crash_and_rerun(
    env: dict[str, str], url: str, sandbox: Any, lob: Any, point: str, *, third: bool = False
) -> None:
    """Kill a cycle at `point`, rerun it, and hold the result to the figures; with `third`, run it
    once more: finding the instant's cycle finished, it changes nothing (what the rerun left is
    the same whatever the point, so the tests of every point do not each pay a third process)."""
    env = {**env, "ARREARS_DATABASE_URL": url}
    crashed = run_cycle(env, AS_OF, point)
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr[-2000:])
    with get_engine(url).connect() as c:
        assert c.execute(select(cycle_run.c.status)).scalars().all() == ["running"]

    rerun = run_cycle(env, AS_OF)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    figures = audit(url, sandbox.messages(route="aliyun"), lob.letters())
    assert figures["received"] > 50 and figures["letters_mailed"] > 0
    assert figures["pulls"] == PULLS_A_DAY  # the day's, whether the killed run made some or none
    assert {
        k: figures[k]
        for k in (
            "duplicates",
            "lost",
            "misrecorded",
            "doubled_events",
            "running_rows",
            "letters_doubled",
            "letters_unrecorded",
            "letters_misrecorded",
        )
    } == {
        "duplicates": 0,
        "lost": 0,
        "misrecorded": 0,
        "doubled_events": 0,
        "running_rows": 0,
        "letters_doubled": 0,
        "letters_unrecorded": 0,
        "letters_misrecorded": 0,
    }
    with get_engine(url).connect() as c:
        assert c.execute(select(cycle_run.c.status).order_by(cycle_run.c.id)).scalars().all() == [
            "crashed",
            "finished",
        ]
        handed = c.execute(select(func.count()).where(letter.c.provider_id.is_not(None))).scalar_one()
        stored = c.execute(select(cycle_run.c.stats).where(cycle_run.c.status == "finished")).scalar_one()
    # The cycle's letters, printed and stored, are those both runs handed over, each once: every
    # letter of this fresh database, the killed run's too.
    assert json.loads(rerun.stdout)["letters"]["letters_sent"] == handed == figures["letters_mailed"]
    assert stored["letters"]["letters_sent"] == handed
    if not third:
        return

    again = run_cycle(env, AS_OF)
    assert again.returncode == 0 and json.loads(again.stdout)["already_finished"]
    after = audit(url, sandbox.messages(route="aliyun"), lob.letters())
    assert (after["events"], after["received"], after["letters_mailed"]) == (
        figures["events"],
        figures["received"],
        figures["letters_mailed"],
    )


@pytest.mark.parametrize("point", ["dispatch:2", "letters:3"])
@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_cycle_killed_while_sending_is_exact_after_its_rerun(
    db: str,
    point: str,
    request: pytest.FixtureRequest,
    cli_env: dict[str, str],
    portfolio: Path,
    sms_sandbox: Any,
    lob: Any,
) -> None:
    """Killed after a dispatch batch was sent and before its outcome was written, or after the
    provider took the third letter, the rerun records those sends as sent (none blocked, none
    twice), writes no event twice, mails every letter once, counts in its stats the letters the
    killed run handed over beside its own, and closes the row as crashed; a third run at the same
    instant changes nothing."""
    url = _loaded(request.getfixturevalue(f"{db}_url"), portfolio)
    # One letter in the provider's hands at a time: the killed run recorded the two before the third.
    env = cli_env | {"ARREARS_LETTERS_CONCURRENCY": "1"}
    _crash_and_rerun(env, url, sms_sandbox, lob, point, third=True)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["refresh", "advance:2", "dispatch:1", "dispatch:4", "letters:2", "report"])
@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_cycle_killed_at_any_step_is_exact_after_its_rerun(
    db: str,
    point: str,
    request: pytest.FixtureRequest,
    cli_env: dict[str, str],
    portfolio: Path,
    sms_sandbox: Any,
    lob: Any,
) -> None:
    """Killed in refresh, advance, dispatch, among the letters (the provider has taken the second,
    it is not recorded) or in report, the rerun leaves no duplicate at the sandbox, no contact
    recorded blocked that happened, no transition or event twice, and every letter mailed once
    (the provider keeps no key: only the rerun's lookup of the letter in doubt stops a second)
    and recorded with the provider's id."""
    url = _loaded(request.getfixturevalue(f"{db}_url"), portfolio)
    _crash_and_rerun(cli_env, url, sms_sandbox, lob, point)


def test_cycle_interrupted_by_ctrl_c_says_so_and_its_rerun_carries_on(
    sqlite_url: str, cli_env: dict[str, str], portfolio: Path, sms_sandbox: Any, lob: Any
) -> None:
    """Ctrl-C after the advance's second shard: the cycle exits 1 with one line saying it stopped
    part-way and how to carry on (typer alone exits 130 and says nothing), its row is closed as
    failed, not left running, and the rerun finishes the day: nothing twice, nothing lost."""
    url = _loaded(sqlite_url, portfolio)
    env = {**cli_env, "ARREARS_DATABASE_URL": url, "ARREARS_CRASH_SIGNAL": "SIGINT"}
    interrupted = run_cycle(env, AS_OF, "advance:2")
    assert interrupted.returncode == 1, (interrupted.returncode, interrupted.stderr[-2000:])
    said = interrupted.stderr.strip().splitlines()[-1]
    assert said.startswith("error: interrupted: the cycle stopped part-way") and "`arrears cycle`" in said
    with get_engine(url).connect() as c:
        assert c.execute(select(cycle_run.c.status)).scalars().all() == ["failed"]

    rerun = run_cycle(env | {"ARREARS_CRASH_SIGNAL": ""}, AS_OF)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    figures = audit(url, sms_sandbox.messages(route="aliyun"), lob.letters())
    assert figures["received"] > 50
    assert (figures["duplicates"], figures["lost"], figures["doubled_events"], figures["running_rows"]) == (
        0,
        0,
        0,
        0,
    )


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_second_cycle_start_exits_2_saying_a_cycle_is_running(
    db: str, request: pytest.FixtureRequest, cli_env: dict[str, str], portfolio: Path
) -> None:
    """While a cycle holds the database, `arrears cycle` (and `arrears dispatch`) exits 2 saying a
    cycle is running, and changes nothing."""
    from tasks.cycle import run_exclusively

    url = _loaded(request.getfixturevalue(f"{db}_url"), portfolio)
    env = {**cli_env, "ARREARS_DATABASE_URL": url}
    os.environ["ARREARS_DATABASE_URL"] = url
    try:
        from arrears.settings import get_settings

        get_settings.cache_clear()
        with run_exclusively("cycle"):  # the first cycle, holding the lock for its whole run
            second = _cli(env, "cycle", "--as-of", AS_OF)
            dispatch = _cli(env, "dispatch", "--as-of", AS_OF)
    finally:
        del os.environ["ARREARS_DATABASE_URL"]
    assert second.returncode == 2 and "a cycle or dispatch is running" in second.stderr, second.stderr
    assert dispatch.returncode == 2, dispatch.stderr
    with get_engine(url).connect() as c:
        assert c.execute(select(cycle_run.c.id)).all() == []


def test_cycle_row_of_a_running_cycle_refuses_a_second_one(sqlite_engine: Engine) -> None:
    """The database itself refuses a second `running` cycle row, even past the lock."""
    from arrears.storage.cycle_runs import CycleRunning, start_cycle

    at = datetime(2026, 12, 1, tzinfo=UTC)
    with sqlite_engine.begin() as c:
        start_cycle(c, as_of=at, business_date=at.date())
    with sqlite_engine.begin() as c, pytest.raises(CycleRunning):
        start_cycle(c, as_of=at, business_date=at.date())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("outage", ["503", "refused"])
def test_provider_outage_exits_4_naming_the_provider_and_messages_wait(
    outage: str, sqlite_url: str, cli_env: dict[str, str], portfolio: Path, sms_sandbox: Any
) -> None:
    """With the provider answering 503 to everything, or refusing connections, the cycle exits 4
    with one line naming the provider and how many messages wait; they wait scheduled with the
    provider as the reason, and a later `arrears dispatch` sends them."""
    url = _loaded(sqlite_url, portfolio)
    env = {**cli_env, "ARREARS_DATABASE_URL": url}
    if outage == "503":
        sms_sandbox.set_faults(http_503=1_000_000, retry_after=0)
        down = env
    else:
        down = {**env, "ARREARS_SMS_BASE_URL": f"http://127.0.0.1:{_closed_port()}"}
    result = _cli(down, "cycle", "--as-of", AS_OF, "--json")
    assert result.returncode == 4, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    with get_engine(url).connect() as c:
        waiting = c.execute(
            select(message.c.id).where(
                message.c.status == "scheduled", message.c.reason == "provider:sandbox:outage"
            )
        ).all()
    assert len(waiting) > 50
    assert (
        line.startswith("SMS provider sandbox could not be reached")
        and f"{len(waiting):,} messages wait" in line
    )
    assert json.loads(result.stdout)["outage"] == {"provider": "sandbox", "waiting": len(waiting)}
    assert sms_sandbox.messages(route="aliyun") == []

    sms_sandbox.set_faults()
    later = _cli(env, "dispatch", "--as-of", "2026-12-01T01:05:00Z", "--json")
    assert later.returncode == 0, later.stderr[-2000:]
    assert json.loads(later.stdout).get("sent", 0) >= len(waiting)
