"""After a crash, what may have been sent is looked up first, by provider id or our own reference
only, and recorded as it happened; bureau pulls are recorded once per key. Real databases and the
sandbox SMS server in its own process."""

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from arrears.importing import Kind, open_source
from arrears.storage import bureau_pulls as bureau_store
from arrears.storage import outbox
from arrears.storage.importer import run_import
from arrears.storage.tables import account, bureau, message
from integrations.providers import build_provider
from integrations.sms.protocol import SmsRequest
from tests.factories import account_record, unique_id, write_csv

MORNING = "2026-12-01T16:30:00Z"  # 08:30 in Los Angeles


def _provider(sandbox: Any) -> Any:
    return build_provider("sms", "sandbox", sandbox.base_url, dict(sandbox.credentials))


def _installation(engine: Engine) -> str:
    from arrears.storage.installation import installation_id

    with engine.begin() as c:
        return installation_id(c)


def test_aliyun_lookup_finds_a_batch_send_by_our_reference_and_never_by_its_text(sms_sandbox: Any) -> None:
    """Without a provider id, a message sent in a batch is found by the `ref` it carried, and a
    message never sent is not found because another one's text contains its values."""
    from tasks.sending import reference

    def request(key: str, to: str, **params: str) -> SmsRequest:
        return SmsRequest(key, to, "reminder", {**params, "ref": reference(key)}, "Your payment is past due.")

    sent = [
        request("k-sent-1", "+12133734250", name="Dana", amount="3000"),
        request("k-sent-2", "+12133734251", name="Lee", amount="3000"),
    ]
    never = request("k-never", "+12133734250", name="Dana", amount="300")
    with _provider(sms_sandbox) as provider:
        results = provider.send_batch(sent)
        found = provider.status(sent[0])
        assert found is not None and found.provider_id == results[0].provider_id
        assert provider.status(never) is None


def test_pull_recorded_twice_under_one_key_is_stored_once(engine: Engine, tmp_path: Path) -> None:
    """A second record of the same pull (a rerun, a concurrent cycle) adds no row, no event, no number."""
    _import(engine, tmp_path, [account_record(account_id="A-P1", oldest_due_date="2026-11-01")])
    with engine.begin() as c:
        c.execute(update(account).values(stage="negotiation", segment="unreachable", episode=2))
    with engine.connect() as c:
        [subject] = bureau_store.pull_subjects(c)
    at = datetime(2026, 12, 1, tzinfo=UTC)
    outcomes = []
    for _ in range(2):
        with engine.begin() as c:
            outcomes.append(
                bureau_store.record_pulls(
                    c,
                    [
                        bureau_store.Pulled(
                            subject,
                            purpose="604(a)(3)(A)",
                            report_id="R-1",
                            score_band="B",
                            income_estimate=Decimal("60000"),
                            phones=[("+12133734299", 0.9, "mobile")],
                            bankruptcy_chapter=None,
                            bankrupt=False,
                            deceased=False,
                        )
                    ],
                    at=at,
                )[0]
            )
    assert [o["numbers_found"] for o in outcomes] == [1, 0]
    with engine.connect() as c:
        assert len(c.execute(select(bureau.c.id)).all()) == 1


@pytest.mark.usefixtures("prefect_harness")
def test_send_of_a_crashed_run_is_recorded_sent_before_any_verdict(
    engine: Engine, db_url: str, tmp_path: Path, sms_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message that a killed run leased and sent, whose account has moved on since, is found at
    the provider by the next dispatch and recorded sent (not blocked stale, not sent again), at
    once (not ten minutes later), and then counts against the caps."""
    from arrears.settings import get_settings
    from flows.daily_cycle import daily_cycle, dispatch_outbox
    from tasks.sending import request_of

    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    _import(engine, tmp_path, [account_record(account_id="A-R1", oldest_due_date="2026-11-26")])
    daily_cycle(as_of="2026-12-01T08:00:00Z")  # 00:00 in Los Angeles: the reminder waits for 08:00
    now = datetime.now(UTC)
    with engine.begin() as c:  # the killed run: leased (for ten minutes), sent, never recorded
        claimed = outbox.claim_batch(
            c,
            lo=0,
            hi=None,
            now=datetime(2026, 12, 1, 16, 30, tzinfo=UTC),
            wall=now,
            lease_until=datetime(2999, 1, 1, tzinfo=UTC),
            owner="cycle-999",
        )
        [row] = outbox.load_batch(c, claimed, now=datetime(2026, 12, 1, 16, 30, tzinfo=UTC))
    with _provider(sms_sandbox) as provider:
        provider.send_batch([request_of(row, _installation(engine))])
    with engine.begin() as c:  # and the account moved on meanwhile: the row is stale now
        c.execute(update(account).values(episode=account.c.episode + 1))

    counts = dispatch_outbox(as_of=MORNING)
    assert counts["found_sent"] == 1
    with engine.connect() as c:
        recorded = c.execute(select(message).where(message.c.id == row.id)).one()
    assert recorded.status in ("sent", "delivered")  # the sandbox delivers at once
    assert (recorded.lease_until, recorded.sent_at) == (None, datetime(2026, 12, 1, 16, 30, tzinfo=UTC))
    assert len(sms_sandbox.messages()) == 1


def _import(engine: Engine, tmp_path: Path, records: list[dict[str, str]]) -> None:
    path = write_csv(tmp_path / f"{unique_id('accounts')}.csv", records)
    summary = run_import(engine, open_source(path, Kind.ACCOUNTS))
    assert summary.rejected == 0, summary.first_rejections
