"""The lifecycle rules of DESIGN §2, one test per row of the default policy table, and the
invariants every decision keeps (hypothesis)."""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrears.lifecycle import AccountView, Facts, PlanFact, advance, is_open
from arrears.messages import MessageContext
from arrears.policy import DEFAULT_POLICY, load_policy
from arrears.segmentation import ability_score
from arrears.vocabulary import DecisionKind, Exit, Hold, HoldScope, Segment, Stage

TODAY = date(2026, 12, 1)
NOON_SHANGHAI = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai
NIGHT_SHANGHAI = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # 23:00 in Asia/Shanghai


def view(stage: str = Stage.REMINDER, dpd: int = 5, **kw: object) -> AccountView:
    base = AccountView(
        account_id="A-1",
        stage=stage,
        stage_since=datetime(2026, 11, 20, tzinfo=UTC),
        episode=1,
        days_past_due=dpd,
        past_due_amount=Decimal("300") if dpd else Decimal(0),
        balance=Decimal("9000"),
        jurisdiction="CN",
        timezone="Asia/Shanghai",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


CONTEXT = MessageContext(
    lender="Arrears Auto Finance",
    borrower_name="王芳",
    jurisdiction="CN",
    currency="CNY",
    past_due_amount=Decimal("300"),
    installment_amount=Decimal("300"),
    days_past_due=5,
)


def facts(**kw: object) -> Facts:
    base = Facts(
        business_date=TODAY, stage_began=date(2026, 11, 20), ability=0.8, willingness=0.8, context=CONTEXT
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def decide(v: AccountView, f: Facts | None = None, now: datetime = NOON_SHANGHAI):
    return advance(v, f or facts(), DEFAULT_POLICY, now)


# --- reminder -------------------------------------------------------------------------------


@pytest.mark.parametrize(("dpd", "day"), [(1, 1), (4, 1), (5, 5), (9, 5), (10, 10), (15, 10)])
def test_reminder_sends_the_latest_cadence_reminder_due(dpd: int, day: int) -> None:
    """A reminder-stage account gets the reminder of the latest cadence day (1, 5, 10) it has reached."""
    decision = decide(view(dpd=dpd))
    assert decision.stage == Stage.REMINDER and not decision.steps
    assert [(m.template, m.key) for m in decision.messages] == [("reminder", f"A-1:reminder:1:day-{day}")]


def test_new_delinquency_enters_reminder() -> None:
    """A current (cured) account that falls 1 day past due enters reminder with a new episode."""
    decision = decide(view(stage=Exit.CURED, dpd=1, episode=3))
    assert [(s.from_stage, s.to_stage) for s in decision.steps] == [(Exit.CURED, Stage.REMINDER)]
    assert decision.episode == 4
    assert decision.messages[0].key == "A-1:reminder:4:day-1"


def test_reminder_leaves_for_negotiation_on_day_16() -> None:
    """Day 15 stays in reminder; day 16 moves to negotiation and asks for a promise."""
    assert decide(view(dpd=15)).stage == Stage.REMINDER
    decision = decide(view(dpd=16))
    assert decision.stage == Stage.NEGOTIATION
    assert decision.steps[0].reason == "16 days past due"
    # The first ask of the new stage: its weeks count from today, not from when reminder began
    # (which would key it `ask-1`, and tomorrow's `ask-0` would ask a second time).
    assert [(m.template, m.key) for m in decision.messages] == [("negotiation", "A-1:negotiation:2:ask-0")]


def test_broken_promise_moves_reminder_to_negotiation_early() -> None:
    """A promise broken while in reminder moves the account to negotiation before day 16."""
    decision = decide(view(dpd=8), facts(promise_broken_in_stage=True))
    assert decision.stage == Stage.NEGOTIATION
    assert decision.steps[0].reason == "promise to pay broken"


def test_reminder_is_cured_when_past_due_is_paid() -> None:
    """Paying the past due in reminder exits as cured, with no message."""
    decision = decide(view(dpd=0, past_due_amount=Decimal(0)))
    assert decision.stage == Exit.CURED and not decision.messages
    assert decision.episode == 1  # an exit opens no episode: the next delinquency opens episode 2


def test_courtesy_reminder_before_due_for_high_risk_only() -> None:
    """A current account due in 3 days gets a courtesy reminder only when high-risk."""
    due = TODAY + timedelta(days=3)
    low = decide(view(stage=Exit.CURED, dpd=0, episode=0, next_due_date=due))
    high = decide(view(stage=Exit.CURED, dpd=0, episode=0, next_due_date=due), facts(willingness=0.1))
    distressed = decide(
        view(stage=Exit.CURED, dpd=0, episode=0, next_due_date=due), facts(ability=0.1, willingness=0.1)
    )
    assert distressed.segment is Segment.DISTRESSED
    assert [m.template for m in distressed.messages] == ["courtesy"]
    repeat = decide(view(stage=Exit.CURED, dpd=0, episode=2, next_due_date=due))
    assert low.messages == ()
    assert [m.template for m in high.messages] == ["courtesy"]
    assert [m.key for m in repeat.messages] == [f"A-1:courtesy:{due.isoformat()}"]  # delinquent before
    for other in (due + timedelta(days=1), due - timedelta(days=1), TODAY):  # 4, 2 and 0 days ahead
        assert decide(view(stage=Exit.CURED, dpd=0, episode=2, next_due_date=other)).messages == ()


def test_no_reminder_while_a_promise_is_pending() -> None:
    """While a promise to pay is pending the borrower is not reminded."""
    assert decide(view(dpd=5), facts(promise_pending=True)).messages == ()


# --- negotiation ----------------------------------------------------------------------------


def test_negotiation_asks_again_each_cadence_period() -> None:
    """Negotiation asks for a promise on entry and again every 7 days, each once."""
    decision = decide(view(stage=Stage.NEGOTIATION, dpd=31), facts(stage_began=TODAY - timedelta(days=15)))
    assert [m.key for m in decision.messages] == ["A-1:negotiation:1:ask-2"]


def test_negotiation_cured_when_promise_kept_clears_past_due() -> None:
    """A kept promise that clears the past due exits negotiation as cured."""
    decision = decide(view(stage=Stage.NEGOTIATION, dpd=0, past_due_amount=Decimal(0)))
    assert decision.stage == Exit.CURED


def test_hardship_moves_negotiation_to_restructuring() -> None:
    """A willing but unable borrower in negotiation is moved to restructuring and offered a plan."""
    decision = decide(view(stage=Stage.NEGOTIATION, dpd=20), facts(ability=0.2, willingness=0.9))
    assert decision.segment is Segment.HARDSHIP
    assert decision.stage == Stage.RESTRUCTURING
    assert [m.template for m in decision.messages] == ["restructuring_offer"]


def test_negotiation_reaches_review_at_60_days_without_plan() -> None:
    """Day 59 stays in negotiation; day 60 without a working plan goes to repossession review."""
    assert decide(view(stage=Stage.NEGOTIATION, dpd=59)).stage == Stage.NEGOTIATION
    decision = decide(view(stage=Stage.NEGOTIATION, dpd=60))
    assert decision.stage == Stage.REPOSSESSION_REVIEW
    assert decision.steps[0].reason == "60 days past due without a working plan"


def test_hardship_whose_plan_failed_is_not_sent_back_to_restructuring() -> None:
    """A hardship borrower back in negotiation after declining (or defaulting on) a plan, as a
    reviewer's return leaves them, is negotiated with: not offered restructuring again, which with
    the failed plan would walk straight back into review the same day."""
    for status in ("declined", "defaulted"):
        f = facts(
            ability=0.2,
            willingness=0.9,
            plan=PlanFact(status, TODAY - timedelta(days=20)),
            returned_from_review=TODAY - timedelta(days=5),
        )
        decision = decide(view(stage=Stage.NEGOTIATION, dpd=70), f)
        assert decision.segment is Segment.HARDSHIP
        assert (decision.stage, decision.steps) == (Stage.NEGOTIATION, ()), status


def test_active_plan_keeps_negotiation_out_of_review() -> None:
    """A working (active) plan keeps a 60-day account out of review."""
    f = facts(plan=PlanFact("active", TODAY))
    assert decide(view(stage=Stage.NEGOTIATION, dpd=75), f).stage == Stage.NEGOTIATION


@pytest.mark.parametrize(("stage", "dpd"), [(Stage.REMINDER, 5), (Stage.NEGOTIATION, 30)])
def test_a_borrower_paying_under_an_active_plan_is_not_asked_for_the_past_due(stage: str, dpd: int) -> None:
    """A plan agreed in reminder or negotiation for a borrower not in hardship left them there, and
    they were still reminded of the past due and asked weekly to promise it while paying as
    agreed; the plan pauses those messages as a promise pending does, and only while active."""
    paying = decide(view(stage=stage, dpd=dpd), facts(plan=PlanFact("active", TODAY)))
    assert (paying.stage, paying.messages) == (stage, ())
    ended = decide(view(stage=stage, dpd=dpd), facts(plan=PlanFact("defaulted", TODAY)))
    assert [m.template for m in ended.messages] == [str(stage)]


def test_strategic_defaulter_escalates_after_two_broken_promises() -> None:
    """Two broken promises send a strategic defaulter to review long before day 60."""
    f = facts(ability=0.9, willingness=0.1, broken_promises=2)
    decision = decide(view(stage=Stage.NEGOTIATION, dpd=25), f)
    assert decision.segment is Segment.STRATEGIC
    assert decision.stage == Stage.REPOSSESSION_REVIEW
    assert decision.steps[0].reason == "strategic: 2 promises broken"
    assert decide(view(stage=Stage.NEGOTIATION, dpd=25), facts(broken_promises=2)).stage == Stage.NEGOTIATION


def test_a_strategic_defaulter_paying_under_an_active_plan_is_not_sent_to_review() -> None:
    """A working plan kept a 60-day account out of review, but not a strategic one with two broken
    promises (one made before the plan, broken after it): sent to review while paying as agreed."""
    f = facts(ability=0.9, willingness=0.1, broken_promises=2, plan=PlanFact("active", TODAY))
    decision = decide(view(stage=Stage.NEGOTIATION, dpd=25), f)
    assert (decision.stage, decision.steps) == (Stage.NEGOTIATION, ())


def test_strategic_defaulter_reaches_review_sooner() -> None:
    """A strategic defaulter reaches review at 45 days past due instead of 60."""
    f = facts(ability=0.9, willingness=0.1)
    assert decide(view(stage=Stage.NEGOTIATION, dpd=45), f).stage == Stage.REPOSSESSION_REVIEW
    assert decide(view(stage=Stage.NEGOTIATION, dpd=45)).stage == Stage.NEGOTIATION


# --- restructuring ----------------------------------------------------------------------------


def test_restructuring_offers_once_then_waits_for_the_plan() -> None:
    """Restructuring sends the offer while no plan exists, and nothing while one is offered."""
    f = facts(ability=0.2)
    assert [m.template for m in decide(view(stage=Stage.RESTRUCTURING, dpd=30), f).messages] == [
        "restructuring_offer"
    ]
    waiting = decide(view(stage=Stage.RESTRUCTURING, dpd=30), replace(f, plan=PlanFact("offered", TODAY)))
    assert waiting.stage == Stage.RESTRUCTURING and waiting.messages == ()


def test_completed_plan_cures_through_the_past_due_it_cleared() -> None:
    """A completed plan has brought the account current (the plan step clears the past due), so
    restructuring exits cured; a completed plan alone, with past due left, cures nothing."""
    current = view(stage=Stage.RESTRUCTURING, dpd=0)
    decision = decide(current, facts(plan=PlanFact("completed", TODAY)))
    assert decision.stage == Exit.CURED and decision.steps[0].reason == "past due cleared"
    behind = decide(
        view(stage=Stage.RESTRUCTURING, dpd=30), facts(ability=0.2, plan=PlanFact("completed", TODAY))
    )
    assert (behind.stage, [m.template for m in behind.messages]) == (
        Stage.RESTRUCTURING,
        ["restructuring_offer"],
    )


def test_a_plan_of_an_earlier_delinquency_is_not_this_ones() -> None:
    """The latest plan was read whatever delinquency it was made in: a deferral completed last
    year cured a hardship borrower behind again on the day they reached restructuring; a plan
    defaulted then kept them in negotiation without an offer; an offer a cure left open expired
    into review the day they were back, its offer never sent. Each is the earlier delinquency's:
    restructuring is entered and the offer made."""
    behind = view(stage=Stage.NEGOTIATION, dpd=20, episode=9, oldest_due_date=TODAY - timedelta(days=20))
    earlier = TODAY - timedelta(days=200)
    for plan in (
        PlanFact("completed", earlier, 3),
        PlanFact("defaulted", earlier, 3),
        PlanFact("declined", earlier, 3),
        PlanFact("offered", earlier, 3),
    ):
        decision = decide(behind, facts(ability=0.2, plan=plan))
        assert [(s.to_stage, s.reason) for s in decision.steps] == [
            (Stage.RESTRUCTURING, "hardship: willing but unable to pay")
        ], plan
        assert [m.key for m in decision.messages] == ["A-1:restructuring:10:offer"], plan


def test_a_plan_of_this_delinquency_still_decides() -> None:
    """A plan declined or defaulted since the oldest unpaid instalment fell due, and an offer of the
    current restructuring stay, are this delinquency's: the first keeps negotiation from offering
    again, the second expires into review."""
    oldest = TODAY - timedelta(days=70)
    back = view(stage=Stage.NEGOTIATION, dpd=70, episode=9, oldest_due_date=oldest)
    for status in ("declined", "defaulted"):
        f = facts(
            ability=0.2, plan=PlanFact(status, oldest, 7), returned_from_review=TODAY - timedelta(days=5)
        )
        assert decide(back, f).steps == (), status
    staying = view(stage=Stage.RESTRUCTURING, dpd=40, episode=9, oldest_due_date=oldest)
    expired = facts(ability=0.2, plan=PlanFact("offered", TODAY - timedelta(days=14), 9))
    assert decide(staying, expired).stage == Stage.REPOSSESSION_REVIEW


@pytest.mark.parametrize("status", ["declined", "defaulted", "cancelled"])
def test_declined_or_defaulted_plan_goes_to_review(status: str) -> None:
    """A declined offer, a defaulted plan or one an agent cancelled sends the account to repossession
    review."""
    decision = decide(
        view(stage=Stage.RESTRUCTURING, dpd=40), facts(ability=0.2, plan=PlanFact(status, TODAY))
    )
    assert decision.stage == Stage.REPOSSESSION_REVIEW


def test_unanswered_offer_expires_into_review() -> None:
    """An offer unanswered for 14 days counts as declined; at 13 days it still waits."""
    f = facts(ability=0.2)
    fresh = replace(f, plan=PlanFact("offered", TODAY - timedelta(days=13)))
    stale = replace(f, plan=PlanFact("offered", TODAY - timedelta(days=14)))
    assert decide(view(stage=Stage.RESTRUCTURING, dpd=40), fresh).stage == Stage.RESTRUCTURING
    assert decide(view(stage=Stage.RESTRUCTURING, dpd=40), stale).stage == Stage.REPOSSESSION_REVIEW


def test_active_plan_in_restructuring_is_left_alone_past_60_days() -> None:
    """A borrower paying under an active plan is not escalated for days past due."""
    decision = decide(
        view(stage=Stage.RESTRUCTURING, dpd=80), facts(ability=0.2, plan=PlanFact("active", TODAY))
    )
    assert decision.stage == Stage.RESTRUCTURING


# --- repossession review and legal referral -----------------------------------------------------


def test_review_waits_for_a_decision() -> None:
    """Without a reviewer's decision the account stays in review and is not messaged."""
    decision = decide(view(stage=Stage.REPOSSESSION_REVIEW, dpd=70))
    assert decision.stage == Stage.REPOSSESSION_REVIEW and not decision.steps and not decision.messages


@pytest.mark.parametrize(
    ("decision_kind", "stage"),
    [
        (DecisionKind.LEGAL, Stage.LEGAL_REFERRAL),
        (DecisionKind.NEGOTIATE, Stage.NEGOTIATION),
        (DecisionKind.REPOSSESS, Stage.REPOSSESSION_REVIEW),
    ],
)
def test_review_follows_the_reviewers_decision(decision_kind: DecisionKind, stage: Stage) -> None:
    """A recorded decision moves review to legal, back to negotiation, or keeps it for repossession."""
    decision = decide(view(stage=Stage.REPOSSESSION_REVIEW, dpd=70), facts(review_decision=decision_kind))
    assert decision.stage == stage


def test_legal_referral_ends_with_judgment_or_settlement() -> None:
    """Legal referral exits as closed on judgment and settled on settlement."""
    v = view(stage=Stage.LEGAL_REFERRAL, dpd=120)
    assert decide(v, facts(referral_status="judgment")).stage == Exit.CLOSED
    assert decide(v, facts(referral_status="settled")).stage == Exit.SETTLED
    assert decide(v, facts(referral_status="submitted")).stage == Stage.LEGAL_REFERRAL


def test_payment_in_full_exits_any_stage_as_paid_off() -> None:
    """A zero balance is paid off, from any stage."""
    for stage in Stage:
        decision = decide(view(stage=stage, dpd=0, past_due_amount=Decimal(0), balance=Decimal(0)))
        assert decision.stage == Exit.PAID_OFF


@pytest.mark.parametrize("exit_", [Exit.PAID_OFF, Exit.SETTLED, Exit.CHARGED_OFF, Exit.CLOSED])
def test_a_final_exit_stays_whatever_the_numbers_say(exit_: Exit) -> None:
    """Paid off, settled, charged off and closed are final: a balance and 200 days past due left on
    the row (a settlement for less, a judgment) neither reopen the account, nor charge it off, nor
    message the borrower."""
    decision = decide(view(stage=exit_, dpd=200))
    assert (decision.stage, decision.steps, decision.messages) == (exit_, (), ())


def test_charge_off_at_180_days_outside_review_and_legal() -> None:
    """At 180 days past due an account still in negotiation is charged off; one in legal is not."""
    assert decide(view(stage=Stage.RESTRUCTURING, dpd=180), facts(ability=0.2)).stage == Exit.CHARGED_OFF
    assert decide(view(stage=Stage.LEGAL_REFERRAL, dpd=200)).stage == Stage.LEGAL_REFERRAL


def test_skip_forward_through_several_stages_in_one_day() -> None:
    """An account arriving 70 days past due walks reminder → negotiation → review in one decision."""
    decision = decide(view(stage=Exit.CURED, dpd=70, episode=0))
    assert [s.to_stage for s in decision.steps] == [
        Stage.REMINDER,
        Stage.NEGOTIATION,
        Stage.REPOSSESSION_REVIEW,
    ]
    assert decision.episode == 3


# --- segments, holds and hours --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ability", "willingness", "reachable", "segment"),
    [
        (0.8, 0.8, True, Segment.SELF_CURE),
        (0.2, 0.8, True, Segment.HARDSHIP),
        (0.8, 0.2, True, Segment.STRATEGIC),
        (0.2, 0.2, True, Segment.DISTRESSED),
        (0.8, 0.8, False, Segment.UNREACHABLE),
        (None, None, True, Segment.SELF_CURE),
    ],
)
def test_segment_from_ability_willingness_and_reach(
    ability: float | None, willingness: float | None, reachable: bool, segment: Segment
) -> None:
    """Segments follow ability and willingness at the policy thresholds; no contact means unreachable."""
    assert (
        decide(view(), facts(ability=ability, willingness=willingness, reachable=reachable)).segment
        is segment
    )


@pytest.mark.parametrize(
    ("installment", "ability"),
    [("450", 0.55 + 0.15), ("900", 0.55), ("1200", 0.55 - 0.25)],
)
def test_ability_falls_when_the_instalment_is_above_a_third_of_income(
    installment: str, ability: float
) -> None:
    """Band C (0.55) with 3,000 a month: an instalment of 15% of income raises ability, 30% leaves
    it, 40% (above the third that auto lenders hold affordable) lowers it."""
    score = ability_score(
        score_band="C",
        monthly_income=Decimal("3000"),
        installment=Decimal(installment),
        vehicle_value=None,
        balance=Decimal("9000"),
    )
    assert score == pytest.approx(ability)


def test_unreachable_account_gets_no_message() -> None:
    """An account with no working number is not messaged (it is skip-traced instead)."""
    assert decide(view(dpd=5), facts(reachable=False)).messages == ()


@pytest.mark.parametrize("hold", [h for h in Hold if h.scope is HoldScope.COLLECTION])
def test_collection_hold_freezes_the_account(hold: Hold) -> None:
    """Under a dispute, bankruptcy, death, military service or breathing space nothing moves or is sent."""
    decision = decide(view(stage=Stage.NEGOTIATION, dpd=90), facts(holds=frozenset({hold})))
    assert decision.stage == Stage.NEGOTIATION and not decision.steps and not decision.messages
    assert decision.held_by == (hold,)


@pytest.mark.parametrize("hold", [Hold.CEASE_CONTACT, Hold.SMS_OPT_OUT])
def test_contact_hold_records_messages_as_blocked(hold: Hold) -> None:
    """Under cease-contact or an SMS opt-out the message is recorded as blocked with the hold's name."""
    decision = decide(view(dpd=5), facts(holds=frozenset({hold})))
    assert [(m.template, m.blocked) for m in decision.messages] == [("reminder", f"hold:{hold}")]


def test_opted_out_number_blocks_the_message() -> None:
    """A number that replied STOP is never messaged: the message is blocked as opt_out."""
    assert decide(view(dpd=5), facts(opted_out=True)).messages[0].blocked == "opt_out"


def test_unapproved_template_is_blocked() -> None:
    """A template the policy has not approved is recorded as blocked, never sent."""
    policy = DEFAULT_POLICY.model_copy(update={"approved_templates": frozenset({"negotiation"})})
    decision = advance(view(dpd=5), facts(), policy, NOON_SHANGHAI)
    assert decision.messages[0].blocked == "template:unapproved"


def test_message_outside_hours_is_deferred_to_the_next_allowed_instant() -> None:
    """At 23:00 in Shanghai the reminder is scheduled for 08:00 the next local morning."""
    message = decide(view(dpd=5), now=NIGHT_SHANGHAI).messages[0]
    assert message.not_before == datetime(2026, 12, 2, 0, 0, tzinfo=UTC)  # 08:00 +08:00
    assert message.deferred == "hours:CN"
    assert decide(view(dpd=5)).messages[0].not_before == NOON_SHANGHAI


def test_message_is_rendered_and_checked_when_decided() -> None:
    """The decision carries the rendered body its verdict was given on, with the values it was filled with."""
    message = decide(view(dpd=5)).messages[0]
    assert message.body is not None and message.body.startswith("【Arrears Auto Finance】王芳您好")
    assert dict(message.params)["days"] == "5" and message.blocked is None


def test_a_message_the_outbox_already_holds_is_not_decided_again() -> None:
    """The outbox keeps the row of a key decided first: a message whose key it holds is left out
    of today's decision (not rendered or checked again), and one it does not hold is decided."""
    assert decide(view(dpd=5), facts(decided=frozenset({"A-1:reminder:1:day-5"}))).messages == ()
    decision = decide(view(dpd=5), facts(decided=frozenset({"A-1:reminder:1:day-1"})))
    assert [m.key for m in decision.messages] == ["A-1:reminder:1:day-5"]


def test_message_without_a_context_is_blocked_as_content_missing() -> None:
    """Without the values to render it, no message can be checked, so none is sent."""
    assert decide(view(dpd=5), facts(context=None)).messages[0].blocked == "content:missing"


def test_us_window_is_the_borrowers_local_time() -> None:
    """A Los Angeles borrower at 21:30 local is deferred to 08:00 local, across the date line in UTC."""
    now = datetime(2026, 12, 2, 5, 30, tzinfo=UTC)  # 21:30 PST on Dec 1
    message = decide(view(dpd=5, jurisdiction="US-CA", timezone="America/Los_Angeles"), now=now).messages[0]
    assert message.not_before == datetime(2026, 12, 2, 16, 0, tzinfo=UTC)  # 08:00 PST on Dec 2


def test_policy_file_overrides_a_threshold(tmp_path) -> None:
    """A policy file that moves review to 90 days keeps a 60-day account in negotiation."""
    path = tmp_path / "policy.toml"
    path.write_text("[negotiation]\nreview_dpd = 90\n")
    decision = advance(view(stage=Stage.NEGOTIATION, dpd=60), facts(), load_policy(path), NOON_SHANGHAI)
    assert decision.stage == Stage.NEGOTIATION


# --- properties -------------------------------------------------------------------------------------

stages = st.sampled_from([*Stage, Exit.CURED])
account_views = st.builds(
    view,
    stage=stages,
    dpd=st.integers(0, 400),
    episode=st.integers(0, 5),
    jurisdiction=st.sampled_from(["CN", "US", "US-IA", "GB", "IE"]),
    timezone=st.sampled_from(["Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Lord_Howe"]),
).map(lambda v: v if v.days_past_due else replace(v, past_due_amount=Decimal(0)))
facts_strategy = st.builds(
    facts,
    holds=st.frozensets(st.sampled_from(list(Hold)), max_size=3),
    reachable=st.booleans(),
    opted_out=st.booleans(),
    ability=st.none() | st.floats(0, 1),
    willingness=st.none() | st.floats(0, 1),
    broken_promises=st.integers(0, 4),
    promise_pending=st.booleans(),
    promise_broken_in_stage=st.booleans(),
    plan=st.none()
    | st.builds(
        PlanFact,
        st.sampled_from(["offered", "active", "completed", "defaulted", "declined"]),
        st.dates(date(2026, 10, 1), TODAY),
    ),
    review_decision=st.none() | st.sampled_from(list(DecisionKind)),
    referral_status=st.none() | st.sampled_from(["submitted", "accepted", "judgment", "settled"]),
)
instants = st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(account_views, facts_strategy, instants)
def test_property_collection_hold_means_no_action(v: AccountView, f: Facts, now: datetime) -> None:
    """Under any collection hold: no message, and no step but the facts (cure, payoff, delinquency)."""
    held = Facts(**{**{k: getattr(f, k) for k in f.__slots__}, "holds": f.holds | {Hold.BANKRUPTCY}})
    decision = advance(v, held, DEFAULT_POLICY, now)
    assert decision.messages == ()
    facts_only = {(Exit.CURED, Stage.REMINDER)}
    assert all(
        s.to_stage in (Exit.CURED, Exit.PAID_OFF) or (s.from_stage, s.to_stage) in facts_only
        for s in decision.steps
    )


@settings(max_examples=300, deadline=None)
@given(account_views, facts_strategy, instants, st.sampled_from([Hold.CEASE_CONTACT, Hold.SMS_OPT_OUT]))
def test_property_contact_holds_let_nothing_out(v: AccountView, f: Facts, now: datetime, hold: Hold) -> None:
    """Under cease-contact or an SMS opt-out every message of a decision is blocked by a hold
    (not by some later rule that happened to refuse it too)."""
    held = Facts(**{**{k: getattr(f, k) for k in f.__slots__}, "holds": f.holds | {hold}})
    for m in advance(v, held, DEFAULT_POLICY, now).messages:
        assert m.blocked is not None and m.blocked.startswith("hold:"), m


@settings(max_examples=500, deadline=None)
@given(account_views, facts_strategy, instants)
def test_property_stage_never_moves_backward(v: AccountView, f: Facts, now: datetime) -> None:
    """Between open stages a step goes forward, except a reviewer's return to negotiation."""
    for step in advance(v, f, DEFAULT_POLICY, now).steps:
        if is_open(step.from_stage) and is_open(step.to_stage):
            forward = Stage(step.to_stage).rank > Stage(step.from_stage).rank
            by_reviewer = (
                step.from_stage == Stage.REPOSSESSION_REVIEW and f.review_decision is DecisionKind.NEGOTIATE
            )
            assert forward or by_reviewer, step


@settings(max_examples=300, deadline=None)
@given(account_views, facts_strategy, instants)
def test_property_same_inputs_same_decision(v: AccountView, f: Facts, now: datetime) -> None:
    """The rules are a function: the same inputs give the same decision."""
    assert advance(v, f, DEFAULT_POLICY, now) == advance(v, f, DEFAULT_POLICY, now)


@settings(max_examples=300, deadline=None)
@given(account_views, facts_strategy, instants)
def test_property_messages_never_before_now_and_keys_unique(v: AccountView, f: Facts, now: datetime) -> None:
    """No message is scheduled before the decision's instant, and each key appears once."""
    messages = advance(v, f, DEFAULT_POLICY, now).messages
    assert all(m.not_before >= now for m in messages)
    assert len({m.key for m in messages}) == len(messages)


def test_reviewer_return_gives_negotiation_a_grace_period() -> None:
    """After a reviewer's return, a 90-day account stays in negotiation for 30 days, then escalates."""
    returned = facts(returned_from_review=TODAY - timedelta(days=29))
    assert decide(view(stage=Stage.NEGOTIATION, dpd=90), returned).stage == Stage.NEGOTIATION
    expired = facts(returned_from_review=TODAY - timedelta(days=30))
    assert decide(view(stage=Stage.NEGOTIATION, dpd=90), expired).stage == Stage.REPOSSESSION_REVIEW


def test_a_reviewers_return_is_not_undone_by_the_promises_broken_before_it() -> None:
    """A strategic defaulter a reviewer sent back to negotiation stays there through the return's
    grace period although the two promises broken before it still count (the next cycle sent them
    straight back to review); a promise broken since the return ends the chance, and after the
    grace the rule applies again."""
    strategic = facts(ability=0.9, willingness=0.1, broken_promises=2)
    back = replace(strategic, returned_from_review=TODAY - timedelta(days=5))
    decision = decide(view(stage=Stage.NEGOTIATION, dpd=50), back)
    assert (decision.segment, decision.stage, decision.steps) == (Segment.STRATEGIC, Stage.NEGOTIATION, ())
    broken_again = replace(back, broken_promises=3, promise_broken_in_stage=True)
    assert decide(view(stage=Stage.NEGOTIATION, dpd=50), broken_again).stage == Stage.REPOSSESSION_REVIEW
    later = replace(strategic, returned_from_review=TODAY - timedelta(days=30))
    assert decide(view(stage=Stage.NEGOTIATION, dpd=50), later).stage == Stage.REPOSSESSION_REVIEW


def test_reviewer_return_is_the_days_last_step() -> None:
    """A return to negotiation is not undone the same day by the 60-day rule."""
    decision = decide(
        view(stage=Stage.REPOSSESSION_REVIEW, dpd=90), facts(review_decision=DecisionKind.NEGOTIATE)
    )
    assert [s.to_stage for s in decision.steps] == [Stage.NEGOTIATION]
    # Nor by any other rule of negotiation: a hardship borrower is not moved on to restructuring.
    hardship = facts(review_decision=DecisionKind.NEGOTIATE, ability=0.2, willingness=0.9)
    decision = decide(view(stage=Stage.REPOSSESSION_REVIEW, dpd=90), hardship)
    assert decision.segment is Segment.HARDSHIP
    assert [s.to_stage for s in decision.steps] == [Stage.NEGOTIATION]


def test_held_account_is_still_recorded_as_delinquent() -> None:
    """A current account under a dispute that falls 40 days past due enters reminder, and stops there."""
    decision = decide(view(stage=Exit.CURED, dpd=40, episode=0), facts(holds=frozenset({Hold.DISPUTE})))
    assert [s.to_stage for s in decision.steps] == [Stage.REMINDER]
    assert decision.messages == ()


def test_a_number_skip_tracing_found_is_never_told_of_the_debt() -> None:
    """A skip-traced number nobody confirmed may be a third party's: a message to it that tells of
    the debt is blocked (CBA 2026 guideline: third parties never told of the debt); where no third
    party may be contacted at all (IE), it is blocked as such. A confirmed number gets the reminder."""
    unverified = facts(address="+8613800138000", address_verified=False)
    [message] = decide(view(dpd=5), unverified).messages
    assert message.blocked == "content:third-party-debt"
    ie = view(dpd=5, jurisdiction="IE", timezone="Europe/Dublin")
    [message] = decide(ie, replace(unverified, context=replace(CONTEXT, jurisdiction="IE"))).messages
    assert message.blocked == "third_party:forbidden"
    [message] = decide(view(dpd=5), facts(address="+8613800138000")).messages
    assert message.blocked is None
