"""Simulated payments: a day of them for accounts in the state they are in, each borrower paying
as able and willing (DESIGN §2 segments)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_DOWN, Decimal
from zoneinfo import ZoneInfo

from arrears.policy import DEFAULT_POLICY
from arrears.segmentation import segment_of
from arrears.simulate.portfolio import PortfolioRow
from arrears.vocabulary import Segment

__all__ = ["PAYMENT_COLUMNS", "AccountState", "PaymentRow", "simulate_payments"]

PAYMENT_COLUMNS: tuple[str, ...] = ("payment_id", "account_id", "amount", "received_at")


@dataclass(frozen=True, slots=True)
class AccountState:
    """What `simulate_payments` needs to know of an account on a simulated day."""

    account_id: str
    past_due_amount: Decimal
    installment_amount: Decimal
    ability: float
    willingness: float
    timezone: str
    days_past_due: int

    @classmethod
    def from_row(cls, row: PortfolioRow, *, business_date: date) -> AccountState:
        """The state of a freshly generated account, for the first simulated day."""
        return cls(
            account_id=row.account_id,
            past_due_amount=row.past_due_amount,
            installment_amount=row.installment_amount,
            ability=row.ability,
            willingness=row.willingness,
            timezone=row.timezone,
            days_past_due=row.days_past_due(business_date),
        )

    @property
    def segment(self) -> Segment:
        return segment_of(
            reachable=True,
            ability=self.ability,
            willingness=self.willingness,
            policy=DEFAULT_POLICY.segmentation,
        )


@dataclass(frozen=True, slots=True)
class PaymentRow:
    """One payment, with exactly the payments-file columns of DESIGN §8."""

    payment_id: str
    account_id: str
    amount: Decimal
    received_at: datetime  # aware, in the borrower's zone

    def file_values(self) -> list[str]:
        return [self.payment_id, self.account_id, str(self.amount), self.received_at.isoformat()]


# Daily chance of a payment and how much of what is owed it covers, by segment. Able and willing
# borrowers catch up soon and in full; the willing but unable pay part of an instalment; the
# unwilling pay rarely, strategic defaulters mostly once repossession is near.
_DAILY_PAY: dict[Segment, float] = {
    Segment.SELF_CURE: 0.12,
    Segment.HARDSHIP: 0.04,
    Segment.STRATEGIC: 0.004,
    Segment.DISTRESSED: 0.0015,
}
_STRATEGIC_NEAR_REPOSSESSION = (60, 0.012)  # from this DPD on, this daily chance
_SELF_CURE_LATE = (30, 0.05)  # self-curers still behind after a month are slower
_PAY_FROM = time(8)
_PAY_WINDOW_S = 13 * 3600  # 08:00-21:00 local
_CENT = Decimal("0.01")
_MAX_ID = 64  # Payment.payment_id


def simulate_payments(accounts: Iterable[AccountState], *, day: date, seed: int) -> Iterator[PaymentRow]:
    """Stream the payments that delinquent accounts make on `day`.

    Each account's outcome depends only on (seed, account, day), not on the order or company of
    the accounts, so shards of a portfolio simulated apart pay exactly as the whole would.
    """
    stamp = day.isoformat()
    compact = day.strftime("%Y%m%d")
    for a in accounts:
        if a.past_due_amount <= 0:
            continue
        u_pay, u_amount, u_time = _uniforms(f"{seed}|{a.account_id}|{stamp}")
        segment = a.segment
        chance = _DAILY_PAY[segment]
        if segment is Segment.STRATEGIC and a.days_past_due >= _STRATEGIC_NEAR_REPOSSESSION[0]:
            chance = _STRATEGIC_NEAR_REPOSSESSION[1]
        elif segment is Segment.SELF_CURE and a.days_past_due > _SELF_CURE_LATE[0]:
            chance = _SELF_CURE_LATE[1]
        chance *= 0.5 + a.willingness  # the more willing, the sooner, within a segment
        if u_pay >= chance:
            continue
        if segment is Segment.HARDSHIP:
            # What they can spare: a quarter to all of an instalment, growing with ability.
            share = 0.25 + 1.5 * a.ability * (0.5 + u_amount)
            amount = min(a.past_due_amount, _share(a.installment_amount, min(share, 1.0)))
        elif segment is Segment.DISTRESSED:
            amount = min(a.past_due_amount, _share(a.installment_amount, 0.1 + 0.4 * u_amount))
        else:
            amount = a.past_due_amount
        if amount <= 0:
            continue
        local = datetime.combine(day, _PAY_FROM, ZoneInfo(a.timezone))
        yield PaymentRow(
            payment_id=_payment_id(a.account_id, compact),
            account_id=a.account_id,
            amount=amount,
            received_at=local + timedelta(seconds=int(u_time * _PAY_WINDOW_S)),
        )


def _uniforms(key: str) -> tuple[float, float, float]:
    """Three uniforms in [0, 1) that depend on `key` alone (unlike `hash`, stable across runs)."""
    digest = hashlib.blake2b(key.encode(), digest_size=24).digest()
    scale = 2.0**-64
    return (
        int.from_bytes(digest[:8], "big") * scale,
        int.from_bytes(digest[8:16], "big") * scale,
        int.from_bytes(digest[16:], "big") * scale,
    )


def _share(amount: Decimal, share: float) -> Decimal:
    return (amount * Decimal(repr(share))).quantize(_CENT, rounding=ROUND_DOWN)


def _payment_id(account_id: str, compact_day: str) -> str:
    """One payment per account per day, so (account, day) names it; long ids are hashed to fit."""
    pid = f"P-{compact_day}-{account_id}"
    if len(pid) <= _MAX_ID:
        return pid
    return f"P-{compact_day}-{hashlib.blake2b(account_id.encode(), digest_size=16).hexdigest()}"
