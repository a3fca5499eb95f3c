"""When a borrower may be contacted: the allowed window in the borrower's own local time.

Windows are built on local wall-clock times with pendulum, so a window that opens at 08:00 opens
at 08:00 local on both sides of a DST change, and a wall time that falls in a gap resolves
forward (never early). Sundays and public holidays are closed where the profile says so.
"""

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import holidays
import pendulum

from arrears.jurisdictions import Profile

__all__ = ["contact_allowed", "next_allowed_instant", "window_label"]

_SEARCH_DAYS = 31  # IE closes Sundays and holidays; no profile closes a month in a row


def contact_allowed(instant: datetime, timezone: str, profile: Profile) -> bool:
    """True when `instant` lies inside the profile's window in `timezone`."""
    return next_allowed_instant(instant, timezone, profile) == instant.astimezone(UTC)


@lru_cache(maxsize=65_536)
def next_allowed_instant(instant: datetime, timezone: str, profile: Profile) -> datetime:
    """The earliest instant at or after `instant` when contact is allowed, in UTC.

    Cached: a cycle asks the same question for every account sharing a zone and a profile.
    """
    local = pendulum.instance(instant).in_timezone(timezone)
    day = local.date()
    for _ in range(_SEARCH_DAYS):
        if _open_on(day, profile):
            start, end = _window(day, timezone, profile)
            if local < end:
                at = max(local, start).in_timezone("UTC")
                return datetime(at.year, at.month, at.day, at.hour, at.minute, at.second, at.microsecond, tzinfo=UTC)
        day += timedelta(days=1)
    raise ValueError(f"no allowed contact time within {_SEARCH_DAYS} days for {profile.code} in {timezone}")


def window_label(profile: Profile) -> str:
    """How a deferral reason names the rule: `CN 08:00-22:00 local`."""
    return f"{profile.code} {profile.contact_start:%H:%M}-{profile.contact_end:%H:%M} local"


def _window(day: date, timezone: str, profile: Profile) -> tuple[pendulum.DateTime, pendulum.DateTime]:
    start = pendulum.datetime(
        day.year, day.month, day.day, profile.contact_start.hour, profile.contact_start.minute, tz=timezone
    )
    end = pendulum.datetime(day.year, day.month, day.day, profile.contact_end.hour, profile.contact_end.minute, tz=timezone)
    return start, end


def _open_on(day: date, profile: Profile) -> bool:
    if day.weekday() in profile.no_contact_weekdays:
        return False
    return not (profile.no_contact_on_holidays and profile.holidays_country and day in _holidays(profile.holidays_country, day.year))


@lru_cache(maxsize=64)
def _holidays(country: str, year: int) -> holidays.HolidayBase:
    return holidays.country_holidays(country, years=year)
