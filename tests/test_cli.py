"""The operator contract of DESIGN §8 through the `arrears` command line."""

import json
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deployments.cli import app
from deployments.cli._common import CliError
from tests.factories import account_record, write_csv

runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_cycle_without_a_database_is_a_one_line_error(tmp_path: Path) -> None:
    """`arrears cycle` on a missing SQLite file says so in one line and exits 2, creating nothing."""
    from deployments.cli import main  # noqa: F401  (main maps CliError to the exit code)

    result = runner.invoke(app, ["cycle", "--database", f"sqlite:///{tmp_path / 'none.db'}"])
    assert result.exit_code != 0
    assert "no database at" in str(result.exception) or "no database at" in result.output
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("bad", ["tomorrow", "2026-12-01T09:00:00"])
def test_cycle_refuses_an_ambiguous_as_of(bad: str, sqlite_url: str) -> None:
    """A non-ISO or offset-less --as-of is refused before anything runs."""
    result = runner.invoke(app, ["cycle", "--as-of", bad, "--database", sqlite_url])
    assert result.exit_code != 0
    assert "--as-of" in str(result.exception)


@pytest.mark.parametrize(
    ("variable", "field"),
    [
        ("ARREARS_REVIEW_DEADLINE_DAYS", "review_deadline_days"),
        ("ARREARS_BLOCKED_ALERT_THRESHOLD", "blocked_alert_threshold"),
    ],
)
def test_report_thresholds_are_settings_refused_before_the_cycle_runs(
    variable: str, field: str, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report's thresholds are settings: a number is read as the report reads it, and one that
    is no number stops `arrears cycle` before anything runs, naming it (it failed the cycle's report,
    after the advance and the dispatch, when the report read the environment itself)."""
    from sqlalchemy import create_engine, func, select

    from arrears.settings import get_settings
    from arrears.storage.tables import cycle_run
    from tasks.report import blocked_alert_threshold, review_deadline_days

    accounts = write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-42")])
    assert run("import", "accounts", str(accounts), "--database", sqlite_url).exit_code == 0
    monkeypatch.setenv(variable, "7")
    get_settings.cache_clear()
    assert {"review_deadline_days": review_deadline_days, "blocked_alert_threshold": blocked_alert_threshold}[
        field
    ]() == 7
    monkeypatch.setenv(variable, "a week")
    get_settings.cache_clear()
    refused = runner.invoke(app, ["cycle", "--database", sqlite_url])
    assert isinstance(refused.exception, CliError) and refused.exception.exit_code == 2
    assert str(refused.exception).startswith(f"invalid settings: {field}")
    with create_engine(sqlite_url).connect() as c:
        assert c.execute(select(func.count()).select_from(cycle_run)).scalar() == 0


@pytest.mark.parametrize(
    ("provider", "url", "complaint"),
    [
        ("nonexistent", None, "ARREARS_SMS_PROVIDER: no provider 'sms.nonexistent'"),
        ("twilio", None, "ARREARS_SMS_BASE_URL is required for the 'twilio' sms provider"),
        ("twilio", "https://api.twilio.com", "sms.twilio settings are invalid: account_sid: Field required"),
    ],
)
@pytest.mark.parametrize("command", ["cycle", "dispatch"])
def test_sms_settings_the_dispatch_would_refuse_are_refused_before_anything_runs(
    command: str,
    provider: str,
    url: str | None,
    complaint: str,
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An SMS provider misnamed, or Twilio without its URL or account, is one line and exit 2 before
    the cycle (or dispatch) starts: no account advanced, no cycle row (it stopped the cycle after
    its advance, with a traceback and a failed cycle)."""
    from sqlalchemy import create_engine, func, select

    from arrears.settings import get_settings
    from arrears.storage.tables import account, cycle_run

    accounts = write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-42")])
    assert run("import", "accounts", str(accounts), "--database", sqlite_url).exit_code == 0
    monkeypatch.setenv("ARREARS_SMS_PROVIDER", provider)
    if url:
        monkeypatch.setenv("ARREARS_SMS_BASE_URL", url)
    get_settings.cache_clear()
    refused = runner.invoke(app, [command, "--database", sqlite_url])
    assert isinstance(refused.exception, CliError) and refused.exception.exit_code == 2
    assert str(refused.exception).startswith(f"invalid settings: {complaint}")
    with create_engine(sqlite_url).connect() as c:
        assert c.execute(select(account.c.stage)).scalars().all() == ["cured"]
        assert c.execute(select(func.count()).select_from(cycle_run)).scalar() == 0


@pytest.mark.parametrize(("provider", "refused"), [("twilio", True), ("sandbox", False)])
def test_a_cycle_ahead_of_the_clock_is_refused_with_a_provider_that_reaches_phones(
    provider: str, refused: bool, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--as-of 2062-…` for 2026: through Twilio that cycle would decide a day to come and then
    refuse every real day's cycle as backdated; refused, exit 2, nothing done. The sandbox's days
    may run ahead (a simulation)."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import create_engine, func, select

    from arrears.settings import get_settings
    from arrears.storage.tables import cycle_run

    accounts = write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-42")])
    assert run("import", "accounts", str(accounts), "--database", sqlite_url).exit_code == 0
    monkeypatch.setenv("ARREARS_SMS_PROVIDER", provider)
    if provider == "twilio":
        monkeypatch.setenv("ARREARS_SMS_BASE_URL", "https://api.twilio.example")
        monkeypatch.setenv(
            "ARREARS_SMS_CREDENTIALS",
            '{"account_sid": "AC1", "auth_token": "t", "from_number": "+12025550100"}',
        )
    get_settings.cache_clear()
    ahead = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    result = runner.invoke(app, ["cycle", "--as-of", ahead, "--database", sqlite_url])
    with create_engine(sqlite_url).connect() as c:
        cycles = c.execute(select(func.count()).select_from(cycle_run)).scalar()
    if refused:
        assert isinstance(result.exception, CliError) and result.exception.exit_code == 2
        assert str(result.exception).startswith(f"--as-of {ahead} is in the future")
        assert cycles == 0
    else:
        assert result.exit_code == 0, result.output
        assert cycles == 1


def test_main_prints_errors_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The installed entry point turns an expected failure into `error: …` on stderr and exit 2."""
    from deployments.cli import main

    monkeypatch.setattr(
        "sys.argv", ["arrears", "show", "A-1", "--database", f"sqlite:///{tmp_path / 'x.db'}"]
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith("error: no database at") and "Traceback" not in err and err.count("\n") == 1


def test_a_database_a_newer_arrears_migrated_says_so_in_one_line(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at a revision this code does not know (a newer release upgraded it) is refused
    in one line that says so and what to do, exit 2, not Alembic's "Can't locate revision"."""
    from sqlalchemy import text

    from arrears.storage import get_engine, migrate
    from deployments.cli import main

    engine = get_engine(db_url)
    migrate(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    monkeypatch.setattr("sys.argv", ["arrears", "report", "--database", db_url])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert "revision 9999, newer than this arrears knows" in err and "upgrade arrears" in err
    with engine.connect() as connection:  # left as it was
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "9999"


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _main(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[Any, str]:
    """`arrears ARGV` through the installed entry point: its exit code and its stderr."""
    from deployments.cli import main

    monkeypatch.setattr("sys.argv", ["arrears", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["report"],
        ["show", "A-1"],
        ["review", "list"],
        ["cycle"],
        ["serve", "--dry-run"],
        ["import", "accounts", "accounts.csv"],
        ["migrate"],
    ],
)
def test_a_database_server_that_cannot_be_reached_is_exit_1_naming_the_setting(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL down (nothing listens on the port): one line naming ARREARS_DATABASE_URL, the
    server and the driver's cause, the password masked, exit 1: DESIGN §8 keeps 2 for bad input,
    and nothing was wrong with what the operator typed (it was exit 2 for every command)."""
    write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-1")])
    monkeypatch.setenv(
        "ARREARS_DATABASE_URL", f"postgresql://arrears:s3cret@127.0.0.1:{_closed_port()}/arrears"
    )
    code, err = _main(argv, monkeypatch, capsys)
    assert code == 1, err
    assert "Traceback" not in err and "s3cret" not in err and err.count("\n") == 1
    assert err.startswith(
        "error: cannot open the database of ARREARS_DATABASE_URL (postgresql://arrears:***@"
    )
    assert "Connection refused" in err


@pytest.mark.parametrize("argv", [["import", "accounts", "accounts.csv"], ["report"], ["migrate"]])
def test_a_sqlite_database_whose_directory_cannot_be_made_is_exit_1(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SQLite path under a regular file (as under a read-only or missing mount): exit 1 naming
    the setting and the cause, not 2."""
    write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-1")])
    (tmp_path / "plain").write_text("not a directory")
    monkeypatch.setenv("ARREARS_DATABASE_URL", f"sqlite:///{tmp_path / 'plain' / 'arrears.db'}")
    code, err = _main(argv, monkeypatch, capsys)
    if argv == ["report"]:  # reading: there is no database there, which the operator must fix
        assert code == 2 and err.startswith("error: no database at"), err
        return
    assert code == 1, err
    assert err.startswith("error: cannot open the database of ARREARS_DATABASE_URL (sqlite:///"), err
    assert "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("not a url", "not a database URL"),
        ("mysql://arrears:s3cret@db/arrears", "cannot use mysql://arrears:***@"),
    ],
)
def test_a_database_url_we_cannot_use_is_exit_2_naming_the_setting(
    url: str, said: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL that is none, or names a database we have no driver for, is bad input: exit 2."""
    monkeypatch.setenv("ARREARS_DATABASE_URL", url)
    code, err = _main(["report"], monkeypatch, capsys)
    assert code == 2 and err.startswith("error: ARREARS_DATABASE_URL: ") and said in err, err
    assert "s3cret" not in err


@pytest.mark.parametrize("argv", [["report"], ["import", "accounts", "accounts.csv"], ["migrate"]])
def test_a_directory_given_as_the_sqlite_database_is_exit_2_saying_so(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SQLite URL naming a directory is bad input: exit 2 saying it is a directory, not SQLite's
    "unable to open database file"."""
    write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-1")])
    monkeypatch.setenv("ARREARS_DATABASE_URL", f"sqlite:///{tmp_path}")
    code, err = _main(argv, monkeypatch, capsys)
    assert code == 2, err
    assert err == f"error: ARREARS_DATABASE_URL: {tmp_path} is a directory, not a database file\n"


def _alembic() -> Any:
    from alembic.config import Config

    from arrears.storage import engine as storage_engine

    config = Config()
    config.set_main_option("script_location", str(Path(storage_engine.__file__).with_name("migrations")))
    return config


def _head_and_before() -> tuple[str, str]:
    """This arrears' latest revision and the one before it (a database an older arrears left)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic())
    head = script.get_current_head()
    assert head is not None
    before = script.get_revision(head).down_revision
    assert isinstance(before, str)
    return head, before


HEAD, BEHIND = _head_and_before()


def _downgrade(url: str, revision: str) -> None:
    """The database as an older arrears left it."""
    from alembic import command

    from arrears.storage import get_engine

    config = _alembic()
    with get_engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _revision(url: str) -> str:
    from sqlalchemy import text

    from arrears.storage import get_engine

    with get_engine(url).connect() as connection:
        return str(connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


@pytest.mark.parametrize(
    "argv",
    [["report"], ["show", "A-42"], ["review", "list"], ["hold", "list", "A-42"], ["letters", "list"]],
)
def test_reading_a_database_behind_this_arrears_refuses_naming_arrears_migrate(
    argv: list[str],
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A report or a list on a database an older arrears left changes nothing: exit 2, one line
    saying to run `arrears migrate` (it ran the next migration on open: 0015 was, on PostgreSQL, a
    rewrite of two large tables under a lock, from a command the operator expected to read)."""
    accounts = write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-42")])
    assert run("import", "accounts", str(accounts), "--database", db_url).exit_code == 0
    _downgrade(db_url, BEHIND)
    code, err = _main([*argv, "--database", db_url], monkeypatch, capsys)
    assert code == 2, err
    said = f"error: the database's schema is at revision {BEHIND}, behind this arrears ({HEAD})"
    assert err.startswith(said)
    assert "run `arrears migrate`" in err and "Traceback" not in err and err.count("\n") == 1
    assert _revision(db_url) == BEHIND


def test_arrears_migrate_upgrades_a_database_behind_and_says_from_what(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`arrears migrate` upgrades the schema (from the revision before the latest), says so, and a
    second run has nothing to do; the reads work again."""
    accounts = write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-42")])
    assert run("import", "accounts", str(accounts), "--database", db_url).exit_code == 0
    _downgrade(db_url, BEHIND)
    first = run("migrate", "--database", db_url)
    assert first.exit_code == 0 and f"upgraded from revision {BEHIND} to {HEAD}" in first.output
    assert _revision(db_url) == HEAD
    again = run("migrate", "--database", db_url)
    assert again.exit_code == 0 and f"at revision {HEAD} already" in again.output
    assert run("show", "A-42", "--database", db_url, "--json").exit_code == 0


def test_an_import_upgrades_a_database_behind_on_open(db_url: str, tmp_path: Path) -> None:
    """The commands that write in bulk (import, cycle, dispatch, serve, demo) still upgrade on
    open, as before: a lender's scheduled import after an upgrade of arrears needs no new step."""
    accounts = write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-42")])
    assert run("import", "accounts", str(accounts), "--database", db_url).exit_code == 0
    _downgrade(db_url, BEHIND)
    assert run("import", "accounts", str(accounts), "--database", db_url).exit_code == 0
    assert _revision(db_url) == HEAD


def test_migrate_creates_a_new_sqlite_database(tmp_path: Path) -> None:
    """`arrears migrate` on no database yet makes one at this arrears' schema (0600)."""
    url = f"sqlite:///{tmp_path / 'data' / 'new.db'}"
    done = run("migrate", "--database", url)
    assert done.exit_code == 0 and f"upgraded from revision (none) to {HEAD}" in done.output
    assert _revision(url) == HEAD and (tmp_path / "data" / "new.db").stat().st_mode & 0o777 == 0o600


def test_a_database_that_refuses_a_write_is_one_line_without_the_statement(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write the database refuses (a read-only file, a full disk) ends the command with one line,
    exit 1: the driver's words, never SQLAlchemy's statement and parameters (a borrower's number
    in a hold's reason) nor a traceback."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from deployments.cli import main

    accounts = write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-42")])
    assert run("import", "accounts", str(accounts), "--database", sqlite_url).exit_code == 0

    def refused(*args: Any, **kwargs: Any) -> bool:
        raise OperationalError(
            "INSERT INTO account_hold (reason) VALUES (?)",
            ("borrower at 13912345678",),
            sqlite3.OperationalError("attempt to write a readonly database"),
        )

    monkeypatch.setattr("arrears.storage.holds.place_hold", refused)
    argv = ["arrears", "hold", "place", "A-42", "dispute", "--reason", "x", "--database", sqlite_url]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert err == "error: database error: attempt to write a readonly database\n"


def test_an_unexpected_errors_traceback_shows_no_number(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error nothing expected (a bug, a provider's refusal a flow let through) still ends the
    command with its traceback and exit 1, for a bug report, but with the numbers its text quotes
    masked: under cron or systemd the terminal's stderr is a log like any other."""
    from deployments.cli import main

    accounts = write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-43")])
    assert run("import", "accounts", str(accounts), "--database", sqlite_url).exit_code == 0

    def broken(*args: Any, **kwargs: Any) -> bool:
        raise ValueError("no hold for +8613912341234 (party 11010519491231002X)")

    monkeypatch.setattr("arrears.storage.holds.place_hold", broken)
    argv = ["arrears", "hold", "place", "A-43", "dispute", "--reason", "x", "--database", sqlite_url]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert err.startswith("Traceback (most recent call last):"), err
    assert err.endswith("ValueError: no hold for +86*******1234 (party **************002X)\n"), err
    assert "13912341234" not in err and "1101051949" not in err, err


@pytest.mark.usefixtures("prefect_harness", "sms_sandbox")
def test_cycle_show_and_report_tell_the_story(tmp_path: Path, sqlite_url: str) -> None:
    """After import and a cycle, `show --json` and `report --json` carry the contract's fields."""
    accounts = write_csv(
        tmp_path / "accounts.csv", [account_record(account_id="A-42", oldest_due_date="2026-11-26")]
    )
    assert run("import", "accounts", str(accounts), "--database", sqlite_url).exit_code == 0
    cycle = run("cycle", "--as-of", "2026-12-01T16:30:00Z", "--database", sqlite_url, "--json")
    assert cycle.exit_code == 0, cycle.output
    assert json.loads(cycle.stdout)["dispatch"]["sent"] == 1

    shown = json.loads(run("show", "A-42", "--database", sqlite_url, "--json").stdout)
    assert {
        "account_id",
        "stage",
        "days_past_due",
        "past_due_amount",
        "segment",
        "holds",
        "messages",
        "timeline",
    } <= shown.keys()
    # The business date follows the lender's zone: at 16:30 UTC it is already 2 December in Shanghai.
    assert (shown["stage"], shown["days_past_due"], shown["past_due_amount"]) == ("reminder", 6, "412.50")
    assert shown["episode"] == 1
    assert "reminder since 2026-12-0" in run("show", "A-42", "--database", sqlite_url).output
    (message,) = shown["messages"]
    assert {"template", "status", "not_before", "sent_at", "reason"} <= message.keys()
    assert (message["template"], message["status"]) == ("reminder", "sent")
    assert [e["kind"] for e in shown["timeline"]] == ["transition", "message"]
    assert all({"at", "kind", "detail"} <= e.keys() for e in shown["timeline"])

    report = json.loads(run("report", "--database", sqlite_url, "--json").stdout)
    assert report["accounts_by_stage_and_bucket"] == {"reminder": {"1-29": 1}}
    assert report["transitions"] == {"cured": {"reminder": 1}}
    assert report["messages_by_status"] == {"sent": 1}

    missing = runner.invoke(app, ["show", "A-404", "--database", sqlite_url])
    assert "no account 'A-404'" in str(missing.exception)
    # An id with square brackets is shown as it is, not read as markup (`[/x]` raised an error).
    odd = write_csv(tmp_path / "odd.csv", [account_record(account_id="Q-[/x][b]1", borrower_id="B-Q")])
    assert run("import", "accounts", str(odd), "--database", sqlite_url).exit_code == 0
    assert "account Q-[/x][b]1" in run("show", "Q-[/x][b]1", "--database", sqlite_url).output

    # A cycle as of an earlier instant (yesterday, 1970 by a typo) would recompute days past due
    # backwards and text the borrower again: refused, exit 2, and nothing changes.
    for earlier in ("2026-11-30T16:30:00Z", "1970-01-01T00:00:00Z"):
        refused = runner.invoke(app, ["cycle", "--as-of", earlier, "--database", sqlite_url, "--json"])
        assert refused.exception is not None and getattr(refused.exception, "exit_code", None) == 2
        assert "a cycle already ran as of 2026-12-01T16:30:00+00:00 (finished)" in str(refused.exception)
    again = json.loads(run("show", "A-42", "--database", sqlite_url, "--json").stdout)
    assert (again["days_past_due"], len(again["messages"]), again["timeline"]) == (6, 1, shown["timeline"])


@pytest.mark.usefixtures("prefect_harness", "sms_sandbox")
def test_demo_days_mail_the_letters_each_day_hands_over(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's days share one sandbox Lob, which mails what a day's cycle handed over before the
    next day's, dated halfway between them: the next cycle looks the letters up and counts their
    reviews' cure periods from those mailings. The letters of the last day wait to be mailed, and
    the environment is left as it was found."""
    monkeypatch.delenv("ARREARS_LETTERS_BASE_URL", raising=False)
    monkeypatch.delenv("ARREARS_LETTERS_CREDENTIALS", raising=False)
    demo = run(
        "demo",
        "--accounts",
        "400",
        "--days",
        "2",
        "--as-of",
        "2026-12-01T16:00:00Z",
        "--database",
        sqlite_url,
    )
    assert demo.exit_code == 0, demo.output
    assert "ARREARS_LETTERS_BASE_URL" not in os.environ and "ARREARS_LETTERS_CREDENTIALS" not in os.environ
    letters = json.loads(run("letters", "list", "--database", sqlite_url, "--json").stdout)
    first_day = [x for x in letters if datetime.fromisoformat(x["created_at"]).date() == date(2026, 12, 1)]
    # The cure notices of the reviews, and the validation notices of the US-CA borrowers texted.
    assert first_day and {x["kind"] for x in first_day} == {"right_to_cure", "validation_notice"}
    mailed = datetime(2026, 12, 2, 4, tzinfo=UTC)
    assert {(x["status"], datetime.fromisoformat(x["mailed_at"])) for x in first_day} == {("mailed", mailed)}
    assert all(datetime.fromisoformat(x["deadline"]) > mailed for x in first_day)
    assert all(x["status"] == "created" for x in letters if x not in first_day)
    # Tens of thousands of letters are more than a terminal shows: the table, the oldest first, counts them.
    oldest = run("letters", "list", "--database", sqlite_url, "--limit", "1")
    title = f"letters ({len(letters):,}; the oldest 1 shown, --limit 0 for all)"
    assert title in " ".join(oldest.stdout.split())
    first = letters[0]["account_id"]
    assert first in oldest.stdout
    assert not any(x["account_id"] in oldest.stdout for x in letters if x["account_id"] != first)


def test_show_before_any_cycle_says_the_account_is_not_in_collection(tmp_path: Path, sqlite_url: str) -> None:
    """An account imported 68 days late and not yet taken in by a cycle is stored with the resting
    stage and no days past due: `show` says it is not in collection and when it fell due, not
    "cured · 0 days past due"."""
    accounts = write_csv(
        tmp_path / "accounts.csv", [account_record(account_id="A-7", oldest_due_date="2026-09-26")]
    )
    assert run("import", "accounts", str(accounts), "--database", sqlite_url).exit_code == 0
    shown = run("show", "A-7", "--database", sqlite_url).output
    assert "not in collection · oldest due 2026-09-26 · past due" in shown
    assert "cured" not in shown and "days past due" not in shown
    assert "no messages" in shown and "not before" not in shown  # a line, not an empty table
    data = json.loads(run("show", "A-7", "--database", sqlite_url, "--json").stdout)
    assert (data["episode"], data["oldest_due_date"]) == (0, "2026-09-26")


def test_hold_place_list_and_lift_are_audited_with_who_and_why(tmp_path: Path, sqlite_url: str) -> None:
    """A person places a hold, lists it, lifts it; each change is audited as theirs. Placing one
    in force, lifting one not in force or before it was placed, an SMS opt-out (only the
    borrower's START ends it), an unknown kind, no reason or no agent change nothing and say so."""
    accounts = write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-7")])
    assert run("import", "accounts", str(accounts), "--database", sqlite_url).exit_code == 0
    db = ["--database", sqlite_url]
    placed = run(
        "hold",
        "place",
        "A-7",
        "Bankruptcy",
        "--reason",
        "  Chapter 13, case 26-10001 ",
        "--agent",
        "Ana",
        *db,
    )
    assert placed.exit_code == 0 and "A-7: bankruptcy hold placed" in placed.output
    again = run("hold", "place", "A-7", "bankruptcy", "--reason", "again", *db)
    assert "in force already: nothing changed" in again.output
    (held,) = json.loads(run("hold", "list", "A-7", "--json", *db).stdout)
    assert (held["kind"], held["source"], held["placed_by"], held["reason"], held["lifted_at"]) == (
        "bankruptcy",
        "agent",
        "Ana",
        "Chapter 13, case 26-10001",
        None,
    )
    assert "Ana" in run("hold", "list", "A-7", *db).output  # who, not "agent"
    assert json.loads(run("show", "A-7", "--json", *db).stdout)["holds"] == ["bankruptcy"]

    lifted = run("hold", "lift", "A-7", "bankruptcy", "--reason", "case dismissed", "--agent", "Ben", *db)
    assert lifted.exit_code == 0 and "A-7: bankruptcy hold lifted" in lifted.output
    assert json.loads(run("hold", "list", "A-7", "--json", *db).stdout) == []
    (gone,) = json.loads(run("hold", "list", "A-7", "--all", "--json", *db).stdout)
    assert gone["lifted_at"] is not None
    timeline = json.loads(run("show", "A-7", "--json", *db).stdout)["timeline"]
    assert [(e["kind"], e["actor"], e["detail"]) for e in timeline if e["kind"] == "hold"] == [
        ("hold", "Ana", "bankruptcy hold placed by Ana: Chapter 13, case 26-10001"),
        (
            "hold",
            "Ben",
            "bankruptcy hold lifted by Ben: case dismissed (placed by Ana on "
            f"{gone['placed_at'][:10]}: Chapter 13, case 26-10001)",
        ),
    ]

    for args, code, said in [
        (
            ["lift", "A-7", "bankruptcy", "--reason", "x"],
            2,
            "no bankruptcy hold is in force: nothing changed",
        ),
        (["place", "A-7", "military", "--reason", "SCRA", "--agent", " "], 2, "--agent: name who did it"),
        (["lift", "A-7", "sms_opt_out", "--reason", "x"], 2, "ends only with the borrower's START"),
        (["place", "A-7", "vacation", "--reason", "x"], 2, "KIND: 'vacation' is not a hold"),
        (["place", "A-7", "dispute", "--reason", "  "], 2, "--reason: say why"),
        (["place", "A-404", "dispute", "--reason", "x"], 2, "no account 'A-404'"),
    ]:
        refused = runner.invoke(app, ["hold", *args, *db])
        assert isinstance(refused.exception, CliError), args
        assert (refused.exception.exit_code, said in str(refused.exception)) == (code, True), args
    # Lifting as of an instant before the hold was placed would date the audit trail backwards.
    assert run("hold", "place", "A-7", "dispute", "--reason", "texted", *db).exit_code == 0
    early = runner.invoke(
        app, ["hold", "lift", "A-7", "dispute", "--reason", "x", "--as-of", "1960-01-01T00:00:00Z", *db]
    )
    assert isinstance(early.exception, CliError) and "was placed on" in str(early.exception)
    assert json.loads(run("hold", "list", "A-7", "--json", *db).stdout)[0]["kind"] == "dispute"
    assert (
        len(
            [
                e
                for e in json.loads(run("show", "A-7", "--json", *db).stdout)["timeline"]
                if e["kind"] == "hold"
            ]
        )
        == 3
    )
    # A typo in an account is said, not listed as "no promises" or "no letters"; a quarantine
    # entry that does not exist is not "still in quarantine".
    for args in (["promise", "list", "A-8"], ["letters", "list", "--account", "A-8"]):
        typo = runner.invoke(app, [*args, *db])
        assert isinstance(typo.exception, CliError) and "no account 'A-8'" in str(typo.exception), args
    unknown = runner.invoke(app, ["quarantine", "retry", "999", *db])
    assert isinstance(unknown.exception, CliError) and unknown.exception.exit_code == 2
    assert "quarantine entry 999 does not exist" in str(unknown.exception)


def test_every_command_has_help() -> None:
    """Each command of the operator contract answers --help."""
    for command in (
        ["demo"],
        ["import", "accounts"],
        ["import", "payments"],
        ["cycle"],
        ["dispatch"],
        ["show"],
        ["report"],
        ["hold", "place"],
        ["hold", "lift"],
        ["hold", "list"],
        ["serve"],
        ["letters", "list"],
        ["letters", "pdf"],
        ["letters", "rewrite"],
    ):
        result = run(*command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output, command


@pytest.mark.parametrize("width", [80, 200])
def test_report_tables_never_cut_a_stage_or_a_count(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a wide terminal the report has a column per bucket and a from → to matrix; on 80
    columns, where those would cut headings and counts ("negotiati…", "120,0…"), the buckets are
    words that wrap and the transitions one move a row. Every name and count is printed whole."""
    from deployments.cli._common import console
    from deployments.cli.report import print_report_tables

    stages = ["cured", "legal_referral", "negotiation", "reminder", "repossession_review", "restructuring"]
    data = {
        "cycle_id": 7,
        "accounts_by_stage_and_bucket": {"reminder": {"1-29": 120_000, "30-59": 5_432}},
        "transitions": {src: {to: 12_345 for to in stages if to != src} for src in stages},
        "messages_by_status": {"sent": 1},
        "blocked_by_reason": {},
        "scheduled_by_reason": {},
        "roll_rate": None,
        "cure_rate": None,
    }
    monkeypatch.setattr(console, "width", width)
    with console.capture() as captured:
        print_report_tables(data)
    text = captured.get()
    assert "…" not in text and all(stage in text for stage in stages)
    assert all(count in text for count in ("120,000", "5,432", "125,432"))
    assert text.count("12,345") == 30  # every move, once
    heading = next(line for line in text.splitlines() if "┃ stage" in line)
    assert ("30-59" in heading) == (width == 200)  # a column per bucket: wide only


def _a_cycle_ran(url: str, as_of: str) -> int:
    """Record a finished cycle as of `as_of`, as `arrears cycle` leaves one; returns its id."""
    from sqlalchemy import create_engine

    from arrears.storage import cycle_runs

    instant = datetime.fromisoformat(as_of)
    engine = create_engine(url)
    with engine.begin() as c:
        cycle_id = cycle_runs.start_cycle(c, as_of=instant, business_date=instant.date())
        cycle_runs.finish_cycle(c, cycle_id=cycle_id, finished_at=instant, stats={})
    engine.dispose()
    return cycle_id


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-01:00"])
@pytest.mark.parametrize("command", ["cycle", "dispatch", "demo"])
def test_an_as_of_outside_the_years_1_to_9999_in_utc_is_exit_2_naming_the_option(
    command: str, instant: str, sqlite_url: str
) -> None:
    """An --as-of that is valid ISO 8601 but falls outside years 1..9999 once taken to UTC (.NET's
    DateTimeOffset.MinValue in China's zone) is one line naming --as-of and exit 2, as any other
    malformed --as-of, not an OverflowError traceback and exit 1."""
    result = runner.invoke(app, [command, "--as-of", instant, "--database", sqlite_url])
    assert isinstance(result.exception, CliError), repr(result.exception)
    assert result.exception.exit_code == 2 and "--as-of" in str(result.exception)
    assert "outside the years 1 to 9999" in str(result.exception)


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("command", ["cycle", "dispatch"])
def test_an_empty_as_of_is_refused_not_taken_for_now(command: str, tmp_path: Path, sqlite_url: str) -> None:
    """`arrears cycle --as-of "$DAY"` with DAY unset is no instant: exit 2 naming --as-of, and no
    cycle runs (it ran as of the wall clock)."""
    from sqlalchemy import create_engine, func, select

    from arrears.storage.tables import cycle_run

    accounts = write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-E1")])
    assert run("import", "accounts", str(accounts), "--database", sqlite_url).exit_code == 0
    result = runner.invoke(app, [command, "--as-of", "", "--database", sqlite_url])
    assert isinstance(result.exception, CliError), repr(result.exception)
    assert result.exception.exit_code == 2 and str(result.exception).startswith("--as-of: '' is not")
    with create_engine(sqlite_url).connect() as c:
        assert c.execute(select(func.count()).select_from(cycle_run)).scalar() == 0


@pytest.mark.usefixtures("prefect_harness")
def test_a_backdated_cycle_is_refused_before_a_flow_run_is_recorded(tmp_path: Path, sqlite_url: str) -> None:
    """An --as-of before the latest cycle's is exit 2 in one line, and Prefect records no Failed
    `daily-cycle` run for a refusal that changed nothing (nor logs its ERROR and traceback)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterStartTime,
    )

    accounts = write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-B1")])
    assert run("import", "accounts", str(accounts), "--database", sqlite_url).exit_code == 0
    _a_cycle_ran(sqlite_url, "2026-12-05T01:00:00+00:00")
    began = datetime.now(UTC)
    result = runner.invoke(app, ["cycle", "--as-of", "2026-12-01T09:00:00+08:00", "--database", sqlite_url])
    assert isinstance(result.exception, CliError) and result.exception.exit_code == 2, repr(result.exception)
    assert "a cycle already ran as of 2026-12-05T01:00:00+00:00 (finished)" in str(result.exception)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["daily-cycle"])),
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=began)),
        )
    assert runs == [], [(r.name, r.state_name) for r in runs]


def test_report_of_a_cycle_that_never_ran_is_exit_2_naming_it(tmp_path: Path, sqlite_url: str) -> None:
    """`report --cycle 999` where no cycle 999 ran is exit 2 naming it, as `show` an unknown
    account: not exit 0 and a report headed `cycle_id: 999` that reads as a quiet cycle."""
    accounts = write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-C9")])
    assert run("import", "accounts", str(accounts), "--database", sqlite_url).exit_code == 0
    ran = _a_cycle_ran(sqlite_url, "2026-12-05T01:00:00+00:00")
    result = runner.invoke(app, ["report", "--cycle", "999", "--json", "--database", sqlite_url])
    assert isinstance(result.exception, CliError), result.output[:200]
    assert result.exception.exit_code == 2 and str(result.exception).startswith("no cycle 999")
    known = run("report", "--cycle", str(ran), "--json", "--database", sqlite_url)
    assert json.loads(known.stdout)["cycle_id"] == ran
