"""Issue 10: private files on disk, no secret in a message, no crash on text the user gave."""

import json
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arrears.files import atomic_write, safe_cell, unsafe_cell
from arrears.settings import Settings, describe_error, get_settings
from deployments.cli import app, main
from deployments.cli._common import console_err
from tests.factories import account_record, write_csv

runner = CliRunner()


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    """`arrears ARGS` through main(), as the console script runs it: exit code and stderr."""
    monkeypatch.setattr(console_err, "soft_wrap", True)
    monkeypatch.setattr(sys, "argv", ["arrears", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return int(exited.value.code or 0), capsys.readouterr().err


def test_data_directory_0700_and_database_0600_at_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first import creates ARREARS_HOME 0700 and the SQLite database 0600, whatever the umask."""
    home = tmp_path / "home"
    path = write_csv(tmp_path / "a.csv", [account_record()])
    old = os.umask(0o022)
    try:
        code, _ = run_main(monkeypatch, capsys, "import", "accounts", str(path))
    finally:
        os.umask(old)
    assert code == 0
    assert home.stat().st_mode & 0o777 == 0o700
    assert (home / "arrears.db").stat().st_mode & 0o777 == 0o600


def test_atomic_write_is_private_and_replaces_a_symlink(tmp_path: Path) -> None:
    """A file written atomically is 0600 and replaces a symlink at its path instead of writing through it."""
    victim = tmp_path / "victim"
    victim.write_text("keep")
    target = tmp_path / "out.csv"
    target.symlink_to(victim)
    with atomic_write(target) as file:
        file.write("a,b\n")
    assert victim.read_text() == "keep" and target.read_text() == "a,b\n" and not target.is_symlink()
    assert target.stat().st_mode & 0o777 == 0o600


def test_formula_cells_are_neutralised_and_restored() -> None:
    """Cells starting with = + - @ tab or CR get a leading quote, taken off again on reading."""
    for cell in ("=1+1", "+86138", "-5", "@SUM(A1)", "\tx", "\rx"):
        assert safe_cell(cell) == "'" + cell and unsafe_cell(safe_cell(cell)) == cell
    assert safe_cell("Dana") == "Dana" and unsafe_cell("'quoted") == "'quoted"


def test_settings_error_never_echoes_a_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    """A settings validation error names the field and the rule, never the secret value."""
    monkeypatch.setenv("ARREARS_SMS_CREDENTIALS", json.dumps({"auth_token": ["hunter2-secret"]}))
    monkeypatch.setenv("ARREARS_WEBHOOK_PORT", "hunter3-secret")
    with pytest.raises(ValueError) as error:
        Settings()
    text = describe_error(error.value)
    assert "sms_credentials.auth_token" in text and "webhook_port" in text
    assert "hunter2" not in text and "hunter3" not in text


def test_cli_settings_error_is_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`arrears import` with a bad credentials setting exits 2 without printing the credential."""
    monkeypatch.setenv("ARREARS_COURT_CREDENTIALS", json.dumps({"api_key": {"k": "hunter2-secret"}}))
    get_settings.cache_clear()
    path = write_csv(tmp_path / "a.csv", [account_record()])
    code, err = run_main(monkeypatch, capsys, "import", "accounts", str(path))
    assert code == 2 and "court_credentials" in err and "hunter2" not in err


def test_providers_list_masks_a_password_in_the_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """`arrears providers list` shows https://user:***@host, never the password."""
    monkeypatch.setenv("ARREARS_SMS_PROVIDER", "twilio")
    monkeypatch.setenv("ARREARS_SMS_BASE_URL", "https://ops:hunter2-secret@sms.example.com/api")
    get_settings.cache_clear()
    for args in (["providers", "list", "--json"], ["providers", "list"]):
        result = runner.invoke(app, args, catch_exceptions=False)
        assert "hunter2" not in result.output and "ops:***@sms.example.com" in result.output


def test_markup_in_a_path_is_printed_not_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A path holding Rich markup gives a one-line error showing the path, not a MarkupError."""
    code, err = run_main(monkeypatch, capsys, "import", "accounts", str(tmp_path / "[/bold]x[red].csv"))
    assert code == 2 and "[/bold]x[red].csv: no such file" in err


@pytest.mark.parametrize(
    ("amount", "date"),
    [
        ("NaN", "2026-12-20"),
        ("1e30", "2026-12-20"),
        ("-5", "2026-12-20"),
        ("inf", "2026-12-20"),
        ("100", "9999-01-01"),
    ],
)
def test_promise_add_bad_options_exit_2_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], amount: str, date: str
) -> None:
    """`promise add` with NaN, a huge, negative or infinite amount, or a far date exits 2 with one line."""
    code, err = run_main(
        monkeypatch,
        capsys,
        "promise",
        "add",
        "A-1",
        "--amount",
        amount,
        "--date",
        date,
        "--as-of",
        "2026-12-01T00:00:00Z",
    )
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
