"""`arrears.recovery.after_recovery`: what follows a recovered car, as a pure function."""

from datetime import UTC, date, datetime

import pytest

from arrears.jurisdictions import ProfileError, profile, resolve
from arrears.recovery import after_recovery

NOW = datetime(2027, 1, 5, 18, tzinfo=UTC)


def test_where_no_notice_of_sale_is_owed_the_recovery_closes_the_account() -> None:
    """CN and GB owe no notice of sale in our profiles: close at once."""
    for code in ("CN", "GB"):
        step = after_recovery(rules=profile(code), timezone="UTC", now=NOW, notice_status=None)
        assert step.action == "close" and "no notice of sale owed" in step.reason


def test_a_us_recovery_owes_the_notice_first_printed_from_the_planned_mailing() -> None:
    """US states (UCC 9-611) owe the notice: 10 days from the planned mailing, 15 in California."""
    iowa = after_recovery(rules=profile("US-IA"), timezone="America/Chicago", now=NOW, notice_status=None)
    assert (iowa.action, iowa.sale_after) == ("notify", date(2027, 1, 18))
    california = after_recovery(
        rules=profile("US-CA"), timezone="America/Los_Angeles", now=NOW, notice_status=None
    )
    assert (california.action, california.sale_after) == ("notify", date(2027, 1, 23))
    assert "2983.2" in california.reason


@pytest.mark.parametrize(
    ("status", "reason", "says"),
    [
        ("pending", None, "not mailed yet"),
        ("created", None, "not mailed yet"),
        ("blocked", "no mailing address on file", "no mailing address on file"),
        ("failed", "refused: bad address", "refused"),
        ("returned_to_sender", None, "returned to sender"),
    ],
)
def test_the_account_waits_until_the_notice_is_mailed(status: str, reason: str | None, says: str) -> None:
    """Until the provider mails the notice, the account stays open, and says why."""
    step = after_recovery(
        rules=profile("US-IA"),
        timezone="America/Chicago",
        now=NOW,
        notice_status=status,
        notice_reason=reason,
    )
    assert step.action == "wait" and says in step.reason


def test_a_notice_mailed_late_still_gives_the_full_period() -> None:
    """Mailed after the planned date: the sale date counts from the mailing, never before the printed one."""
    late = after_recovery(
        rules=profile("US-IA"),
        timezone="America/Chicago",
        now=NOW,
        notice_status="mailed",
        notice_mailed_at=datetime(2027, 1, 12, 15, tzinfo=UTC),
        printed_sale_after=date(2027, 1, 18),
    )
    assert (late.action, late.sale_after) == ("close", date(2027, 1, 22))
    early = after_recovery(
        rules=profile("US-IA"),
        timezone="America/Chicago",
        now=NOW,
        notice_status="delivered",
        notice_mailed_at=datetime(2027, 1, 6, 15, tzinfo=UTC),
        printed_sale_after=date(2027, 1, 18),
    )
    assert (early.action, early.sale_after) == ("close", date(2027, 1, 18))


def test_a_policy_may_not_shorten_or_drop_the_notice_of_sale() -> None:
    """The sale notice period is a rule: a policy file may lengthen it, never shorten it."""
    assert resolve({"US-IA": {"sale_notice_days": 20}})["US-IA"].sale_notice_days == 20
    with pytest.raises(ProfileError, match="sale_notice_days"):
        resolve({"US-CA": {"sale_notice_days": 10}})
