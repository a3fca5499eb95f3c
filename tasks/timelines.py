"""An account's timeline in the Prefect UI: the table artifact `account-<id>` that each run of
the single-account path leaves, a new version of one artifact per account.

The daily cycle leaves counts, never an account (a million artifacts would bury the Prefect
UI). An operator who follows one account (a reply came in, a payment, a court status, a
quarantine retry) opens its `account A-1042` run, or the Artifacts page under its key, and reads
what happened to it there, as `arrears show` prints it in a terminal: the newest events, with
every phone number and national id in them masked (DESIGN §9).
"""

import hashlib
import re

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from arrears.masking import mask_text
from arrears.storage import read_only
from arrears.storage.accounts import account_story
from tasks.database import engine
from tasks.logs import run_logger

__all__ = ["TIMELINE_EVENTS", "publish_timeline", "timeline_key"]

# The newest events an artifact shows; `arrears show` prints them all.
TIMELINE_EVENTS = 50
# The characters of a cell shown; `arrears show` prints the whole text.
CELL_CHARS = 300

# The Prefect UI renders every text cell of a table artifact as markdown (its ArtifactDataTable):
# a borrower's reply "[pay here](http://…)" would be a link in an operator's page, "![](…)" an
# image fetched from the sender's server, "<img …>" HTML, "www.x.example" a link. Each character
# that starts markdown, HTML or an autolink is escaped with a backslash (CommonMark shows an
# escaped punctuation character as written), so a cell reads as the text it holds.
_MARKDOWN = re.compile(r"([\\`*_\[\]()#+\-.!|<>~&:@])")

_NOT_IN_KEYS = re.compile(r"[^a-z0-9]+")


def timeline_key(account_id: str) -> str:
    """The artifact key of an account: Prefect allows lowercase letters, digits and dashes, so
    `A-1042` is `account-a-1042`. An id with anything else in it (`A_1`, `a.1`, `贷-1`) gets a
    digest of itself too, so that `A_1` and `A.1` do not share a key. Ids that differ only in case
    would (the description names the exact id)."""
    slug = _NOT_IN_KEYS.sub("-", account_id.lower()).strip("-")
    if slug == account_id.lower():
        return f"account-{slug}"
    digest = hashlib.sha256(account_id.encode()).hexdigest()[:8]
    return f"account-{slug}-{digest}" if slug else f"account-{digest}"


@task(name="publish-timeline", cache_policy=NO_CACHE, persist_result=False)
def publish_timeline(account_id: str) -> str | None:
    """Publish the account's timeline as its artifact; its key, or None for an unknown account (or
    when the Prefect API refused it: the account's work is done and stored, and a view of it never
    fails the run)."""
    with read_only(engine()) as connection:
        story = account_story(connection, account_id)
    if story is None:
        return None
    a, events = story.account, story.timeline
    shown = events[-TIMELINE_EVENTS:][::-1]  # newest first, as an operator reads a feed
    rows = [
        {
            "at": e.at.isoformat(timespec="seconds"),
            "kind": e.kind,
            "actor": _cell(e.actor or ""),
            "detail": _cell(mask_text(e.detail or "")),
        }
        for e in shown
    ]
    said = (
        f"Account {account_id}: {a.stage}, {a.days_past_due} days past due, segment {a.segment}, "
        f"{', '.join(story.holds) or 'no holds'}. The newest {len(shown)} of {len(events)} events; "
        f"`arrears show {account_id}` prints them all."
    )
    key = timeline_key(account_id)
    try:
        create_table_artifact(key=key, table=rows, description=said)
    except Exception:
        run_logger("arrears.timeline").warning(
            "timeline artifact of %s not published", account_id, exc_info=True
        )
        return None
    return key


def _cell(text: str) -> str:
    """`text` as a table cell the UI shows as written: on one line, at most `CELL_CHARS`
    characters, its markdown and HTML escaped."""
    text = " ".join(text.split())
    if len(text) > CELL_CHARS:
        text = text[: CELL_CHARS - 1] + "…"
    return _MARKDOWN.sub(r"\\\1", text)
