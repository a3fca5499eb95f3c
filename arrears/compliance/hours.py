"""When a borrower may be contacted: the allowed window in the borrower's own local time.

An instant is allowed when, in every zone that may be the borrower's, its wall-clock reading
falls in [start, end) of an open day (not a closed weekday, not a public holiday where the
profile closes them). That definition is `contact_allowed`; `next_allowed_instant` finds the
earliest allowed instant at or after a given one, exactly, across DST gaps and folds:

- a zone's UTC offset is constant between transitions, so on each stretch of constant offset the
  allowed instants of a local day form one interval, [day+start - offset, day+end - offset);
- a window edge that falls in a gap (02:30 on a spring-forward night) opens at the transition,
  the first instant whose wall clock reads past it; nothing is ever allowed early;
- in a fold, wall times repeat: an instant whose wall clock reads inside the window is allowed on
  either pass, and one that reads outside is not.

Zones come from the account (the stated zone), from the phone number (phonenumbers gives a
number's zones, e.g. area code 213 is America/Los_Angeles) and from the mailing address's region
(the `us` package gives a state's zones: Texas is Chicago and Denver): where they disagree, only
the intersection of their windows is allowed (Reg F 1006.6(b)(1)(i) commentary: if the location is
uncertain, convenient in every possible zone; its example is an area code in one zone and a home
address in another). Public holidays come from the `holidays` package.

Results are cached per (instant, zones, hours): a cycle asks the same question for every account
sharing a zone and a profile.
"""

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import pendulum
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

from arrears.jurisdictions import Hours, Profile, is_public_holiday

__all__ = [
    "NoCommonWindow",
    "contact_allowed",
    "contact_zones",
    "next_allowed_instant",
    "number_zones",
    "region_zones",
    "window_label",
]

_SEARCH_DAYS = 31  # IE closes Sundays and holidays; no profile closes a month in a row
_UNKNOWN_ZONE = "Etc/Unknown"


class NoCommonWindow(ValueError):
    """The zones' windows never overlap within the search horizon: no lawful instant exists."""


def _hours_of(rules: Hours | Profile) -> Hours:
    return rules.hours if isinstance(rules, Profile) else rules


def _zones_of(zones: str | Iterable[str]) -> tuple[str, ...]:
    return (zones,) if isinstance(zones, str) else tuple(zones)


@lru_cache(maxsize=1_024)
def _tz(zone: str) -> pendulum.Timezone:
    """The zone, built once: building a pendulum Timezone reads the tz database (~6 ms)."""
    return pendulum.timezone(zone)


def contact_allowed(instant: datetime, zones: str | Iterable[str], rules: Hours | Profile) -> bool:
    """True when `instant` reads inside the window on an open day in every one of `zones`.

    This is the definition the search below must agree with; it reads the wall clock directly.
    """
    hours = _hours_of(rules)
    for zone in _zones_of(zones):
        local = instant.astimezone(_tz(zone))
        wall = local.time()
        if not (_open_on(local.date(), hours) and hours.start <= wall < hours.end):
            return False
    return True


def next_allowed_instant(instant: datetime, zones: str | Iterable[str], rules: Hours | Profile) -> datetime:
    """The earliest instant at or after `instant` allowed in every one of `zones`, in UTC.

    Raises NoCommonWindow when the zones share no allowed instant within a month.
    """
    return _next_allowed(instant.astimezone(UTC), _zones_of(zones), _hours_of(rules))


@lru_cache(maxsize=65_536)
def _next_allowed(instant: datetime, zones: tuple[str, ...], hours: Hours) -> datetime:
    at = instant
    for _ in range(64):  # each pass moves `at` forward to a zone's next opening; few are ever needed
        moved = False
        for zone in zones:
            nxt = _next_in_zone(at, zone, hours)
            if nxt > at:
                at, moved = nxt, True
        if not moved:
            return at
        if at - instant > timedelta(days=_SEARCH_DAYS):
            break
    raise NoCommonWindow(
        f"no instant inside {hours.label} local in all of {', '.join(zones)} within {_SEARCH_DAYS} days"
    )


def _next_in_zone(instant: datetime, zone: str, hours: Hours) -> datetime:
    first = instant.astimezone(_tz(zone)).date() - timedelta(days=1)
    best: datetime | None = None
    for k in range(_SEARCH_DAYS + 2):
        day = first + timedelta(days=k)
        if best is not None and day > best.date() + timedelta(days=2):
            return best
        if not _open_on(day, hours):
            continue
        opening = datetime.combine(day, hours.start)
        closing = datetime.combine(day, hours.end)
        for lo, hi, offset in _segments(zone, day):
            # On this stretch the wall clock reads `t + offset`: inside the window for t in [s, e).
            s = max(lo, (opening - offset).replace(tzinfo=UTC), instant)
            e = min(hi, (closing - offset).replace(tzinfo=UTC))
            if s < e and (best is None or s < best):
                best = s
    if best is None:
        raise NoCommonWindow(f"no open day within {_SEARCH_DAYS} days in {zone}")
    return best


@lru_cache(maxsize=8_192)
def _segments(zone: str, day: date) -> tuple[tuple[datetime, datetime, timedelta], ...]:
    """Stretches [lo, hi) of constant UTC offset covering every instant whose local date is `day`.

    Offsets lie within ±14 h, so [day 00:00 UTC - 1 day, day 00:00 UTC + 2 days) covers the local
    day. Transitions are found by sampling hourly and bisecting to the second (tzdata transitions
    fall on whole seconds, and no zone changes its offset twice within an hour).
    """
    tz = _tz(zone)
    lo = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=1)
    hi = lo + timedelta(days=3)

    def offset(t: datetime) -> timedelta:
        value = t.astimezone(tz).utcoffset()
        assert value is not None
        return value

    segments = []
    start, current = lo, offset(lo)
    t = lo
    while t < hi:
        nxt = min(t + timedelta(hours=1), hi)
        if offset(nxt) != current:
            a, b = t, nxt  # offset(a) == current != offset(b)
            while b - a > timedelta(seconds=1):
                mid = a + (b - a) / 2
                mid = mid.replace(microsecond=0)
                if mid <= a:
                    break
                if offset(mid) == current:
                    a = mid
                else:
                    b = mid
            segments.append((start, b, current))
            start, current = b, offset(b)
        t = nxt
    segments.append((start, hi, current))
    return tuple(segments)


def _open_on(day: date, hours: Hours) -> bool:
    if day.weekday() in hours.closed_weekdays:
        return False
    return not (hours.closed_on_holidays and hours.holidays and is_public_holiday(day, hours.holidays))


def window_label(rules: Hours | Profile) -> str:
    """The window as a person reads it: `08:00-22:00 local`."""
    return f"{_hours_of(rules).label} local"


# ----------------------------------------------------------------------------------------------
# The zones of a phone number


def number_zones(e164: str | None) -> tuple[str, ...]:
    """The zones phonenumbers gives a number in E.164, or () when it knows none.

    The longest prefix (at most 9 digits of country code and national number) in phonenumbers'
    time-zone table: what `phonenumbers.timezone.time_zones_for_geographical_number` looks up,
    without parsing and typing the number (~75 µs a number; this is ~2 µs). For numbers that are
    not geographic (mobiles outside North America) phonenumbers answers with the country's zones;
    the table's short prefixes give the same or a subset on the same clock (a UK mobile: Guernsey,
    Isle of Man and London, where phonenumbers adds Jersey). Every North American and Chinese
    number of the simulator gets exactly phonenumbers' answer (tests/test_compliance_hours.py).
    """
    if not e164 or not e164.startswith("+") or not e164[1:].isdigit():
        return ()
    digits = e164[1 : 1 + TIMEZONE_LONGEST_PREFIX]
    return _prefix_zones(digits[: _DECIDING.get(digits[:_SHORT], _SHORT)])


_SHORT = 4


def _deciding() -> dict[str, int]:
    """The table's prefixes of more than _SHORT digits, by their first _SHORT: the longest there.
    Every prefix a number's digits begin with is at most as long, so no more of its digits can
    decide its zones: these are the cache key. Its first 9 digits are all but unique to each number
    of a book (every lookup missed the cache); for all but about a hundred 4-digit starts, 4 decide."""
    longest: dict[str, int] = {}
    for prefix in TIMEZONE_DATA:
        if len(prefix) > _SHORT:
            longest[prefix[:_SHORT]] = max(longest.get(prefix[:_SHORT], 0), len(prefix))
    return longest


_DECIDING = _deciding()


@lru_cache(maxsize=65_536)
def _prefix_zones(digits: str) -> tuple[str, ...]:
    """The zones of the longest prefix of `digits` in the table."""
    for size in range(len(digits), 0, -1):
        zones = TIMEZONE_DATA.get(digits[:size])
        if zones is not None:
            return tuple(z for z in zones if z != _UNKNOWN_ZONE)
    return ()


def contact_zones(stated: str, address: str | None, region: str | None = None) -> tuple[str, ...]:
    """The zones a contact must suit: the stated zone, and every zone of the number and of the
    mailing address's region where they do not include it (a number or a state that agrees with
    the stated zone narrows nothing: a Texas address is Chicago's or Denver's)."""
    return _contact_zones(stated, number_zones(address), region_zones(region))


@lru_cache(maxsize=4_096)
def _contact_zones(stated: str, *sources: tuple[str, ...]) -> tuple[str, ...]:
    other = {zone for zones in sources if zones and stated not in zones for zone in zones}
    other.discard(stated)
    return (stated, *sorted(other))


@lru_cache(maxsize=256)
def region_zones(region: str | None) -> tuple[str, ...]:
    """The zones of an ISO 3166-2 region (`US-TX`), or () when none is known: only US states and
    territories, whose zones the `us` package keeps; elsewhere the stated zone is the country's."""
    country, _, code = (region or "").partition("-")
    if country != "US" or not code:
        return ()
    import us.states  # here, once per region: `us` takes ~60 ms to import, and every process imports hours

    state = us.states.lookup(code, field="abbr")
    return tuple(state.time_zones) if state is not None else ()
