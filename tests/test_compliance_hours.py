"""Contact windows in the borrower's local time (issue 4, part 2): exact across DST gaps and folds,
closed days, and the intersection of the stated zone with the phone number's zones."""

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import timezone as pn_timezone
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

from arrears.compliance.hours import (
    NoCommonWindow,
    contact_allowed,
    contact_zones,
    next_allowed_instant,
    number_zones,
)
from arrears.jurisdictions import Hours, profile
from arrears.simulate import generate_portfolio

# Odd offsets (Kathmandu +05:45, St John's -03:30), half-hour DST (Lord Howe), two-hour DST
# (Troll), DST at midnight (Havana, Santiago), DST that stops for Ramadan (Casablanca), a zone
# that skipped a whole day (Apia, 2011), and plain ones.
ZONES = [
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Antarctica/Troll",
    "America/Havana",
    "America/Santiago",
    "Africa/Casablanca",
    "Pacific/Chatham",
    "Pacific/Apia",
    "America/New_York",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Dublin",
    "Asia/Shanghai",
    "Asia/Urumqi",
    "Australia/Adelaide",
]


def _wall_allowed(instant: datetime, zone: str, hours: Hours) -> bool:
    """The rule read off the wall clock with the standard library alone: the test's own oracle."""
    local = instant.astimezone(ZoneInfo(zone))
    if local.weekday() in hours.closed_weekdays:
        return False
    if hours.closed_on_holidays and hours.holidays:
        import holidays

        country, _, sub = hours.holidays.partition("-")
        if local.date() in holidays.country_holidays(country, subdiv=sub or None, years=local.year):
            return False
    return hours.start <= local.time() < hours.end


@cache
def _transitions(zone: str) -> tuple[datetime, ...]:
    """UTC instants at which `zone` changes its offset in 2025-2027, found by the standard library."""
    tz = ZoneInfo(zone)
    found = []
    t = datetime(2025, 1, 1, tzinfo=UTC)
    before = t.astimezone(tz).utcoffset()
    while t < datetime(2028, 1, 1, tzinfo=UTC):
        nxt = t + timedelta(hours=1)
        after = nxt.astimezone(tz).utcoffset()
        if after != before:
            lo, hi = t, nxt
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                lo, hi = (mid, hi) if mid.astimezone(tz).utcoffset() == before else (lo, mid)
            found.append(hi)
            before = after
        t = nxt
    return tuple(found)


@st.composite
def zone_and_instant(draw: st.DrawFn) -> tuple[str, datetime]:
    zone = draw(st.sampled_from(ZONES))
    moments = _transitions(zone)
    if moments and draw(st.booleans()):
        base = draw(st.sampled_from(moments))
        instant = base + timedelta(seconds=draw(st.integers(-36 * 3600, 36 * 3600)))
    else:
        instant = draw(st.datetimes(datetime(2025, 6, 1), datetime(2027, 6, 1), timezones=st.just(UTC)))
    return zone, instant


@st.composite
def windows(draw: st.DrawFn) -> Hours:
    """Any window of whole minutes, so that its edges land in gaps and folds too."""
    start = draw(st.integers(0, 23 * 60 + 58))
    end = draw(st.integers(start + 1, 23 * 60 + 59))
    closed = draw(st.frozensets(st.integers(0, 6), max_size=3))
    holidays_ = draw(st.sampled_from([None, "IE", "US-CA", "CN"]))
    return Hours(
        start=time(start // 60, start % 60),
        end=time(end // 60, end % 60),
        closed_weekdays=closed,
        closed_on_holidays=holidays_ is not None and draw(st.booleans()),
        holidays=holidays_,
    )


@settings(max_examples=400, deadline=None)
@given(zone_and_instant(), windows(), st.lists(st.floats(0, 1, exclude_max=True), min_size=3, max_size=8))
def test_property_next_allowed_instant_is_allowed_and_nothing_earlier_is(
    zone_instant: tuple[str, datetime], hours: Hours, fractions: list[float]
) -> None:
    """The answer reads inside the window on the wall clock, and no instant between the question
    and the answer does (checked at its last microsecond, at every offset change and at random)."""
    zone, instant = zone_instant
    found = next_allowed_instant(instant, zone, hours)
    assert found >= instant
    assert _wall_allowed(found, zone, hours), (found, zone, hours)
    if found > instant:
        probes = [instant, found - timedelta(microseconds=1)]
        probes += [t for t in _transitions(zone) if instant <= t < found]
        probes += [instant + (found - instant) * f for f in fractions]
        for probe in (p for p in probes if p < found):  # timedelta * float rounds to the microsecond
            assert not _wall_allowed(probe, zone, hours), (probe, found, zone, hours)
    assert contact_allowed(instant, zone, hours) is (found == instant)


@settings(max_examples=200, deadline=None)
@given(zone_and_instant(), st.sampled_from(ZONES), st.sampled_from(["CN", "US", "GB", "IE"]))
def test_property_two_zones_allow_only_their_intersection(
    zone_instant: tuple[str, datetime], other: str, code: str
) -> None:
    """With a stated zone and a number's zone, the answer is allowed in both and nothing earlier is."""
    zone, instant = zone_instant
    hours = profile(code).hours
    try:
        found = next_allowed_instant(instant, (zone, other), hours)
    except NoCommonWindow:
        # Then no instant of the next month suits both: probe every quarter hour of a week.
        assert not any(
            _wall_allowed(t, zone, hours) and _wall_allowed(t, other, hours)
            for t in (instant + timedelta(minutes=15 * k) for k in range(7 * 96))
        )
        return
    assert _wall_allowed(found, zone, hours) and _wall_allowed(found, other, hours)
    step = (found - instant) / 50 if found > instant else timedelta(0)
    for k in range(50 if found > instant else 0):
        probe = instant + step * k
        assert not (_wall_allowed(probe, zone, hours) and _wall_allowed(probe, other, hours)), (probe, found)


def test_window_edge_in_a_spring_forward_gap_opens_at_the_transition() -> None:
    """A window opening at 02:30 on the night New York skips 02:00-03:00 opens at 03:00 EDT, the
    first instant whose wall clock reads past 02:30, not half an hour later."""
    hours = Hours(start=time(2, 30), end=time(22))
    midnight = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # 00:00 EST on 8 March 2026
    assert next_allowed_instant(midnight, "America/New_York", hours) == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)


def test_window_edge_in_a_fall_back_fold_follows_the_wall_clock() -> None:
    """When New York repeats 01:00-02:00, a window ending at 01:30 is closed at 01:45 EDT and open
    again at 01:00 EST, the second time the wall clock reads 01:00."""
    hours = Hours(start=time(0), end=time(1, 30))
    first_pass = datetime(2026, 11, 1, 5, 45, tzinfo=UTC)  # 01:45 EDT
    assert not contact_allowed(first_pass, "America/New_York", hours)
    assert next_allowed_instant(first_pass, "America/New_York", hours) == datetime(
        2026, 11, 1, 6, 0, tzinfo=UTC
    )
    assert contact_allowed(datetime(2026, 11, 1, 6, 15, tzinfo=UTC), "America/New_York", hours)  # 01:15 EST


def test_lord_howe_half_hour_shift_and_kathmandu_quarter_hour_offset() -> None:
    """08:00 local is 21:00 UTC in Lord Howe summer (+11) and 02:15 UTC in Kathmandu (+05:45)."""
    cn = profile("CN").hours
    assert next_allowed_instant(datetime(2026, 12, 1, 12, tzinfo=UTC), "Australia/Lord_Howe", cn) == datetime(
        2026, 12, 1, 21, 0, tzinfo=UTC
    )
    assert next_allowed_instant(datetime(2026, 12, 1, 0, tzinfo=UTC), "Asia/Kathmandu", cn) == datetime(
        2026, 12, 1, 2, 15, tzinfo=UTC
    )
    us = profile("US").hours  # St John's: 08:00 NDT (-02:30) is 10:30 UTC
    assert next_allowed_instant(datetime(2026, 7, 1, 9, tzinfo=UTC), "America/St_Johns", us) == datetime(
        2026, 7, 1, 10, 30, tzinfo=UTC
    )


def test_ireland_closes_sundays_and_public_holidays() -> None:
    """IE: Saturday 20:59 is open; Sunday is closed all day; St Patrick's Day moves contact to the
    next morning at 09:00."""
    ie = profile("IE")
    assert contact_allowed(datetime(2026, 3, 14, 20, 59, tzinfo=UTC), "Europe/Dublin", ie)  # Saturday
    sunday_noon = datetime(2026, 3, 15, 12, tzinfo=UTC)
    assert next_allowed_instant(sunday_noon, "Europe/Dublin", ie) == datetime(2026, 3, 16, 9, tzinfo=UTC)
    patrick = datetime(2026, 3, 17, 10, tzinfo=UTC)  # Tuesday, a public holiday
    assert next_allowed_instant(patrick, "Europe/Dublin", ie) == datetime(2026, 3, 18, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("code", "zone", "opens", "closes"),
    [
        # Reg F 1006.6(b)(1)(i): 08:00-21:00 local; a Tuesday in Los Angeles (UTC-8).
        (
            "US",
            "America/Los_Angeles",
            datetime(2026, 12, 1, 16, tzinfo=UTC),
            datetime(2026, 12, 2, 5, tzinfo=UTC),
        ),
        # CBA 2026 guideline: none 22:00-08:00 local; a Tuesday in Shanghai (UTC+8).
        ("CN", "Asia/Shanghai", datetime(2026, 12, 1, 0, tzinfo=UTC), datetime(2026, 12, 1, 14, tzinfo=UTC)),
    ],
)
def test_the_window_opens_at_its_first_minute_and_is_shut_at_its_last(
    code: str, zone: str, opens: datetime, closes: datetime
) -> None:
    """08:00:00 local is inside and a second before it is not; the closing minute (21:00 US, 22:00
    CN) is outside and a second before it inside: the window is [start, end), as the rules state it."""
    rules = profile(code)
    second = timedelta(seconds=1)
    assert not contact_allowed(opens - second, zone, rules)
    assert contact_allowed(opens, zone, rules)
    assert contact_allowed(closes - second, zone, rules)
    assert not contact_allowed(closes, zone, rules)
    assert next_allowed_instant(closes - second, zone, rules) == closes - second
    assert next_allowed_instant(closes, zone, rules) == opens + timedelta(days=1)


def test_us_holidays_do_not_close_reg_f_hours() -> None:
    """Reg F has no holiday rule: 08:00 on Christmas Day in Los Angeles is open for US-CA."""
    assert contact_allowed(datetime(2026, 12, 25, 16, 0, tzinfo=UTC), "America/Los_Angeles", profile("US-CA"))


def test_stated_zone_and_number_zone_disagreeing_allow_only_the_overlap() -> None:
    """A Xinjiang borrower (Asia/Urumqi) with a mainland number (Asia/Shanghai) may be texted only
    when both read 08:00-22:00: from 08:00 Urumqi time to 22:00 Shanghai time."""
    zones = contact_zones("Asia/Urumqi", "+8613912345678")
    assert zones == ("Asia/Urumqi", "Asia/Shanghai")
    cn = profile("CN")
    assert next_allowed_instant(datetime(2026, 12, 1, 1, tzinfo=UTC), zones, cn) == datetime(
        2026, 12, 1, 2, tzinfo=UTC
    )
    assert next_allowed_instant(datetime(2026, 12, 1, 14, 30, tzinfo=UTC), zones, cn) == datetime(
        2026, 12, 2, 2, tzinfo=UTC
    )
    assert contact_zones("America/Los_Angeles", "+12133734253") == ("America/Los_Angeles",)  # they agree


@pytest.mark.parametrize(
    ("stated", "number", "region", "zones"),
    [
        # Reg F's example: an area code in one zone, a home address in another.
        ("America/New_York", "+12127365600", "US-CA", ("America/New_York", "America/Los_Angeles")),
        ("America/Chicago", "+12143735600", "US-TX", ("America/Chicago",)),  # Texas is Chicago's too
        ("America/Denver", "+19155550100", "US-TX", ("America/Denver",)),  # El Paso
        ("America/New_York", "+12127365600", "US-ZZ", ("America/New_York",)),  # no such state
        ("America/New_York", "+12127365600", None, ("America/New_York",)),
        ("Europe/London", "+447700900123", "GB-ENG", ("Europe/London",)),  # the country's zone
    ],
)
def test_a_mailing_address_in_another_zone_joins_the_window(
    stated: str, number: str, region: str | None, zones: tuple[str, ...]
) -> None:
    """The home address's state is a possible location as the number is: where its zones do not
    include the stated one, they are added, and only the overlap of the windows is allowed."""
    assert contact_zones(stated, number, region) == zones


def test_zones_that_never_overlap_raise() -> None:
    """A one-hour window in Shanghai and New York at once never opens: no instant is invented."""
    narrow = Hours(start=time(9), end=time(10))
    with pytest.raises(NoCommonWindow):
        next_allowed_instant(datetime(2026, 12, 1, tzinfo=UTC), ("Asia/Shanghai", "America/New_York"), narrow)


@given(st.sampled_from(sorted(TIMEZONE_DATA)), st.text("0123456789", max_size=10))
def test_number_zones_are_the_longest_table_prefix_of_the_first_nine_digits(prefix: str, tail: str) -> None:
    """Looked up by the few digits that can decide (the cache's key), a number gets the zones of
    the longest prefix in phonenumbers' table among its first nine digits: numbers that begin
    with every prefix of the table, the long ones (+1 208 3…, +61 …) included."""
    digits = (prefix + tail)[:TIMEZONE_LONGEST_PREFIX]
    longest = next(digits[:n] for n in range(len(digits), 0, -1) if digits[:n] in TIMEZONE_DATA)
    assert number_zones("+" + prefix + tail) == tuple(z for z in TIMEZONE_DATA[longest] if z != "Etc/Unknown")


def test_number_zones_agree_with_phonenumbers_for_the_simulated_book() -> None:
    """The prefix lookup gives phonenumbers' own zones for every number the simulator makes."""
    checked = 0
    for row in generate_portfolio(400, seed=11, business_date=date(2026, 12, 1)):
        for number in filter(None, (row.phone, row.alt_phone)):
            expected = tuple(
                z for z in pn_timezone.time_zones_for_number(phonenumbers.parse(number)) if z != "Etc/Unknown"
            )
            assert number_zones(number) == expected, number
            checked += 1
    assert checked > 400
    assert number_zones("+447700900123") == ("Europe/Guernsey", "Europe/Isle_of_Man", "Europe/London")
    assert number_zones("not a number") == () and number_zones(None) == ()
