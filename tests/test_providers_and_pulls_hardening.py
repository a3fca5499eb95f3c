"""The integrator's path (the registry, building a provider from settings) and the bureau pulls
against answers a real bureau, or a plugin's client, can give: malformed, slow, or a bug."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel
from sqlalchemy import Engine, select, update

from arrears.models import BureauRecord
from integrations import registry
from integrations.bureau.protocol import BureauProfile, PullRequest
from integrations.errors import ConfigError
from integrations.metadata import ProviderInfo
from tests.later_stage_helpers import account, account_t, at, events, import_rows, us_account

bureau_t = BureauRecord.__table__  # type: ignore[attr-defined]


# -- the registry ---------------------------------------------------------------------------------


def _installed(*entries: tuple[str, str, str]) -> Any:
    """`entry_points(group=…)` as it answers with these (name, target, package) installed."""

    def entry_points(group: str) -> list[Any]:
        assert group == registry.GROUP
        return [
            SimpleNamespace(name=n, value=t, dist=SimpleNamespace(name=p, version="1.0"))
            for n, t, p in entries
        ]

    return entry_points


def test_two_plugins_registering_one_name_are_both_refused_naming_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two installed packages that both register `sms.gateway` are not settled by the order of
    `sys.path` (which class a cycle sent through changed when a package was installed): neither
    loads, and the error names both packages, for the settings check and `providers list` alike."""
    from arrears.settings import get_settings
    from tasks.providers import check_settings

    monkeypatch.setattr(
        registry,
        "entry_points",
        _installed(
            ("sms.gateway", "integrations.sms.twilio:TwilioSmsProvider", "vendor-one"),
            ("sms.gateway", "integrations.sms.aliyun:AliyunSmsProvider", "vendor-two"),
        ),
    )
    found, failures = registry.discover("sms")
    assert "gateway" not in found and {"sandbox", "twilio", "aliyun"} <= set(found)
    [failure] = [f for f in failures if f.name == "sms.gateway"]
    assert "vendor-one" in failure.error and "vendor-two" in failure.error
    with pytest.raises(TypeError, match=r"vendor-one.*vendor-two"):
        registry.load("sms", "gateway")
    monkeypatch.setenv("ARREARS_SMS_PROVIDER", "gateway")
    monkeypatch.setenv("ARREARS_SMS_BASE_URL", "http://127.0.0.1:9")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match=r"ARREARS_SMS_PROVIDER: sms\.gateway is registered by 2 packages"):
        check_settings("sms")


class _NoFactory:
    """Every member of the bureau protocol, but no `from_config`: nothing can build it from settings."""

    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="nofactory", kind="bureau", title="x", settings=BaseModel
    )

    def pull(self, request: Any) -> Any: ...
    def furnish(self, request: Any) -> Any: ...
    def close(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc_info: object) -> None: ...


def test_a_class_that_cannot_be_built_from_settings_is_refused_when_it_is_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A plugin class without `from_config` was listed `protocol ok`, then every run selecting it
    died with an AttributeError: it is a load failure saying what is missing, and selecting it is a
    settings error (exit 2 before anything changes), not a traceback."""
    from arrears.settings import get_settings
    from tasks.providers import check_settings

    monkeypatch.setitem(registry.BUILTIN, "bureau.nofactory", f"{__name__}:_NoFactory")
    found, failures = registry.discover("bureau")
    assert "nofactory" not in found
    assert any(f.name == "bureau.nofactory" and "from_config" in f.error for f in failures)
    monkeypatch.setenv("ARREARS_BUREAU_PROVIDER", "nofactory")
    monkeypatch.setenv("ARREARS_BUREAU_BASE_URL", "http://127.0.0.1:9")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match=r"ARREARS_BUREAU_PROVIDER: .*from_config"):
        check_settings("bureau")


# -- bureau pulls ---------------------------------------------------------------------------------


@pytest.fixture
def pull_db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    from arrears.settings import get_settings

    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    monkeypatch.setenv("ARREARS_BUREAU_CONCURRENCY", "1")  # answers in account order
    get_settings.cache_clear()
    return engine


def _negotiating(engine: Engine, tmp_path: Path, *ids: str) -> None:
    import_rows(engine, tmp_path, [us_account(a) for a in ids])
    with engine.begin() as c:
        c.execute(
            update(account_t).where(account_t.c.account_id.in_(ids)).values(stage="negotiation", episode=2)
        )


class _Bureau:
    """A bureau provider (a plugin's) answering each pull with `answer(request)`."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def pull(self, request: PullRequest) -> BureauProfile:
        result: BureauProfile = self.answer(request)
        return result


def _profile(request: PullRequest, **overrides: Any) -> BureauProfile:
    values: dict[str, Any] = {
        "idempotency_key": request.idempotency_key,
        "report_id": f"R-{request.account_ref}",
        "account_ref": request.account_ref,
        "purpose": request.purpose,
        "score_band": "B",
        "income_estimate": Decimal("60000"),
        "phones": (),
        "addresses": (),
        "bankruptcy": None,
        "deceased": False,
        "pulled_at": datetime(2026, 12, 16, tzinfo=UTC),
    }
    return BureauProfile(**(values | overrides))


def _pull_through(monkeypatch: pytest.MonkeyPatch, bureau: _Bureau, as_of: str) -> dict[str, int]:
    from prefect.logging import disable_run_logger

    from tasks import bureau_pull

    @contextmanager
    def session() -> Iterator[_Bureau]:
        yield bureau

    monkeypatch.setattr(bureau_pull, "bureau_session", session)
    with disable_run_logger():
        return bureau_pull.pull_bureau_profiles.fn(at(as_of), None, limit=100)


def _pulls(engine: Engine) -> dict[str, Any]:
    with engine.connect() as c:
        return {r.account_id: r for r in c.execute(select(bureau_t).where(bureau_t.c.kind == "pull"))}


def test_a_pull_that_fails_with_an_unexpected_error_fails_alone(
    pull_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider's bug on one subject (an error outside the provider error tree) is that pull's
    failure, asked again next cycle: the other pulls are made and stored, and the cycle, which
    waits on the pulls' result, is not failed by it (DESIGN §4: one account's failure is its own)."""

    def answer(request: PullRequest) -> BureauProfile:
        if request.account_ref == "A-U2":
            raise ValueError("unexpected field in the vendor's answer")
        return _profile(request)

    _negotiating(pull_db, tmp_path, "A-U1", "A-U2", "A-U3")
    counts = _pull_through(monkeypatch, _Bureau(answer), "2026-12-16T01:00:00Z")
    assert (counts["bureau_pulls"], counts["bureau_failed"]) == (2, 1)
    assert sorted(_pulls(pull_db)) == ["A-U1", "A-U3"]
    counts = _pull_through(monkeypatch, _Bureau(_profile), "2026-12-17T01:00:00Z")
    assert (counts["bureau_pulls"], counts["bureau_failed"]) == (1, 0)


@pytest.mark.parametrize("income", ["NaN", "Infinity", "-Infinity", "1E+30"])
def test_an_income_estimate_that_is_no_amount_is_taken_as_unknown(
    pull_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, income: str
) -> None:
    """A bureau's income that is no amount (NaN or Infinity, which JSON decoders read, or a figure
    no money column holds) failed the block of 100 pulls it came in, and the cycle with it: the
    profile is stored with the income unknown, its band still setting the ability, the event
    saying the income was left out; the other pulls of the block are stored as well."""

    def answer(request: PullRequest) -> BureauProfile:
        return _profile(request, income_estimate=Decimal(income) if request.account_ref == "A-I1" else None)

    _negotiating(pull_db, tmp_path, "A-I1", "A-I2")
    counts = _pull_through(monkeypatch, _Bureau(answer), "2026-12-16T01:00:00Z")
    assert (counts["bureau_pulls"], counts["bureau_failed"]) == (2, 0)
    pulls = _pulls(pull_db)
    assert pulls["A-I1"].income_estimate is None and pulls["A-I1"].score_band == "B"
    assert account(pull_db, "A-I1").ability == account(pull_db, "A-I2").ability is not None
    [pulled] = events(pull_db, "A-I1", "bureau")
    assert "income estimate unreadable" in pulled.detail and income not in pulled.detail


def test_a_bureau_estimate_of_no_income_makes_the_borrower_no_more_able_than_a_small_income(
    pull_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ability comes from the bureau profile (DESIGN §2): an instalment above a third of income
    lowers it. An estimate of no income at all was read as no estimate, so a band-B borrower
    with no income came out able (0.75) where one earning 1,200 a year came out unable (0.50):
    the one who cannot pay at all is segmented strategic, not hardship, if unwilling."""

    def answer(request: PullRequest) -> BureauProfile:
        income = Decimal(0) if request.account_ref == "A-Z1" else Decimal(1200)
        return _profile(request, income_estimate=income)

    _negotiating(pull_db, tmp_path, "A-Z1", "A-Z2")
    _pull_through(monkeypatch, _Bureau(answer), "2026-12-16T01:00:00Z")
    assert account(pull_db, "A-Z1").ability <= account(pull_db, "A-Z2").ability


# -- the example plugin ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_gateway() -> Iterator[Any]:
    from importlib.metadata import entry_points

    from integrations.sandbox import start_sandbox

    if "sms.jsonhttp" not in {ep.name for ep in entry_points(group=registry.GROUP)}:
        pytest.skip(
            "the example plugin is not installed: pip install --no-deps -e examples/arrears-sms-example"
        )
    with start_sandbox(server="arrears_sms_example.sandbox_server") as handle:
        yield handle


@pytest.mark.parametrize(("suffix", "ok"), [("", True), ("/v1", False), ("/nothing", False)])
def test_the_example_plugins_check_fails_on_a_base_url_its_sends_would_fail_on(
    example_gateway: Any, monkeypatch: pytest.MonkeyPatch, suffix: str, ok: bool
) -> None:
    """`providers list --check` against the worked plugin is ok with its gateway's base URL, and
    fails with one every send would get a 404 from (`…/v1`, the client adding `/v1` itself), as
    docs/adding-a-provider.md §9 promises: it looked a message id up, and "no such message" passed."""
    from typer.testing import CliRunner

    from arrears.settings import get_settings
    from deployments.cli import (
        app,
        providers,  # noqa: F401  (registers the commands)
    )

    monkeypatch.setenv("ARREARS_SMS_PROVIDER", "jsonhttp")
    monkeypatch.setenv("ARREARS_SMS_BASE_URL", example_gateway.base_url + suffix)
    monkeypatch.setenv(
        "ARREARS_SMS_CREDENTIALS", json.dumps({"auth_token": example_gateway.credentials["auth_token"]})
    )
    for kind in ("COURT", "BUREAU", "LETTERS", "AGENCY"):
        monkeypatch.setenv(f"ARREARS_{kind}_PROVIDER", "nothing-selected")  # keep the check to SMS
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["providers", "list", "--check", "--json"], catch_exceptions=False)
    check = json.loads(result.stdout)["kinds"]["sms"]["check"]
    assert check["ok"] is ok, check


def test_a_bureau_provider_the_pulls_would_refuse_is_refused_before_the_cycle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A misnamed bureau provider is one line and exit 2 before the cycle starts, as a misnamed
    SMS provider is: the pulls open it beside the dispatch, so it failed the cycle after its
    advance and dispatch (a LookupError traceback, a failed cycle row, no report)."""
    from arrears.settings import get_settings
    from deployments.cli._common import CliError
    from deployments.cli.cycle import _providers_ready

    monkeypatch.setenv("ARREARS_BUREAU_PROVIDER", "experian-typo")
    monkeypatch.setenv("ARREARS_BUREAU_BASE_URL", "https://bureau.example")
    get_settings.cache_clear()
    with pytest.raises(CliError, match=r"ARREARS_BUREAU_PROVIDER: no provider 'bureau\.experian-typo'"):
        _providers_ready(bureau=True)


def test_a_found_number_a_provider_hands_over_as_no_text_is_not_added_and_fails_nothing(
    pull_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A skip trace's number given as an int (a plugin's JSON read as is) failed its block of pulls
    and the cycle with a TypeError; it is counted as no valid number, and the rest of the trace kept."""
    from integrations.bureau.protocol import FoundPhone

    def answer(request: PullRequest) -> BureauProfile:
        found = (FoundPhone(15152814444, 0.9, "mobile"), FoundPhone("+15152815555", 0.9, "mobile"))  # type: ignore[arg-type]
        return _profile(request, phones=found)

    import_rows(pull_db, tmp_path, [us_account("A-N1")])
    with pull_db.begin() as c:
        c.execute(
            update(account_t)
            .where(account_t.c.account_id == "A-N1")
            .values(stage="reminder", episode=2, segment="unreachable")
        )
    counts = _pull_through(monkeypatch, _Bureau(answer), "2026-12-16T01:00:00Z")
    assert (counts["skip_traces"], counts["numbers_found"]) == (1, 1)
    [traced] = events(pull_db, "A-N1", "bureau")
    assert traced.detail.endswith("not added: 1 not a valid phone number")
