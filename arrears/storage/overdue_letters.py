"""Letters the law makes us send by a date, past it and not sent: what the cycle's report alerts
on (`arrears.letters.overdue`) and `arrears letters list --overdue` lists.

A letter's `deadline` is one of two things, by its kind. A right-to-cure notice's is the end of its
cure period, counted from its mailing and set by it: nothing to send by. The explanation a borrower
asked for (`arrears sale explain`, UCC 9-616(b)(1)(B)) is given, when it is written, the first
instant after the day it must be sent by, 14 days after the request came (`mail_by`, from
`tasks.sales`); failing it costs $500 a case (9-625(c)(2), (e)(6)). A GB notice of sums in arrears
is given, when it is written, the first instant after the last of the 14 days beginning with the day
it was first owed (Consumer Credit Act 1974 s.86B(2), `mail_by`, from `tasks.lifecycle_letters`);
until it is given the agreement cannot be enforced, nor interest or default sums charged for the
time (s.86D). A US validation notice is given the first instant after the fifth business day
after the account's first message (Reg F 1006.34(a)(1)). Only such kinds (`MAIL_BY`) are read here.

Sent is mailed, as the provider's mailed event says ("send": deposit in the mail, UCC
1-201(b)(36)), and as `tasks.sales` answers a request: a letter the provider took but has not
mailed yet (`created`) is not sent, nor one pending, blocked or refused (`failed`). One mailed in
time and returned to sender was sent, as the law counts it: it is not listed (`tasks.sales` still
holds its request open, and its readdressing is a person's). A letter mailed late leaves the list
once mailed: its lateness is on the timeline (`explanation_answered`, `late`), and the alert is
about what is still to send.

`mail_by` gives a letter of such a kind its deadline when it is written. `overdue_letters` only
reads. Functions take the caller's connection and do not commit.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from arrears.recovery import MAILED
from arrears.storage._common import day_start
from arrears.storage.bulk import among
from arrears.storage.letters import STATUSES
from arrears.storage.tables import letter

__all__ = ["MAIL_BY", "UNSENT", "OverdueLetter", "mail_by", "overdue_letters"]

# The kinds whose `deadline` is the instant they must be mailed before.
MAIL_BY = ("deficiency_explanation", "arrears_notice", "validation_notice")
# Not (yet) in the post: every status but the mailed ones.
UNSENT = tuple(s for s in STATUSES if s not in MAILED)


@dataclass(frozen=True, slots=True)
class OverdueLetter:
    id: int
    account_id: str
    kind: str
    deadline: datetime
    status: str
    reason: str | None  # why it is blocked or was refused, if it was

    def as_json(self) -> dict[str, Any]:
        """The keys `LetterRow.as_json` gives them."""
        return {
            "id": self.id,
            "account_id": self.account_id,
            "kind": self.kind,
            "status": self.status,
            "reason": self.reason,
            "deadline": self.deadline.isoformat(),
        }


def overdue_letters(connection: Connection, *, now: datetime) -> list[OverdueLetter]:
    """The letters of a `MAIL_BY` kind whose deadline is at or before `now` and which are not
    mailed, oldest deadline first. One query on the status index (`ix_letter_status`): only the
    letters not in the post are read, never the mailed and delivered ones a book piles up."""
    rows = connection.execute(
        select(
            letter.c.id,
            letter.c.account_id,
            letter.c.kind,
            letter.c.deadline,
            letter.c.status,
            letter.c.reason,
        )
        .where(
            letter.c.status.in_(UNSENT),
            letter.c.mailed_at.is_(None),  # mailed, then returned: sent when mailed
            letter.c.kind.in_(MAIL_BY),
            letter.c.deadline <= now,
        )
        .order_by(letter.c.deadline, letter.c.id)
    ).all()
    return [OverdueLetter(r.id, r.account_id, r.kind, r.deadline, r.status, r.reason) for r in rows]


def mail_by(connection: Connection, letters: Iterable[tuple[str, date, str]]) -> None:
    """Give each letter of `letters` (its key, the last day it may be mailed, and the time zone of
    that day) the first instant after that day as its `deadline` (as a right-to-cure letter's is
    the first instant after its period), once: a letter written again in its place keeps the day
    it was owed by. A letter not mailed by then is late (`overdue_letters`). One statement a day
    and zone: the thousands of notices a cycle writes share a handful."""
    by_day: dict[tuple[date, str], list[str]] = {}
    for key, last_day, timezone in letters:
        by_day.setdefault((last_day, timezone), []).append(key)
    for (last_day, timezone), keys in by_day.items():
        connection.execute(
            update(letter)
            .where(among(letter.c.idempotency_key, keys), letter.c.deadline.is_(None))
            .values(deadline=day_start(last_day + timedelta(days=1), timezone))
        )
