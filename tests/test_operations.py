"""Operations at portfolio scale (issue 13): installation ids, run starting that never fails the
cycle, dead runs replaced, truthful artifacts, readable schedules, suspensions logged as INFO,
the review form's context and options, and automations that notify through a block."""

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

import pytest
from sqlalchemy import Engine, delete, update

from arrears.storage import get_engine, migrate
from tests.later_stage_helpers import account_t, at, import_rows, review_t, rows, us_account

# -- without a server ---------------------------------------------------------------------------


def test_installation_id_is_kept_in_the_database_and_differs_between_databases(tmp_path: Path) -> None:
    """Each database gets its own installation id at migrate time, the same on every read, and a
    database that lost its row gets a new one on first use."""
    from arrears.models import Installation
    from arrears.storage.installation import installation_id

    first, second = (get_engine(f"sqlite:///{tmp_path / name}") for name in ("a.db", "b.db"))
    for engine in (first, second):
        migrate(engine)
    with first.begin() as c:
        one = installation_id(c)
    with first.begin() as c:
        assert installation_id(c) == one
    with second.begin() as c:
        assert installation_id(c) != one
    with first.begin() as c:
        c.execute(delete(Installation.__table__))  # type: ignore[attr-defined]
        made = installation_id(c)
    with first.begin() as c:
        assert installation_id(c) == made and len(made) == 12


def test_transition_matrix_rows_all_have_every_column() -> None:
    """Every row of the transition matrix has every destination as a column (the UI takes its
    columns from the first row)."""
    from tasks.report import transition_rows

    rows_ = transition_rows({"reminder": {"negotiation": 3}, "cured": {"reminder": 931}})
    assert {tuple(r) for r in rows_} == {("from", "negotiation", "reminder")}
    assert rows_[0] == {"from": "cured", "negotiation": 0, "reminder": 931}


def test_trend_table_has_the_same_columns_in_every_row_and_a_chart() -> None:
    """The trend table's rows share their columns even when cycles differ in stages, currencies
    and outcomes; the chart has one bar line per cycle."""
    from arrears.storage.reports import TrendPoint
    from tasks.report import trend_chart, trend_rows

    points = [
        TrendPoint(date(2026, 12, 1), at("2026-12-01T01:00:00Z"), {"reminder": 10}, None, None, 0, {}, {}),
        TrendPoint(
            date(2026, 12, 2),
            at("2026-12-02T01:00:00Z"),
            {"reminder": 8, "negotiation": 2},
            0.1,
            0.05,
            1,
            {"CNY": Decimal("350.5")},
            {"sent": 7, "blocked": 1},
        ),
    ]
    table = trend_rows(points)
    assert len({tuple(r) for r in table}) == 1
    assert table[0]["collected CNY"] == "0.00" and table[1]["messages sent"] == 7
    chart = trend_chart(points)
    assert chart.count("| 2026-12-0") == 2 and "█" in chart
    # A first cycle has no cure rate: the table and the chart say so alike, neither draws 0.0%.
    assert table[0]["cure rate"] == "n/a" and table[1]["cure rate"] == "5.0%"
    first, second = (line for line in chart.splitlines() if line.startswith("| 2026-12-0"))
    assert "n/a" in first and "0.0%" not in first and "5.0%" in second
    # Short enough bars for the narrow markdown column of the UI (docs/screenshots).
    assert max(len(line) for line in chart.splitlines()) < 80


def test_messages_by_status_has_a_reason_column_in_every_row() -> None:
    """The messages table reads as the CLI's report: status, reason ("(all)" for a status's
    total), count; every row has the three columns."""
    from arrears.storage.reports import PortfolioReport
    from tasks.report import message_rows

    report = PortfolioReport(
        cycle_id=1,
        as_of=None,
        messages={"sent": 5, "blocked": 2, "scheduled": 1},
        blocked_by_reason={"hold:dispute": 2},
        deferred_by_reason={"hours:CN": 1},
    )
    rows_ = message_rows(report)
    assert {tuple(r) for r in rows_} == {("status", "reason", "count")}
    assert {"status": "blocked", "reason": "hold:dispute", "count": 2} in rows_
    assert {"status": "sent", "reason": "(all)", "count": 5} in rows_


def test_serve_prints_schedules_people_can_read() -> None:
    """Schedules print as `cron … (zone)` and `every 15 minutes`, not as Python reprs."""
    from deployments.serve import deployments, describe_schedule

    described = {d.name: [describe_schedule(s.schedule) for s in d.schedules or []] for d in deployments()}
    assert described["outbox"] == ["every 15 minutes"]
    assert described["daily"] == ["cron 0 9 * * * (Asia/Shanghai)"]


def test_every_served_deployment_has_a_concurrency_limit_and_prefect_yaml_agrees() -> None:
    """Served deployments carry the same concurrency limits as prefect.yaml declares."""
    import yaml  # type: ignore[import-untyped]  # no stubs installed

    from deployments.serve import deployments

    spec = yaml.safe_load((Path(__file__).parents[1] / "deployments" / "prefect.yaml").read_text())
    declared = {d["name"]: d["concurrency_limit"] for d in spec["deployments"]}
    assert {d.name: d.concurrency_limit for d in deployments()} == declared
    assert all(declared.values())


def test_a_suspension_is_logged_at_info_not_error() -> None:
    """The engine's "Finished in state Suspended" line reaches handlers at INFO; other errors stay ERROR."""
    import flows._waiting  # noqa: F401  installs the filter

    seen: list[tuple[int, str]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.levelno, record.getMessage()))

    logger = logging.getLogger("prefect.flow_runs")
    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.error("Finished in state Suspended('Run is suspended.')")
        logger.error("Finished in state Failed('boom')")
    finally:
        logger.removeHandler(handler)
    assert seen == [
        (logging.INFO, "Finished in state Suspended('Run is suspended.')"),
        (logging.ERROR, "Finished in state Failed('boom')"),
    ]


def test_review_form_offers_no_repossession_under_a_military_hold() -> None:
    """The ReviewDecision form carries the context as its description and, under a military hold,
    offers only legal and negotiate."""
    from arrears.vocabulary import Hold
    from flows.repossession_review import decision_form
    from tasks.review import decision_options

    form = decision_form(decision_options(frozenset({Hold.MILITARY})), "### Review 1 of A-1")
    schema = json.dumps(form.model_json_schema())
    assert '"legal"' in schema and '"repossess"' not in schema
    assert form._description == "### Review 1 of A-1"
    plain = decision_form(decision_options(frozenset()), "context")
    assert '"repossess"' in json.dumps(plain.model_json_schema())


# -- against a real Prefect server ------------------------------------------------------------------

DEPLOYMENT = "repossession-review/ops-review-test"


@pytest.fixture(scope="module")
def review_deployment(prefect_harness: None) -> str:
    """The review flow registered under a name of its own (no runner: its runs stay Scheduled),
    so the other tests' cycles never start runs on it."""
    from flows._prefect import synced
    from flows.repossession_review import repossession_review

    # From sync code both return their value (Prefect types each "or a coroutine").
    deployment = synced(repossession_review.to_deployment(name=DEPLOYMENT.split("/")[1]))
    synced(deployment.apply())
    return DEPLOYMENT


def _in_review(engine: Engine, tmp_path: Path, account_id: str) -> None:
    import_rows(engine, tmp_path, [us_account(account_id, oldest_due_date="2026-10-01")])
    with engine.begin() as c:
        c.execute(
            update(account_t)
            .where(account_t.c.account_id == account_id)
            .values(stage="repossession_review", stage_since=at("2026-12-01T16:00:00Z"), episode=3)
        )


def _use(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from arrears.settings import get_settings

    monkeypatch.setenv("ARREARS_DATABASE_URL", url)
    get_settings.cache_clear()


@pytest.fixture
def reviewing(sqlite_engine: Engine, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Puts an account in repossession review in the test's database, which the tasks use."""
    _use(sqlite_url, monkeypatch)
    return lambda account_id: _in_review(sqlite_engine, tmp_path, account_id)


def test_two_databases_on_one_server_never_share_a_review_run(
    review_deployment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same account in review in two databases gets one run per database, and a second
    cycle starts none and says so truthfully."""
    from flows.repossession_review import start_reviews

    runs = []
    for name in ("first", "second"):
        url = f"sqlite:///{tmp_path / f'{name}.db'}"
        engine = get_engine(url)
        migrate(engine)
        _use(url, monkeypatch)
        _in_review(engine, tmp_path, "A-SHARED")
        counts = start_reviews(at("2026-12-01T17:00:00Z"), None, deployment=review_deployment)
        assert (counts["review_runs_started"], counts["review_runs_deferred"]) == (1, 0)
        again = start_reviews(at("2026-12-02T17:00:00Z"), None, deployment=review_deployment)
        assert (again["review_runs_started"], again["review_runs_found"]) == (0, 0)
        [review] = rows(engine, review_t, "A-SHARED")
        runs.append(review.flow_run_id)
    assert runs[0] and runs[1] and runs[0] != runs[1]


def test_a_crashed_review_run_is_replaced_and_its_review_rebound(
    review_deployment: str, sqlite_engine: Engine, sqlite_url: str, reviewing: Any
) -> None:
    """A review whose run crashed gets a new run at the next cycle, tagged with that cycle."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    from flows.repossession_review import start_reviews

    reviewing("A-CRASH")
    start_reviews(at("2026-12-01T17:00:00Z"), None, 7, deployment=review_deployment)
    [review] = rows(sqlite_engine, review_t, "A-CRASH")
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(review.flow_run_id), Crashed(message="process killed"), force=True)
    counts = start_reviews(at("2026-12-02T17:00:00Z"), None, 8, deployment=review_deployment)
    assert (counts["review_runs_replaced"], counts["review_runs_started"]) == (1, 1)
    [rebound] = rows(sqlite_engine, review_t, "A-CRASH")
    assert rebound.flow_run_id != review.flow_run_id
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(rebound.flow_run_id))
    assert {"cycle:2026-12-03", "cycle-id:8"} <= set(run.tags)
    assert run.name == "review A-CRASH"


def test_starting_runs_on_a_refusing_server_defers_them_without_failing(prefect_harness: None) -> None:
    """When the server refuses, `start_runs` raises nothing: every request is deferred, with the reason."""
    from flows._waiting import RunRequest, start_runs

    bound: list[dict[str, str]] = []
    started = start_runs(
        "repossession-review/no-such-deployment",
        [RunRequest(f"k-{i}", f"review A-{i}", {"account_id": f"A-{i}"}) for i in range(3)],
        bind=bound.append,
    )
    assert (started.created, started.deferred, bound) == (0, 3, [])
    assert started.error and "ObjectNotFound" in started.error


def test_start_runs_binds_batch_by_batch_and_counts_only_what_it_created(review_deployment: str) -> None:
    """Runs are started in batches, each batch bound before the next; a second call finds the
    runs by key and creates none."""
    from flows._waiting import RunRequest, start_runs

    requests = [
        RunRequest(f"ops-batch-{time.time_ns()}-{i}", f"review B-{i}", {"account_id": f"B-{i}"})
        for i in range(5)
    ]
    bound: list[dict[str, str]] = []
    first = start_runs(review_deployment, requests, bind=bound.append, batch=2)
    assert (first.created, first.found, [len(b) for b in bound]) == (5, 0, [2, 2, 1])
    second = start_runs(review_deployment, requests, bind=lambda runs: None, batch=2)
    assert (second.created, second.found, second.runs) == (0, 5, first.runs)


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alert"
    finally:
        server.shutdown()


def test_automations_notify_through_the_operators_block(prefect_harness: None, webhook: str) -> None:
    """Applied automations turn an outage event and an over-threshold blocked event into
    notifications through the configured block; a blocked event under the threshold notifies nobody."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.events import emit_event

    from deployments.automations import AUTOMATIONS, apply_automations

    CustomWebhookNotificationBlock(
        name="ops", url=webhook, json_data={"subject": "{{subject}}", "body": "{{body}}"}
    ).save("ops-alerts", overwrite=True)
    names = apply_automations("custom-webhook/ops-alerts")
    assert names == apply_automations("custom-webhook/ops-alerts")  # updated by name, not duplicated
    assert len(names) == len(AUTOMATIONS)
    time.sleep(3)  # the triggers service loads new automations

    emit_event("arrears.provider.outage", resource={"prefect.resource.id": "arrears.provider.sms.twilio"})
    cycle = {"prefect.resource.id": "arrears.cycle.9", "arrears.business-date": "2026-12-02"}
    emit_event(
        "arrears.messages.blocked",
        resource={**cycle, "arrears.blocked.over-threshold": "false"},
        payload={"blocked": 3, "threshold": 50, "by_reason": {"hours": 3}},
    )
    emit_event(
        "arrears.messages.blocked",
        resource={**cycle, "arrears.blocked.over-threshold": "true"},
        payload={"blocked": 80, "threshold": 50, "by_reason": {"hours": 80}},
    )
    deadline = time.monotonic() + 60
    while len(_Hook.received) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    subjects = sorted(r["subject"] for r in _Hook.received)
    assert subjects == [
        "arrears: 80 messages blocked in one cycle",
        "arrears: provider outage (arrears.provider.sms.twilio)",
    ]


def test_review_list_shows_each_runs_id_and_url(
    review_deployment: str,
    sqlite_engine: Engine,
    sqlite_url: str,
    reviewing: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`review list --json` gives each review's flow run id and its UI URL when a server is set."""
    from prefect.settings import PREFECT_UI_URL, temporary_settings
    from typer.testing import CliRunner

    from deployments.cli import app
    from flows.repossession_review import start_reviews

    reviewing("A-LIST")
    start_reviews(at("2026-12-01T17:00:00Z"), None, deployment=review_deployment)
    [review] = rows(sqlite_engine, review_t, "A-LIST")
    with temporary_settings({PREFECT_UI_URL: "http://prefect.example:4200"}):
        out = CliRunner().invoke(
            app, ["review", "list", "--database", sqlite_url, "--json", "--as-of", "2026-12-02T00:00:00Z"]
        )
    assert out.exit_code == 0, out.output
    [listed] = json.loads(out.stdout)
    assert listed["flow_run_id"] == review.flow_run_id
    assert listed["flow_run_url"] == f"http://prefect.example:4200/runs/flow-run/{review.flow_run_id}"
    # The table reads only the runs of the reviews it shows, by name: the run is found that way too.
    from deployments.cli._common import console

    monkeypatch.setattr(console, "width", 400)  # no cell folds
    table = CliRunner().invoke(
        app, ["review", "list", "--database", sqlite_url, "--limit", "5", "--as-of", "2026-12-02T00:00:00Z"]
    )
    assert table.exit_code == 0, table.output
    assert review.flow_run_id in table.stdout


def test_summary_counts_what_dispatch_did_across_attempts(sqlite_engine: Engine) -> None:
    """The report counts the transitions and dispatch outcomes of every attempt at the cycle's
    instant, so a retried cycle's summary does not say "transitions: 0"."""
    from arrears.storage._common import inserted_id
    from arrears.storage.reports import portfolio_report
    from arrears.storage.tables import audit, cycle_run

    instant = datetime(2026, 12, 2, 1, tzinfo=UTC)
    with sqlite_engine.begin() as c:
        ids = [
            inserted_id(
                c.execute(cycle_run.insert().values(as_of=instant, business_date=date(2026, 12, 2), stats={}))
            )
            for _ in range(2)
        ]
        c.execute(
            audit.insert(),
            [
                {
                    "account_id": None,
                    "at": instant,
                    "kind": "transition",
                    "detail": "",
                    "cycle_id": ids[0],
                    "data": {"from": "cured", "to": "reminder"},
                },
                {
                    "account_id": None,
                    "at": instant,
                    "kind": "message",
                    "detail": "",
                    "cycle_id": ids[0],
                    "data": {"when": "send", "status": "sent"},
                },
                {
                    "account_id": None,
                    "at": instant + timedelta(seconds=1),
                    "kind": "message",
                    "detail": "",
                    "cycle_id": ids[1],
                    "data": {"when": "send", "status": "blocked", "reason": "hours"},
                },
            ],
        )
    with sqlite_engine.connect() as c:
        report = portfolio_report(c, cycle_id=ids[1])
    assert report.transitions == {"cured": {"reminder": 1}}
    assert (report.dispatched, report.dispatch_blocked_by_reason) == ({"blocked": 1, "sent": 1}, {"hours": 1})


# -- run starts that the server refuses for a while ----------------------------------------------


class _Refusals:
    """The flow-run creations refused so far, and whether the server still refuses."""

    def __init__(self, times: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
        self.times = times
        self.refused: list[str] = []
        self.on = True
        self._monkeypatch = monkeypatch

    def now(self) -> bool:
        return self.on and (self.times is None or len(self.refused) < self.times)

    def stop(self) -> None:
        """The server answers again, and Prefect's client retries its own 503s again, as by
        default: a busy machine's SQLite server may still answer one for a moment (CI failed on
        the test flow's own run, created with the retries off)."""
        from prefect.settings import PREFECT_CLIENT_MAX_RETRIES

        self.on = False
        retries = "prefect.client.base.PREFECT_CLIENT_MAX_RETRIES"
        self._monkeypatch.setattr(retries, PREFECT_CLIENT_MAX_RETRIES)


def _refuse_run_creation(
    monkeypatch: pytest.MonkeyPatch, times: int | None, *, how: str = "503"
) -> _Refusals:
    """Make the Prefect server refuse the next `times` flow-run creations (every one when None,
    until `.on` is cleared), as an overloaded server does (`how`: a 503, a refused connection,
    or an answer `lost` after the run was made), at the HTTP client under Prefect's: every other
    request reaches the real server. Prefect's client retries a 503 itself five times with
    backoff; with its retries off, the refusal reaches our own backoff at once."""
    from types import SimpleNamespace

    import httpx

    refusals = _Refusals(times, monkeypatch)
    real = httpx.AsyncClient.send

    async def send(self: httpx.AsyncClient, request: httpx.Request, *args: Any, **kwargs: Any) -> Any:
        if request.method == "POST" and request.url.path.endswith("/create_flow_run") and refusals.now():
            if how == "lost":  # the server made the run, but its answer never came back
                answer = await real(self, request, *args, **kwargs)
                if not answer.is_success:  # the server failed by itself (SQLite busy): not a loss
                    return answer
                refusals.refused.append(request.url.path)
                raise httpx.ReadError("connection reset", request=request)
            refusals.refused.append(request.url.path)
            if how == "connect":
                raise httpx.ConnectError("connection refused", request=request)
            return httpx.Response(503, json={"detail": "Service Unavailable"}, request=request)
        return await real(self, request, *args, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", send)
    monkeypatch.setattr("prefect.client.base.PREFECT_CLIENT_MAX_RETRIES", SimpleNamespace(value=lambda: 0))
    monkeypatch.setattr("flows._waiting.RETRY_PAUSE_SECONDS", 0.05)
    return refusals


def _runs_with_keys(keys: list[str]) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterIdempotencyKey

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=keys))
        )


@pytest.mark.parametrize("how", ["503", "connect"])
def test_run_starts_the_server_refuses_a_few_times_are_retried_until_every_run_exists(
    review_deployment: str, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A server that refuses the first creations (503, or a refused connection) gets them again
    after a pause: every request ends with exactly one run, bound, and nothing is deferred."""
    from flows._waiting import RunRequest, start_runs

    refusals = _refuse_run_creation(monkeypatch, 3, how=how)
    requests = [
        RunRequest(f"ops-refused-{how}-{time.time_ns()}-{i}", f"review R-{i}", {"account_id": f"R-{i}"})
        for i in range(5)
    ]
    bound: dict[str, str] = {}
    started = start_runs(review_deployment, requests, bind=bound.update, batch=2)
    assert len(refusals.refused) == 3
    assert (started.created, started.deferred, started.error) == (5, 0, None)
    assert bound == started.runs and set(bound) == {r.key for r in requests}
    on_server = _runs_with_keys([r.key for r in requests])
    assert sorted(str(r.id) for r in on_server) == sorted(bound.values())  # one run per key, no duplicate


def test_run_starts_whose_answer_was_lost_are_found_by_key_not_made_twice(
    review_deployment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A creation the server did but whose answer was lost is found under its key when the batch
    is retried: counted found, not created, bound, and the server holds one run per request."""
    from flows._waiting import RunRequest, start_runs

    _refuse_run_creation(monkeypatch, 2, how="lost")
    requests = [
        RunRequest(f"ops-lost-{time.time_ns()}-{i}", f"review L-{i}", {"account_id": f"L-{i}"})
        for i in range(4)
    ]
    bound: dict[str, str] = {}
    started = start_runs(review_deployment, requests, bind=bound.update, batch=2)
    assert (started.created, started.found, started.deferred, started.error) == (2, 2, 0, None)
    assert set(bound) == {r.key for r in requests}
    on_server = _runs_with_keys([r.key for r in requests])
    assert sorted(str(r.id) for r in on_server) == sorted(bound.values())


def test_a_server_refusing_past_the_budget_defers_the_reviews_and_the_cycle_completes(
    review_deployment: str, sqlite_engine: Engine, reviewing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When every creation is refused until the start budget is spent, the cycle's flow run
    completes with the reviews counted deferred and no run bound; the next cycle starts them."""
    from prefect import flow

    from flows.repossession_review import start_reviews

    for account_id in ("A-DEF1", "A-DEF2", "A-DEF3"):
        reviewing(account_id)
    refusals = _refuse_run_creation(monkeypatch, None)
    monkeypatch.setattr("flows._waiting.START_BUDGET_SECONDS", 8.0)

    @flow(name="ops-test-cycle")
    def cycle(as_of: str) -> dict[str, int]:
        return start_reviews(at(as_of), None, deployment=review_deployment)

    state = cycle("2026-12-01T17:00:00Z", return_state=True)
    assert state.is_completed(), state.message
    counts = state.result()
    assert (counts["reviews_opened"], counts["review_runs_started"], counts["review_runs_deferred"]) == (
        3,
        0,
        3,
    )
    assert len(refusals.refused) > 3  # asked again after a pause, before giving up for this cycle
    assert all(
        r.flow_run_id is None
        for a in ("A-DEF1", "A-DEF2", "A-DEF3")
        for r in rows(sqlite_engine, review_t, a)
    )

    refusals.stop()  # the server answers again
    later = cycle("2026-12-02T17:00:00Z")
    assert (later["review_runs_started"], later["review_runs_deferred"]) == (3, 0)
    assert all(
        r.flow_run_id for a in ("A-DEF1", "A-DEF2", "A-DEF3") for r in rows(sqlite_engine, review_t, a)
    )


def test_the_outbox_run_starts_the_review_runs_a_cycle_deferred(
    review_deployment: str, sqlite_engine: Engine, reviewing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reviews a refusing server kept from their runs get them from the next outbox run (every
    quarter hour under `arrears serve`), not a day later; a second outbox run starts none again."""
    from prefect import flow

    from flows.daily_cycle import dispatch_outbox
    from flows.repossession_review import start_reviews

    accounts = ("A-OUT1", "A-OUT2")
    for account_id in accounts:
        reviewing(account_id)
    refusals = _refuse_run_creation(monkeypatch, None)
    monkeypatch.setattr("flows._waiting.START_BUDGET_SECONDS", 1.0)
    monkeypatch.setattr("flows.repossession_review.REVIEW_DEPLOYMENT", review_deployment)

    @flow(name="ops-test-cycle")
    def cycle(as_of: str) -> dict[str, int]:
        return start_reviews(at(as_of), None, deployment=review_deployment)

    assert cycle("2026-12-01T17:00:00Z")["review_runs_deferred"] == 2
    refusals.stop()  # the server answers again
    monkeypatch.setattr("flows._waiting.START_BUDGET_SECONDS", 120.0)

    counts = dispatch_outbox(as_of="2026-12-01T17:15:00Z")
    assert (counts["review_runs_started"], counts.get("review_runs_deferred", 0)) == (2, 0)
    bound = {r.flow_run_id for a in accounts for r in rows(sqlite_engine, review_t, a)}
    assert None not in bound and len(bound) == 2
    on_server = _runs_with_keys(
        [f"{_installation()}-review-{a.lower()}-{_review_id(sqlite_engine, a)}" for a in accounts]
    )
    assert {str(r.id) for r in on_server} == bound

    again = dispatch_outbox(as_of="2026-12-01T17:30:00Z")
    assert again.get("review_runs_started", 0) == 0


def _installation() -> str:
    from tasks.database import installation

    return installation()


def _review_id(engine: Engine, account_id: str) -> int:
    (review,) = rows(engine, review_t, account_id)
    return int(review.id)


# -- review runs link back to their cycle ---------------------------------------------------------


def test_review_runs_carry_the_cycle_run_that_started_them_and_review_list_links_it(
    review_deployment: str, sqlite_engine: Engine, sqlite_url: str, reviewing: Any
) -> None:
    """A review run started inside a cycle's flow run has that run's id as its `cycle_run`
    parameter (and tag); `review list --json` gives it with its UI URL."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_UI_URL, temporary_settings
    from typer.testing import CliRunner

    from deployments.cli import app
    from flows.repossession_review import start_reviews

    reviewing("A-LINK")

    @flow(name="ops-test-cycle")
    def cycle() -> dict[str, int]:
        return start_reviews(at("2026-12-01T17:00:00Z"), None, deployment=review_deployment)

    state = cycle(return_state=True)
    cycle_run = str(state.state_details.flow_run_id)
    [review] = rows(sqlite_engine, review_t, "A-LINK")
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(review.flow_run_id))
    assert run.parameters["cycle_run"] == cycle_run
    assert f"cycle-run:{cycle_run}" in run.tags
    with temporary_settings({PREFECT_UI_URL: "http://prefect.example:4200"}):
        out = CliRunner().invoke(
            app, ["review", "list", "--database", sqlite_url, "--json", "--as-of", "2026-12-02T00:00:00Z"]
        )
    assert out.exit_code == 0, out.output
    [listed] = json.loads(out.stdout)
    assert (listed["cycle_run_id"], listed["cycle_run_url"]) == (
        cycle_run,
        f"http://prefect.example:4200/runs/flow-run/{cycle_run}",
    )


def test_the_decision_form_links_to_the_cycle_run() -> None:
    """The line above the review form names the cycle run, as a link when a UI is configured."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    from flows._waiting import cycle_link

    assert cycle_link(None) == ""
    with temporary_settings(
        {PREFECT_API_URL: "http://prefect.example:4200/api", PREFECT_UI_URL: "http://prefect.example:4200"}
    ):
        assert "[abc](http://prefect.example:4200/runs/flow-run/abc)" in cycle_link("abc")


# -- logs that reach the API ----------------------------------------------------------------------


def _runs_since(flow_names: list[str], since: datetime) -> list[Any]:
    """Runs of these flows that started after `since` (the session's server holds many others)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterStartTime,
    )

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=flow_names)),
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)),
        )


def _logs_of(run_ids: list[UUID], until: Any, timeout: float = 30) -> list[Any]:
    """The runs' logs (their tasks' too) as the server has them, once `until(logs)` holds."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # the handler sends in batches, in the background
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_ids)))
            if until(logs) or time.monotonic() > deadline:
                return logs
            time.sleep(0.5)


@pytest.mark.usefixtures("sms_sandbox")
def test_cli_cycle_and_dispatch_log_their_counts_at_info_to_the_prefect_api_without_pii(
    prefect_harness: None, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`arrears cycle` and `arrears dispatch` leave INFO lines with their counts in their flow
    runs' logs on the server (what the UI's logs tab reads), and no borrower's name or number."""
    import re

    from typer.testing import CliRunner

    from deployments.cli import app
    from tests.factories import account_record, write_csv

    # The CLI quiets Prefect's console handler through this variable: restored after the test.
    monkeypatch.setenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    borrowers = [
        account_record(
            account_id="A-LOG1",
            borrower_name="Dana Whitfield",
            phone="(213) 373-4253",
            oldest_due_date="2026-11-26",
        ),
        account_record(
            account_id="A-LOG2",
            borrower_name="Wei Zhang",
            phone="(213) 373-4254",
            oldest_due_date="2026-11-20",
        ),
    ]
    cli = CliRunner()
    imported = cli.invoke(
        app, ["import", "accounts", str(write_csv(tmp_path / "a.csv", borrowers)), "--database", sqlite_url]
    )
    assert imported.exit_code == 0, imported.output
    since = datetime.now(UTC)
    for command in (
        ["cycle", "--as-of", "2026-12-01T16:30:00Z"],
        ["dispatch", "--as-of", "2026-12-02T16:30:00Z"],
    ):
        out = cli.invoke(app, [*command, "--database", sqlite_url, "--json"])
        assert out.exit_code == 0, out.output
    runs = {str(r.name).split(" ")[0]: r for r in _runs_since(["daily-cycle", "dispatch-outbox"], since)}
    cycle_run, dispatch_run = runs["daily-cycle"], runs["dispatch"]

    def info(logs: list[Any], run: Any, pattern: str) -> list[str]:
        return [
            log.message
            for log in logs
            if log.flow_run_id == run.id and log.level == logging.INFO and re.search(pattern, log.message)
        ]

    wanted = [
        (cycle_run, r"advanced 2 accounts in \d+ shards: \d+ transitions, \d+ new messages"),
        (cycle_run, r"^reviews: "),
        (cycle_run, r"^bureau: "),
        (cycle_run, r"dispatch: \d+ batches; .*sent 2"),
        (cycle_run, r"cycle 2026-12-02: 2 accounts, \d+ transitions; dispatch .*sent 2"),
        (dispatch_run, r"dispatch: \d+ batches; "),
    ]
    logs = _logs_of([cycle_run.id, dispatch_run.id], lambda ls: all(info(ls, r, p) for r, p in wanted))
    for run, pattern in wanted:
        assert info(logs, run, pattern), (
            f"no INFO log matching {pattern!r} in {[log.message for log in logs]}"
        )
    text = "\n".join(log.message for log in logs)
    for pii in ("Whitfield", "Dana", "Zhang", "373-4253", "3734253", "3734254"):
        assert pii not in text


def test_a_failed_daily_cycle_overdue_reviews_and_overdue_letters_notify_through_the_operators_block(
    prefect_harness: None, webhook: str
) -> None:
    """A daily-cycle flow run that fails on the server, and a cycle's report of reviews waiting
    past their deadline and of letters not mailed by the day the law says, each notify through the
    configured block; another flow failing does not."""
    from prefect import flow
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from arrears.storage.overdue_letters import OverdueLetter
    from deployments.automations import apply_automations
    from tasks.report import _emit_overdue, _emit_overdue_letters

    CustomWebhookNotificationBlock(
        name="ops", url=webhook, json_data={"subject": "{{subject}}", "body": "{{body}}"}
    ).save("ops-alerts", overwrite=True)
    apply_automations("custom-webhook/ops-alerts")
    time.sleep(3)  # the triggers service loads new automations

    @flow(name="daily-cycle", flow_run_name="daily-cycle 2027-01-05")
    def failing_cycle() -> None:
        raise RuntimeError("the database went away")

    @flow(name="ops-test-other", flow_run_name="other 2027-01-05")
    def other() -> None:
        raise RuntimeError("not a cycle")

    assert failing_cycle(return_state=True).is_failed()
    assert other(return_state=True).is_failed()
    _emit_overdue(["A-OLD1", "A-OLD2"], 12, "2027-01-05")  # what the cycle's report emits
    due = datetime(2027, 1, 4, 6, tzinfo=UTC)
    late = [OverdueLetter(7, "A-LATE", "deficiency_explanation", due, "failed", "refused: undeliverable")]
    _emit_overdue_letters(late, 12, "2027-01-05")

    def mine() -> list[dict[str, Any]]:
        return [
            r
            for r in _Hook.received
            if "2027-01-05" in r["subject"] or "deadline" in r["subject"] or "law says" in r["subject"]
        ]

    deadline = time.monotonic() + 60
    while len(mine()) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    got = {r["subject"]: r["body"] for r in mine()}
    assert sorted(got) == [
        "arrears: 1 letters not mailed by the day the law says",
        "arrears: 2 reviews wait past their deadline",
        "arrears: daily-cycle 2027-01-05 ended (prefect.flow-run.Failed)",
    ]
    assert "A-OLD1" in got["arrears: 2 reviews wait past their deadline"]
    assert "A-LATE" in got["arrears: 1 letters not mailed by the day the law says"]
    assert not [r for r in _Hook.received if "other 2027-01-05" in r["subject"]]
