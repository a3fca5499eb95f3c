"""Data access for recovered cars: the accounts whose repossession the agency reported done, and
their closing; a car the borrower got back before its sale (`returned_to_borrower`); a car still
on the agency's lot while its account was cured, paid off or settled meanwhile (`unreturned_cars`).

The recovery itself is recorded on the assignment (`assignments.move_assignment`); what follows
it (close now, or once the notice of sale is mailed) is decided by `arrears.recovery` and done
by `tasks.recovery` with these functions. Functions take the caller's connection and do not commit.
"""

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, exists, or_, select, update

from arrears.reinstatement import STATUTORY
from arrears.storage._common import event, holds_of, insert_events
from arrears.storage.bulk import chunks
from arrears.storage.letters import mark_blocked
from arrears.storage.tables import account, assignment, audit, letter
from arrears.vocabulary import Exit, Hold, Stage

__all__ = [
    "REDEEMED",
    "REINSTATED",
    "UNRETURNED",
    "Recovered",
    "Unreturned",
    "close_recovered",
    "hold_back_notice",
    "note_stopped",
    "note_unreturned",
    "recovered_accounts",
    "returned_to_borrower",
    "unreturned_cars",
]

_OPEN = tuple(s.value for s in Stage)
# The audit kinds of a car the borrower got back before its sale (`arrears.storage.redemptions`):
# redeemed (UCC 9-623), or the contract reinstated (Cal. Civ. Code 2983.3); or given back without
# either (`arrears.storage.returns`: paid before the car was taken, settled, the lender's choice).
REDEEMED = "vehicle_redeemed"
REINSTATED = "vehicle_reinstated"
RETURNED = "vehicle_returned"
_BACK = (REDEEMED, REINSTATED, RETURNED)
# What ends a recovery: the car sold, or returned to the borrower.
_RECOVERY_ENDED = ("vehicle_sale", *_BACK)
# Said once per recovery (`note_unreturned`): its car waits on the lot of an account paid meanwhile.
UNRETURNED = "recovered_car_unreturned"
# The exits a payment takes an account to: no sale follows a recovery there (`recovered_accounts`
# reads open stages only), so its car goes back, or a person decides.
_PAID = (Exit.CURED.value, Exit.PAID_OFF.value, Exit.SETTLED.value)


@dataclass(frozen=True, slots=True)
class Recovered:
    """An account still open whose car the agency recovered (its latest recovery)."""

    account_id: str
    order_id: str
    review_id: int | None
    stage: str
    jurisdiction: str
    timezone: str
    currency: str
    vin: str | None
    recovered_at: datetime
    recovery: Any
    holds: frozenset[Hold] = field(default=frozenset())  # in force now: a collection hold stops the sale
    # Why the order was called off before the car was taken (a payment, a hold; None: it never
    # was): the decision it carried out was withdrawn, so a person decides what follows.
    called_off: str | None = None
    # The exit (cured, paid off, settled) the account reached while the car was on the lot, its
    # return never recorded (`UNRETURNED`): the account fell behind again since, and a person must
    # act before anything follows that old recovery (None: it never did).
    left_meanwhile: str | None = None
    # What the notice of sale states: the past due (to reinstate) and the balance (to redeem).
    past_due: Decimal = Decimal(0)
    balance: Decimal = Decimal(0)


def recovered_accounts(connection: Connection, *, account_id: str | None = None) -> list[Recovered]:
    """Open accounts with a recovered car: what a recovery has not yet moved on, with their holds
    (three queries). An account whose car's sale is recorded is left out: the sale closed it, and
    its deficiency may have taken it back into legal referral since (`arrears.storage.sales`); so
    is one whose car was returned to the borrower (redeemed, or its contract reinstated: a cured
    account that falls behind again is open, and its old recovery is not to be noticed for sale)."""
    statement = (
        select(
            assignment.c.account_id,
            assignment.c.order_id,
            assignment.c.review_id,
            assignment.c.recovered_at,
            assignment.c.recovery,
            assignment.c.reason,
            account.c.stage,
            account.c.jurisdiction,
            account.c.timezone,
            account.c.currency,
            account.c.vin,
            account.c.past_due_amount,
            account.c.balance,
        )
        .join(account, account.c.account_id == assignment.c.account_id)
        .where(assignment.c.recovered_at.is_not(None), account.c.stage.in_(_OPEN))
        .order_by(assignment.c.recovered_at, assignment.c.id)
    )
    if account_id is not None:
        statement = statement.where(assignment.c.account_id == account_id)
    latest: dict[str, Recovered] = {}
    for r in connection.execute(statement):
        latest[r.account_id] = Recovered(
            r.account_id,
            r.order_id,
            r.review_id,
            r.stage,
            r.jurisdiction,
            r.timezone,
            r.currency,
            r.vin,
            r.recovered_at,
            r.recovery,
            # Only `request_cancel` gives a recovered order a reason.
            called_off=r.reason,
            past_due=r.past_due_amount,
            balance=r.balance,
        )
    for chunk in chunks(sorted(latest)):
        for account_id, kind, data in connection.execute(
            select(audit.c.account_id, audit.c.kind, audit.c.data).where(
                audit.c.kind.in_((*_RECOVERY_ENDED, UNRETURNED)), audit.c.account_id.in_(chunk)
            )
        ):
            if account_id not in latest or (data or {}).get("order_id") != latest[account_id].order_id:
                continue
            if kind == UNRETURNED:
                latest[account_id] = replace(latest[account_id], left_meanwhile=str(data.get("stage")))
            else:
                del latest[account_id]
    holds = holds_of(connection, list(latest)) if latest else {}
    return [replace(r, holds=holds.get(r.account_id, frozenset())) for r in latest.values()]


def note_stopped(connection: Connection, recovered: Recovered, *, at: datetime, reason: str) -> bool:
    """Say on the account's timeline, once per reason, that its recovered car waits for a person
    (a hold, a notice of sale that cannot be mailed): without it nothing would show that an
    account no review lists any more has stopped. False if it was said already."""
    said = connection.execute(
        select(audit.c.data)
        .where(audit.c.account_id == recovered.account_id, audit.c.kind == "recovery")
        .order_by(audit.c.at.desc(), audit.c.id.desc())
        .limit(1)
    ).scalar()
    if said and said.get("order_id") == recovered.order_id and said.get("reason") == reason:
        return False
    detail = f"vehicle of repossession order {recovered.order_id} recovered and waiting: {reason}"
    data = {"order_id": recovered.order_id, "reason": reason}
    insert_events(connection, [event(recovered.account_id, at, "recovery", detail, data)])
    return True


def close_recovered(
    connection: Connection, recovered: Recovered, *, at: datetime, reason: str, data: dict[str, Any]
) -> bool:
    """Close the account on its recovery, once (False if it was no longer in the stage it had),
    with the transition and the recovery in its audit trail."""
    done = connection.execute(
        update(account)
        .where(account.c.account_id == recovered.account_id, account.c.stage == recovered.stage)
        .values(stage=Exit.CLOSED.value, stage_since=at, episode=account.c.episode + 1, updated_at=at)
    ).rowcount
    if not done:
        return False
    detail = f"{recovered.stage} → {Exit.CLOSED.value}: {reason}"
    recovery = dict(recovered.recovery or {})
    insert_events(
        connection,
        [
            event(
                recovered.account_id,
                at,
                "transition",
                detail,
                {
                    "from": recovered.stage,
                    "to": Exit.CLOSED.value,
                    "reason": reason,
                    "order_id": recovered.order_id,
                    "recovery": recovery,
                }
                | data,
            )
        ],
    )
    return True


def returned_to_borrower(
    connection: Connection, account_id: str, order_id: str
) -> tuple[str, dict[str, Any]] | None:
    """The kind and data of the event that gave the car of `order_id` back to the borrower
    (`REDEEMED`, `REINSTATED`, `RETURNED`), or None: such a car is not sold, nor noticed for sale."""
    for kind, data in connection.execute(
        select(audit.c.kind, audit.c.data)
        .where(audit.c.account_id == account_id, audit.c.kind.in_(_BACK))
        .order_by(audit.c.at, audit.c.id)
    ):
        if (data or {}).get("order_id") == order_id:
            return kind, dict(data)
    return None


def hold_back_notice(connection: Connection, account_id: str, *, reason: str, at: datetime) -> list[int]:
    """Block, with `reason`, the account's notices of sale never handed to the provider: once the
    car is sold or returned they would announce a sale that will not come. The ids blocked."""
    unsent = list(
        connection.execute(
            select(letter.c.id).where(
                letter.c.account_id == account_id,
                letter.c.kind == "notice_of_sale",
                letter.c.status == "pending",
                letter.c.submitted_at.is_(None),
            )
        ).scalars()
    )
    for letter_id in unsent:
        mark_blocked(connection, letter_id=letter_id, reason=reason, at=at, status="blocked")
    return unsent


@dataclass(frozen=True, slots=True)
class Unreturned:
    """An account cured, paid off or settled whose latest recovered car is neither sold nor
    recorded as gone back: the payment undid what the repossession pursued (a cure is a
    reinstatement in effect, a payoff a redemption), and the car waits on the agency's lot."""

    account_id: str
    order_id: str
    assignment_id: int
    stage: str
    stage_since: datetime
    recovered_at: datetime
    jurisdiction: str
    days_past_due: int
    past_due: Decimal
    currency: str
    said: bool  # `note_unreturned` wrote it on the timeline already

    @property
    def since(self) -> datetime:
        """When the car began to wait to go back: the exit, or the recovery if it came after
        (a car taken on an order the payment called off too late)."""
        return max(self.stage_since, self.recovered_at)

    @property
    def todo(self) -> str:
        """What a person does, with the command that records it (`arrears.storage.redemptions`,
        which records it without a transition for an account at its target stage already)."""
        car = f"the vehicle of order {self.order_id} is still at the agency while the account is {self.stage}"

        def command(how: str, extra: str = "") -> str:
            return f"`arrears sale {how} {self.account_id} --paid-on DAY --by NAME{extra}`"

        given_back = f"`arrears sale return {self.account_id} --on DAY --by NAME`"
        if self.stage == Exit.CURED.value:
            # Outside California no statute gives the right (UCC: redemption only): the lender's choice.
            allows = "" if self.jurisdiction in STATUTORY else " --lender-allows"
            return (
                f"{car}: return the car; record it with {command('reinstate', allows)} (paid after the car "
                f"was taken), or {given_back} (paid before)"
            )
        if self.stage == Exit.PAID_OFF.value:
            return (
                f"{car}: return the car; record it with {command('redeem')} (paid after the car was "
                f"taken), or {given_back} (paid before)"
            )
        return (
            f"{car}: a person decides whether it goes back under the settlement; record its return "
            f"with {given_back}"
        )


def unreturned_cars(connection: Connection) -> list[Unreturned]:
    """The accounts cured, paid off or settled whose latest recovered car's recovery has not
    ended (no sale, redemption or reinstatement of its order), oldest recovery first, each with
    whether `note_unreturned` said it already. One query, whatever their number:
    every recoveries step (each cycle, outbox run and letters webhook) runs it, and the
    recovered cars pile up over the years, each with its sale or return recorded."""
    later = assignment.alias("later_recovery")
    ended = audit.alias("recovery_ended")
    said = audit.alias("unreturned_said")

    def of_order(events: Any, kinds: tuple[str, ...]) -> Any:
        return exists().where(
            events.c.account_id == assignment.c.account_id,
            events.c.kind.in_(kinds),
            events.c.data["order_id"].as_string() == assignment.c.order_id,
        )

    statement = (
        select(
            assignment.c.account_id,
            assignment.c.order_id,
            assignment.c.id,
            assignment.c.recovered_at,
            account.c.stage,
            account.c.stage_since,
            account.c.jurisdiction,
            account.c.days_past_due,
            account.c.past_due_amount,
            account.c.currency,
            of_order(said, (UNRETURNED,)).label("said"),
        )
        .join(account, account.c.account_id == assignment.c.account_id)
        .where(
            assignment.c.recovered_at.is_not(None),
            account.c.stage.in_(_PAID),
            # The latest recovery only, as `recovered_accounts` reads it: an older one ended, or
            # its account was closed and opened again since.
            ~exists().where(
                later.c.account_id == assignment.c.account_id,
                later.c.recovered_at.is_not(None),
                or_(
                    later.c.recovered_at > assignment.c.recovered_at,
                    and_(later.c.recovered_at == assignment.c.recovered_at, later.c.id > assignment.c.id),
                ),
            ),
            ~of_order(ended, _RECOVERY_ENDED),
        )
        .order_by(assignment.c.recovered_at, assignment.c.id)
    )
    return [
        Unreturned(
            r.account_id,
            r.order_id,
            r.id,
            r.stage,
            r.stage_since,
            r.recovered_at,
            r.jurisdiction,
            r.days_past_due,
            r.past_due_amount,
            r.currency,
            bool(r.said),
        )
        for r in connection.execute(statement)
    ]


def note_unreturned(connection: Connection, car: Unreturned, *, at: datetime) -> list[int]:
    """Say on the account's timeline that its recovered car is to go back, and how to record it:
    nothing else would (no notice of sale is written, no account closed), and the borrower who
    paid would be without the car. A notice of sale written before the payment and not yet handed
    to the provider is held back: it would announce a sale that is not to come. The caller says it
    once per recovery (`Unreturned.said`); the notices held back."""
    held = hold_back_notice(
        connection, car.account_id, reason=f"the account is {car.stage}: the vehicle waits to go back", at=at
    )
    data = {
        "order_id": car.order_id,
        "stage": car.stage,
        "recovered_at": car.recovered_at.isoformat(),
        "held_back": held,
    }
    notice = f"; notice of sale {', '.join(map(str, held))} held back" if held else ""
    detail = f"recovered vehicle not returned: {car.todo}{notice}"
    insert_events(connection, [event(car.account_id, at, UNRETURNED, detail, data)])
    return held
