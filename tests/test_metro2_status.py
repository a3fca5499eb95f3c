"""The pure Metro 2 rules: status, rating and history characters, first delinquency, codes, history."""

from datetime import date
from decimal import Decimal

import pytest

from arrears.metro2.history import StageChange, payment_history
from arrears.metro2.periods import Period
from arrears.metro2.status import (
    Condition,
    MonthState,
    Status,
    account_status,
    compliance_condition,
    condition_of,
    consumer_information_indicator,
    date_of_first_delinquency,
    ecoa_code,
    history_char,
    needs_first_delinquency,
    special_comment,
)

D = Decimal


@pytest.mark.parametrize(
    ("stage", "dpd", "balance", "extra", "status", "rating", "char"),
    [
        ("cured", 0, D("9000"), {}, "11", "", "0"),
        ("reminder", 12, D("9000"), {}, "11", "", "0"),
        ("negotiation", 29, D("9000"), {}, "11", "", "0"),
        ("negotiation", 30, D("9000"), {}, "71", "", "1"),
        ("negotiation", 59, D("9000"), {}, "71", "", "1"),
        ("restructuring", 60, D("9000"), {}, "78", "", "2"),
        ("repossession_review", 90, D("9000"), {}, "80", "", "3"),
        ("repossession_review", 120, D("9000"), {}, "82", "", "4"),
        ("repossession_review", 150, D("9000"), {}, "83", "", "5"),
        ("repossession_review", 180, D("9000"), {}, "84", "", "6"),
        ("repossession_review", 400, D("9000"), {}, "84", "", "6"),
        ("legal_referral", 95, D("9000"), {}, "93", "", "G"),
        ("closed", 200, D("9000"), {}, "93", "", "G"),
        ("closed", 200, D("0"), {}, "13", "0", "E"),  # a judgment paid in full: no balance left
        ("repossession_review", 75, D("9000"), {"repossessed": True}, "96", "", "K"),
        ("repossession_review", 75, D("9000"), {"surrendered": True}, "95", "2", "J"),
        ("charged_off", 181, D("9000"), {}, "97", "", "L"),
        ("paid_off", 0, D("0"), {}, "13", "0", "E"),
        ("settled", 0, D("1200"), {}, "13", "0", "E"),
    ],
)
def test_status_rating_and_history_char(
    stage: str, dpd: int, balance: Decimal, extra: dict[str, bool], status: str, rating: str, char: str
) -> None:
    """Each stage and days-past-due combination maps to one Account Status, Payment Rating and history
    character."""
    month = MonthState(condition_of(stage, dpd, balance, **extra), dpd)
    assert account_status(month) == Status(status, rating, "AU" if stage == "settled" else "")
    assert history_char(month) == char


@pytest.mark.parametrize(
    ("earlier", "status", "rating"),
    [
        ("", "13", "0"),
        ("0000", "13", "0"),
        ("2100", "13", "2"),  # paid after being 60-89 days late last month
        ("DD1", "13", "1"),  # months without data are skipped
        ("G321", "62", ""),  # paid in full, was a collection account
        ("K32", "63", ""),  # was a repossession
        ("J2", "61", ""),  # was a voluntary surrender
        ("LK654", "64", ""),  # charge-off wins over repossession
        ("0L", "13", "0"),  # a charge-off before the account was current again does not count
    ],
)
def test_paid_account_status_follows_what_came_before(earlier: str, status: str, rating: str) -> None:
    """A zero balance reports 13 with the last rating, or 61-64 when derogatory since the account was last
    current."""
    assert account_status(MonthState(Condition.PAID), earlier=earlier) == Status(status, rating)


def test_rating_only_where_required() -> None:
    """Payment Rating is set with 13 and 95 and left blank for every other status arrears writes, 97
    included."""
    for condition, dpd in [
        (Condition.CURRENT, 0),
        (Condition.DELINQUENT, 100),
        (Condition.COLLECTION, 0),
        (Condition.CHARGED_OFF, 200),
        (Condition.REPOSSESSED, 70),
    ]:
        assert account_status(MonthState(condition, dpd)).payment_rating == ""
    assert account_status(MonthState(Condition.SURRENDERED, 10)).payment_rating == "0"
    assert account_status(MonthState(Condition.PAID)).payment_rating == "0"


def test_first_delinquency_is_the_day_thirty_days_past_due_was_reached() -> None:
    """Without an earlier report, the date is the episode's first unpaid due date plus 30 days."""
    status = Status("71")
    found = date_of_first_delinquency(
        status,
        previous=None,
        episode_due=date(2026, 9, 15),
        oldest_due=date(2026, 10, 15),
        days_past_due=45,
        as_of=date(2026, 11, 30),
    )
    assert found == date(2026, 10, 15)


def test_first_delinquency_is_frozen_once_reported() -> None:
    """A date already reported wins over whatever partial payments did to the oldest due date since."""
    found = date_of_first_delinquency(
        Status("78"),
        previous=date(2026, 6, 1),
        episode_due=date(2026, 8, 1),
        oldest_due=date(2026, 9, 1),
        days_past_due=70,
        as_of=date(2026, 11, 30),
    )
    assert found == date(2026, 6, 1)


def test_first_delinquency_cleared_when_current() -> None:
    """Status 11 and 13 rated 0 carry no Date of First Delinquency, whatever was reported before."""
    for status in (Status("11"), Status("13", "0")):
        assert not needs_first_delinquency(status)
        assert (
            date_of_first_delinquency(
                status,
                previous=date(2026, 6, 1),
                episode_due=None,
                oldest_due=None,
                days_past_due=0,
                as_of=date(2026, 11, 30),
            )
            is None
        )
    assert needs_first_delinquency(Status("13", "2")) and needs_first_delinquency(Status("97"))


def test_first_delinquency_is_never_after_the_file_date() -> None:
    """An account referred to legal (93) whose partial payments moved its oldest due date to 10
    days ago has not been 30 days late since: its date is the file's own, never one in the future
    (the bureau would reject the record, and the account would go unreported)."""
    as_of = date(2026, 11, 30)
    found = date_of_first_delinquency(
        Status("93"),
        previous=None,
        episode_due=None,
        oldest_due=date(2026, 11, 20),
        days_past_due=10,
        as_of=as_of,
    )
    assert found == as_of


def test_first_delinquency_from_days_past_due_alone() -> None:
    """With no due date known, the date is derived from today's days past due; with neither, none is
    invented."""
    as_of = date(2026, 11, 30)
    assert date_of_first_delinquency(
        Status("97"), previous=None, episode_due=None, oldest_due=None, days_past_due=200, as_of=as_of
    ) == date(2026, 6, 13)
    assert (
        date_of_first_delinquency(
            Status("97"), previous=None, episode_due=None, oldest_due=None, days_past_due=0, as_of=as_of
        )
        is None
    )


def test_special_comment_for_plans_and_settlements() -> None:
    """An active instalment plan is AC, an active deferral CO, an offered plan nothing, a settlement AU."""
    assert special_comment(Status("71"), ("instalment", "active")) == "AC"
    assert special_comment(Status("11"), ("deferral", "active")) == "CO"
    assert special_comment(Status("71"), ("instalment", "offered")) == ""
    assert special_comment(Status("97"), ("instalment", "active")) == ""
    assert special_comment(Status("13", "0", "AU"), None) == "AU"


def test_compliance_condition_follows_the_dispute_hold() -> None:
    """XB while disputed, XH in the first file after the dispute is lifted, then nothing."""
    assert compliance_condition(disputed=True, previous="") == "XB"
    assert compliance_condition(disputed=False, previous="XB") == "XH"
    assert compliance_condition(disputed=False, previous="XH") == ""


def test_bankruptcy_and_deceased_codes() -> None:
    """Bankruptcy chapters 7 and 13 are petition codes A and D; an unknown chapter reports nothing; deceased
    is X."""
    assert consumer_information_indicator(bankrupt=True, chapter=7) == "A"
    assert consumer_information_indicator(bankrupt=True, chapter=13) == "D"
    assert consumer_information_indicator(bankrupt=True, chapter=None) == ""
    assert consumer_information_indicator(bankrupt=False, chapter=7) == ""
    assert (ecoa_code(deceased=True), ecoa_code(deceased=False)) == ("X", "1")


def test_a_lifted_bankruptcy_removes_its_indicator_once() -> None:
    """metro2.md: `Q` removes the indicator. Once the hold is lifted (a dismissed case), the next
    file sends Q where the last carried a petition code, and nothing after that: without it the
    petition stayed on the consumer's file for good."""
    assert consumer_information_indicator(bankrupt=False, chapter=7, previous="A") == "Q"
    assert consumer_information_indicator(bankrupt=False, chapter=13, previous="D") == "Q"
    assert consumer_information_indicator(bankrupt=False, chapter=None, previous="Q") == ""
    assert consumer_information_indicator(bankrupt=True, chapter=7, previous="A") == "A"


NOV = Period(2026, 11)


def test_history_prefers_what_was_reported() -> None:
    """Months already furnished come back exactly; months before the account was known are B, and stay B."""
    history = payment_history(
        NOV,
        reported={"2026-10": "2", "2026-09": "1"},
        known_since=date(2026, 9, 10),
        changes=[],
        current_stage="negotiation",
        oldest_due=date(2026, 8, 1),
    )
    assert len(history) == 24
    assert history.startswith("21B") and set(history[2:]) == {"B"}


def test_history_reconstructed_from_the_audit_trail() -> None:
    """Unreported months follow the stage timeline: current before the episode, days past due inside it."""
    changes = [
        StageChange(date(2026, 7, 20), "cured", "reminder", 5),  # oldest due 2026-07-15
        StageChange(date(2026, 8, 1), "reminder", "negotiation", 17),
    ]
    history = payment_history(
        NOV,
        reported={},
        known_since=date(2026, 1, 1),
        changes=changes,
        current_stage="negotiation",
        oldest_due=date(2026, 7, 15),
    )
    # Oct 31: 108 days → 3; Sep 30: 77 → 2; Aug 31: 47 → 1; Jul 31: 16 → 0; Jun: cured → 0; before 2026: B
    assert history[:10] == "3210000000"
    assert history[10:] == "B" * 14


def test_history_of_a_past_episode_counts_from_its_start() -> None:
    """A delinquency that ended before now counts from the due date its first transition implies."""
    changes = [
        StageChange(date(2026, 3, 10), "cured", "reminder", 40),  # oldest due 2026-01-29
        StageChange(date(2026, 5, 2), "reminder", "cured"),
    ]
    history = payment_history(
        NOV,
        reported={},
        known_since=date(2025, 1, 1),
        changes=changes,
        current_stage="cured",
        oldest_due=None,
    )
    # Oct..May cured: 0 ×6; Apr 30: 91 days → 3; Mar 31: 61 → 2;
    # Feb 28: before the first transition, cured → 0
    assert history[:9] == "000000320"


def test_history_marks_repossession_and_exits() -> None:
    """A charge-off is L, winning over an earlier repossession (K); an open stage with nothing to count from
    is D."""
    changes = [StageChange(date(2026, 9, 5), "repossession_review", "charged_off")]
    history = payment_history(
        NOV,
        reported={},
        known_since=date(2026, 7, 1),
        changes=changes,
        current_stage="charged_off",
        oldest_due=None,
        repossessed_on=date(2026, 8, 20),
    )
    assert history[:5] == "LLKDB"


def test_a_repossession_carries_its_special_comment() -> None:
    """metro2.md lists "`BI`/`BK` with repossession": a 96 is BI (involuntary repossession), whatever
    plan was active; a surrender (95) or a paid repossession (63) is not."""
    assert special_comment(Status("96"), None) == "BI"
    assert special_comment(Status("96"), ("instalment", "active")) == "BI"
    assert special_comment(Status("95", "2"), None) == ""
    assert special_comment(Status("63"), None) == ""


def test_first_delinquency_passes_over_a_date_a_month_reported_current_ended() -> None:
    """A date on or before the end of the last month reported current belongs to a delinquency that
    month ended: the episode's, then the oldest due date's, then none."""
    found = date_of_first_delinquency(
        Status("71"),
        previous=None,
        episode_due=date(2026, 6, 1),
        oldest_due=date(2026, 10, 21),
        days_past_due=40,
        as_of=date(2026, 11, 30),
        current_until=date(2026, 10, 31),
    )
    assert found == date(2026, 11, 20)


def test_history_of_a_reinstated_repossession_is_k_only_while_the_car_was_held() -> None:
    """A loan cured after the car was recovered (a reinstatement) reads K for the months the car was
    held, and as a current loan from the cure on, not K for good."""
    history = payment_history(
        NOV,
        reported={},
        known_since=date(2026, 7, 1),
        changes=[StageChange(date(2026, 9, 20), "repossession_review", "cured")],
        current_stage="cured",
        oldest_due=None,
        repossessed_on=date(2026, 8, 20),
        reinstated_on=date(2026, 9, 20),
    )
    assert history[:5] == "00KDB"
