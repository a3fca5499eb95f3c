"""The Payment History Profile: 24 month-end characters before the reporting month, most recent first.

CRRG: the profile holds the 24 months *before* the month reported (that month is told by the
Account Status and Payment Rating), one character each, most recent first; `B` where there is
no history before that month, `D` where a month has no data.

Where each month comes from, best first:
1. What we furnished for that month (the `char` kept with each furnish record): exact, and the
   only source once arrears has furnished for a while.
2. Before arrears knew the account (its first audit event, or its borrower's creation): `B`.
3. Otherwise a reconstruction from the stage timeline of the audit trail. Approximations:
   - the stage at a month end is the target of the last transition before it;
   - days past due at a month end count from the oldest unpaid due date of the delinquency
     episode covering it: for the ongoing episode the account's current oldest due date (a
     lower bound: partial payments only move it later, so a month never reads worse than it
     was); for an episode already over, the date implied by the episode's first transition
     ("delinquent: N days past due"), which ignores partial payments inside that episode;
   - a month in an open stage with no episode to count from is `D` (no data), never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from arrears.metro2.periods import Period
from arrears.metro2.status import dpd_char

__all__ = ["HISTORY_MONTHS", "StageChange", "payment_history"]

HISTORY_MONTHS = 24
_OPEN = frozenset({"reminder", "negotiation", "restructuring", "repossession_review"})
_EXIT_CHARS = {"paid_off": "E", "settled": "E", "charged_off": "L"}
_COLLECTION = frozenset({"closed", "legal_referral"})


@dataclass(frozen=True, slots=True)
class StageChange:
    """One transition of the audit trail, as the history needs it."""

    on: date
    from_stage: str
    to_stage: str
    days_past_due: int | None = None  # what the transition's reason says, when it says it


def _stage_at(day: date, changes: Sequence[StageChange], current: str) -> str:
    stage = None
    for change in changes:
        if change.on <= day:
            stage = change.to_stage
        elif stage is None:
            return change.from_stage  # before the first recorded change
        else:
            break
    return stage if stage is not None else current


def _episode_due(day: date, changes: Sequence[StageChange], oldest_due: date | None) -> date | None:
    """The oldest unpaid due date to count `day`'s days past due from (see the module docstring)."""
    start: StageChange | None = None
    for change in changes:
        if change.on > day:
            break
        if change.from_stage == "cured" and change.to_stage in _OPEN:
            start = change
        elif change.to_stage not in _OPEN:
            start = None  # cured or exited: a later start opens another episode
    ongoing = not any(c.on > day and c.to_stage not in _OPEN for c in changes)
    if ongoing and oldest_due is not None:
        return oldest_due
    if start is not None and start.days_past_due is not None:
        return start.on - timedelta(days=start.days_past_due)
    return None


def _month_char(
    end: date,
    changes: Sequence[StageChange],
    current_stage: str,
    oldest_due: date | None,
    repossessed_on: date | None,
    surrendered_on: date | None,
    reinstated_on: date | None = None,
) -> str:
    """One reconstructed month, in the order `status.condition_of` decides a condition."""
    stage = _stage_at(end, changes, current_stage)
    if stage in _EXIT_CHARS:
        return _EXIT_CHARS[stage]
    if surrendered_on is not None and surrendered_on <= end:
        return "J"
    if repossessed_on is not None and repossessed_on <= end and not (reinstated_on and reinstated_on <= end):
        return "K"  # until a reinstatement (the past due paid after the recovery) ends it
    if stage in _COLLECTION:
        return "G"
    if stage == "cured":
        return "0"
    due = _episode_due(end, changes, oldest_due)
    return "D" if due is None else dpd_char(max(0, (end - due).days))


def payment_history(
    period: Period,
    *,
    reported: Mapping[str, str],
    known_since: date,
    changes: Sequence[StageChange],
    current_stage: str,
    oldest_due: date | None,
    repossessed_on: date | None = None,
    surrendered_on: date | None = None,
    reinstated_on: date | None = None,
) -> str:
    """The 24 characters before `period`, most recent first (see the module docstring for sources).

    `reinstated_on`: the day a repossessed loan was cured after the recovery; the months from it
    on are no longer `K`."""
    changes = sorted(changes, key=lambda c: c.on)
    earliest_reported = min((Period.parse(p).first_day for p in reported), default=known_since)
    known_since = min(known_since, earliest_reported)
    chars: list[str] = []
    for month in period.before(HISTORY_MONTHS):
        end = month.last_day
        if str(month) in reported:
            chars.append(reported[str(month)])
        elif end < known_since or (chars and chars[-1] == "B"):
            chars.append("B")  # nothing before this; and a B is never followed by older history
        else:
            chars.append(
                _month_char(
                    end, changes, current_stage, oldest_due, repossessed_on, surrendered_on, reinstated_on
                )
            )
    return "".join(chars)
