"""The daily cycle end to end under Prefect: real database (SQLite and PostgreSQL), real
importer, real sandbox SMS server in its own process."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from arrears.compliance import contact_allowed
from arrears.importing import Kind, open_source
from arrears.jurisdictions import profile
from arrears.models import Account, AuditEvent, Message
from arrears.storage.importer import run_import
from tests.factories import account_record, payment_record, write_csv

pytestmark = pytest.mark.usefixtures("prefect_harness")

# 16:30 UTC on 1 December: 00:30 in Shanghai (closed until 08:00 = 00:00 UTC on the 2nd),
# 08:30 in Los Angeles (open).
CN_NIGHT_US_MORNING = "2026-12-01T16:30:00Z"
CN_MORNING = "2026-12-02T00:00:00Z"


def _cn(**kw: str) -> dict[str, str]:
    cn = {
        "borrower_name": "王芳",
        "phone": "13912345678",
        "timezone": "Asia/Shanghai",
        "jurisdiction": "CN",
        "currency": "CNY",
        "balance": "60000.00",
        "installment_amount": "3000.00",
        "past_due_amount": "3000.00",
        "oldest_due_date": "2026-11-26",  # 5 days past due on 1 December
    }
    return account_record(**(cn | kw))


def _us(**kw: str) -> dict[str, str]:
    return account_record(**({"oldest_due_date": "2026-11-26"} | kw))


@pytest.fixture
def cycle_db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, sms_sandbox: Any) -> Engine:
    from arrears.settings import get_settings

    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


def _import(
    engine: Engine, tmp_path: Path, records: list[dict[str, str]], kind: Kind = Kind.ACCOUNTS
) -> None:
    path = write_csv(tmp_path / f"{kind.value}-{len(list(tmp_path.iterdir()))}.csv", records)
    summary = run_import(engine, open_source(path, kind))
    assert summary.rejected == 0, summary.first_rejections


def _messages(engine: Engine) -> dict[str, Any]:
    with engine.connect() as c:
        return {m.account_id: m for m in c.execute(select(Message.__table__))}  # type: ignore[attr-defined]


def test_cycle_twice_for_the_same_instant_sends_nothing_the_second_time(
    cycle_db: Engine, tmp_path: Path, sms_sandbox: Any
) -> None:
    """The second run of the same --as-of takes no transition, creates no message and sends nothing."""
    from flows.daily_cycle import daily_cycle

    _import(cycle_db, tmp_path, [_us(account_id=f"A-{i}") for i in range(6)])
    first = daily_cycle(as_of=CN_NIGHT_US_MORNING)
    sent_once = sms_sandbox.messages()
    assert first["dispatch"].get("sent") == 6 and len(sent_once) == 6
    with cycle_db.connect() as c:
        events = c.execute(select(AuditEvent.__table__)).all()  # type: ignore[attr-defined]

    second = daily_cycle(as_of=CN_NIGHT_US_MORNING)
    assert second["advance"]["transitions"] == 0 and second["advance"]["messages"] == 0
    assert second["dispatch"] == {"batches": 0}
    assert len(sms_sandbox.messages()) == 6
    with cycle_db.connect() as c:
        assert len(c.execute(select(AuditEvent.__table__)).all()) == len(events)  # type: ignore[attr-defined]


def test_cycle_probes_the_provider_with_a_small_first_batch(
    cycle_db: Engine, tmp_path: Path, sms_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch that goes alone to find out whether the provider answers holds `PROBE_ROWS`
    rows, not a whole batch; the rest go in batches of `dispatch_batch`, and every message is sent."""
    import flows.daily_cycle
    from arrears.settings import get_settings

    monkeypatch.setattr(flows.daily_cycle, "PROBE_ROWS", 2)
    monkeypatch.setenv("ARREARS_DISPATCH_BATCH", "5")
    get_settings.cache_clear()
    _import(cycle_db, tmp_path, [_us(account_id=f"A-{i:02}") for i in range(13)])
    counts = flows.daily_cycle.daily_cycle(as_of=CN_NIGHT_US_MORNING)["dispatch"]
    # 2 + 5 + 5 + 1 rows (batches of 5 from the first row would be 5 + 5 + 3)
    assert (counts["batches"], counts["sent"]) == (4, 13)
    assert len(sms_sandbox.messages()) == 13


def test_cycle_sends_only_inside_each_borrowers_local_hours(
    cycle_db: Engine, tmp_path: Path, sms_sandbox: Any
) -> None:
    """At 00:30 in Shanghai and 08:30 in Los Angeles only the US borrower is messaged; the CN one
    is scheduled for 08:00 local and sent by the next dispatch, not before."""
    from flows.daily_cycle import daily_cycle, dispatch_outbox

    _import(cycle_db, tmp_path, [_cn(account_id="A-CN"), _us(account_id="A-US")])
    daily_cycle(as_of=CN_NIGHT_US_MORNING)
    messages = _messages(cycle_db)
    assert messages["A-US"].status == "sent"
    assert messages["A-CN"].status == "scheduled"
    assert messages["A-CN"].not_before == datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
    assert messages["A-CN"].reason == "hours:CN"
    assert [m["to"] for m in sms_sandbox.messages()] == [messages["A-US"].address]

    early = dispatch_outbox(as_of="2026-12-01T23:59:00Z")  # 07:59 in Shanghai
    assert (early["batches"], early.get("sent")) == (0, None)
    # The sweep also asked the sandbox about the US message, sent hours ago without a receipt.
    assert (early["receipts_looked_up"], _messages(cycle_db)["A-US"].status) == (1, "delivered")
    counts = dispatch_outbox(as_of=CN_MORNING)
    assert counts.get("sent") == 1
    assert _messages(cycle_db)["A-CN"].status == "sent"
    assert len(sms_sandbox.messages()) == 2


def test_a_home_address_in_another_zone_than_the_number_waits_for_both_mornings(
    cycle_db: Engine, tmp_path: Path, sms_sandbox: Any
) -> None:
    """Reg F's own example of an uncertain location: a New York number and a home address in
    California. At 08:30 in New York (05:30 in Los Angeles) the borrower whose file gives only the
    New York zone and number is texted; the one with a California address waits for 08:00 there,
    at decision time and again at send time."""
    from flows.daily_cycle import daily_cycle, dispatch_outbox

    new_york = {"jurisdiction": "US", "timezone": "America/New_York", "phone": "(212) 736-5600"}
    home = {"address_line1": "1 Main St", "city": "Fresno", "postal_code": "93650", "country": "US"}
    _import(
        cycle_db,
        tmp_path,
        [
            _us(account_id="A-NY", **new_york, **home, state="NY"),
            _us(account_id="A-CA", **(new_york | {"phone": "(212) 736-5601"}), **home, state="CA"),
        ],
    )
    daily_cycle(as_of="2026-12-07T13:30:00Z")  # a Monday: 08:30 in New York, 05:30 in Los Angeles
    messages = _messages(cycle_db)
    assert messages["A-NY"].status == "sent"
    assert (messages["A-CA"].status, messages["A-CA"].reason) == ("scheduled", "hours:US")
    assert messages["A-CA"].not_before == datetime(2026, 12, 7, 16, 0, tzinfo=UTC)  # 08:00 in California

    # A send that finds it due early (a scheduled row brought forward) is held back again.
    with cycle_db.begin() as c:
        c.execute(
            Message.__table__.update()  # type: ignore[attr-defined]
            .where(Message.__table__.c.account_id == "A-CA")  # type: ignore[attr-defined]
            .values(not_before=datetime(2026, 12, 7, 14, 0, tzinfo=UTC))
        )
    dispatch_outbox(as_of="2026-12-07T14:00:00Z")
    assert _messages(cycle_db)["A-CA"].status == "scheduled"
    dispatch_outbox(as_of="2026-12-07T16:00:00Z")
    assert _messages(cycle_db)["A-CA"].status == "sent"
    assert len(sms_sandbox.messages()) == 2


@pytest.mark.parametrize("as_of", ["2026-12-01T14:05:00Z", "2026-12-01T05:10:00Z", "2026-12-02T04:59:00Z"])
def test_every_message_the_sandbox_received_was_sent_inside_its_window(
    cycle_db: Engine, tmp_path: Path, sms_sandbox: Any, as_of: str
) -> None:
    """Whatever the hour, each message the provider received was sent at an allowed local time."""
    from arrears.clock import parse_instant
    from flows.daily_cycle import daily_cycle

    records = [
        *(_cn(account_id=f"A-CN-{i}", phone=f"1391234567{i}") for i in range(3)),
        *(_us(account_id=f"A-CA-{i}", phone=f"(213) 373-425{i}") for i in range(3)),
        *(
            _us(
                account_id=f"A-NY-{i}",
                phone=f"(212) 736-560{i}",
                jurisdiction="US",
                timezone="America/New_York",
            )
            for i in range(3)
        ),
    ]
    _import(cycle_db, tmp_path, records)
    daily_cycle(as_of=as_of)
    instant = parse_instant(as_of)
    with cycle_db.connect() as c:
        accounts = {a.account_id: a for a in c.execute(select(Account.__table__))}  # type: ignore[attr-defined]
    sent = [m for m in _messages(cycle_db).values() if m.status == "sent"]
    assert len(sent) == len(sms_sandbox.messages())
    for m in sent:
        a = accounts[m.account_id]
        assert contact_allowed(instant, a.timezone, profile(a.jurisdiction)), (m.account_id, as_of)
    for m in _messages(cycle_db).values():
        if m.status == "scheduled":
            a = accounts[m.account_id]
            assert not contact_allowed(instant, a.timezone, profile(a.jurisdiction))
            assert contact_allowed(m.not_before, a.timezone, profile(a.jurisdiction))


def test_hold_placed_after_scheduling_blocks_the_send(
    cycle_db: Engine, tmp_path: Path, sms_sandbox: Any
) -> None:
    """A dispute that arrives while a message waits for the morning blocks it at send time."""
    from flows.daily_cycle import daily_cycle, dispatch_outbox

    _import(cycle_db, tmp_path, [_cn(account_id="A-CN")])
    daily_cycle(as_of=CN_NIGHT_US_MORNING)
    _import(cycle_db, tmp_path, [_cn(account_id="A-CN", flags="dispute")])
    dispatch_outbox(as_of=CN_MORNING)
    message = _messages(cycle_db)["A-CN"]
    assert (message.status, message.reason) == ("blocked", "hold:dispute")
    assert sms_sandbox.messages() == []


def test_payment_cures_and_cancels_the_waiting_reminder(
    cycle_db: Engine, tmp_path: Path, sms_sandbox: Any
) -> None:
    """A payment that clears the past due cures the account; its deferred reminder is never sent."""
    from flows.account_lifecycle import account_lifecycle
    from flows.daily_cycle import daily_cycle

    _import(cycle_db, tmp_path, [_cn(account_id="A-CN")])
    daily_cycle(as_of=CN_NIGHT_US_MORNING)
    _import(
        cycle_db,
        tmp_path,
        [payment_record(account_id="A-CN", amount="3000.00", received_at="2026-12-01T23:00:00Z")],
        Kind.PAYMENTS,
    )
    result = account_lifecycle(account_id="A-CN", as_of=CN_MORNING, reason="payment")
    assert result["refresh"]["payments_applied"] == 1
    with cycle_db.connect() as c:
        account = c.execute(select(Account.__table__).where(Account.__table__.c.account_id == "A-CN")).one()  # type: ignore[attr-defined]
    assert (account.stage, account.days_past_due) == ("cured", 0)
    message = _messages(cycle_db)["A-CN"]
    assert (message.status, message.reason) == ("blocked", "stale")
    assert sms_sandbox.messages() == []


def test_an_account_run_leaves_the_accounts_timeline_in_the_prefect_ui(
    cycle_db: Engine, tmp_path: Path, sms_sandbox: Any
) -> None:
    """After an event's `account A-CN` run, the Prefect UI holds the account's timeline: the table
    artifact `account-a-cn`, newest first, the payment and the cure in it, a number in an agent's
    note masked; a second run adds a version of the same artifact. Ids that Prefect's keys cannot
    spell keep keys of their own."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    from arrears.storage.accounts import note
    from flows.account_lifecycle import account_lifecycle
    from flows.daily_cycle import daily_cycle
    from tasks.timelines import timeline_key

    _import(cycle_db, tmp_path, [_cn(account_id="A-CN")])
    daily_cycle(as_of=CN_NIGHT_US_MORNING)
    with cycle_db.begin() as c:
        note(
            c,
            account_id="A-CN",
            at=datetime(2026, 12, 1, 22, tzinfo=UTC),
            kind="note",
            detail="borrower called from 13912345678, will pay tonight",
            data={},
            actor="agent ann",
        )
    _import(
        cycle_db,
        tmp_path,
        [payment_record(account_id="A-CN", amount="3000.00", received_at="2026-12-01T23:00:00Z")],
        Kind.PAYMENTS,
    )
    runs = {
        account_lifecycle(
            account_id="A-CN", as_of=CN_MORNING, reason=why, return_state=True
        ).state_details.flow_run_id
        for why in ("payment", "reply")
    }

    assert timeline_key("A-CN") == "account-a-cn"
    with get_client(sync_client=True) as client:
        versions = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["account-a-cn"])),
            sort=ArtifactSort.CREATED_DESC,
        )
    # The Prefect server is the session's, and other tests' accounts are A-CN too.
    versions = [v for v in versions if v.flow_run_id in runs]
    assert len(versions) == 2
    rows = json.loads(versions[0].data) if isinstance(versions[0].data, str) else versions[0].data
    assert [r["at"] for r in rows] == sorted((r["at"] for r in rows), reverse=True)
    assert {tuple(r) for r in rows} == {("at", "kind", "actor", "detail")}
    kinds = [r["kind"] for r in rows]
    assert "payment" in kinds and any("→ cured" in r["detail"] for r in rows)
    (agent,) = [r for r in rows if r["actor"] == "agent ann"]
    assert "13912345678" not in agent["detail"] and agent["detail"].endswith("will pay tonight")
    assert "A-CN: cured, 0 days past due" in (versions[0].description or "")
    assert len({timeline_key(i) for i in ("A_1", "A.1", "A-1", "贷款-1", "贷款_1")}) == 5


def test_provider_refusing_a_number_marks_it_invalid(
    cycle_db: Engine, tmp_path: Path, sms_sandbox: Any
) -> None:
    """A number the provider rejects as invalid fails its message and is not used again."""
    from arrears.models import ContactPoint
    from flows.daily_cycle import daily_cycle

    _import(cycle_db, tmp_path, [_us(account_id="A-US")])
    number = "+12133734253"
    sms_sandbox.set_faults(invalid_numbers=r"^\+12133734253$")
    daily_cycle(as_of=CN_NIGHT_US_MORNING)
    message = _messages(cycle_db)["A-US"]
    assert (message.status, message.reason) == ("failed", "invalid_number")
    with cycle_db.connect() as c:
        valid = c.execute(
            select(ContactPoint.__table__.c.valid).where(ContactPoint.__table__.c.address == number)
        ).scalar()  # type: ignore[attr-defined]
    assert valid is False


def test_late_scheduled_runs_of_missed_days_run_one_cycle_as_of_now(
    cycle_db: Engine, tmp_path: Path, sms_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The machine was off at the cron time for two days: the scheduler's runs of both days (no
    `as_of`) start late, together. Each ran a whole cycle as of now, the same business day
    twice (a cycle of minutes at portfolio scale, and a day's transition matrix left empty by
    the second). The first runs as of now; the other finds a cycle done since it was due."""
    from datetime import timedelta

    from prefect.runtime import flow_run

    from flows.daily_cycle import daily_cycle

    due: list[datetime] = []
    # Prefect's own override by environment variable refuses this attribute's type.
    monkeypatch.setitem(flow_run.FIELDS, "scheduled_start_time", lambda: due[-1])
    _import(cycle_db, tmp_path, [_us(account_id=f"A-{i}") for i in range(3)])
    now = datetime.now(UTC)
    due.append(now - timedelta(days=2))
    first = daily_cycle()
    assert "already_finished" not in first and first["advance"]["accounts"] == 3

    due.append(now - timedelta(days=1))
    second = daily_cycle()
    assert second["already_finished"] == first["cycle_id"]
    assert second["advance"]["accounts"] == 0

    # The next day's run, on time (due after the last cycle's instant), runs.
    due.append(datetime.now(UTC))
    third = daily_cycle()
    assert "already_finished" not in third and third["cycle_id"] > first["cycle_id"]
