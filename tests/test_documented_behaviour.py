"""What README.md, docs/ and each command's --help promise an operator, checked against the product."""

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from arrears.settings import get_settings
from deployments.cli import app
from deployments.cli._common import CliError

runner = CliRunner()


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize(("kind", "name"), [("sms", "twilio"), ("letters", "lob"), ("bureau", "rest")])
def test_demo_never_reaches_a_provider_that_is_not_a_sandbox(
    kind: str, name: str, sms_sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: `arrears demo` runs "with SMS sent through the sandbox SMS server and right-to-cure
    letters mailed through the sandbox print-and-mail server"; its --help: "the sandbox providers".
    Its generated borrowers have real-looking numbers and addresses: run in a shell set up for
    production (ARREARS_SMS_PROVIDER=twilio), the demo texted them about debts that do not exist.
    It is refused, exit 2 naming the setting, before the demo database is made, and no text leaves."""
    monkeypatch.setenv(f"ARREARS_{kind.upper()}_PROVIDER", name)
    if kind == "sms":  # Twilio at the sandbox, which speaks its API: what it would have received
        monkeypatch.setenv("ARREARS_SMS_BASE_URL", sms_sandbox.base_url)
    get_settings.cache_clear()
    database = tmp_path / "demo.db"
    result = runner.invoke(app, ["demo", "--accounts", "20", "--database", f"sqlite:///{database}"])
    assert isinstance(result.exception, CliError), result.output
    assert result.exception.exit_code == 2
    assert f"ARREARS_{kind.upper()}_PROVIDER is {name!r}" in str(result.exception)
    assert sms_sandbox.messages() == []
    assert not database.exists()


def _imported(tmp_path: Path, url: str) -> None:
    from tests.factories import account_record, write_csv

    accounts = write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-P1")])
    assert runner.invoke(app, ["import", "accounts", str(accounts), "--database", url]).exit_code == 0


@pytest.fixture
def unreadable_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ARREARS_POLICY_FILE naming a file whose number is no number."""
    path = tmp_path / "policy.toml"
    path.write_text('[negotiation]\nreview_dpd = "seventy-five"\n', encoding="utf-8")
    monkeypatch.setenv("ARREARS_POLICY_FILE", str(path))
    get_settings.cache_clear()
    return path


@pytest.mark.usefixtures("prefect_harness", "sms_sandbox", "unreadable_policy")
@pytest.mark.parametrize("command", ["cycle", "dispatch"])
def test_a_policy_file_the_run_refuses_is_exit_2_before_anything_runs(
    command: str, tmp_path: Path, sqlite_url: str
) -> None:
    """README: a policy file that breaks a rule "is refused at start, naming the key"; exit 2 is
    "bad input or usage, nothing changed", as for SMS settings the run would refuse. The policy
    was read at the cycle's first step: a cycle row opened and failed, a Failed flow run, a
    traceback and exit 1 (and under `arrears serve` every run failed so)."""
    from sqlalchemy import create_engine, func, select

    from arrears.storage.tables import cycle_run

    _imported(tmp_path, sqlite_url)
    result = runner.invoke(app, [command, "--as-of", "2026-12-01T09:00:00+08:00", "--database", sqlite_url])
    assert isinstance(result.exception, CliError), repr(result.exception)
    assert result.exception.exit_code == 2
    assert "ARREARS_POLICY_FILE" in str(result.exception) and "negotiation.review_dpd" in str(
        result.exception
    )
    with create_engine(sqlite_url).connect() as c:
        assert c.execute(select(func.count()).select_from(cycle_run)).scalar() == 0


@pytest.mark.usefixtures("unreadable_policy")
def test_serve_refuses_a_policy_file_every_run_would_refuse(sqlite_url: str) -> None:
    """`arrears serve` reads no policy itself, so it served runs that each failed on it."""
    result = runner.invoke(app, ["serve", "--dry-run", "--database", sqlite_url])
    assert isinstance(result.exception, CliError), repr(result.exception)
    assert result.exception.exit_code == 2 and "ARREARS_POLICY_FILE" in str(result.exception)


@pytest.mark.usefixtures("unreadable_policy")
def test_a_person_s_command_that_meets_a_bad_policy_file_says_so_in_one_line(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`arrears settlement record` reads the policy's `settlements.max_pay_by_days`: a policy file
    it cannot read was a 60-line traceback and exit 1 ("anything else"); it is bad settings, one
    line naming the file and the key, exit 2."""
    from deployments.cli import main

    _imported(tmp_path, sqlite_url)
    capsys.readouterr()
    argv = ["arrears", "settlement", "record", "A-P1", "--amount", "100", "--pay-by", "2026-12-20"]
    monkeypatch.setattr("sys.argv", [*argv, "--reason", "agreed", "--database", sqlite_url])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    said = capsys.readouterr().err
    assert "invalid settings: ARREARS_POLICY_FILE" in said and "Traceback" not in said


def test_sandbox_help_names_every_kind_it_starts() -> None:
    """README: `arrears sandbox [--kind sms|court|bureau|letters|agency]`; its --help said "sms,
    court or bureau", leaving out the letters and agency sandboxes it starts."""
    from deployments.cli.providers import KINDS

    result = runner.invoke(app, ["sandbox", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert all(kind in result.output for kind in KINDS), result.output


def test_promise_add_help_says_a_settlement_refuses_it_too() -> None:
    """README: a promise taken by phone is "refused, exit 2, while a plan or a settlement is
    active", as the command does; its --help named the plan only."""
    result = runner.invoke(app, ["promise", "add", "--help"], terminal_width=200)
    assert result.exit_code == 0 and "a plan or a settlement is active" in result.output
