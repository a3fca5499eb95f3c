"""Segments from ability and willingness to pay (DESIGN §2).

Ability comes from the bureau profile and the vehicle's equity; willingness from how the borrower
answers contact: promises kept or broken, payments after a contact, replies. Both are scores in
0..1 so that a lender's policy can move the thresholds without touching code.
"""

from decimal import Decimal
from fractions import Fraction

from arrears.policy import Segmentation
from arrears.vocabulary import Segment

__all__ = [
    "AFFORDABLE_SHARE",
    "HARDSHIP_MARGIN",
    "SCORE_BANDS",
    "ability_after_hardship",
    "ability_score",
    "nudge_willingness",
    "segment_of",
]

# Bureau score bands, best first, with the ability each suggests before income and equity.
SCORE_BANDS: dict[str, float] = {"A": 0.9, "B": 0.75, "C": 0.55, "D": 0.35, "E": 0.15}

# The share of monthly income a loan payment may take before it is a burden: a common
# affordability line in auto lending. `ability_score` lowers ability above it, and the
# restructuring offers leave out a plan whose payment exceeds it (`restructuring.payment_ceiling`).
# Exact (a Fraction): 18,000 a year affords 500.00 a month, not 499.99.
AFFORDABLE_SHARE = Fraction(1, 3)

# How much one observed behaviour moves willingness: a kept promise says more than a reply.
WILLINGNESS_STEPS: dict[str, float] = {
    "payment_after_contact": 0.15,
    "promise_kept": 0.2,
    "promise_made": 0.05,
    "reply": 0.05,
    "promise_broken": -0.25,
    "no_response": -0.05,
}


def segment_of(
    *, reachable: bool, ability: float | None, willingness: float | None, policy: Segmentation
) -> Segment:
    """The treatment segment; an account we cannot reach is skip-traced before anything else."""
    if not reachable:
        return Segment.UNREACHABLE
    able = (policy.default_ability if ability is None else ability) >= policy.ability_threshold
    willing = (
        policy.default_willingness if willingness is None else willingness
    ) >= policy.willingness_threshold
    if able:
        return Segment.SELF_CURE if willing else Segment.STRATEGIC
    return Segment.HARDSHIP if willing else Segment.DISTRESSED


def ability_score(
    *,
    score_band: str | None,
    monthly_income: Decimal | None,
    installment: Decimal,
    vehicle_value: Decimal | None,
    balance: Decimal,
) -> float | None:
    """Ability to pay, or None when nothing is known yet.

    The band sets the base; an instalment above a third of income (`AFFORDABLE_SHARE`) lowers
    it; positive equity raises it, because the borrower can sell or refinance the car.
    """
    if score_band is None and monthly_income is None and vehicle_value is None:
        return None
    score = SCORE_BANDS.get(score_band or "", 0.5)
    if monthly_income is not None:  # an estimate of no income is the heaviest burden, not no estimate
        burden = float(installment / monthly_income) if monthly_income > 0 else float("inf")
        score += 0.15 if burden <= 0.15 else -0.25 if burden > AFFORDABLE_SHARE else 0.0
    if vehicle_value is not None and balance > 0:
        equity = float((vehicle_value - balance) / balance)
        score += 0.1 if equity > 0.2 else -0.1 if equity < -0.2 else 0.0
    return min(1.0, max(0.0, score))


def nudge_willingness(current: float | None, behaviour: str, *, policy: Segmentation) -> float:
    """Willingness after one observed behaviour (a key of WILLINGNESS_STEPS)."""
    base = policy.default_willingness if current is None else current
    return min(1.0, max(0.0, base + WILLINGNESS_STEPS[behaviour]))


# How far below the policy's ability threshold a borrower's word of a hardship puts their ability.
HARDSHIP_MARGIN = 0.1


def ability_after_hardship(current: float | None, *, policy: Segmentation) -> float:
    """Ability once the borrower has said they cannot pay (lost work, illness): below the
    threshold, so they are unable (hardship if willing, distressed if not), never strategic;
    never raised by it (a bureau that found them less able stays lower). It holds for the
    delinquency: a bureau pull in it is capped the same way (`storage.bureau_pulls`)."""
    base = policy.default_ability if current is None else current
    return min(base, max(0.0, policy.ability_threshold - HARDSHIP_MARGIN))
