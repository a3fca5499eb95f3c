"""Security and personal data at rest: files holding borrowers' data are private from their first
byte and never written through a link someone planted; the webhook server authenticates callbacks
over the URL the vendor signed, and stores nothing it did not verify."""

import json
import logging
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from twilio.request_validator import RequestValidator

from arrears.files import create_private_file
from arrears.settings import get_settings
from arrears.spool import Spool
from deployments import webhooks
from deployments.callback_spool import Drainer, Received
from deployments.cli._common import CliError, open_database
from deployments.webhooks import LifecycleRunner, create_app
from integrations.providers import build_provider
from integrations.sms import SmsProvider
from integrations.sms.protocol import InboundMessage
from tests.factories import account_record
from tests.test_webhook_spool import _opt_outs
from tests.test_webhooks import US_PHONE, _import


@pytest.fixture
def runner() -> Iterator[LifecycleRunner]:
    r = LifecycleRunner(run=lambda *_: None)
    yield r
    r.close()


@pytest.fixture
def twilio(sms_sandbox: Any) -> Iterator[SmsProvider]:
    with build_provider("sms", "twilio", sms_sandbox.base_url, sms_sandbox.credentials) as provider:
        yield provider


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- files at rest ------------------------------------------------------------------------------


def test_a_dangling_symlink_planted_at_the_database_path_is_refused_not_followed(tmp_path: Path) -> None:
    """A link planted where the database is about to be created (pointing to a file that does not
    exist yet, somewhere its planter reads) is refused: the database is not created through it."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    elsewhere = tmp_path / "planter" / "stolen.db"
    elsewhere.parent.mkdir()
    (home / "arrears.db").symlink_to(elsewhere)
    with pytest.raises(OSError):
        create_private_file(home / "arrears.db")
    with pytest.raises(CliError) as refused:
        open_database(f"sqlite:///{home / 'arrears.db'}", create=True, upgrade=True)
    assert "symbolic link" in str(refused.value)
    assert not elsewhere.exists()


def test_the_standalone_webhook_server_creates_its_database_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m deployments.webhooks` on a new SQLite database creates its directory 0700 and
    the file 0600 from its first byte, as every `arrears` command does, whatever the umask."""
    database = tmp_path / "data" / "arrears.db"
    monkeypatch.setenv("ARREARS_DATABASE_URL", f"sqlite:///{database}")
    get_settings.cache_clear()
    previous = os.umask(0o022)
    try:
        webhooks._migrated_engine()
    finally:
        os.umask(previous)
    assert _mode(database.parent) == 0o700
    assert _mode(database) == 0o600


def _forged_stop(at: datetime) -> dict[str, Any]:
    stop = InboundMessage(sender=US_PHONE, text="STOP", at=at, message_id="SM" + "7" * 32)
    return Received.of("sms", "twilio", "inbound", "twilio", at, b"forged", [stop]).to_document()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_spool_file_another_user_planted_is_set_aside_not_stored(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """The spool holds callbacks already verified: a file in it that this user did not write (a
    spool directory another user can write to) is set aside for operators, never stored as a STOP
    or START nobody signed."""
    _import(sqlite_engine, tmp_path, account_record(account_id="A-1"))
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    planted = directory / "00000000000000000001-1.json"
    planted.write_text(json.dumps(_forged_stop(datetime.now(UTC))), encoding="utf-8")
    os.chown(planted, 4242, 4242)
    drainer = Drainer(sqlite_engine, Spool(directory), lambda *_: None, wait=1.0)
    assert drainer.drain() == 0
    assert _opt_outs(sqlite_engine) == 0
    assert (directory / "failed" / planted.name).is_file()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_the_spool_refuses_a_directory_another_user_owns(tmp_path: Path) -> None:
    """A spool directory someone else made (a name squatted under /tmp) is refused, not written
    into: its owner could read the callbacks' numbers, or delete them before they are stored."""
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o777)
    os.chown(directory, 4242, 4242)
    with pytest.raises(PermissionError):
        Spool(directory).put(_forged_stop(datetime.now(UTC)))
    assert list(directory.iterdir()) == []


def test_the_spool_makes_its_own_directory_private_again(tmp_path: Path) -> None:
    """A spool directory of ours that others may write to (made by hand with a loose umask) is
    made 0700 before a callback is written into it."""
    directory = tmp_path / "spool"
    directory.mkdir()
    os.chmod(directory, 0o777)
    path = Spool(directory).put(_forged_stop(datetime.now(UTC)))
    assert _mode(directory) == 0o700 and _mode(path) == 0o600


# -- the webhook server -------------------------------------------------------------------------


def test_twilio_signature_behind_a_proxy_that_keeps_the_host_verifies_via_forwarded_proto(
    engine: Engine, twilio: SmsProvider, sms_sandbox: Any, runner: LifecycleRunner
) -> None:
    """Behind a TLS proxy that passes the public Host through and says only X-Forwarded-Proto
    (nginx's usual `proxy_set_header Host $host`), the https URL Twilio signed verifies."""
    app = create_app(engine=engine, sms_providers={"twilio": twilio}, lifecycle=runner)
    form = {"MessageSid": "SM" + "8" * 32, "MessageStatus": "delivered"}
    signed = RequestValidator(sms_sandbox.credentials["auth_token"]).compute_signature(
        "https://hooks.example/sms/twilio/status", form
    )
    headers = {
        "Host": "hooks.example",
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signed,
        "X-Forwarded-Proto": "https",
    }
    with TestClient(app) as client:
        response = client.post("/sms/twilio/status", content=urlencode(form).encode(), headers=headers)
    assert response.status_code == 200, response.text


class _Stopped(Exception):
    pass


def _stop() -> None:
    raise _Stopped


def test_the_standalone_server_logs_no_password_of_a_provider_url(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The standalone server logs at INFO; a request a lifecycle run makes to a provider whose base
    URL carries a password (https://user:pass@host, a gateway known by a name without a dot, which
    the e-mail masking of log records does not catch) leaves no line with the password in it."""
    httpx_logger = logging.getLogger("httpx")
    monkeypatch.setattr(httpx_logger, "level", httpx_logger.level)  # restored after the test
    monkeypatch.setattr(webhooks, "webhook_config", _stop)
    with pytest.raises(_Stopped):
        webhooks.main()
    caplog.set_level(logging.INFO)
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with httpx.Client(transport=transport) as client:
        client.get("https://lender:s3cret@sms-gateway:8443/2010-04-01/Accounts.json")
    assert "s3cret" not in caplog.text
