"""Frequency caps: at most `limit` contacts on a channel per borrower, account or number in any
rolling window, counted from the message log.

What counts: every contact made (at its `sent_at`) and every one still in flight (scheduled or
leased: at its `not_before`, or now once that has passed). Windows are half-open, (t - W, t]: a
text sent exactly 24 hours after the last one is inside a one-a-day cap, so a daily cycle at a
fixed hour does not drift.

A new contact at t must not fill any window that holds t, so it looks both ways: fewer than
`limit` counted contacts in (t - W, t + W). What was sent lies behind t; what is in flight may
lie ahead of it, and the contact scheduled first keeps its place.

Who yields to whom, so that counting never holds up a message for nothing:
- a message in flight for the same account but an earlier stage episode will be refused as stale
  when its time comes, so it is not counted;
- at send time (`message_id` given) a message in flight with a higher id yields to this one and
  is not counted; one with a lower id is. At decision time the new message has no id yet and
  will get the highest: it counts everything in flight. Two dispatchers racing for one borrower
  therefore never both send: the lower id goes, the higher waits.
"""

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from datetime import datetime, timedelta

from arrears.jurisdictions import Cap
from arrears.records import record

__all__ = ["Contact", "cap_exceeded", "cap_free_at", "conversations", "counted"]


@record
class Contact:
    """One contact of the borrower, made or on its way, as the caps count it."""

    at: datetime  # sent_at; for a contact in flight, its not_before
    channel: str
    account_id: str
    address: str | None = None
    in_flight: bool = False
    message_id: int | None = None
    stage: str | None = None  # the stage episode that decided it (for contacts in flight)
    episode: int | None = None
    outcome: str | None = None  # calls: connected | unanswered; None for texts and for calls in flight
    conversation: bool = False  # a conversation about the debt took place (Reg F 1006.14(b)(2)(ii))


def counted(
    cap: Cap,
    history: Iterable[Contact],
    *,
    account_id: str,
    address: str | None,
    now: datetime,
    message_id: int | None = None,
    stage: str | None = None,
    episode: int | None = None,
) -> list[datetime]:
    """The instants, sorted, at which the contacts `cap` counts for this contact took place."""
    times = []
    for c in history:
        if c.channel != cap.channel:
            continue
        if cap.scope == "account" and c.account_id != account_id:
            continue
        if cap.scope == "address" and c.address != address:
            continue
        if cap.counts != "all" and not c.in_flight and c.outcome != cap.counts:
            continue
        if c.in_flight:
            if message_id is not None and c.message_id is not None and c.message_id >= message_id:
                continue
            if stage is not None and c.account_id == account_id and (c.stage, c.episode) != (stage, episode):
                continue
            times.append(max(c.at, now))
        else:
            times.append(c.at)
    times.sort()
    return times


def conversations(
    cap: Cap, history: Iterable[Contact], *, account_id: str, address: str | None
) -> list[datetime]:
    """When conversations in the cap's scope took place (for `quiet_after_conversation_days`)."""
    if not cap.quiet_after_conversation_days:
        return []
    return sorted(
        c.at
        for c in history
        if c.conversation
        and (cap.scope != "account" or c.account_id == account_id)
        and (cap.scope != "address" or c.address == address)
    )


def cap_free_at(
    cap: Cap, times: list[datetime], at: datetime, conversations: Iterable[datetime] = ()
) -> datetime:
    """The earliest instant t at or after `at` with fewer than `limit` of `times` (sorted) in
    (t - W, t + W), and none of `conversations` in the quiet period before t.

    As t moves on, contacts behind it leave the window and contacts ahead of it enter, so the
    search repeats until both conditions hold at once.
    """
    window = cap.window
    quiet = timedelta(days=cap.quiet_after_conversation_days or 0)
    spoken = sorted(conversations) if quiet else []
    t = at
    while True:
        moved = False
        inside = _inside(times, t, window)
        if len(inside) >= cap.limit:
            t = inside[len(inside) - cap.limit] + window  # when enough of the oldest have left
            moved = True
        if quiet:
            recent = [x for x in spoken[: bisect_right(spoken, t)] if x > t - quiet]
            if recent:
                t = recent[-1] + quiet
                moved = True
        if not moved:
            return t


def cap_exceeded(cap: Cap, times: list[datetime], at: datetime) -> bool:
    """True when one more contact at `at` would fill a window of `cap` that holds `at`."""
    return len(_inside(times, at, cap.window)) >= cap.limit


def _inside(times: list[datetime], t: datetime, window: timedelta) -> list[datetime]:
    """The counted instants in (t - W, t + W), oldest first."""
    lo = bisect_right(times, t - window)
    hi = bisect_left(times, t + window)
    return times[lo:hi]
