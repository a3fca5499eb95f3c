"""The account's timeline artifact as the Prefect UI shows it: its table cells are rendered as
markdown there (the UI's ArtifactDataTable), so a borrower's words must read as text."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from sqlalchemy import Engine

from tests.factories import account_record
from tests.later_stage_helpers import import_rows

HOSTILE = (
    "STOP. Pay here instead: [pay here](http://evil.example) | pipes | "
    "<img src=x onerror=alert(1)> ![t](http://evil.example/t.png)\n# HEADING\n> quoted **bold**"
)


def test_a_borrowers_markdown_and_html_show_as_text_in_the_timeline(
    sqlite_engine: Engine, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply (or any event's text) with a link, an image, HTML, a heading or table pipes shows
    in the artifact's cell as the words it is, on one line, its length bounded; numbers still
    masked."""
    from arrears.settings import get_settings
    from arrears.storage.accounts import note
    from tasks import timelines

    monkeypatch.setenv("ARREARS_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    import_rows(sqlite_engine, tmp_path, [account_record(account_id="A-MD")])
    with sqlite_engine.begin() as c:
        note(
            c,
            account_id="A-MD",
            at=datetime(2026, 12, 1, 22, tzinfo=UTC),
            kind="note",
            detail=f"{HOSTILE} call 515-281-0000 " + "A" * 5000,
            data={},
            actor="borrower [x](http://evil.example)",
        )
    published: dict[str, Any] = {}
    monkeypatch.setattr(timelines, "create_table_artifact", lambda **kw: published.update(kw))
    assert timelines.publish_timeline.fn("A-MD") == "account-a-md"
    [row] = [r for r in published["table"] if r["kind"] == "note"]
    md = MarkdownIt("commonmark").enable("table")
    for cell in (row["detail"], row["actor"]):
        tokens = [t for block in md.parse(cell) for t in (block.children or [block])]
        kinds = {t.type for t in tokens}
        assert kinds <= {"paragraph_open", "paragraph_close", "inline", "text", "softbreak"}, (cell, kinds)
    shown = md.render(row["detail"])
    assert "[pay here](http://evil.example)" in shown and "&lt;img src=x" in shown and "# HEADING" in shown
    assert "515-281-0000" not in row["detail"] and "0000" in row["detail"]
    assert len(row["detail"]) < 600
