"""Reporting periods: a calendar month, written `YYYY-MM`, and the months before it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

__all__ = ["Period"]

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, slots=True, order=True)
class Period:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Period:
        """`2026-11` → Period(2026, 11); ValueError for anything else."""
        match = _PERIOD.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not a reporting period: write YYYY-MM, e.g. 2026-11")
        return cls(int(match[1]), int(match[2]))

    def over_by(self, today: date) -> Period:
        """This period, once it is over on `today` (the lender's business date); ValueError for a
        month not over yet: its file would report the month's end before it came (a typo of the
        year sent the bureau a month of 2099)."""
        if self.last_day >= today:
            raise ValueError(
                f"{self} is not over yet (today is {today.isoformat()}): furnish a month once it ended"
            )
        return self

    @classmethod
    def of(cls, day: date) -> Period:
        return cls(day.year, day.month)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return (self + 1).first_day - timedelta(days=1)

    def __add__(self, months: int) -> Period:
        index = self.year * 12 + self.month - 1 + months
        return Period(index // 12, index % 12 + 1)

    def __sub__(self, months: int) -> Period:
        return self + (-months)

    def before(self, count: int) -> list[Period]:
        """The `count` periods before this one, most recent first (the Payment History Profile order)."""
        return [self - n for n in range(1, count + 1)]

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"
