"""`arrears providers list [--check] [--json]` and `arrears sandbox`: what an integrator runs."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from arrears.settings import get_settings
from deployments.cli import app
from deployments.cli import providers as cli_providers
from deployments.cli._common import CliError
from integrations import registry
from integrations.court.ecf import EcfCourtProvider
from integrations.court.protocol import FilingNotFound
from integrations.court.sandbox import start_court_sandbox
from integrations.sandbox import start_sandbox

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the defaults: no provider settings from the caller's environment."""
    for kind in ("SMS", "COURT", "BUREAU"):
        for suffix in ("PROVIDER", "BASE_URL", "CREDENTIALS"):
            monkeypatch.delenv(f"ARREARS_{kind}_{suffix}", raising=False)
    get_settings.cache_clear()


def _env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


def _list(*args: str) -> tuple[int, Any]:
    result = runner.invoke(app, ["providers", "list", "--json", *args], catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


def test_list_groups_providers_by_kind_with_the_defaults_selected() -> None:
    """Built-in SMS and court providers are listed by kind, the sandbox ones selected; bureau shown empty."""
    code, report = _list()
    kinds = report["kinds"]
    assert code == 0 and report["ok"] is True
    assert {"sandbox", "twilio", "aliyun"} <= {p["name"] for p in kinds["sms"]["providers"]}
    assert {"sandbox", "ecf"} <= {p["name"] for p in kinds["court"]["providers"]}
    for kind in ("sms", "court"):
        assert kinds[kind]["selected"] == {
            "name": "sandbox",
            "explicit": False,
            "base_url": None,
            "available": True,
        }
        assert [p["name"] for p in kinds[kind]["providers"] if p["selected"]] == ["sandbox"]
    ecf = next(p for p in kinds["court"]["providers"] if p["name"] == "ecf")
    assert (
        ecf["secrets"] == ["api_key", "callback_secret"]
        and ecf["target"] == "integrations.court.ecf:EcfCourtProvider"
    )
    assert "bureau" in kinds and kinds["bureau"]["check"] is None


def test_settings_select_another_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """ARREARS_SMS_PROVIDER=twilio marks twilio, not the sandbox, as the selected SMS provider."""
    _env(monkeypatch, ARREARS_SMS_PROVIDER="twilio", ARREARS_SMS_BASE_URL="https://api.twilio.example")
    result = runner.invoke(app, ["providers", "list"], catch_exceptions=False)
    lines = result.output.splitlines()
    assert result.exit_code == 0
    assert "sms: selected twilio at https://api.twilio.example" in lines
    assert any(line.startswith("  * twilio") for line in lines)
    assert any(line.startswith("    sandbox") for line in lines)


def test_each_load_failure_is_reported_on_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing module, a class lacking protocol members or of the wrong kind each get a line with why."""
    monkeypatch.setitem(registry.BUILTIN, "sms.gone", "integrations.sms.nowhere:Provider")
    monkeypatch.setitem(registry.BUILTIN, "sms.partial", "integrations.errors:ProviderError")
    monkeypatch.setitem(registry.BUILTIN, "court.smsish", "integrations.sms.sandbox:SandboxSmsProvider")
    monkeypatch.setitem(registry.BUILTIN, "fax.machine", "integrations.sms.twilio:TwilioSmsProvider")
    result = runner.invoke(app, ["providers", "list"], catch_exceptions=False)
    lines = result.output.splitlines()
    assert result.exit_code == 0  # the selected providers still load
    [gone] = [line for line in lines if "sms.gone" in line]
    [partial] = [line for line in lines if "sms.partial" in line]
    [smsish] = [line for line in lines if "court.smsish" in line]
    assert "ModuleNotFoundError" in gone and "integrations.sms.nowhere" in gone
    assert "TypeError" in partial and "send_batch" in partial
    assert "TypeError" in smsish and "submit" in smsish
    assert "fax: not a kind of provider arrears uses" in lines
    assert any("fax.machine" in line and "no provider kind 'fax'" in line for line in lines)
    assert any(line.startswith("  * sandbox") for line in lines)


def test_selected_provider_missing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """A selected provider that is not installed is flagged and the command exits 1."""
    _env(monkeypatch, ARREARS_COURT_PROVIDER="carrier-pigeon")
    code, report = _list()
    assert code == 1 and report["ok"] is False
    assert report["kinds"]["court"]["selected"]["available"] is False


def test_a_selected_provider_that_fails_to_load_is_not_called_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A selected plugin that is installed but fails to import reads `failed to load`, with why,
    in the selection line and the check: `not installed` sent operators to reinstall it."""
    monkeypatch.setitem(registry.BUILTIN, "sms.broken", "integrations.sms.nowhere:Provider")
    _env(monkeypatch, ARREARS_SMS_PROVIDER="broken", ARREARS_SMS_BASE_URL="https://sms.example")
    result = runner.invoke(app, ["providers", "list", "--check"], catch_exceptions=False)
    lines = result.output.splitlines()
    assert result.exit_code == 1
    assert "sms: selected broken at https://sms.example (failed to load)" in lines
    [check] = [line for line in lines if line.startswith("  check broken:")]
    assert "failed to load: ModuleNotFoundError" in check and "not installed" not in result.output
    code, report = _list("--check")
    assert code == 1 and "failed to load" in report["kinds"]["sms"]["check"]["detail"]


@pytest.mark.slow
def test_check_starts_sandboxes_for_the_defaults() -> None:
    """--check with the defaults starts the SMS and court sandboxes, builds each provider, gets an answer."""
    code, report = _list("--check")
    kinds = report["kinds"]
    assert code == 0, report
    assert kinds["sms"]["check"]["ok"] and kinds["court"]["check"]["ok"]
    assert "no such filing" in kinds["court"]["check"]["detail"]


def test_check_reports_failures_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong court key and an SMS provider without a base URL fail the check, with reasons and no secret."""
    with start_court_sandbox() as court:
        wrong = {**court.credentials, "api_key": "wrong-key-b71f0c"}
        _env(
            monkeypatch,
            ARREARS_COURT_PROVIDER="ecf",
            ARREARS_COURT_BASE_URL=court.base_url,
            ARREARS_COURT_CREDENTIALS=json.dumps(wrong),
            ARREARS_SMS_PROVIDER="twilio",
        )
        result = runner.invoke(app, ["providers", "list", "--check"], catch_exceptions=False)
    lines = result.output.splitlines()
    assert result.exit_code == 1
    assert any(line.startswith("  check ecf: failed: ConfigError") for line in lines), result.output
    assert any("check twilio: failed" in line and "ARREARS_SMS_BASE_URL is not set" in line for line in lines)
    for secret in ("wrong-key-b71f0c", court.credentials["callback_secret"]):
        assert secret not in result.output


@pytest.mark.parametrize("suffix", ["/2010-04-01", "/nowhere"])
def test_check_fails_on_a_twilio_base_url_with_a_wrong_path(
    monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """--check fetches the Twilio account: a base URL whose every path is 404 fails, not "no such message"."""
    with start_sandbox() as sms:
        _env(
            monkeypatch,
            ARREARS_SMS_PROVIDER="twilio",
            ARREARS_SMS_BASE_URL=sms.base_url + suffix,
            ARREARS_SMS_CREDENTIALS=json.dumps(dict(sms.credentials)),
        )
        code, report = _list("--check")
    check = report["kinds"]["sms"]["check"]
    assert code == 1 and not check["ok"] and check["detail"].startswith("ConfigError"), check


def test_a_base_url_without_a_scheme_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A base URL without http(s):// or a host fails the check at build time, naming base_url."""
    _env(
        monkeypatch,
        ARREARS_SMS_PROVIDER="twilio",
        ARREARS_SMS_BASE_URL="api.twilio.com",
        ARREARS_SMS_CREDENTIALS=json.dumps(
            {"account_sid": "AC1", "auth_token": "t", "from_number": "+15005550006"}
        ),
    )
    code, report = _list("--check")
    check = report["kinds"]["sms"]["check"]
    assert code == 1 and "ConfigError" in check["detail"] and "base_url" in check["detail"]


def test_credentials_that_are_not_json_are_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unreadable court credentials stop the command with one error naming the setting, not its value."""
    _env(monkeypatch, ARREARS_COURT_CREDENTIALS="api_key=hunter2")
    result = runner.invoke(app, ["providers", "list"])
    assert isinstance(result.exception, CliError) and result.exception.exit_code == 2
    assert "court_credentials" in str(result.exception).lower() and "hunter2" not in str(result.exception)


def test_sandbox_for_a_kind_without_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """`arrears sandbox --kind bureau` without a bureau sandbox module says so in one error."""
    monkeypatch.setitem(cli_providers.SANDBOX_SERVERS, "bureau", "integrations.bureau_not_yet.sandbox_server")
    result = runner.invoke(app, ["sandbox", "--kind", "bureau"])
    assert isinstance(result.exception, CliError)
    assert "no bureau sandbox yet" in str(result.exception)
    assert isinstance(runner.invoke(app, ["sandbox", "--kind", "fax"]).exception, CliError)


def test_sandbox_runs_every_kind_it_has(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --kind the SMS, court, letters and agency sandboxes serve, settings printed; a
    missing one is noted."""
    monkeypatch.setitem(cli_providers.SANDBOX_SERVERS, "bureau", "integrations.bureau_not_yet.sandbox_server")
    started: list[Any] = []
    health: list[int] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        handle = start_sandbox(*args, **kwargs)
        started.append(handle)
        return handle

    def look_then_interrupt(_: float) -> None:  # the foreground loop's pause: probe the servers, then Ctrl-C
        health.extend(h.admin.get("/_sandbox/health").status_code for h in started)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr("integrations.sandbox.start_sandbox", recording)
    monkeypatch.setattr(cli_providers, "_pause", look_then_interrupt)
    result = runner.invoke(app, ["sandbox"], catch_exceptions=False)
    lines = result.output.splitlines()
    assert result.exit_code == 0 and health == [200, 200, 200, 200]
    assert [line.split(":")[0] for line in lines if " sandbox: " in line] == [
        "sms sandbox",
        "court sandbox",
        "bureau sandbox",
        "letters sandbox",
        "agency sandbox",
    ]
    assert (
        "bureau sandbox: not available (integrations.bureau_not_yet.sandbox_server is not installed)" in lines
    )
    assert "  ARREARS_SMS_PROVIDER=sandbox" in lines and "  ARREARS_COURT_PROVIDER=sandbox" in lines
    assert "  ARREARS_LETTERS_PROVIDER=sandbox" in lines and "  ARREARS_AGENCY_PROVIDER=sandbox" in lines
    assert lines[-1] == "stopped" and not any(h.alive() for h in started)


def test_sandbox_whose_server_dies_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sandbox server that dies while `arrears sandbox` runs stops it with one error naming the
    kind (exit 1), and the other servers are stopped with it."""
    started: list[Any] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        handle = start_sandbox(*args, **kwargs)
        started.append(handle)
        return handle

    pauses: list[float] = []

    def kill_the_court_server(seconds: float) -> None:
        pauses.append(seconds)
        assert len(pauses) == 1, "still serving after its court server died"
        started[1].process.kill()
        started[1].process.wait()

    monkeypatch.setattr("integrations.sandbox.start_sandbox", recording)
    monkeypatch.setattr(cli_providers, "KINDS", ("sms", "court"))
    monkeypatch.setattr(cli_providers, "_pause", kill_the_court_server)
    result = runner.invoke(app, ["sandbox"])
    assert isinstance(result.exception, CliError) and result.exception.exit_code == 1
    assert str(result.exception) == "the court sandbox stopped unexpectedly"
    assert len(started) == 2 and not any(h.alive() for h in started)


@pytest.mark.parametrize(
    ("sent", "sigint_at_start"),
    [
        (signal.SIGINT, "default_int_handler"),  # Ctrl-C in a terminal
        # A script's background job, or a test runner's worker, starts with SIGINT ignored, which
        # Python keeps: Ctrl-C must stop the sandboxes all the same.
        (signal.SIGINT, "SIG_IGN"),
        (signal.SIGTERM, "default_int_handler"),  # `kill`
    ],
    ids=["ctrl-c", "ctrl-c-started-ignoring-it", "sigterm"],
)
def test_sandbox_command_serves_until_interrupted(sent: signal.Signals, sigint_at_start: str) -> None:
    """`arrears sandbox --kind court` prints a URL and credentials that work, and stops cleanly on
    Ctrl-C or SIGTERM, whatever SIGINT's disposition was when it started."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = (
        f"import signal; signal.signal(signal.SIGINT, signal.{sigint_at_start}); "
        "import deployments.cli.providers; from deployments.cli import main; main()"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, "sandbox", "--kind", "court", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        printed = []
        for line in process.stdout:
            printed.append(line.rstrip("\n"))
            if line.startswith("sandboxes running"):
                break
        assert printed[0] == f"court sandbox: http://127.0.0.1:{port}"
        credentials = json.loads(
            next(p for p in printed if "ARREARS_COURT_CREDENTIALS=" in p).split("=", 1)[1].strip("'")
        )
        provider = EcfCourtProvider.from_config(f"http://127.0.0.1:{port}", credentials)
        with provider, pytest.raises(FilingNotFound):
            provider.status("ECF-NONE")
        process.send_signal(sent)
        # Generous: the server child gets SIGTERM and up to 5 s, then SIGKILL and 5 s more; on a
        # loaded two-core machine that took longer than 15 s once.
        assert process.wait(timeout=40) == 0
        assert process.stdout.read().strip().endswith("stopped")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/_sandbox/health")


def test_sandbox_on_a_taken_port_is_one_error() -> None:
    """A --port that is already in use stops `arrears sandbox` with one error, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        result = runner.invoke(app, ["sandbox", "--kind", "court", "--port", str(taken.getsockname()[1])])
    assert isinstance(result.exception, CliError) and result.exception.exit_code == 1
    assert "cannot start the court sandbox" in str(result.exception)
