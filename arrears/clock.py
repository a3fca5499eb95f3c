"""Instants and business dates. The cycle runs "as of" one instant, so any day can be replayed."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

__all__ = ["as_of_or_now", "business_date", "parse_instant", "utc"]


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant with an offset (`Z` accepted); a naive time is ambiguous and refused."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 instant, e.g. 2026-12-01T09:00:00+08:00") from None
    if value.tzinfo is None:
        # The example is the instant as read, written whole: `2026-12-01` alone is midnight, and
        # `2026-12-01+08:00` a date and a time (fromisoformat takes any character between them).
        whole = f"{value:%Y-%m-%dT%H:%M:%S}"
        raise ValueError(f"{text!r} has no UTC offset; write e.g. {whole}+08:00 or {whole}Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+08:00 (.NET's DateTimeOffset.MinValue in China's zone, a placeholder)
        # is valid ISO 8601, but its UTC instant falls before year 1: bad input, as any other.
        raise ValueError(f"{text!r} is outside the years 1 to 9999 once taken to UTC") from None


def business_date(instant: datetime, lender_timezone: str) -> date:
    """The lender's calendar day at `instant`: what days past due are counted against."""
    return instant.astimezone(ZoneInfo(lender_timezone)).date()


def utc(instant: datetime) -> datetime:
    return instant.astimezone(UTC)


def as_of_or_now(text: str | None) -> datetime:
    """The instant a run is "as of": the given ISO 8601 instant, or the wall clock now."""
    return parse_instant(text) if text else datetime.now(UTC)
