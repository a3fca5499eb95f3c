"""The lifecycle rules: one pure function, `advance`, decides what happens to an account today.

It takes an account view, the facts gathered for it, the policy and the instant, and returns a
`Decision`: the stage steps taken (each with its reason), the segment, and the messages to put
in the outbox. It reads no clock, no database and no provider, so the same inputs always give
the same decision and a day can be replayed from stored facts.

Every message is rendered here (from `Facts.context`) and checked by the one compliance entry,
`check_contact`, on its rendered body: the verdict (send, defer, block) is part of the decision.
A message whose key the outbox already holds (`Facts.decided`) was decided on an earlier day, and
the outbox keeps that row: it is left out, not decided again.

Invariants the tests hold it to:
- a collection hold (dispute, bankruptcy, deceased, military, breathing space) freezes the
  account: no message and no escalation; only facts move it (a cure, a payoff, falling
  delinquent);
- a contact hold (cease_contact, sms_opt_out) lets the stage move but every message it would
  send is recorded as blocked with the hold as its reason, never sent;
- a stage never moves backward except by a cure or a reviewer's decision;
- a running settlement agreement freezes the account as a collection hold does (facts and the
  court still move it), and a paid one exits it `settled` from any stage.
"""

from collections.abc import Iterator
from dataclasses import field, replace
from datetime import date, datetime
from decimal import Decimal

from arrears.compliance.caps import Contact
from arrears.compliance.contact import ContactRequest, ContactState, VerdictKind, check_contact
from arrears.messages import MessageContext, render, template_params
from arrears.policy import Policy
from arrears.records import record
from arrears.segmentation import segment_of
from arrears.vocabulary import DecisionKind, Exit, Hold, HoldScope, Segment, Stage

__all__ = [
    "NOT_SUING",
    "TERMINAL",
    "AccountView",
    "Decision",
    "Facts",
    "Outgoing",
    "PlanFact",
    "Step",
    "advance",
    "decide_message",
    "is_open",
    "offer_closed",
]

TERMINAL = frozenset({Exit.PAID_OFF, Exit.SETTLED, Exit.CHARGED_OFF, Exit.CLOSED})  # final: never left
_HIGH_RISK = frozenset({Segment.STRATEGIC, Segment.DISTRESSED})
_RETURNED = "reviewer returned to negotiation"
# Plans that ended without working: from restructuring to review, and not offered again after it.
_FAILED = frozenset({"declined", "defaulted", "cancelled"})
# The referral status the legal team's decision not to sue leaves (`arrears referral close
# --outcome not-suing`): no court pursues the debt any more, so legal referral no longer keeps the
# account from charge-off at the policy's days past due.
NOT_SUING = "not_suing"


_OPEN: frozenset[str] = frozenset(Stage)


def is_open(stage: str) -> bool:
    """An account is in the lifecycle while its stage is a Stage rather than an Exit."""
    return stage in _OPEN


@record
class AccountView:
    """What the rules need of an account row."""

    account_id: str
    stage: str
    stage_since: datetime
    episode: int
    days_past_due: int
    past_due_amount: Decimal
    balance: Decimal
    jurisdiction: str
    timezone: str
    next_due_date: date | None = None
    region: str | None = None  # the mailing address's ISO 3166-2 region (US-TX), when the file gives one
    oldest_due_date: date | None = None  # the oldest instalment unpaid: when this delinquency is dated from


@record
class PlanFact:
    status: str  # offered | active | completed | defaulted | declined | cancelled (by an agent)
    since: date  # the lender's business date it was offered, agreed or ended
    episode: int | None = None  # the stage episode it was offered or agreed in; None: not known


@record
class Facts:
    """Everything else known about the account on the business date."""

    business_date: date
    # The lender's business date the account entered its stage: what a stage's days are counted
    # from, as they are counted to the business date. The borrower's date of that instant mixed
    # the two calendars: west of a Shanghai lender, each weekly ask went out a day early.
    stage_began: date
    holds: frozenset[Hold] = frozenset()
    reachable: bool = True  # a valid SMS contact point exists
    opted_out: bool = False  # the number we would use has opted out of SMS
    ability: float | None = None
    willingness: float | None = None
    broken_promises: int = 0  # in the current delinquency
    promise_pending: bool = False
    promise_broken_in_stage: bool = False
    plan: PlanFact | None = None
    review_decision: DecisionKind | None = None  # decided since the account entered its stage
    returned_from_review: date | None = None  # when a reviewer last sent it back to negotiation
    referral_status: str | None = None  # court status of an open referral
    # A settlement agreement (`arrears.settlements`): `active` while it runs (the account waits),
    # `paid` once the payments reached it by its date (the account exits settled); else None.
    settlement: str | None = None
    context: MessageContext | None = None  # what a message is filled with; without it nothing is sent
    address: str | None = None  # the number a text would go to (E.164)
    # False: a number skip tracing found that the borrower has not confirmed: it may be a third
    # party's, so a text to it must not tell of the debt (compliance.md: third parties).
    address_verified: bool = True
    history: tuple[Contact, ...] = ()  # the borrower's recent and pending contacts, all accounts
    # Keys of the account's messages already in the outbox: decided on an earlier day, whose row
    # the outbox keeps (its keys are once-only), so they are not rendered and checked again.
    decided: frozenset[str] = frozenset()


@record
class Step:
    from_stage: str
    to_stage: str
    reason: str


@record
class Outgoing:
    """A message the decision puts in the outbox; `key` makes it once-only."""

    key: str
    template: str
    not_before: datetime
    blocked: str | None = None  # the rule that forbids it; stored, never sent
    deferred: str | None = None  # the rule that moved it later
    body: str | None = None  # the rendered text the verdict was given on
    params: tuple[tuple[str, str], ...] = ()  # the values the template was filled with
    detail: str | None = None  # what exactly the rule found, for people


@record
class Decision:
    account_id: str
    stage: str
    episode: int
    segment: Segment
    steps: tuple[Step, ...] = ()
    messages: tuple[Outgoing, ...] = ()
    held_by: tuple[Hold, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return bool(self.steps)


def advance(account: AccountView, facts: Facts, policy: Policy, now: datetime) -> Decision:
    """Decide today's steps and messages for one account."""
    segment = segment_of(
        reachable=facts.reachable,
        ability=facts.ability,
        willingness=facts.willingness,
        policy=policy.segmentation,
    )
    collection_holds = tuple(sorted(h for h in facts.holds if h.scope is HoldScope.COLLECTION))
    if facts.plan is not None and _earlier_delinquency(account, facts.plan):
        facts = replace(facts, plan=None)

    steps: list[Step] = []
    stage = account.stage
    for target, reason in _walk(account, facts, policy, segment, frozen=bool(collection_holds)):
        steps.append(Step(stage, target, reason))
        stage = target
    episode = account.episode + sum(1 for s in steps if is_open(s.to_stage))

    messages: tuple[Outgoing, ...] = ()
    # A borrower paying an agreed settlement is not asked for the past due meanwhile: it would
    # contradict what they were told (compliance.md), as a promise pending pauses the asks.
    if not collection_holds and segment is not Segment.UNREACHABLE and facts.settlement != "active":
        began = facts.business_date if steps else facts.stage_began
        planned = _messages(account, facts, policy, segment, stage, episode, began)
        messages = tuple(
            decide_message(key, template, account, facts, policy, stage, episode, now)
            for key, template in planned
            if key not in facts.decided
        )
    return Decision(account.account_id, stage, episode, segment, tuple(steps), messages, collection_holds)


def _earlier_delinquency(account: AccountView, plan: PlanFact) -> bool:
    """Whether the account's latest plan belongs to a delinquency it has since left, and so says
    nothing about this one. Read as this one's, a deferral completed last year cured a borrower
    falling behind again the day they reached restructuring (and every day after), a plan defaulted
    then kept them from any offer now, and an offer left open by a cure expired into review the
    day they were back, never sent.

    A completed plan brought its account current: whatever is past due now is a new delinquency's.
    An offer is of the restructuring stay (episode) it was made in. A declined or defaulted plan
    is this delinquency's unless it ended before the oldest instalment now unpaid fell due."""
    match plan.status:
        case "active":
            return False
        case "completed":
            return True
        case "offered":
            return plan.episode is not None and plan.episode != account.episode
    oldest = account.oldest_due_date
    return oldest is not None and plan.since < oldest


def _walk(
    account: AccountView, facts: Facts, policy: Policy, segment: Segment, *, frozen: bool
) -> Iterator[tuple[str, str]]:
    """The stage steps of today, in order; an account may skip forward through several."""
    stage = account.stage
    dpd = account.days_past_due
    # Exits first: they record facts of payment and apply even under a hold. A settlement paid
    # comes before the balance, which its write-off brought to zero.
    if stage not in TERMINAL and facts.settlement == "paid":
        yield Exit.SETTLED, "settlement paid: the balance left written off"
        return
    if stage not in TERMINAL and account.balance <= 0:
        yield Exit.PAID_OFF, "balance paid in full"
        return
    if is_open(stage) and account.past_due_amount <= 0:
        yield Exit.CURED, "past due cleared"
        return
    if stage in TERMINAL:
        return
    if stage == Exit.CURED and dpd > 0:
        # Falling delinquent is a fact, not a collection action: it is recorded even under a hold.
        stage = Stage.REMINDER
        yield stage, f"delinquent: {dpd} days past due"
    if frozen:
        return
    if facts.referral_status == "settled" and stage == Stage.LEGAL_REFERRAL:
        yield Exit.SETTLED, "settled in court"
        return
    if facts.referral_status == "judgment" and stage == Stage.LEGAL_REFERRAL:
        yield Exit.CLOSED, "judgment entered"
        return
    if stage == Exit.CURED or facts.settlement == "active":
        return  # an agreed settlement runs: no escalation, no charge-off, until it is paid or lapses
    charge_off = policy.exits.charge_off_dpd
    pursued = stage == Stage.LEGAL_REFERRAL and facts.referral_status != NOT_SUING
    if charge_off is not None and dpd >= charge_off and stage != Stage.REPOSSESSION_REVIEW and not pursued:
        why = " (the legal team does not sue)" if stage == Stage.LEGAL_REFERRAL else ""
        yield Exit.CHARGED_OFF, f"{dpd} days past due, at or beyond charge-off at {charge_off}{why}"
        return
    visited = {stage}
    while (nxt := _next(stage, account, facts, policy, segment)) is not None and nxt[0] not in visited:
        stage = nxt[0]
        visited.add(stage)
        yield nxt
        if not is_open(stage) or nxt[1] == _RETURNED:
            return  # a reviewer's return is the day's last word


def _next(
    stage: str, account: AccountView, facts: Facts, policy: Policy, segment: Segment
) -> tuple[str, str] | None:
    dpd = account.days_past_due
    neg = policy.negotiation
    plan = facts.plan.status if facts.plan else None
    match stage:
        case Stage.REMINDER:
            if dpd >= neg.enter_dpd:
                return Stage.NEGOTIATION, f"{dpd} days past due"
            if facts.promise_broken_in_stage:
                return Stage.NEGOTIATION, "promise to pay broken"
        case Stage.NEGOTIATION:
            if segment is Segment.HARDSHIP and plan not in _FAILED:
                return Stage.RESTRUCTURING, "hardship: willing but unable to pay"
            returned = facts.returned_from_review
            in_grace = returned is not None and (facts.business_date - returned).days < neg.return_grace_days
            # A working plan keeps an account out of review (promises broken before it included).
            # A reviewer who sent the account back gave the borrower a chance: the promises broken
            # before it do not undo the decision the next day; one broken since does.
            if (
                segment is Segment.STRATEGIC
                and facts.broken_promises >= neg.strategic_broken_promises
                and plan != "active"
                and (not in_grace or facts.promise_broken_in_stage)
            ):
                return Stage.REPOSSESSION_REVIEW, f"strategic: {facts.broken_promises} promises broken"
            if plan != "active" and not in_grace:
                threshold = neg.strategic_review_dpd if segment is Segment.STRATEGIC else neg.review_dpd
                if dpd >= threshold:
                    who = "strategic: " if segment is Segment.STRATEGIC else ""
                    return Stage.REPOSSESSION_REVIEW, f"{who}{dpd} days past due without a working plan"
        case Stage.RESTRUCTURING:
            # A completed plan cures through the past due it cleared (`monitor_plans`), above.
            if plan in _FAILED:
                return Stage.REPOSSESSION_REVIEW, f"plan {plan}"
            if plan == "offered" and facts.plan is not None and _expired(facts.plan, facts, policy):
                return Stage.REPOSSESSION_REVIEW, "offer unanswered, counted as declined"
            # No plan row for this stay once its offer has had its time: none could be computed (a
            # file's instalment of 0), so none will come. Left here, the account waited for one until
            # charge-off, never reviewed (DESIGN §2: 60+ days past due without a working plan).
            offer_days = (facts.business_date - facts.stage_began).days
            if (
                plan is None
                and offer_days >= policy.restructuring.offer_expiry_days
                and dpd >= neg.review_dpd
            ):
                return Stage.REPOSSESSION_REVIEW, f"{dpd} days past due without a working plan (none offered)"
        case Stage.REPOSSESSION_REVIEW:
            if facts.review_decision is DecisionKind.LEGAL:
                return Stage.LEGAL_REFERRAL, "reviewer referred to legal"
            if facts.review_decision is DecisionKind.NEGOTIATE:
                return Stage.NEGOTIATION, _RETURNED
    return None


def _expired(plan: PlanFact, facts: Facts, policy: Policy) -> bool:
    """An offer unanswered `offer_expiry_days` counts as declined: the account goes to review."""
    return (facts.business_date - plan.since).days >= policy.restructuring.offer_expiry_days


def offer_closed(account: AccountView, facts: Facts, policy: Policy) -> str | None:
    """Why the account has no restructuring offer open today, as `advance` reads its facts; None
    while one is: in restructuring with an offered plan not yet expired, or none of this
    delinquency yet (the offer went out as the account entered the stage, and the next refresh
    records its plan row). A borrower's PLAN is answered only then (`arrears.plan_options`)."""
    if account.stage != Stage.RESTRUCTURING:
        return f"no offer is open (account in {account.stage})"
    if facts.settlement == "active":
        return "a settlement is agreed: the borrower is paying under it"
    plan = facts.plan
    if plan is None or _earlier_delinquency(account, plan):
        return None
    if plan.status == "offered":
        if not _expired(plan, facts, policy):
            return None
        days = policy.restructuring.offer_expiry_days
        return f"the offer of {plan.since.isoformat()} expired ({days} days unanswered)"
    if plan.status == "active":
        return "a plan is active: the borrower is paying under it"
    return f"no offer is open (plan {plan.status})"


def _messages(
    account: AccountView,
    facts: Facts,
    policy: Policy,
    segment: Segment,
    stage: str,
    episode: int,
    stage_since: date,
) -> Iterator[tuple[str, str]]:
    """The messages (key, template) of the stage the account ends the day in, each keyed once per episode."""
    base = f"{account.account_id}:{stage}:{episode}"
    # A borrower paying under an agreed plan (agreed in reminder or negotiation, where a segment
    # other than hardship stays) is not reminded of, or asked for, the past due the plan spreads
    # or defers: it would contradict what they were told, as a promise pending would.
    asking = not facts.promise_pending and not (facts.plan is not None and facts.plan.status == "active")
    # One of this stage episode's messages still waiting to go (deferred to the morning, a provider
    # down) goes first, alone: a new one beside it would pile up with it, and once they can go they
    # would leave one a day, weeks-old asks among them, where the cadence asks one a week.
    waiting = any(
        c.in_flight and c.account_id == account.account_id and c.stage == stage and c.episode == episode
        for c in facts.history
    )
    match stage:
        case _ if waiting:
            return
        case Stage.REMINDER if asking:
            due = [d for d in policy.reminder.cadence_days if d <= account.days_past_due]
            if due:
                yield f"{base}:day-{due[-1]}", "reminder"
        case Stage.NEGOTIATION if asking:
            week = (facts.business_date - stage_since).days // policy.negotiation.cadence_days
            yield f"{base}:ask-{week}", "negotiation"
        case Stage.RESTRUCTURING if facts.plan is None:
            # An offer blocked on its way (to a number a skip trace found, not yet confirmed the
            # borrower's; an opt-out) reached nobody and is not recorded (`storage.plans.offer_plans`):
            # it is made again each week of the stay, as negotiation asks, until one goes.
            week = (facts.business_date - stage_since).days // policy.negotiation.cadence_days
            yield f"{base}:offer" + (f"-{week}" if week else ""), "restructuring_offer"
        case Exit.CURED:
            days_before = policy.reminder.courtesy_days_before_due
            high_risk = segment in _HIGH_RISK or account.episode > 0
            if (
                days_before is not None
                and high_risk
                and account.next_due_date is not None
                and (account.next_due_date - facts.business_date).days == days_before
            ):
                yield f"{account.account_id}:courtesy:{account.next_due_date.isoformat()}", "courtesy"


def decide_message(
    key: str,
    template: str,
    account: AccountView,
    facts: Facts,
    policy: Policy,
    stage: str,
    episode: int,
    now: datetime,
    *,
    extra: tuple[tuple[str, str], ...] = (),
) -> Outgoing:
    """Render the message and give it its verdict: the decision-time half of the compliance check.

    Every message is decided here, the stage's by `advance` and the answers to replies
    (`arrears.plan_options`); `extra` adds values a template needs beyond `template_params`."""
    body: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    ctx = facts.context
    if ctx is not None:
        if ctx.jurisdiction != account.jurisdiction:
            ctx = replace(ctx, jurisdiction=account.jurisdiction)
        filled = template_params(ctx)
        if extra:
            filled.update(extra)
        body = render(template, ctx, filled, profile=policy.profile(account.jurisdiction))
        params = tuple(filled.items())
    verdict = check_contact(
        request=ContactRequest(
            account_id=account.account_id,
            jurisdiction=account.jurisdiction,
            timezone=account.timezone,
            template=template,
            body=body,
            lender=ctx.lender if ctx else "",
            address=facts.address,
            region=account.region,
            fill=params,
            stage=stage,
            episode=episode,
            third_party=not facts.address_verified,
        ),
        state=ContactState(
            holds=facts.holds,
            opted_out=facts.opted_out,
            # The debtor is reachable on a number they confirmed; an unconfirmed one is the very
            # attempt the third-party rule allows while they are not.
            debtor_reachable=facts.reachable and facts.address_verified,
            history=facts.history,
        ),
        policy=policy,
        now=now,
    )
    return Outgoing(
        key,
        template,
        verdict.not_before,
        blocked=verdict.reason if verdict.kind is VerdictKind.BLOCK else None,
        deferred=verdict.reason if verdict.kind is VerdictKind.DEFER else None,
        body=body,
        params=params,
        detail=verdict.detail,
    )
