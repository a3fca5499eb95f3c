"""Fixtures shared by the whole suite.

Databases are real: SQLite files in a temporary folder and, when `ARREARS_TEST_POSTGRES_URL`
names a server (`.ci/run` starts one), PostgreSQL databases cloned from a migrated template.
"""

import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from arrears.settings import get_settings
from arrears.storage import get_engine, migrate

POSTGRES_URL = os.environ.get("ARREARS_TEST_POSTGRES_URL")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The `slow` tests first, each file's order kept otherwise.

    `.ci/run` spreads the suite over pytest-xdist workers, which steal queued tests from each other
    but never split one: a minutes-long test collected last (the workers' scale-out test is) would
    run alone on one worker while the other sat idle. Started first, it overlaps the short ones."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Prefect's own servers started in a test's process (an ephemeral one, where a test runs a flow
    with no API URL) are stopped at exit, saying so at INFO through Prefect's console handler, whose
    stream is output pytest captured for a test and has closed by then: a run ended with "--- Logging
    error ---" and a traceback. Warnings and errors still show."""
    logging.getLogger("prefect").setLevel(logging.WARNING)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads or writes the user's ~/.arrears or arrears.toml."""
    monkeypatch.setenv("ARREARS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ARREARS_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'arrears.db'}"


@pytest.fixture(scope="session")
def _postgres_template() -> Iterator[str]:
    if not POSTGRES_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL tests: ARREARS_TEST_POSTGRES_URL is not set")
        pytest.skip("ARREARS_TEST_POSTGRES_URL is not set")
    admin = create_engine(_psycopg(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    template = f"arrears_tpl_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{template}"'))
    engine = create_engine(_with_database(POSTGRES_URL, template))
    migrate(engine)
    engine.dispose()
    yield template
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def postgres_url(_postgres_template: str) -> Iterator[str]:
    assert POSTGRES_URL
    admin = create_engine(_psycopg(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    name = f"arrears_t_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{_postgres_template}"'))
    url = _with_database(POSTGRES_URL, name)
    yield url
    get_engine(url).dispose()
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def postgres_admin_url(_postgres_template: str) -> str:
    """The PostgreSQL server itself, for a test that creates and drops databases of its own (the
    workers' scale-out test clones one loaded portfolio for several processes to share)."""
    assert POSTGRES_URL
    return POSTGRES_URL


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Storage and cycle tests run on both databases we support."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def engine(db_url: str) -> Engine:
    engine = get_engine(db_url)
    migrate(engine)
    return engine


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Engine:
    engine = get_engine(sqlite_url)
    migrate(engine)
    return engine


def _psycopg(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One temporary Prefect server for the session's flow tests (PREFECT.md: never nest them).

    Its result storage a temporary folder too: Prefect's harness leaves it at
    `~/.prefect/storage`, where every failed flow run of the suite left a file for good.

    Without flow-run heartbeats: a sync flow run's end joins its heartbeat thread, which sleeps in
    steps of a second, so each flow run of the suite waited up to a second for nothing (a test's
    flow ends long before a second beat would be due, 180 s on; nothing of ours reads them).
    The CLI processes the tests start keep Prefect's default, as an environment cannot unset it.
    """
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_RESULTS_LOCAL_STORAGE_PATH,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    results = tmp_path_factory.mktemp("prefect-results")
    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings(
            {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, PREFECT_RESULTS_LOCAL_STORAGE_PATH: results}
        ),
    ):
        yield


@pytest.fixture(scope="session")
def sms_sandbox_process() -> Iterator[Any]:
    from integrations.sandbox import start_sandbox

    with start_sandbox() as handle:
        yield handle


@pytest.fixture
def sms_sandbox(sms_sandbox_process: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The real sandbox SMS server, emptied, and the settings that send through it."""
    sms_sandbox_process.reset()
    return _send_through(monkeypatch, "sms", sms_sandbox_process)


@pytest.fixture
def providers(sms_sandbox: Any) -> Iterator[dict[str, Any]]:
    """A Twilio-shaped and an Aliyun-shaped SMS provider, both pointed at the real sandbox."""
    from integrations.providers import build_provider

    built = {
        name: build_provider("sms", name, sms_sandbox.base_url, sms_sandbox.credentials)
        for name in ("twilio", "sandbox")
    }
    yield built
    for provider in built.values():
        provider.close()


@pytest.fixture(scope="session")
def letters_sandbox_server() -> Iterator[Any]:
    from integrations.letters.sandbox import start_letters_sandbox

    with start_letters_sandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def agency_sandbox_server() -> Iterator[Any]:
    from integrations.agency.sandbox import start_agency_sandbox

    with start_agency_sandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def court_sandbox_server() -> Iterator[Any]:
    from integrations.court.sandbox import start_court_sandbox

    with start_court_sandbox() as sandbox:
        yield sandbox


def _send_through(monkeypatch: pytest.MonkeyPatch, kind: str, sandbox: Any) -> Any:
    """Settings that make the `kind` provider the sandbox at `sandbox.base_url`."""
    prefix = f"ARREARS_{kind.upper()}_"
    monkeypatch.setenv(prefix + "PROVIDER", "sandbox")
    monkeypatch.setenv(prefix + "BASE_URL", sandbox.base_url)
    monkeypatch.setenv(prefix + "CREDENTIALS", json.dumps(dict(sandbox.credentials)))
    get_settings.cache_clear()
    return sandbox


@pytest.fixture
def letters_sandbox(letters_sandbox_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The sandbox Lob over HTTP, emptied, and the settings that mail through it."""
    letters_sandbox_server.reset()
    return _send_through(monkeypatch, "letters", letters_sandbox_server)


@pytest.fixture
def agency_sandbox(agency_sandbox_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The sandbox repossession agency over HTTP, emptied, and the settings that assign through it."""
    agency_sandbox_server.reset()
    return _send_through(monkeypatch, "agency", agency_sandbox_server)


@pytest.fixture
def court(court_sandbox_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The sandbox court, emptied and without faults or rules, and the settings that file with it."""
    court_sandbox_server.reset()
    return _send_through(monkeypatch, "court", court_sandbox_server)


@pytest.fixture
def court_db(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, sms_sandbox: Any, court: Any
) -> Engine:
    """The database the tasks open, with the SMS sandbox and the sandbox court: a legal referral's."""
    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


@pytest.fixture
def mail_db(
    engine: Engine,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    sms_sandbox: Any,
    letters_sandbox: Any,
    agency_sandbox: Any,
) -> Engine:
    """The database the tasks open (ARREARS_DATABASE_URL), with the sandbox SMS, print-and-mail and
    repossession agency servers configured: what letters and agency assignments go through."""
    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


@pytest.fixture
def default_sheet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A two-page stand-in for the FCA's default information sheet, set as ARREARS_FCA_DEFAULT_SHEET:
    a GB default notice is mailed only with the sheet (CCA 1974 s.88(4A))."""
    from reportlab.pdfgen.canvas import Canvas

    path = tmp_path / "default-information-sheet.pdf"
    canvas = Canvas(str(path), invariant=1)
    for page in (1, 2):
        canvas.drawString(72, 760, f"Stand-in default information sheet, page {page} of 2")
        canvas.showPage()
    canvas.save()
    monkeypatch.setenv("ARREARS_FCA_DEFAULT_SHEET", str(path))
    get_settings.cache_clear()
    return path


@pytest.fixture
def arrears_sheet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A three-page stand-in for the FCA's arrears information sheet, set as
    ARREARS_FCA_ARREARS_SHEET: a GB notice of sums in arrears is mailed only with it (CCA 1974
    ss.86A-86B)."""
    from reportlab.pdfgen.canvas import Canvas

    path = tmp_path / "arrears-information-sheet.pdf"
    canvas = Canvas(str(path), invariant=1)
    for page in (1, 2, 3):
        canvas.drawString(72, 760, f"Stand-in arrears information sheet, page {page} of 3")
        canvas.showPage()
    canvas.save()
    monkeypatch.setenv("ARREARS_FCA_ARREARS_SHEET", str(path))
    get_settings.cache_clear()
    return path
