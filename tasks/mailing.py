"""The letters' mailing step: the pending letters rendered and handed to the letters provider, and
the accounts whose notice of sale is now mailed closed.

It waits on the provider (`ARREARS_LETTERS_CONCURRENCY` letters in its hands at once), and decides
nothing the dispatch reads: the daily cycle runs it beside the dispatch, as it runs the bureau
pulls, rather than before it. `arrears dispatch` runs it after its own dispatch
(`flows.repossession_review.follow_letters_and_orders`).
"""

from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from arrears.storage import read_only
from arrears.storage.reports import letters_sent
from tasks.database import engine
from tasks.letters import letters_unsent, send_letters
from tasks.recovery import settle_recoveries

__all__ = ["cycle_letters", "mail_letters"]


@task(name="mail-letters", cache_policy=NO_CACHE, persist_result=False)
def mail_letters(as_of: datetime | None = None, cycle_id: int | None = None) -> dict[str, int]:
    """Send the pending letters (none: one query); a notice of sale the provider answers as mailed
    closes its account now, not at the next run. `as_of` dates what is written (the clock by
    default), and decides which letters are still fresh enough to go (`send_letters`). Letters in
    the post are looked up before the reviews, not here (`follow_orders`). `cycle_id`: the daily
    cycle run mailing them (`cycle_letters` counts those it sends)."""
    if not letters_unsent():
        return {}
    return send_letters(as_of=as_of or datetime.now(UTC), cycle_id=cycle_id) | settle_recoveries(as_of)


def cycle_letters(as_of: datetime) -> dict[str, int]:
    """The letters the daily cycle at `as_of` sent, over all its runs (a run killed among the
    letters, then its rerun), each once (`reports.letters_sent`): not only those of the run that
    finished, whose own count misses what the killed run handed over."""
    with read_only(engine()) as connection:
        return {"letters_sent": letters_sent(connection, as_of)}
