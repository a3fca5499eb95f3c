"""Repossession review: the right to cure, a person's decision (in Prefect's form or the CLI),
SCRA, and vendor orders that a payment or a hold cancels at once."""

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, update
from typer.testing import CliRunner

from arrears import jurisdictions
from arrears.review import add_business_days, cure_deadline, decision_refusal, settle_decision
from arrears.vocabulary import DecisionKind, Hold
from tests.later_stage_helpers import (
    account,
    account_t,
    at,
    day,
    events,
    import_rows,
    in_thread,
    pay,
    put_in_review,
    refresh_later,
    reply,
    review_run_id,
    review_t,
    rows,
    us_account,
    wait_paused,
)

SENT = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)  # Tuesday 1 December: 11:00 in Chicago, 17:00 in London


# -- the right to cure -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jurisdiction", "zone", "last_day", "ends"),
    [
        ("US-IA", "America/Chicago", date(2026, 12, 21), datetime(2026, 12, 22, 6, tzinfo=UTC)),
        ("US-WI", "America/Chicago", date(2026, 12, 16), datetime(2026, 12, 17, 6, tzinfo=UTC)),
        ("US-MA", "America/New_York", date(2026, 12, 22), datetime(2026, 12, 23, 5, tzinfo=UTC)),
        ("GB", "Europe/London", date(2026, 12, 15), datetime(2026, 12, 16, 0, tzinfo=UTC)),
        ("IE", "Europe/Dublin", date(2026, 12, 15), datetime(2026, 12, 16, 0, tzinfo=UTC)),
    ],
)
def test_cure_period_per_jurisdiction(jurisdiction: str, zone: str, last_day: date, ends: datetime) -> None:
    """Iowa 20 days, Wisconsin 15, Massachusetts 21, Great Britain and Ireland 14 (compliance.md,
    "United Kingdom (GB) and Ireland (IE)": a default notice, at least 14 days to remedy before
    enforcement): the period ends at the borrower's midnight after its last day."""
    assert cure_deadline(SENT, jurisdiction=jurisdiction, timezone=zone) == (last_day, ends)


@pytest.mark.parametrize("jurisdiction", ["US-CA", "CN", "US"])
def test_no_cure_notice_where_none_is_owed(jurisdiction: str) -> None:
    """California, China and the plain US profile owe no pre-repossession cure notice."""
    assert cure_deadline(SENT, jurisdiction=jurisdiction, timezone="UTC") is None


def test_period_ending_on_a_holiday_runs_to_the_next_business_day() -> None:
    """Twenty days from Saturday 5 December 2026 is Christmas: the period runs on to Monday 28 December."""
    sent = datetime(2026, 12, 5, 18, tzinfo=UTC)
    assert cure_deadline(sent, jurisdiction="US-IA", timezone="America/Chicago")[0] == date(2026, 12, 28)


def test_business_day_profiles_skip_weekends_and_public_holidays(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted in business days, 14 days from Friday 18 December 2026 in GB skip Christmas, Boxing
    Day (observed), New Year's Day and the weekends: the last day is 12 January 2027."""
    monkeypatch.setitem(
        jurisdictions.PROFILES, "GB", replace(jurisdictions.PROFILES["GB"], cure_business_days=True)
    )
    sent = datetime(2026, 12, 18, 12, tzinfo=UTC)
    assert cure_deadline(sent, jurisdiction="GB", timezone="Europe/London")[0] == date(2027, 1, 12)
    assert add_business_days(date(2026, 11, 25), 1, calendar="US") == date(
        2026, 11, 27
    )  # Thanksgiving skipped


@pytest.mark.parametrize(
    ("jurisdiction", "zone"),
    [
        ("US-IA", "America/Chicago"),
        ("US-WI", "America/Chicago"),
        ("US-MA", "America/New_York"),
        ("GB", "Europe/London"),
        ("IE", "Europe/Dublin"),
    ],
)
def test_the_printed_deadline_is_never_before_the_statutes_when_the_letter_is_mailed_as_late_as_allowed(
    jurisdiction: str, zone: str
) -> None:
    """A letter goes to the provider within a day of being written, and Lob mails it within two
    business days: written on Thursday 4 March 2027 in the evening, handed over on Friday, mailed on
    Tuesday 9 March. The last day to cure the letter prints is never before the one the statute
    gives from that mailing (three calendar days of lead printed WI 22 March for 24, GB 22 for 23)."""
    from arrears.jurisdictions import profile
    from arrears.letters.notices import mailed_deadline, planned_notice

    rules = profile(jurisdiction)
    common: dict[str, Any] = dict(
        jurisdiction=jurisdiction, timezone=zone, cure_amount=Decimal("825.00"), currency="USD", rules=rules
    )
    printed = planned_notice(datetime(2027, 3, 4, 22, 0, tzinfo=UTC), **common)
    owed = mailed_deadline(datetime(2027, 3, 9, 15, 0, tzinfo=UTC), printed_last_day=None, **common)
    assert printed is not None and owed is not None
    assert printed.last_day >= owed.last_day


def test_the_latest_mailing_skips_weekends_and_the_profiles_public_holidays() -> None:
    """Handed over within a day, mailed within two business days of the borrower's calendar:
    Thursday evening's letter by Tuesday; Wednesday 23 December 2026's by Tuesday 29 (Christmas
    and the weekend skipped); a weekday's with no holiday near by the third day after."""
    from arrears.letters.notices import latest_mailing

    def latest(written: datetime, calendar: str = "US-IA") -> date:
        return latest_mailing(written, timezone="America/Chicago", calendar=calendar)

    assert latest(datetime(2027, 3, 5, 3, 0, tzinfo=UTC)) == date(2027, 3, 9)  # Thursday 21:00 in Chicago
    assert latest(datetime(2026, 12, 23, 23, 0, tzinfo=UTC)) == date(2026, 12, 29)
    assert latest(datetime(2026, 12, 1, 17, 0, tzinfo=UTC)) == date(2026, 12, 4)


# -- the decision ----------------------------------------------------------------------------------


def test_military_hold_turns_repossession_into_a_referral_to_legal() -> None:
    """SCRA: no self-help repossession of a servicemember's car; the decision becomes legal, no order."""
    settled = settle_decision(DecisionKind.REPOSSESS, holds=frozenset({Hold.MILITARY}))
    assert (settled.decision, settled.order_vehicle) == (DecisionKind.LEGAL, False)
    assert "50 U.S.C. 3952" in (settled.note or "")


@pytest.mark.parametrize(
    ("jurisdiction", "law"),
    [("GB", "Consumer Credit Act 1974 s.90"), ("IE", "Consumer Credit Act 1995 ss.63-64 (unverified)")],
)
def test_protected_goods_turn_repossession_into_a_referral_to_legal(jurisdiction: str, law: str) -> None:
    """compliance.md, "United Kingdom (GB) and Ireland (IE)": a hire-purchase car a third paid for
    is not repossessed without a court order, and the servicing file does not say what was paid: a
    GB or IE decision to repossess becomes a referral to legal, and the form offers no
    repossession. A US one is ordered."""
    from arrears.jurisdictions import profile
    from tasks.review import decision_options

    settled = settle_decision(DecisionKind.REPOSSESS, holds=frozenset(), rules=profile(jurisdiction))
    assert (settled.decision, settled.order_vehicle) == (DecisionKind.LEGAL, False)
    assert settled.note == (
        f"protected goods in {jurisdiction}: {law} forbids repossession without a court order; "
        "referred to legal for a court order"
    )
    assert settle_decision(DecisionKind.REPOSSESS, holds=frozenset(), rules=profile("US-CA")).order_vehicle
    assert "repossess" not in decision_options(frozenset(), jurisdiction)
    assert "repossess" in decision_options(frozenset(), "US-CA")


def test_other_holds_withhold_the_vendor_order_and_plain_repossession_orders_it() -> None:
    """A bankruptcy keeps the decision but withholds the order; without a hold the order goes out;
    legal and negotiate are never changed."""
    held = settle_decision(DecisionKind.REPOSSESS, holds=frozenset({Hold.BANKRUPTCY, Hold.SMS_OPT_OUT}))
    assert (held.decision, held.order_vehicle, held.note) == (
        DecisionKind.REPOSSESS,
        False,
        "vendor order withheld: hold:bankruptcy",
    )
    assert settle_decision(DecisionKind.REPOSSESS, holds=frozenset({Hold.SMS_OPT_OUT})).order_vehicle
    for kind in (DecisionKind.LEGAL, DecisionKind.NEGOTIATE):
        assert settle_decision(kind, holds=frozenset({Hold.MILITARY})).decision is kind


def test_no_decision_before_the_cure_period_is_over() -> None:
    """A decision waits for the notice where one is owed, and for its period to end."""
    ends = datetime(2026, 12, 22, 6, tzinfo=UTC)

    def why(**kw: Any) -> str | None:
        base = dict(
            in_review=True,
            closed=False,
            stage="repossession_review",
            notice_owed=True,
            cure_deadline=ends,
            now=ends,
        )
        return decision_refusal(**(base | kw))

    assert why() is None
    assert "runs until" in (why(now=datetime(2026, 12, 22, 5, tzinfo=UTC)) or "")
    assert "has not gone out" in (why(cure_deadline=None) or "")
    assert why(notice_owed=False, cure_deadline=None) is None
    assert "no longer" in (why(in_review=False, stage="cured") or "")
    assert "already" in (why(closed=True) or "")


# -- in the database ---------------------------------------------------------------------------------


@pytest.fixture
def later_db(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, sms_sandbox: Any, letters_sandbox: Any
) -> Engine:
    from arrears.settings import get_settings

    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


_in_review = put_in_review


def _prepare(as_of: str, mailed: str | None = "same") -> Any:
    """The cycle's review step at `as_of`; the letters written are sent to the sandbox Lob, which
    mails them at `mailed` (`as_of` by default; None: not yet), and are looked up."""
    from tasks.letters import send_letters, track_letters
    from tasks.review import prepare_reviews

    prepared = prepare_reviews.fn(at(as_of))
    send_letters.fn(as_of=at(as_of))
    if mailed is not None:
        _mail_all(as_of if mailed == "same" else mailed)
        track_letters.fn()
    return prepared


def _mail_all(when: str) -> None:
    import httpx

    from arrears.settings import get_settings

    base = get_settings().letters_base_url
    assert base is not None
    with httpx.Client(base_url=base) as admin:
        for letter in admin.get("/_sandbox/letters").json()["letters"]:
            if letter["status"] == "created":
                admin.post(
                    f"/_sandbox/advance/{letter['id']}", json={"to": "mailed", "at": at(when).isoformat()}
                )


def test_cycle_opens_the_review_and_records_the_cure_notice_once(later_db: Engine, tmp_path: Path) -> None:
    """The cycle's bulk step opens one review with its right-to-cure deadline; a second run adds nothing."""
    _in_review(later_db, tmp_path, "A-V1")
    first = _prepare("2026-12-01T17:00:00Z")
    assert (first.opened, first.notices, [a for _, a in first.without_run]) == (1, 1, ["A-V1"])
    again = _prepare("2026-12-02T17:00:00Z")
    assert (again.opened, again.notices) == (0, 0)
    [review] = rows(later_db, review_t, "A-V1")
    # Counted from the mailed event (1 December), but never before the last day the letter printed:
    # written on Tuesday, mailed by Friday 4 December at the latest, it told the borrower 24 December.
    assert review.cure_deadline == datetime(2026, 12, 25, 6, tzinfo=UTC)
    [notice] = events(later_db, "A-V1", "cure_notice")
    assert notice.detail.startswith(
        "right-to-cure notice (Iowa Code 537.5110-5111): USD 825.00 to cure within 20 days"
    )


def test_massachusetts_notice_waits_until_ten_days_after_default(later_db: Engine, tmp_path: Path) -> None:
    """M.G.L. c.255B §20A (compliance.md): the right-to-cure notice is given at least 10 days after
    default. A strategic defaulter reaches review at 7 days past due: no notice then, and no
    decision (the notice is still owed); the cycle at 10 days past due writes it."""
    from tasks.review import ReviewError, decide_review

    _in_review(later_db, tmp_path, "A-MA", jurisdiction="US-MA", timezone="America/New_York")
    with later_db.begin() as c:
        c.execute(update(account_t).where(account_t.c.account_id == "A-MA").values(days_past_due=7))
    assert _prepare("2026-12-01T17:00:00Z").notices == 0
    assert events(later_db, "A-MA", "cure_notice") == []
    with pytest.raises(ReviewError, match="notice"):
        decide_review(
            later_db,
            account_id="A-MA",
            decision="repossess",
            reviewer="Ana",
            reason="r",
            at=at("2026-12-02T17:00:00Z"),
        )
    with later_db.begin() as c:
        c.execute(update(account_t).where(account_t.c.account_id == "A-MA").values(days_past_due=10))
    assert _prepare("2026-12-04T17:00:00Z").notices == 1
    [notice] = events(later_db, "A-MA", "cure_notice")
    assert "M.G.L. c.255B" in notice.detail


def _earlier_cured_reviews(engine: Engine, account_id: str, *, notice_given: bool) -> None:
    """Three earlier stays in review of the account, each ended by a cure: after a right-to-cure
    notice (its deadline recorded), or before any was given."""
    with engine.begin() as c:
        for n in range(3):
            opened = datetime(2026, 3 + 2 * n, 1, 16, tzinfo=UTC)
            c.execute(
                review_t.insert().values(
                    account_id=account_id,
                    opened_at=opened,
                    cure_deadline=opened.replace(day=26) if notice_given else None,
                    decided_at=opened.replace(day=28 if notice_given else 5),
                    reason="closed: account is now cured",
                )
            )


def test_massachusetts_counts_only_cures_after_a_notice(later_db: Engine, tmp_path: Path) -> None:
    """M.G.L. c.255B §20A(b): no notice is owed for a later default only once the debtor "has cured
    a default after notice three or more times". Three cures before any notice was given (within
    the ten days after default, or under a hold that stopped the letter) are none: the fourth
    review still owes its notice, and no decision is taken without it."""
    from arrears.storage import reviews

    _in_review(later_db, tmp_path, "A-MA9", jurisdiction="US-MA", timezone="America/New_York")
    _earlier_cured_reviews(later_db, "A-MA9", notice_given=False)
    assert _prepare("2026-12-01T17:00:00Z", mailed=None).notices == 1
    with later_db.connect() as c:
        state = reviews.current_review(c, "A-MA9")
    assert state is not None and (state.prior_cures, state.letter_status) == (0, "created")


def test_massachusetts_owes_no_notice_after_three_cures_after_notice(
    later_db: Engine, tmp_path: Path
) -> None:
    """Three cures, each after a right-to-cure notice: the fourth default owes none (§20A(b))."""
    from arrears.storage import reviews

    _in_review(later_db, tmp_path, "A-MA8", jurisdiction="US-MA", timezone="America/New_York")
    _earlier_cured_reviews(later_db, "A-MA8", notice_given=True)
    assert _prepare("2026-12-01T17:00:00Z", mailed=None).notices == 0
    with later_db.connect() as c:
        state = reviews.current_review(c, "A-MA8")
    assert state is not None and (state.prior_cures, state.letter_id) == (3, None)


def test_a_notice_mailed_after_the_borrower_cured_is_no_notice_in_that_review(
    later_db: Engine, tmp_path: Path
) -> None:
    """The borrower cured before the provider mailed the letter: the review closed, and the mailing
    that follows records no cure deadline on it (the cure came before any notice: US-MA does not
    count it towards its three)."""
    from tasks.letters import track_letters
    from tasks.review import prepare_reviews

    _in_review(later_db, tmp_path, "A-V9")
    _prepare("2026-12-01T17:00:00Z", mailed=None)
    with later_db.begin() as c:  # as the refresh leaves an account whose arrears were paid
        c.execute(
            update(account_t).where(account_t.c.account_id == "A-V9").values(stage="cured", days_past_due=0)
        )
    prepare_reviews.fn(at("2026-12-02T17:00:00Z"))
    _mail_all("2026-12-03T15:00:00Z")
    assert track_letters.fn()["letters_moved"] >= 1
    [review] = rows(later_db, review_t, "A-V9")
    assert (review.reason, review.cure_deadline) == ("closed: account is now cured", None)
    assert events(later_db, "A-V9", "cure_notice") == []


def test_hold_stops_the_notice_until_it_is_lifted(later_db: Engine, tmp_path: Path) -> None:
    """Under a bankruptcy hold no notice goes out and the review waits for the hold, not a reviewer."""
    from tasks.review import waiting

    _in_review(later_db, tmp_path, "A-V2", flags="bankruptcy")
    assert _prepare("2026-12-01T17:00:00Z").notices == 0
    [w] = [w for w in waiting(later_db, now=at("2026-12-30T00:00:00Z")) if w.account_id == "A-V2"]
    assert (w.what, w.waits_for) == ("review", "hold")


def test_cli_decision_is_refused_early_then_recorded_with_a_vendor_order(
    later_db: Engine, tmp_path: Path, db_url: str
) -> None:
    """`arrears review decide` refuses during the cure period; after it, the decision is stored with
    the reviewer and reason, and an approved repossession places the vendor order, once."""
    from typer.testing import CliRunner

    from deployments.cli import app
    from deployments.cli._common import CliError

    _in_review(later_db, tmp_path, "A-V3")
    _prepare("2026-12-01T17:00:00Z")
    args = [
        "review",
        "decide",
        "A-V3",
        "--decision",
        "repossess",
        "--reviewer",
        "Ana Ruiz",
        "--reason",
        "no contact, equity positive",
        "--database",
        db_url,
    ]
    early = CliRunner().invoke(app, [*args, "--as-of", "2026-12-20T12:00:00Z"])
    assert isinstance(early.exception, CliError) and "runs until 2026-12-25T06:00:00+00:00" in str(
        early.exception
    )
    ok = CliRunner().invoke(app, [*args, "--as-of", "2026-12-25T15:00:00Z", "--json"])
    assert ok.exit_code == 0, ok.output
    [review] = rows(later_db, review_t, "A-V3")
    assert (review.decision, review.reviewer, review.reason) == (
        "repossess",
        "Ana Ruiz",
        "no contact, equity positive",
    )
    twice = CliRunner().invoke(app, [*args, "--as-of", "2026-12-26T15:00:00Z"])
    assert twice.exit_code == 0 and "already decided" in twice.output
    assert [e.actor for e in events(later_db, "A-V3", "decision")] == ["reviewer:Ana Ruiz"]
    assert [e.data["action"] for e in events(later_db, "A-V3", "vendor_order")] == ["placed"]


def test_a_decision_contradicting_the_recorded_one_is_refused_naming_the_one_that_stands(
    later_db: Engine, tmp_path: Path, db_url: str
) -> None:
    """A second reviewer's `negotiate` on a review decided `repossess` changes nothing, rightly, and
    says so with exit 2 naming the decision that stands and who took it: exit 0 ("done") let a
    script or a reviewer's tool take the account for sent back to negotiation."""
    from deployments.cli import app
    from deployments.cli._common import CliError

    _in_review(later_db, tmp_path, "A-C1")
    _prepare("2026-12-01T17:00:00Z")
    base = ["review", "decide", "A-C1", "--database", db_url, "--as-of", "2026-12-25T15:00:00Z"]
    first = CliRunner().invoke(
        app, [*base, "--decision", "repossess", "--reviewer", "Ana Ruiz", "--reason", "no contact"]
    )
    assert first.exit_code == 0, first.output
    second = ["--decision", "negotiate", "--reviewer", "Bo Chen", "--reason", "borrower called"]
    for extra in ([], ["--json"]):
        contrary = CliRunner().invoke(app, [*base, *extra, *second])
        assert isinstance(contrary.exception, CliError), contrary.output
        assert contrary.exception.exit_code == 2
        assert str(contrary.exception).startswith("A-C1: already decided repossess by Ana Ruiz on 2026-12-25")
        assert "--decision negotiate was not recorded; nothing changed" in str(contrary.exception)
    [review] = rows(later_db, review_t, "A-C1")
    assert (review.decision, review.reviewer) == ("repossess", "Ana Ruiz")
    assert [e.actor for e in events(later_db, "A-C1", "decision")] == ["reviewer:Ana Ruiz"]


def test_repossess_again_on_a_review_a_military_hold_sent_to_legal_is_a_repeat(
    later_db: Engine, tmp_path: Path, db_url: str
) -> None:
    """A servicemember's repossession is recorded as a referral to legal: the same `repossess`
    again is a repeat (exit 0, nothing changed), not a contradiction; `negotiate` is one (exit 2)."""
    from deployments.cli import app
    from deployments.cli._common import CliError

    _in_review(later_db, tmp_path, "A-C2", flags="military")
    _prepare("2026-12-01T17:00:00Z")
    base = ["review", "decide", "A-C2", "--database", db_url, "--as-of", "2026-12-25T15:00:00Z"]
    who = ["--reviewer", "Ana Ruiz", "--reason", "no contact"]
    assert CliRunner().invoke(app, [*base, "--decision", "repossess", *who]).exit_code == 0
    again = CliRunner().invoke(app, [*base, "--decision", "repossess", *who])
    assert again.exit_code == 0 and "already decided legal; nothing changed" in again.output, again.output
    contrary = CliRunner().invoke(app, [*base, "--decision", "negotiate", *who])
    assert isinstance(contrary.exception, CliError) and contrary.exception.exit_code == 2
    [review] = rows(later_db, review_t, "A-C2")
    assert review.decision == "legal"


def test_the_listed_decide_command_works_once_its_placeholders_are_filled(
    later_db: Engine, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`arrears review list` tells a reviewer how to decide a review past its cure period (in the
    table once, under it; in each review's JSON detail): that line, with a decision, a name and a
    reason put in for its placeholders, records the decision."""
    import json
    import shlex

    from typer.testing import CliRunner

    from deployments.cli import app
    from deployments.cli._common import console

    _in_review(later_db, tmp_path, "A-V9")
    _in_review(later_db, tmp_path, "A-V10")
    _prepare("2026-12-01T17:00:00Z")
    after = ["--database", db_url, "--as-of", "2026-12-25T15:00:00Z"]
    # The table says the line once, under it, not in every row waiting for the reviewer (on a
    # terminal wide enough that no cell folds, with or without the flow-run columns).
    monkeypatch.setattr(console, "width", 400)
    table = CliRunner().invoke(app, ["review", "list", *after])
    assert table.exit_code == 0, table.output
    words = " ".join(table.stdout.split())
    assert words.count("decide: see below") == 2
    assert words.count("arrears review decide ACCOUNT_ID --decision repossess|legal|negotiate") == 1
    assert words.count("--reviewer NAME --reason TEXT") == 1
    listed = CliRunner().invoke(app, ["review", "list", *after, "--json"])
    assert listed.exit_code == 0, listed.output
    [w] = [w for w in json.loads(listed.stdout) if w["account_id"] == "A-V9"]
    assert w["waits_for"] == "reviewer"
    filled = {"repossess|legal|negotiate": "negotiate", "NAME": "Ana Ruiz", "TEXT": "promised to call"}
    program, *command = [filled.get(word, word) for word in shlex.split(w["detail"].removeprefix("decide: "))]
    assert program == "arrears"
    decided = CliRunner().invoke(app, [*command, *after])
    assert decided.exit_code == 0, decided.output
    [review] = rows(later_db, review_t, "A-V9")
    assert (review.decision, review.reviewer, review.reason) == ("negotiate", "Ana Ruiz", "promised to call")


def test_review_list_counts_what_waits_and_shows_the_oldest_it_is_asked_for(
    later_db: Engine, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first cycle can open tens of thousands of reviews: the table says how many wait for each,
    then shows only the oldest (50 unless --limit says, 0 for all), and --waits-for chooses; --json
    gives every one unless --limit says otherwise."""
    import json

    from typer.testing import CliRunner

    from deployments.cli import _common as cli_common
    from deployments.cli import app
    from deployments.cli._common import console

    for account_id in ("A-L1", "A-L2", "A-L3"):
        _in_review(later_db, tmp_path, account_id)
    _prepare("2026-12-01T17:00:00Z")
    after = ["review", "list", "--database", db_url, "--as-of", "2026-12-25T15:00:00Z"]
    monkeypatch.setattr(console, "width", 400)
    monkeypatch.setattr(cli_common, "TABLE_ROWS", 2)

    def listed(*args: str) -> str:
        out = CliRunner().invoke(app, [*after, *args])
        assert out.exit_code == 0, out.output
        return out.stdout

    table = listed()
    oldest = [w["account_id"] for w in json.loads(listed("--json"))]
    assert sorted(oldest) == ["A-L1", "A-L2", "A-L3"]
    assert "waiting: 3 (reviews: reviewer 3)" in table
    assert "waiting (3; the oldest 2 shown, --limit 0 for all)" in table
    assert [a in table for a in oldest] == [True, True, False]
    assert all(a in listed("--limit", "0") for a in oldest)
    assert [w["account_id"] for w in json.loads(listed("--json", "--limit", "1"))] == oldest[:1]
    assert "waiting for reviewer (3; the oldest 2 shown" in listed("--waits-for", "reviewer")
    assert "nothing waits for a person (court)" in listed("--waits-for", "court")
    assert json.loads(listed("--waits-for", "legal-team", "--json")) == []


def test_the_oldest_waiting_are_the_head_of_the_whole_list_without_holding_it(
    later_db: Engine, tmp_path: Path
) -> None:
    """`review list` reads the oldest it shows and the counts a chunk of reviews at a time: at a
    million accounts the whole list (246,331 reviews) took 11.2 s and 461 MB for fifty rows. What
    it shows is the head of the whole list, in its order, ties (reviews opened together) too."""
    from collections import Counter

    from arrears.storage.waiting import oldest_waiting, waiting_list

    for account_id in ("A-O1", "A-O2", "A-O3", "A-O4"):
        _in_review(later_db, tmp_path, account_id)
    _prepare("2026-12-01T17:00:00Z")
    now = at("2026-12-25T15:00:00Z")
    with later_db.connect() as connection:
        everything = waiting_list(connection, now=now)
        assert len(everything) == 4 and len({w.since for w in everything}) == 1  # all tied
        for waits_for in (None, "reviewer", "court"):
            chosen = [w for w in everything if waits_for is None or w.waits_for == waits_for]
            for limit in (1, 2, 4, 5, None):
                oldest = oldest_waiting(connection, now=now, limit=limit, waits_for=waits_for)
                assert oldest.first == chosen[:limit]  # None: all
                assert oldest.chosen == len(chosen)
                assert oldest.counts == Counter((w.what, w.waits_for) for w in everything)


def test_payment_after_the_order_cancels_it_at_once(later_db: Engine, tmp_path: Path) -> None:
    """A payment received after the repossession order cancels it at the first refresh after it
    is received, with the payment as reason."""
    from tasks.review import decide_review

    _in_review(later_db, tmp_path, "A-V4", jurisdiction="US-CA", timezone="America/Los_Angeles")
    _prepare("2026-12-01T17:00:00Z")
    decided = decide_review(
        later_db,
        account_id="A-V4",
        decision="repossess",
        reviewer="Ana",
        reason="r",
        at=at("2026-12-02T17:00:00Z"),
    )
    assert decided.order_id is not None
    assert refresh_later(later_db, "2026-12-02T18:00:00Z")["vendor_orders_cancelled"] == 0
    # Value-dated ahead (a scheduled payment): the import cannot cancel for it yet, the refresh
    # after its date does. (The import cancels for payments already received: the next test.)
    pay(later_db, tmp_path, "A-V4", "100.00", "2026-12-03T01:00:00Z", imported_at="2026-12-02T23:00:00Z")
    assert refresh_later(later_db, "2026-12-03T00:00:00Z")["vendor_orders_cancelled"] == 0
    assert refresh_later(later_db, "2026-12-03T02:00:00Z")["vendor_orders_cancelled"] == 1
    assert refresh_later(later_db, "2026-12-03T03:00:00Z")["vendor_orders_cancelled"] == 0
    cancelled = events(later_db, "A-V4", "vendor_order")[-1]
    assert cancelled.data["action"] == "cancelled" and cancelled.data["reason"].startswith("payment ")


def test_importing_a_payment_or_hold_cancels_the_order_without_waiting_for_a_cycle(
    later_db: Engine,
    tmp_path: Path,
) -> None:
    """The import itself cancels the order: a payment file, then an accounts file carrying a
    bankruptcy, each cancel at once the open order they overtake; an order placed after the
    import's instant is left alone."""
    from arrears.importing import Kind
    from tasks.review import decide_review
    from tests.factories import payment_record

    for account_id in ("A-V7", "A-V8"):
        _in_review(later_db, tmp_path, account_id, jurisdiction="US-CA", timezone="America/Los_Angeles")
    _prepare("2026-12-01T17:00:00Z")
    for account_id in ("A-V7", "A-V8"):
        decide_review(
            later_db,
            account_id=account_id,
            decision="repossess",
            reviewer="Ana",
            reason="r",
            at=at("2026-12-02T17:00:00Z"),
        )
    early = import_rows(
        later_db,
        tmp_path,
        [payment_record(account_id="A-V7", amount="50.00", received_at="2026-12-02T16:00:00Z")],
        Kind.PAYMENTS,
        now=at("2026-12-02T16:30:00Z"),
    )
    assert early.vendor_orders_cancelled == 0  # the order did not exist yet at the import's instant
    paid = import_rows(
        later_db,
        tmp_path,
        [payment_record(account_id="A-V7", amount="100.00", received_at="2026-12-03T01:00:00Z")],
        Kind.PAYMENTS,
        now=at("2026-12-03T01:05:00Z"),
    )
    assert paid.vendor_orders_cancelled == 1
    assert events(later_db, "A-V7", "vendor_order")[-1].data["reason"].startswith("payment ")
    held = import_rows(
        later_db,
        tmp_path,
        [
            us_account(
                "A-V8",
                past_due_amount="825.00",
                oldest_due_date="2026-10-01",
                jurisdiction="US-CA",
                timezone="America/Los_Angeles",
                flags="bankruptcy",
            )
        ],
        now=at("2026-12-03T02:00:00Z"),
    )
    assert held.vendor_orders_cancelled == 1
    assert events(later_db, "A-V8", "vendor_order")[-1].data["reason"] == "hold:bankruptcy"
    assert refresh_later(later_db, "2026-12-03T03:00:00Z")["vendor_orders_cancelled"] == 0


def test_a_hold_a_person_places_or_a_borrower_texts_cancels_the_order_at_once(
    later_db: Engine, tmp_path: Path
) -> None:
    """`arrears hold place` (a dispute taken by phone) and a borrower's text that disputes the
    debt each cancel the open repossession order at once, with the hold as reason; a person then
    lifts the texted dispute with `arrears hold lift`, audited with who and why."""
    from deployments.cli import app
    from tasks.review import decide_review

    for account_id in ("A-H1", "A-H2"):
        _in_review(later_db, tmp_path, account_id, jurisdiction="US-CA", timezone="America/Los_Angeles")
    _prepare("2026-12-01T17:00:00Z")
    for account_id in ("A-H1", "A-H2"):
        decide_review(
            later_db,
            account_id=account_id,
            decision="repossess",
            reviewer="Ana",
            reason="r",
            at=at("2026-12-02T17:00:00Z"),
        )
    placed = CliRunner().invoke(
        app,
        ["hold", "place", "A-H1", "dispute", "--reason", "disputed by phone", "--agent", "Ben"],
        catch_exceptions=False,
    )
    assert placed.exit_code == 0 and "dispute hold placed" in placed.output
    cancelled = events(later_db, "A-H1", "vendor_order")[-1].data
    assert (cancelled["action"], cancelled["reason"]) == ("cancelled", "hold:dispute")
    reply(later_db, "A-H2", "This is not my loan, I dispute it", "2026-12-03T02:00:00Z")
    assert events(later_db, "A-H2", "vendor_order")[-1].data["reason"] == "hold:dispute"
    (held,) = events(later_db, "A-H2", "hold")
    assert held.actor == "borrower" and "This is not my loan, I dispute it" in held.detail

    lifted = CliRunner().invoke(
        app,
        ["hold", "lift", "A-H2", "dispute", "--reason", "validation mailed, no reply", "--agent", "Ben"],
        catch_exceptions=False,
    )
    assert lifted.exit_code == 0, lifted.output
    last = events(later_db, "A-H2", "hold")[-1]
    assert (last.actor, last.data["action"]) == ("Ben", "lifted")
    assert last.detail.startswith(
        "dispute hold lifted by Ben: validation mailed, no reply (placed by webhook on 2026-12-03"
    )


def test_a_settlement_agreed_cancels_the_order_at_once(later_db: Engine, tmp_path: Path) -> None:
    """`arrears settlement record` on an account whose repossession order is out cancels the order
    at once, with the settlement as reason: no car is taken from a borrower paying what was agreed."""
    from deployments.cli import app
    from tasks.review import decide_review

    _in_review(later_db, tmp_path, "A-H3", jurisdiction="US-CA", timezone="America/Los_Angeles")
    _prepare("2026-12-01T17:00:00Z")
    decided = decide_review(
        later_db,
        account_id="A-H3",
        decision="repossess",
        reviewer="Ana",
        reason="r",
        at=at("2026-12-02T17:00:00Z"),
    )
    assert decided.order_id is not None
    agreed = CliRunner().invoke(
        app,
        [
            "settlement",
            "record",
            "A-H3",
            "--amount",
            "9000.00",
            "--pay-by",
            "2026-12-20",
            "--reason",
            "half the balance, approved by the collections manager",
            "--agent",
            "Ben",
            "--as-of",
            "2026-12-03T17:00:00Z",
        ],
        catch_exceptions=False,
    )
    assert agreed.exit_code == 0, agreed.output
    cancelled = events(later_db, "A-H3", "vendor_order")[-1].data
    assert (cancelled["order_id"], cancelled["action"], cancelled["reason"]) == (
        decided.order_id,
        "cancelled",
        "a settlement was agreed",
    )


def test_a_repossession_decided_while_a_settlement_runs_sends_no_order(
    later_db: Engine, tmp_path: Path
) -> None:
    """A reviewer who decides to repossess while the borrower pays an agreed settlement (the review
    form does not show it): the order is withdrawn in the same transaction, before it reaches the
    agency, and the reviewer is told why."""
    from deployments.cli import app
    from tasks.review import decide_review

    _in_review(later_db, tmp_path, "A-H4", jurisdiction="US-CA", timezone="America/Los_Angeles")
    _prepare("2026-12-01T17:00:00Z")
    agreed = CliRunner().invoke(
        app,
        [
            "settlement",
            "record",
            "A-H4",
            "--amount",
            "9000.00",
            "--pay-by",
            "2026-12-20",
            "--reason",
            "half the balance",
            "--agent",
            "Ben",
            "--as-of",
            "2026-12-02T16:00:00Z",
        ],
        catch_exceptions=False,
    )
    assert agreed.exit_code == 0, agreed.output
    decided = decide_review(
        later_db,
        account_id="A-H4",
        decision="repossess",
        reviewer="Ana",
        reason="r",
        at=at("2026-12-02T17:00:00Z"),
    )
    assert decided.order_id is None
    assert decided.note is not None and "a settlement agreed" in decided.note
    placed, cancelled = (e.data for e in events(later_db, "A-H4", "vendor_order"))
    assert (placed["action"], cancelled["action"], cancelled["reason"]) == (
        "placed",
        "cancelled",
        "a settlement was agreed",
    )


def test_the_review_form_shows_a_running_settlement(later_db: Engine, tmp_path: Path) -> None:
    """The context above the reviewer's form names a settlement the borrower is paying, so the
    reviewer does not decide a repossession blind to it."""
    from arrears.storage import reviews
    from deployments.cli import app
    from tasks.review import decision_context

    _in_review(later_db, tmp_path, "A-H5", jurisdiction="US-CA", timezone="America/Los_Angeles")
    _prepare("2026-12-01T17:00:00Z")
    with later_db.connect() as c:
        state = reviews.current_review(c, "A-H5")
    assert state is not None
    assert "Settlement agreed" not in decision_context.fn(state.review_id, at("2026-12-02T17:00:00Z"))
    argv = ["settlement", "record", "A-H5", "--amount", "9000.00", "--pay-by", "2026-12-20"]
    argv += ["--reason", "half", "--agent", "Ben", "--as-of", "2026-12-02T16:00:00Z"]
    assert CliRunner().invoke(app, argv, catch_exceptions=False).exit_code == 0
    shown = decision_context.fn(state.review_id, at("2026-12-02T17:00:00Z"))
    assert "**Settlement agreed** (9000.00 USD by 2026-12-20, agreed by Ben)" in shown


def test_hold_after_the_order_cancels_it(later_db: Engine, tmp_path: Path) -> None:
    """A bankruptcy the import could not set against the order (the file imported as of an instant
    before the order was placed) cancels it at the next refresh (automatic stay). The import's
    instant is fixed: left to the wall clock, the import itself cancelled the order once the
    wall clock passed the order's instant (the import-time cancel is the test above)."""
    from tasks.review import decide_review

    _in_review(later_db, tmp_path, "A-V5", jurisdiction="US-CA", timezone="America/Los_Angeles")
    _prepare("2026-12-01T17:00:00Z")
    decide_review(
        later_db,
        account_id="A-V5",
        decision="repossess",
        reviewer="Ana",
        reason="r",
        at=at("2026-12-02T17:00:00Z"),
    )
    import_rows(
        later_db,
        tmp_path,
        [
            us_account(
                "A-V5",
                past_due_amount="825.00",
                oldest_due_date="2026-10-01",
                jurisdiction="US-CA",
                timezone="America/Los_Angeles",
                flags="bankruptcy",
            )
        ],
        now=at("2026-12-02T16:30:00Z"),
    )
    assert refresh_later(later_db, "2026-12-03T02:00:00Z")["vendor_orders_cancelled"] == 1
    assert events(later_db, "A-V5", "vendor_order")[-1].data["reason"] == "hold:bankruptcy"


def test_military_hold_routes_the_decision_to_legal(later_db: Engine, tmp_path: Path) -> None:
    """A reviewer approving repossession of a servicemember's car gets a referral to legal and no order."""
    from tasks.review import decide_review

    _in_review(later_db, tmp_path, "A-V6", flags="military")
    _prepare("2026-12-01T17:00:00Z")
    decided = decide_review(
        later_db,
        account_id="A-V6",
        decision="repossess",
        reviewer="Ana",
        reason="r",
        at=at("2026-12-25T17:00:00Z"),
    )
    assert (decided.decision, decided.requested, decided.order_id) == ("legal", "repossess", None)
    assert events(later_db, "A-V6", "vendor_order") == []


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize(("decision", "stage"), [("legal", "legal_referral"), ("negotiate", "negotiation")])
def test_lifecycle_follows_the_recorded_decision(
    later_db: Engine, tmp_path: Path, decision: str, stage: str
) -> None:
    """The next cycle moves the account as the reviewer decided: to legal, or back to negotiation."""
    from tasks.review import decide_review

    _in_review(later_db, tmp_path, "A-V7", jurisdiction="US-CA", timezone="America/Los_Angeles")
    _prepare("2026-12-01T17:00:00Z")
    decide_review(
        later_db,
        account_id="A-V7",
        decision=decision,
        reviewer="Ana",
        reason="r",
        at=at("2026-12-02T17:00:00Z"),
    )
    day(later_db, "2026-12-03T16:00:00Z")
    assert account(later_db, "A-V7").stage == stage


# -- the flow run, paused in its process (no deployment) --------------------------------------------------


@pytest.mark.usefixtures("prefect_harness")
def test_review_run_waits_for_the_cure_period_then_a_decision_given_through_prefect(
    later_db: Engine, tmp_path: Path
) -> None:
    """The run pauses through the cure period, is woken by the cycle after it, pauses for a
    ReviewDecision and records the one given through Prefect's API: in the Review row, the audit
    trail and a vendor order."""
    from prefect.flow_runs import resume_flow_run

    from flows.repossession_review import repossession_review, wake_reviews
    from tasks.letters import track_letters

    _in_review(later_db, tmp_path, "A-V8")
    running = in_thread(repossession_review, "A-V8", "2026-12-01T17:00:00Z")
    run_id = review_run_id(later_db, "A-V8")
    wait_paused(run_id, "cure-wait-1")
    assert wake_reviews(at("2026-12-28T17:00:00Z"), "2026-12-28T17:00:00Z") == (0, 0)  # not mailed yet
    _mail_all("2026-12-01T17:00:00Z")
    track_letters.fn()
    assert wake_reviews(at("2026-12-24T17:00:00Z"), "2026-12-24T17:00:00Z") == (
        0,
        0,
    )  # still inside the period
    assert wake_reviews(at("2026-12-25T17:00:00Z"), "2026-12-25T17:00:00Z") == (1, 0)
    wait_paused(run_id, "decision")
    resume_flow_run(
        run_id, run_input={"decision": "repossess", "reviewer": "Ana Ruiz", "reason": "keys surrendered"}
    )
    result = running.result(timeout=60)
    assert (result["decision"], result["vendor_order"]) == ("repossess", f"RO-{result['review_id']}")
    [review] = rows(later_db, review_t, "A-V8")
    assert (review.decision, review.reviewer, review.decided_at) == (
        "repossess",
        "Ana Ruiz",
        at("2026-12-25T17:00:00Z"),
    )
    assert [
        e.kind
        for e in events(later_db, "A-V8")
        if e.kind in ("review", "cure_notice", "decision", "vendor_order")
    ] == ["review", "cure_notice", "decision", "vendor_order"]


@pytest.mark.usefixtures("prefect_harness")
def test_a_review_run_mails_its_own_letter_and_leaves_the_others_to_the_cycle(
    later_db: Engine, tmp_path: Path
) -> None:
    """The cycle wrote two accounts' cure letters; the review run of one mails that account's
    letter at its cure step, and the other's stays pending, untouched, for the cycle's mailing
    (thousands of runs may wake at once: none hands over the others' letters)."""
    from prefect.exceptions import CancelledRun

    from arrears.models import Letter
    from flows.repossession_review import repossession_review
    from tasks.review import prepare_reviews

    letter_t = Letter.__table__  # type: ignore[attr-defined]
    for account_id in ("A-V10", "A-V11"):
        _in_review(later_db, tmp_path, account_id)
    prepare_reviews.fn(at("2026-12-01T17:00:00Z"))
    assert [r.status for a in ("A-V10", "A-V11") for r in rows(later_db, letter_t, a)] == ["pending"] * 2
    running = in_thread(repossession_review, "A-V10", "2026-12-01T17:00:00Z")
    wait_paused(review_run_id(later_db, "A-V10"), "cure-wait-1")
    [own] = rows(later_db, letter_t, "A-V10")
    [other] = rows(later_db, letter_t, "A-V11")
    assert own.status == "created" and own.provider_id is not None
    assert (other.status, other.submitted_at, other.provider_id) == ("pending", None, None)
    pay(later_db, tmp_path, "A-V10", "825.00", "2026-12-05T15:00:00Z")
    day(later_db, "2026-12-05T16:00:00Z")  # cures: the run ends
    with pytest.raises(CancelledRun):
        running.result(timeout=60)


@pytest.mark.usefixtures("prefect_harness")
def test_review_run_cancels_itself_when_the_account_cures(later_db: Engine, tmp_path: Path) -> None:
    """A payment that cures the account during the cure period ends the run as Cancelled and closes the
    review."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import CancelledRun

    from flows.repossession_review import repossession_review

    _in_review(later_db, tmp_path, "A-V9")
    running = in_thread(repossession_review, "A-V9", "2026-12-01T17:00:00Z")
    run_id = review_run_id(later_db, "A-V9")
    wait_paused(run_id, "cure-wait-1")
    pay(later_db, tmp_path, "A-V9", "825.00", "2026-12-05T15:00:00Z")
    day(later_db, "2026-12-05T16:00:00Z")  # cures; the starter sees the run has nothing left to wait for
    with pytest.raises(CancelledRun, match="closed: account is now cured"):
        running.result(timeout=60)
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    assert state is not None and state.is_cancelled()
    [review] = rows(later_db, review_t, "A-V9")
    assert (review.decision, review.reason) == (None, "closed: account is now cured")


@pytest.mark.usefixtures("prefect_harness")
def test_cli_decision_resumes_the_waiting_run(later_db: Engine, tmp_path: Path, db_url: str) -> None:
    """Where no notice is owed (California) the run waits for a decision at once; `arrears review
    decide` records it and resumes the run, which completes without recording it twice."""
    from typer.testing import CliRunner

    from deployments.cli import app
    from flows.repossession_review import repossession_review

    _in_review(later_db, tmp_path, "A-V10", jurisdiction="US-CA", timezone="America/Los_Angeles")
    running = in_thread(repossession_review, "A-V10", "2026-12-01T17:00:00Z")
    run_id = review_run_id(later_db, "A-V10")
    wait_paused(run_id, "decision")
    listed = CliRunner().invoke(
        app, ["review", "list", "--json", "--database", db_url, "--as-of", "2026-12-02T00:00:00Z"]
    )
    assert [
        (w["account_id"], w["waits_for"], w["past_due_amount"], w["currency"])
        for w in json.loads(listed.stdout)
    ] == [("A-V10", "reviewer", "825.00", "USD")]
    out = CliRunner().invoke(
        app,
        [
            "review",
            "decide",
            "A-V10",
            "--decision",
            "legal",
            "--reviewer",
            "Bo",
            "--reason",
            "refuses contact",
            "--database",
            db_url,
            "--as-of",
            "2026-12-02T17:00:00Z",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "resumed with the decision" in out.output
    assert running.result(timeout=60)["decision"] == "legal"
    assert len(events(later_db, "A-V10", "decision")) == 1
