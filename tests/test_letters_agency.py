"""Issue 12 end to end: the right-to-cure notice mailed as a letter through the sandbox Lob, its
cure period counted from the mailed event, and the approved repossession assigned to (and called
off at) the sandbox agency; everything over HTTP against the sandboxes, on a real database."""

import base64
import hashlib
import io
import json
import logging
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pypdf
import pytest
from sqlalchemy import Engine, func, select, update
from typer.testing import CliRunner

from arrears.letters import render
from arrears.letters.notices import context_from_json
from arrears.models import AgencyAssignment, Letter
from tests.factories import account_record, write_csv
from tests.later_stage_helpers import (
    account,
    account_t,
    at,
    events,
    import_rows,
    put_in_review,
    review_t,
    rows,
    us_account,
)

IA = "A-IA1"
assignment_t = AgencyAssignment.__table__  # type: ignore[attr-defined]
letter_t = Letter.__table__  # type: ignore[attr-defined]


def _cli(*args: str) -> Any:
    from deployments.cli import app

    result = CliRunner().invoke(app, list(args))
    return result


def _review_step(as_of: str) -> None:
    """The cycle's review step and its letters, as `start_reviews` runs them."""
    from tasks.letters import send_letters, track_letters
    from tasks.review import prepare_reviews

    prepare_reviews.fn(at(as_of))
    send_letters.fn(as_of=at(as_of))
    track_letters.fn()


def _decide(db_url: str, as_of: str) -> Any:
    return _cli(
        "review",
        "decide",
        IA,
        "--decision",
        "repossess",
        "--reviewer",
        "Ana Ruiz",
        "--reason",
        "no payment after the notice",
        "--as-of",
        as_of,
        "--database",
        db_url,
    )


def _refused(result: Any) -> bool:
    from deployments.cli._common import CliError

    return isinstance(result.exception, CliError) and result.exception.exit_code == 2


def _rewritten(target: str, reason: str, as_of: str, db_url: str) -> Any:
    """`arrears letters rewrite TARGET` (a letter's id, or `--blocked-for=CAUSE`), which must
    succeed: what it printed as JSON."""
    done = _cli(
        "letters", "rewrite", target, "--reason", reason, "--as-of", as_of, "--database", db_url, "--json"
    )
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def _pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)


@pytest.mark.usefixtures("prefect_harness")
def test_us_ia_notice_mailed_deadline_from_mailed_event_order_assigned_then_called_off(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any, agency_sandbox: Any
) -> None:
    """A US-IA review mails its cure notice (PDF naming the amount and deadline) to the sandbox Lob;
    the deadline counts from the mailed event found by `arrears dispatch`; no decision before it;
    the approved order reaches the sandbox agency, and a later payment cancels it there."""
    from arrears.storage.installation import installation_id

    put_in_review(mail_db, tmp_path, IA)
    _review_step("2026-12-01T17:00:00Z")

    [sent] = letters_sandbox.letters()
    listed = json.loads(_cli("letters", "list", "--account", IA, "--json", "--database", db_url).stdout)
    [letter] = listed
    assert (letter["kind"], letter["status"], letter["mailed_at"], letter["deadline"]) == (
        "right_to_cure",
        "created",
        None,
        None,
    )
    assert sent["pdf_sha256"] == letter["pdf_sha256"] and sent["idempotency_key"].endswith("right-to-cure")
    out = tmp_path / "notice.pdf"
    assert (
        _cli("letters", "pdf", str(letter["id"]), "--output", str(out), "--database", db_url).exit_code == 0
    )
    text = _pdf_text(out.read_bytes())
    assert "AMOUNT TO CURE: $825.00" in text and "CURE DEADLINE: " in text
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # the borrower's name and address
    # A FIFO, a device, a directory or no name at all at --output is refused (exit 2), never
    # replaced by the PDF: as root, `--output /dev/stdout` had turned the device into a file.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for target in (str(fifo), str(tmp_path), "", str(out / "x.pdf")):
        refused = _cli("letters", "pdf", str(letter["id"]), "--output", target, "--database", db_url)
        assert getattr(refused.exception, "exit_code", None) == 2, (target, refused.output)
        assert str(refused.exception).startswith(f"--output {target}")
    assert stat.S_ISFIFO(fifo.stat().st_mode)

    not_mailed = _decide(db_url, "2027-01-30T12:00:00Z")
    assert _refused(not_mailed) and "has not gone out" in str(not_mailed.exception)

    # Mailed a week later than planned: 20 days from 8 December is Monday 28 December.
    letters_sandbox.advance(sent["id"], "mailed", at="2026-12-08T15:00:00Z")
    dispatched = _cli("dispatch", "--as-of", "2026-12-08T18:00:00Z", "--database", db_url, "--json")
    assert dispatched.exit_code == 0, dispatched.output
    [review] = rows(mail_db, review_t, IA)
    assert review.cure_deadline == datetime(2026, 12, 29, 6, tzinfo=UTC)
    [letter] = json.loads(_cli("letters", "list", "--json", "--database", db_url).stdout)
    assert (letter["status"], letter["mailed_at"]) == ("mailed", "2026-12-08T15:00:00+00:00")

    early = _decide(db_url, "2026-12-28T23:00:00Z")
    assert _refused(early) and "runs until 2026-12-29T06:00:00+00:00" in str(early.exception)
    decided = _decide(db_url, "2026-12-29T15:00:00Z")
    assert decided.exit_code == 0, decided.output
    [assignment] = _assignments(agency_sandbox)
    assert assignment["our_status"] == "assigned"
    with mail_db.connect() as c:  # namespaced: another database's RO-1 of A-IA1 is another car
        assert assignment["reference"] == f"{installation_id(c)}-assignment-a-ia1-ro-1"

    pays = write_csv(
        tmp_path / "payments.csv",
        [
            {
                "payment_id": "P-IA1",
                "account_id": IA,
                "amount": "825.00",
                "received_at": "2026-12-30T10:00:00-06:00",
            }
        ],
    )
    paid = _cli("import", "payments", str(pays), "--database", db_url)
    assert paid.exit_code == 0, paid.output
    cycled = _cli("cycle", "--as-of", "2026-12-30T18:00:00Z", "--database", db_url)
    assert cycled.exit_code in (0, 4), cycled.output
    [assignment] = _assignments(agency_sandbox)
    assert assignment["our_status"] == "cancelled"
    shown = json.loads(_cli("show", IA, "--json", "--database", db_url).stdout)
    assert [x["status"] for x in shown["letters"]] == ["mailed"]
    assert [x["status"] for x in shown["agency_assignments"]] == ["cancelled"]
    # The amount as the currency writes it, not storage's four places (`825.0000`).
    assert shown["agency_assignments"][0]["reason"].startswith("payment P-IA1 of USD 825.00 received ")


def _assignments(agency: Any) -> list[dict[str, Any]]:
    with httpx.Client(base_url=agency.base_url) as admin:
        return list(admin.get("/_sandbox/assignments").json()["assignments"])


def test_a_letter_not_sent_within_a_day_is_written_again_before_it_goes(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """A right-to-cure letter written while the letters provider could not take it prints a
    deadline counted from its latest mailing (a day to hand it over, two business days to mail
    it). Two days later that date would be early: `arrears dispatch` does not send it as written
    but blocks it as stale and writes it again, in its place and under its key, with a deadline
    counted from now, and sends that."""
    from tasks.review import prepare_reviews

    put_in_review(mail_db, tmp_path, IA)
    prepare_reviews.fn(at("2026-12-01T17:00:00Z"))  # written; the provider never got it
    [first] = rows(mail_db, letter_t, IA)
    assert (first.status, first.pdf) == ("pending", None)  # rendered when it is sent
    as_written = render("right_to_cure", context_from_json(first.context))
    printed_first = _deadline_line(_pdf_text(as_written.pdf))

    dispatched = _cli("dispatch", "--as-of", "2026-12-03T18:00:00Z", "--database", db_url, "--json")
    assert dispatched.exit_code == 0, dispatched.output
    [again] = rows(mail_db, letter_t, IA)
    [sent] = letters_sandbox.letters()
    assert (again.id, again.idempotency_key, again.status) == (first.id, first.idempotency_key, "created")
    assert again.created_at == at("2026-12-03T18:00:00Z") and sent["idempotency_key"] == first.idempotency_key
    assert sent["pdf_sha256"] == again.pdf_sha256 != as_written.sha256
    printed_again = _deadline_line(_pdf_text(again.pdf))
    assert printed_again > printed_first  # ISO dates: later is greater
    details = [e.detail for e in events(mail_db, IA, "letter")]
    stale = "not handed to the letters provider within a day"
    assert any(f"letter {first.id} cannot be mailed: {stale}" in d for d in details)
    assert any(f"(it was blocked: {stale}" in d for d in details)


def test_a_letter_in_doubt_is_sent_again_as_it_was_never_written_again(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A letter the provider took but whose answer never came (500s after executing, every try) may
    be in the post: it is marked in doubt, not written again however old it gets, and looked for by
    its key before it would go again: found, though the provider no longer keeps the key (Lob keeps
    one for 24 hours, after which a resend mails a second notice), it is recorded as sent. One
    letter mailed."""
    from arrears.settings import get_settings
    from tasks.letters import send_letters
    from tasks.lifecycle_letters import readdress_letters
    from tasks.review import prepare_reviews

    credentials = {**letters_sandbox.credentials, "retry_attempts": "2", "retry_total_seconds": "5"}
    monkeypatch.setenv("ARREARS_LETTERS_CREDENTIALS", json.dumps(credentials))
    get_settings.cache_clear()
    put_in_review(mail_db, tmp_path, IA)
    written = at("2026-12-01T17:00:00Z")
    prepare_reviews.fn(written)
    letters_sandbox.set_faults(operation="create", http_500=2)
    assert send_letters.fn(as_of=written)["letters_waiting"] == 1
    [taken] = letters_sandbox.letters()
    [first] = rows(mail_db, letter_t, IA)
    assert (first.status, first.submitted_at is not None) == ("pending", True)

    letters_sandbox.set_faults()
    letters_sandbox.set_rules(idempotency_window_seconds=0)  # three days on: the key is forgotten
    later = at("2026-12-04T17:00:00Z")
    assert readdress_letters(later) == {"letters_readdressed": 0}  # in doubt: not stale
    assert send_letters.fn(as_of=later)["letters_sent"] == 1
    [letter] = rows(mail_db, letter_t, IA)
    assert (letter.status, letter.provider_id, letter.pdf_sha256) == (
        "created",
        taken["id"],
        first.pdf_sha256,
    )
    assert [x["id"] for x in letters_sandbox.letters()] == [taken["id"]]
    assert any("handed to the provider, no answer" in e.detail for e in events(mail_db, IA, "letter"))


def test_a_run_killed_after_the_provider_took_a_letter_looks_for_it_before_sending_again(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that dies between the provider's answer and the write of it (kill -9 there) leaves the
    letter in doubt, marked before it was handed over: the next run looks for it by its key and
    records the letter the provider took, though the provider no longer knows the key. A run the
    provider turned away (a 503, not executed) leaves it as it was, not in doubt."""
    from arrears.storage import letters as letter_store
    from tasks.letters import send_letters
    from tasks.review import prepare_reviews

    put_in_review(mail_db, tmp_path, IA)
    written = at("2026-12-01T17:00:00Z")
    prepare_reviews.fn(written)
    letters_sandbox.set_faults(operation="create", http_503=20)  # turned away, every retry
    assert send_letters.fn(as_of=written)["letters_waiting"] == 1
    [waiting] = rows(mail_db, letter_t, IA)
    assert (waiting.status, waiting.submitted_at, letters_sandbox.letters()) == ("pending", None, [])

    letters_sandbox.set_faults()
    recorded = letter_store.mark_sent

    def killed(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed before the provider's answer was written")

    monkeypatch.setattr(letter_store, "mark_sent", killed)
    with pytest.raises(RuntimeError):
        send_letters.fn(as_of=written)
    monkeypatch.setattr(letter_store, "mark_sent", recorded)
    [taken] = letters_sandbox.letters()
    letters_sandbox.set_rules(idempotency_window_seconds=0)  # a resend would mail a second letter
    assert send_letters.fn(as_of=written)["letters_sent"] == 1
    [letter] = rows(mail_db, letter_t, IA)
    assert (letter.status, letter.provider_id) == ("created", taken["id"])
    assert [x["id"] for x in letters_sandbox.letters()] == [taken["id"]]


def test_a_letter_in_doubt_the_provider_never_took_is_sent_again(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any
) -> None:
    """A letter in doubt that the provider has no letter for (its request never got there) is sent
    again as it was, under its key: looking for it finds nothing, and nothing else stops it."""
    from tasks.letters import send_letters
    from tasks.review import prepare_reviews

    put_in_review(mail_db, tmp_path, IA)
    written = at("2026-12-01T17:00:00Z")
    prepare_reviews.fn(written)
    [pending] = rows(mail_db, letter_t, IA)
    with mail_db.begin() as c:  # handed over and no answer, as a lost request leaves it
        c.execute(update(letter_t).where(letter_t.c.id == pending.id).values(submitted_at=written))
    assert send_letters.fn(as_of=at("2026-12-04T17:00:00Z"))["letters_sent"] == 1
    [sent] = letters_sandbox.letters()
    [letter] = rows(mail_db, letter_t, IA)
    assert (letter.status, letter.provider_id, sent["idempotency_key"]) == (
        "created",
        sent["id"],
        pending.idempotency_key,
    )


def test_letters_go_at_most_letters_per_run_a_run_oldest_first(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ARREARS_LETTERS_PER_RUN` bounds a run: the oldest letters go, the others wait pending and
    go in the next run."""
    from arrears.settings import get_settings
    from tasks.letters import send_letters
    from tasks.review import prepare_reviews

    monkeypatch.setenv("ARREARS_LETTERS_PER_RUN", "2")
    get_settings.cache_clear()
    for n, account_id in enumerate(("A-IA1", "A-IA2", "A-IA3")):
        put_in_review(mail_db, tmp_path, account_id)
        prepare_reviews.fn(at(f"2026-12-01T1{7 + n}:00:00Z"))
    now = at("2026-12-01T20:00:00Z")
    first = send_letters.fn(as_of=now)
    sent = sorted(x["idempotency_key"].split("-letter-")[1] for x in letters_sandbox.letters())
    assert (first["letters_sent"], sent) == (
        2,
        ["a-ia1-review-1-right-to-cure", "a-ia2-review-2-right-to-cure"],
    )
    assert [r.status for r in rows(mail_db, letter_t, "A-IA3")] == ["pending"]
    assert send_letters.fn(as_of=now)["letters_sent"] == 1
    assert len(letters_sandbox.letters()) == 3


def four_letters_written(
    mail_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, concurrency: int
) -> tuple[str, ...]:
    """Four Iowa accounts in review with their cure letters written pending, to be handed over
    `concurrency` at a time (`ARREARS_LETTERS_CONCURRENCY`); their account ids."""
    from arrears.settings import get_settings
    from tasks.review import prepare_reviews

    monkeypatch.setenv("ARREARS_LETTERS_CONCURRENCY", str(concurrency))
    get_settings.cache_clear()
    accounts = ("A-IA1", "A-IA2", "A-IA3", "A-IA4")
    for account_id in accounts:
        put_in_review(mail_db, tmp_path, account_id)
    prepare_reviews.fn(at("2026-12-01T17:00:00Z"))
    return accounts


def test_a_letters_provider_that_answers_nothing_is_given_up_on_for_the_run(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lob turning every hand-over away (503s, each after the client's retries): once
    `GIVE_UP_AFTER` in a row have failed the run hands over no more, the rest wait as they were
    for the next run (a run of 500 letters held the cycle for an hour), and once Lob is back they go."""
    import tasks.letters as letters_task

    accounts = four_letters_written(mail_db, tmp_path, monkeypatch, concurrency=1)
    monkeypatch.setattr(letters_task, "GIVE_UP_AFTER", 2)
    letters_sandbox.set_faults(operation="create", http_503=1_000, retry_after=0)
    counts = letters_task.send_letters.fn(as_of=at("2026-12-01T18:00:00Z"))
    assert counts["letters_waiting"] == 4 and counts["letters_sent"] == 0
    attempts = letters_sandbox.stats()["counters"]["requests.create"]
    letters_sandbox.set_faults()
    assert letters_task.send_letters.fn(as_of=at("2026-12-01T18:00:00Z"))["letters_sent"] == 4
    stored = [r for a in accounts for r in rows(mail_db, letter_t, a)]
    assert [r.status for r in stored] == ["created"] * 4
    per_letter = 4  # LobSettings.retry_attempts: each failed hand-over spent its retries
    assert attempts == 2 * per_letter  # two hand-overs tried, not four


def test_letters_are_in_the_providers_hands_several_at_a_time(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each hand-over waits out the provider's answer (a PDF's upload): `ARREARS_LETTERS_CONCURRENCY`
    of them wait at once, never more, and every letter is recorded as it came back."""
    from tasks.letters import send_letters

    accounts = four_letters_written(mail_db, tmp_path, monkeypatch, concurrency=3)
    letters_sandbox.set_faults(latency_ms=2_000)  # longer than rendering the four letters
    counts = send_letters.fn(as_of=at("2026-12-01T18:00:00Z"))
    assert counts["letters_sent"] == 4
    assert letters_sandbox.stats()["counters"]["in_flight_peak"] == 3
    assert [r.status for a in accounts for r in rows(mail_db, letter_t, a)] == ["created"] * 4


def test_letters_in_flight_together_through_429s_and_a_lost_answer_are_each_mailed_once(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four hand-overs at once meet Lob's rate limit (two 429s, not executed) and a 500 after the
    letter was taken: each is retried under its own key, and each letter is in the post once,
    recorded with the id the provider gave it."""
    from tasks.letters import send_letters

    accounts = four_letters_written(mail_db, tmp_path, monkeypatch, concurrency=4)
    faults = {"latency_ms": 1_000, "http_429": 2, "http_500": 1, "retry_after": 0.1}
    letters_sandbox.set_faults(operation="create", **faults)
    assert send_letters.fn(as_of=at("2026-12-01T18:00:00Z"))["letters_sent"] == 4
    counters = letters_sandbox.stats()["counters"]
    assert (counters["faults.http_429"], counters["faults.http_500"]) == (2, 1)
    assert counters["in_flight_peak"] > 1  # they met the faults together
    mailed = {x["metadata"]["idempotency_key"]: x["id"] for x in letters_sandbox.letters()}
    stored = [r for a in accounts for r in rows(mail_db, letter_t, a)]
    assert len(letters_sandbox.letters()) == len(mailed) == 4
    assert {r.idempotency_key: r.provider_id for r in stored} == mailed


_MAIL_IN_A_CHILD = """
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from tasks.letters import send_letters
send_letters.fn(as_of=datetime(2026, 12, 1, 18, tzinfo=UTC))
"""


def test_a_kill_9_with_letters_in_the_providers_hands_leaves_each_mailed_once(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real kill -9 of the mailing process with two letters taken by Lob but not yet answered
    and two not yet handed over: the next run finds the two by their keys and records them with
    Lob's ids, sends the other two, and every letter is in the post once."""
    from tasks.letters import send_letters

    accounts = four_letters_written(mail_db, tmp_path, monkeypatch, concurrency=2)
    # Both first hand-overs are executed (the letter is Lob's), then their answers held.
    letters_sandbox.set_faults(operation="create", timeouts=2, timeout_ms=10_000)
    child = subprocess.Popen(
        [sys.executable, "-c", _MAIL_IN_A_CHILD],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while len(letters_sandbox.letters()) < 2 or letters_sandbox.stats()["counters"]["in_flight"] < 2:
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the two letters never reached the sandbox together"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        child.kill()
    stored = [r for a in accounts for r in rows(mail_db, letter_t, a)]
    in_doubt = [r for r in stored if r.submitted_at is not None]
    assert len(in_doubt) == 2 and all(r.status == "pending" and r.provider_id is None for r in stored)
    taken = {x["metadata"]["idempotency_key"] for x in letters_sandbox.letters()}
    assert taken == {r.idempotency_key for r in in_doubt}

    letters_sandbox.set_faults()  # the held answers are long gone with the process
    assert send_letters.fn(as_of=at("2026-12-01T18:00:00Z"))["letters_sent"] == 4
    mailed = {x["metadata"]["idempotency_key"]: x["id"] for x in letters_sandbox.letters()}
    stored = [r for a in accounts for r in rows(mail_db, letter_t, a)]
    assert len(letters_sandbox.letters()) == len(mailed) == 4
    assert {r.idempotency_key: r.provider_id for r in stored} == mailed
    assert [r.status for r in stored] == ["created"] * 4
    counters = letters_sandbox.stats()["counters"]
    assert counters["requests.create"] == 4 and "replays" not in counters  # the two found, not sent again


def test_a_client_gone_mid_upload_leaves_the_sandbox_no_letter_and_no_error(
    letters_sandbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A run killed while it uploads a letter's PDF: the sandbox Lob takes nothing, counts the
    disconnect, and logs no error (a client that went away is no fault of the server's)."""
    url = httpx.URL(letters_sandbox.base_url)
    assert url.host and url.port
    user = base64.b64encode(f"{letters_sandbox.credentials['api_key']}:".encode()).decode()
    cut_short = (
        "POST /v1/letters HTTP/1.1\r\n"
        f"Host: {url.host}:{url.port}\r\n"
        f"Authorization: Basic {user}\r\n"
        "Idempotency-Key: cut-short\r\n"
        "Content-Type: multipart/form-data; boundary=cut\r\n"
        "Content-Length: 100000\r\n\r\n"
        '--cut\r\nContent-Disposition: form-data; name="file"; filename="letter.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n%PDF-1.7 "
    )
    with caplog.at_level(logging.ERROR):
        with socket.create_connection((url.host, url.port)) as client:
            client.sendall(cut_short.encode())
        deadline = time.monotonic() + 10
        while letters_sandbox.stats()["counters"].get("disconnects", 0) < 1:
            assert time.monotonic() < deadline, "the sandbox never saw the client go"
            time.sleep(0.02)
    assert letters_sandbox.letters() == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_refused_credentials_stop_the_letters_at_the_first_refusal_and_leave_them_pending(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong API key (401: `ConfigError`) would be refused for every letter: the run hands no
    more over after the first refusal, counts the letters as waiting and says once, as an error,
    which setting to fix. They stay pending as they were, not in doubt, and all go once the key is
    right. The cycle around it goes on to its report."""
    from arrears.settings import get_settings
    from tasks.letters import send_letters

    accounts = four_letters_written(mail_db, tmp_path, monkeypatch, concurrency=1)  # one is refused
    right = dict(letters_sandbox.credentials)
    monkeypatch.setenv("ARREARS_LETTERS_CREDENTIALS", json.dumps({**right, "api_key": "test_wrong"}))
    get_settings.cache_clear()
    said: list[str] = []

    class Keep(logging.Handler):  # on the logger itself: the CLI's import resets the root's handlers
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    logger, handler = logging.getLogger("arrears.letters"), Keep(logging.ERROR)
    logger.addHandler(handler)
    try:
        counts = send_letters.fn(as_of=at("2026-12-01T18:00:00Z"))
    finally:
        logger.removeHandler(handler)
    assert (counts["letters_sent"], counts["letters_waiting"]) == (0, 4)
    assert letters_sandbox.stats()["counters"]["requests.create"] == 1
    [error] = said
    assert "API key is not valid" in error and "ARREARS_LETTERS_CREDENTIALS" in error
    stored = [r for a in accounts for r in rows(mail_db, letter_t, a)]
    assert [(r.status, r.submitted_at) for r in stored] == [("pending", None)] * 4
    monkeypatch.setenv("ARREARS_LETTERS_CREDENTIALS", json.dumps(right))
    get_settings.cache_clear()
    assert send_letters.fn(as_of=at("2026-12-01T18:15:00Z"))["letters_sent"] == 4


def test_a_letter_the_provider_refused_goes_again_under_a_new_key_once_another_address_is_on_file(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any
) -> None:
    """Lob refuses an address it cannot mail to (422): the letter fails and its review waits. The
    same address on file changes nothing; once an import brings another, the letter is written
    again in its place, to the new address, and goes under a new provider key, so that neither a
    refusal the provider keeps under the old key nor its lookup by key can stand for it."""
    from arrears.storage import reviews
    from tasks.letters import send_letters
    from tasks.lifecycle_letters import readdress_letters
    from tasks.review import prepare_reviews

    put_in_review(mail_db, tmp_path, IA, address_line1="1 Undeliverable Road")
    prepare_reviews.fn(at("2026-12-01T17:00:00Z"))
    assert send_letters.fn(as_of=at("2026-12-01T18:00:00Z"))["letters_failed"] == 1
    [refused] = rows(mail_db, letter_t, IA)
    assert (refused.status, refused.reason.startswith("refused:"), refused.attempt) == ("failed", True, 0)
    with mail_db.connect() as c:
        [review] = rows(mail_db, review_t, IA)
        assert "cannot be mailed: refused" in (reviews.review_state(c, review.id).notice_stopped or "")

    assert readdress_letters(at("2026-12-02T09:00:00Z")) == {"letters_readdressed": 0}  # the same address
    assert rows(mail_db, letter_t, IA)[0].status == "failed"

    import_rows(mail_db, tmp_path, [us_account(IA, past_due_amount="825.00", oldest_due_date="2026-10-01")])
    assert readdress_letters(at("2026-12-02T09:00:00Z")) == {"letters_readdressed": 1}
    [again] = rows(mail_db, letter_t, IA)
    assert (again.id, again.idempotency_key, again.status, again.attempt) == (
        refused.id,
        refused.idempotency_key,
        "pending",
        1,
    )
    assert again.context["_recipient"]["line1"] == "12 Elm Street"
    with mail_db.connect() as c:
        assert reviews.review_state(c, review.id).notice_stopped is None

    assert send_letters.fn(as_of=at("2026-12-02T09:00:00Z"))["letters_sent"] == 1
    [mailed] = letters_sandbox.letters()
    assert mailed["idempotency_key"] == f"{refused.idempotency_key}-retry-1"
    assert mailed["metadata"]["idempotency_key"] == mailed["idempotency_key"]
    [sent] = rows(mail_db, letter_t, IA)
    assert (sent.status, sent.provider_id) == ("created", mailed["id"])


def test_letters_are_rendered_when_sent_and_one_that_cannot_be_is_set_aside(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any
) -> None:
    """The cycle writes a letter's context, not its PDF: `send_letters` renders each one, vets its
    words and stores the PDF and hash it hands the provider. A letter that cannot be rendered, or
    whose words fail the content rules, is blocked with its reason and audited; the others go."""
    from tasks.letters import send_letters
    from tasks.review import prepare_reviews

    accounts = ("A-IA1", "A-IA2", "A-IA3")
    for account_id in accounts:
        put_in_review(mail_db, tmp_path, account_id)
    written = at("2026-12-01T17:00:00Z")
    prepare_reviews.fn(written)
    [broken, threatening, good] = (rows(mail_db, letter_t, a)[0] for a in accounts)
    assert {(r.status, r.pdf) for r in (broken, threatening, good)} == {("pending", None)}
    with mail_db.begin() as c:
        c.execute(
            update(letter_t)
            .where(letter_t.c.id == broken.id)
            .values(context={k: v for k, v in broken.context.items() if k != "cure_deadline"})
        )
        threat = {**threatening.context, "lender_contact": "Pay or we will tell your employer."}
        c.execute(update(letter_t).where(letter_t.c.id == threatening.id).values(context=threat))

    counts = send_letters.fn(as_of=written)
    assert (counts["letters_sent"], counts["letters_blocked"]) == (1, 2)
    [sent] = letters_sandbox.letters()
    [mailed] = rows(mail_db, letter_t, "A-IA3")
    assert (sent["idempotency_key"], mailed.status) == (good.idempotency_key, "created")
    assert sent["pdf_sha256"] == mailed.pdf_sha256 == hashlib.sha256(mailed.pdf).hexdigest()
    assert "CURE DEADLINE: " in _pdf_text(mailed.pdf)
    [not_rendered] = rows(mail_db, letter_t, "A-IA1")
    assert not_rendered.status == "blocked" and not_rendered.pdf is None
    assert (
        not_rendered.reason.startswith("not rendered: ValueError: ")
        and "cure deadline" in not_rendered.reason
    )
    [vetted] = rows(mail_db, letter_t, "A-IA2")
    assert vetted.status == "blocked" and vetted.reason.startswith("content:threat")
    assert any(
        f"letter {mailed.id} rendered (sha256 {mailed.pdf_sha256})" in e.detail
        for e in events(mail_db, "A-IA3", "letter")
    )
    assert any(
        f"letter {vetted.id} blocked: content:threat" in e.detail for e in events(mail_db, "A-IA2", "letter")
    )
    assert send_letters.fn(as_of=written)["letters_sent"] == 0  # blocked letters stay blocked


def test_a_letter_blocked_for_good_is_written_again_when_an_operator_asks(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """`arrears letters rewrite` is the way out for a letter blocked for a reason that does not pass
    by itself (not rendered, its words refused), once the cause is fixed: it is written again from
    today's facts, in its place and under its key, with the operator's reason in the audit trail,
    and its review waits for it again. A letter that is not blocked, one waiting for an address,
    and one whose review has closed are refused with exit 2 and left as they were."""
    from arrears.storage import reviews
    from tasks.letters import send_letters
    from tasks.review import prepare_reviews

    broken_id, closed_id = "A-IA1", "A-IA2"
    for account_id in (broken_id, closed_id):
        put_in_review(mail_db, tmp_path, account_id)
    prepare_reviews.fn(at("2026-12-01T17:00:00Z"))
    [broken], [threatening] = rows(mail_db, letter_t, broken_id), rows(mail_db, letter_t, closed_id)
    with mail_db.begin() as c:  # a template bug, and a contact line the lender has since corrected
        damaged = {k: v for k, v in broken.context.items() if k != "cure_deadline"}
        c.execute(update(letter_t).where(letter_t.c.id == broken.id).values(context=damaged))
        threat = {**threatening.context, "lender_contact": "Pay or we will tell your employer."}
        c.execute(update(letter_t).where(letter_t.c.id == threatening.id).values(context=threat))
    assert send_letters.fn(as_of=at("2026-12-01T17:00:00Z"))["letters_blocked"] == 2
    [review] = rows(mail_db, review_t, broken_id)
    with mail_db.connect() as c:
        assert "not rendered" in (reviews.review_state(c, review.id).notice_stopped or "")

    assert (
        _rewritten(str(broken.id), "template fixed in 1.4.2", "2026-12-02T09:00:00Z", db_url)["status"]
        == "pending"
    )
    [again] = rows(mail_db, letter_t, broken_id)
    assert (again.id, again.idempotency_key, again.status) == (broken.id, broken.idempotency_key, "pending")
    assert "cure_deadline" in again.context and again.created_at == at("2026-12-02T09:00:00Z")
    assert any("template fixed in 1.4.2" in e.detail for e in events(mail_db, broken_id, "letter"))
    with mail_db.connect() as c:
        assert reviews.review_state(c, review.id).notice_stopped is None
    assert send_letters.fn(as_of=at("2026-12-02T09:00:00Z"))["letters_sent"] == 1
    [mailed] = letters_sandbox.letters()
    assert mailed["idempotency_key"] == broken.idempotency_key

    with mail_db.begin() as c:  # the borrower cured: the refresh leaves the account so
        c.execute(update(account_t).where(account_t.c.account_id == closed_id).values(stage="cured"))
    prepare_reviews.fn(at("2026-12-02T17:00:00Z"))
    owed_no_more = _cli("letters", "rewrite", str(threatening.id), "--reason", "fixed", "--database", db_url)
    assert _refused(owed_no_more) and "owed no more" in str(owed_no_more.exception)
    [left] = rows(mail_db, letter_t, closed_id)
    assert (left.status, left.reason.startswith("content:threat")) == ("blocked", True)
    not_blocked = _cli("letters", "rewrite", str(broken.id), "--reason", "again", "--database", db_url)
    assert _refused(not_blocked) and "is created: only a blocked letter" in str(not_blocked.exception)
    unknown = _cli("letters", "rewrite", "999", "--reason", "?", "--database", db_url)
    assert _refused(unknown) and "no letter 999" in str(unknown.exception)

    put_in_review(mail_db, tmp_path, "A-NOADDR")
    with mail_db.begin() as c:
        c.execute(update(account_t).where(account_t.c.account_id == "A-NOADDR").values(address_line1=None))
    prepare_reviews.fn(at("2026-12-02T17:00:00Z"))
    [unaddressed] = rows(mail_db, letter_t, "A-NOADDR")
    waiting = _cli("letters", "rewrite", str(unaddressed.id), "--reason", "?", "--database", db_url)
    assert _refused(waiting) and "waits for an address: import one" in str(waiting.exception)
    assert rows(mail_db, letter_t, "A-NOADDR") == [unaddressed]


def test_a_notice_the_fonts_cannot_print_waits_for_a_printable_name_then_goes(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """A right-to-cure notice to Nguyễn Văn Anh is not rendered (neither font sets ễ or ă: the
    notice would print boxes in the name) and its review says so; once the servicer's file brings
    the name as it can be printed, `arrears letters rewrite --blocked-for` writes it again and it
    is mailed, on US Letter paper, with the name as imported."""
    from arrears.storage import reviews
    from tasks.letters import send_letters
    from tasks.review import prepare_reviews

    put_in_review(mail_db, tmp_path, IA, borrower_name="Nguyễn Văn Anh")
    prepare_reviews.fn(at("2026-12-01T17:00:00Z"))
    assert send_letters.fn(as_of=at("2026-12-01T17:00:00Z"))["letters_blocked"] == 1
    [blocked] = rows(mail_db, letter_t, IA)
    assert blocked.status == "blocked" and "fonts cannot set 'ă', 'ễ'" in blocked.reason
    [review] = rows(mail_db, review_t, IA)
    with mail_db.connect() as c:
        assert "fonts cannot set" in (reviews.review_state(c, review.id).notice_stopped or "")

    import_rows(mail_db, tmp_path, [us_account(IA, past_due_amount="825.00", borrower_name="Nguyen Van Anh")])
    done = _rewritten("--blocked-for=not rendered", "name fixed", "2026-12-02T09:00:00Z", db_url)
    assert [letter["account_id"] for letter in done["rewritten"]] == [IA]
    assert send_letters.fn(as_of=at("2026-12-02T09:00:00Z"))["letters_sent"] == 1
    [mailed] = rows(mail_db, letter_t, IA)
    page = pypdf.PdfReader(io.BytesIO(mailed.pdf)).pages[0]
    assert (float(page.mediabox.width), float(page.mediabox.height)) == (612, 792)
    assert "Dear Nguyen Van Anh," in _pdf_text(mailed.pdf)


def test_every_letter_blocked_for_one_cause_is_written_again_when_an_operator_asks(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A template bug blocks a day's letters at once: `arrears letters rewrite --blocked-for` writes
    again every letter blocked for that cause, each in its place with the operator's reason, and
    reports the one nothing owes any more and the one whose rewrite failed, both left as they were
    (exit 1: the others are done); a letter blocked for another cause is not touched, and the
    cause is matched literally (`%` matches no letter)."""
    import tasks.lifecycle_letters
    from tasks.letters import send_letters
    from tasks.review import prepare_reviews

    broken_ids, cured_id, threatening_id, failing_id = ("A-IA1", "A-IA2", "A-IA3"), "A-IA4", "A-IA5", "A-IA6"
    for account_id in (*broken_ids, cured_id, threatening_id, failing_id):
        put_in_review(mail_db, tmp_path, account_id)
    prepare_reviews.fn(at("2026-12-01T17:00:00Z"))
    written = {
        account_id: rows(mail_db, letter_t, account_id)[0]
        for account_id in (*broken_ids, cured_id, failing_id)
    }
    [threatening] = rows(mail_db, letter_t, threatening_id)
    with mail_db.begin() as c:  # the template bug: no deadline in any context; one lender line
        for letter in written.values():
            damaged = {k: v for k, v in letter.context.items() if k != "cure_deadline"}
            c.execute(update(letter_t).where(letter_t.c.id == letter.id).values(context=damaged))
        threat = {**threatening.context, "lender_contact": "Pay or we will tell your employer."}
        c.execute(update(letter_t).where(letter_t.c.id == threatening.id).values(context=threat))
    assert send_letters.fn(as_of=at("2026-12-01T17:00:00Z"))["letters_blocked"] == 6
    with mail_db.begin() as c:  # the borrower cured: the refresh leaves the account so
        c.execute(update(account_t).where(account_t.c.account_id == cured_id).values(stage="cured"))
    prepare_reviews.fn(at("2026-12-02T08:00:00Z"))
    before = {
        account_id: rows(mail_db, letter_t, account_id)
        for account_id in (cured_id, threatening_id, failing_id)
    }
    listed = _cli("letters", "list", "--status", "blocked", "--database", db_url, "--json")
    assert sorted(letter["account_id"] for letter in json.loads(listed.stdout)) == [
        *broken_ids,
        cured_id,
        threatening_id,
        failing_id,
    ]
    pending = _cli("letters", "list", "--status", "pending", "--database", db_url, "--json")
    assert json.loads(pending.stdout) == []
    typo = _cli("letters", "list", "--status", "blokced", "--database", db_url)
    assert _refused(typo) and "one of pending, created" in str(typo.exception)

    write_cure_letter = tasks.lifecycle_letters.write_cure_letter

    def failing(connection: Any, state: Any, *args: Any, **kw: Any) -> bool:
        if state.account_id == failing_id:
            raise RuntimeError("this account's facts break the context")
        return write_cure_letter(connection, state, *args, **kw)

    monkeypatch.setattr(tasks.lifecycle_letters, "write_cure_letter", failing)
    nothing = _cli("letters", "rewrite", "--blocked-for", "%", "--reason", "?", "--database", db_url)
    assert _refused(nothing) and "none blocked for '%'" in str(nothing.exception)
    done = _cli(
        "letters",
        "rewrite",
        "--blocked-for",
        "not rendered",
        "--reason",
        "template fixed in 1.4.2",
        "--as-of",
        "2026-12-02T09:00:00Z",
        "--database",
        db_url,
        "--json",
    )
    assert done.exit_code == 1, done.output
    report = json.loads(done.stdout)
    assert sorted(letter["account_id"] for letter in report["rewritten"]) == list(broken_ids)
    assert {letter["status"] for letter in report["rewritten"]} == {"pending"}
    [left] = report["left"]
    assert (left["account_id"], left["status"]) == (cured_id, "blocked")
    assert "owed no more" in left["why_not"] and left["reason"].startswith("not rendered")
    [failed] = report["failed"]
    assert (failed["account_id"], failed["status"]) == (failing_id, "blocked")
    assert failed["error"] == "RuntimeError: this account's facts break the context"
    for account_id in broken_ids:
        [again] = rows(mail_db, letter_t, account_id)
        assert (again.id, again.idempotency_key) == (
            written[account_id].id,
            written[account_id].idempotency_key,
        )
        assert "cure_deadline" in again.context
        assert any("template fixed in 1.4.2" in e.detail for e in events(mail_db, account_id, "letter"))
    assert rows(mail_db, letter_t, cured_id) == before[cured_id]  # left as it was
    assert rows(mail_db, letter_t, threatening_id) == before[threatening_id]
    assert rows(mail_db, letter_t, failing_id) == before[failing_id]  # its transaction rolled back
    assert send_letters.fn(as_of=at("2026-12-02T09:00:00Z"))["letters_sent"] == 3
    assert sorted(sent["idempotency_key"] for sent in letters_sandbox.letters()) == sorted(
        written[account_id].idempotency_key for account_id in broken_ids
    )

    monkeypatch.setattr(tasks.lifecycle_letters, "write_cure_letter", write_cure_letter)  # fixed
    fixed = _cli(
        "letters", "rewrite", "--blocked-for", "not rendered", "--reason", "?", "--database", db_url, "--json"
    )
    assert fixed.exit_code == 0, fixed.output
    assert [letter["account_id"] for letter in json.loads(fixed.stdout)["rewritten"]] == [failing_id]
    again = _cli("letters", "rewrite", "--blocked-for", "not rendered", "--reason", "?", "--database", db_url)
    assert _refused(again) and "no letter written again" in str(again.exception)  # the cured one left
    both = _cli(
        "letters", "rewrite", "1", "--blocked-for", "not rendered", "--reason", "?", "--database", db_url
    )
    assert _refused(both) and "not both or neither" in str(both.exception)


def test_the_cycle_mails_the_letters_it_writes_beside_its_dispatch(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`arrears cycle` writes the right-to-cure letter of a review it opens and mails it in the same
    run, from its mail-letters step beside the dispatch; the reviews step renders nothing."""
    put_in_review(mail_db, tmp_path, IA)
    cycled = _cli("cycle", "--as-of", "2026-12-01T18:00:00Z", "--database", db_url, "--json")
    assert cycled.exit_code in (0, 4), cycled.output
    stats = json.loads(cycled.stdout)
    assert stats["reviews"]["cure_notices"] == 1 and "letters_sent" not in stats["reviews"]
    assert stats["letters"]["letters_sent"] == 1
    [letter] = rows(mail_db, letter_t, IA)
    [sent] = letters_sandbox.letters()
    assert (letter.status, sent["idempotency_key"]) == ("created", letter.idempotency_key)
    assert sent["pdf_sha256"] == letter.pdf_sha256 == hashlib.sha256(letter.pdf).hexdigest()
    # The same counts in the summary an operator reads (the demo's too).
    from deployments.cli._common import console
    from deployments.cli.cycle import print_cycle

    with console.capture() as captured:
        print_cycle(stats)
    assert re.search(r"letters sent\s+│?\s*1\b", captured.get())
    # The timeline on an 80-column terminal folds the letter's SHA-256 rather than cutting it.
    monkeypatch.setattr(console, "width", 80)
    shown = _cli("show", IA, "--database", db_url).output
    assert "…" not in shown and letter.pdf_sha256 in re.sub(r"[│\s]", "", shown)


def _deadline_line(text: str) -> str:
    [line] = [line for line in text.splitlines() if line.startswith("CURE DEADLINE: ")]
    return line


def test_account_without_address_gets_no_letter_and_its_review_is_blocked(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any
) -> None:
    """No mailing address: no letter goes out and the review shows as blocked with the reason."""
    from tasks.review import waiting

    put_in_review(mail_db, tmp_path, "A-NOADDR")
    with mail_db.begin() as c:
        c.execute(update(account_t).where(account_t.c.account_id == "A-NOADDR").values(address_line1=None))
    _review_step("2026-12-01T17:00:00Z")
    assert letters_sandbox.letters() == []
    [w] = [w for w in waiting(mail_db, now=at("2027-02-01T00:00:00Z")) if w.account_id == "A-NOADDR"]
    assert (w.waits_for, "no mailing address on file" in w.detail) == ("blocked", True)


def test_returned_letter_puts_the_review_on_hold(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """A letter returned to sender holds the review: no decision even after the cure period."""
    put_in_review(mail_db, tmp_path, IA)
    _review_step("2026-12-01T17:00:00Z")
    [sent] = letters_sandbox.letters()
    letters_sandbox.advance(sent["id"], "returned_to_sender", at="2026-12-05T15:00:00Z")
    _review_step("2026-12-06T17:00:00Z")
    refused = _decide(db_url, "2027-01-30T12:00:00Z")
    assert _refused(refused) and "returned to sender" in str(refused.exception)
    assert any("returned to sender" in e.detail for e in events(mail_db, IA, "letter"))


def test_a_returned_notice_is_given_again_at_another_address_and_the_cure_period_counts_from_there(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """A right-to-cure letter came back to sender: the review holds, and the same address on file
    changes nothing. Once an import brings another, a new letter goes there, in a row of its own
    (the returned one stays as it was mailed: the evidence of the first notice), and the cure
    period counts from the new letter's mailing, not from the first."""
    from arrears.storage import reviews
    from tasks.letters import send_letters, track_letters
    from tasks.lifecycle_letters import readdress_letters

    put_in_review(mail_db, tmp_path, IA)
    _review_step("2026-12-01T17:00:00Z")
    [first] = letters_sandbox.letters()
    letters_sandbox.advance(first["id"], "mailed", at="2026-12-02T15:00:00Z")
    letters_sandbox.advance(first["id"], "returned_to_sender", at="2026-12-05T15:00:00Z")
    track_letters.fn()
    [returned] = rows(mail_db, letter_t, IA)
    [review] = rows(mail_db, review_t, IA)
    assert (returned.status, returned.provider_id) == ("returned_to_sender", first["id"])
    with mail_db.connect() as c:
        assert "import another address" in (reviews.review_state(c, review.id).notice_stopped or "")
    first_deadline = review.cure_deadline
    assert first_deadline is not None

    assert readdress_letters(at("2026-12-06T09:00:00Z")) == {"letters_readdressed": 0}  # the same address
    assert len(rows(mail_db, letter_t, IA)) == 1
    assert rows(mail_db, review_t, IA)[0].cure_deadline == first_deadline

    moved = us_account(
        IA, past_due_amount="825.00", oldest_due_date="2026-10-01", address_line1="7 Oak Avenue"
    )
    import_rows(mail_db, tmp_path, [moved])
    assert readdress_letters(at("2026-12-07T09:00:00Z")) == {"letters_readdressed": 1}
    kept, again = rows(mail_db, letter_t, IA)
    assert kept == returned  # not a column changed
    assert (again.status, again.review_id, again.idempotency_key) == (
        "pending",
        review.id,
        f"{returned.idempotency_key}-resent-{returned.id}",
    )
    assert again.context["_recipient"]["line1"] == "7 Oak Avenue"
    with mail_db.connect() as c:
        state = reviews.review_state(c, review.id)
        assert state is not None
        assert (state.cure_deadline, state.notice_stopped, state.letter_id) == (None, None, again.id)
    assert any(e.data.get("cure_restarted") for e in events(mail_db, IA, "review"))
    assert readdress_letters(at("2026-12-07T10:00:00Z")) == {"letters_readdressed": 0}  # given once

    assert send_letters.fn(as_of=at("2026-12-07T09:00:00Z"))["letters_sent"] == 1
    second = next(x for x in letters_sandbox.letters() if x["id"] != first["id"])
    assert second["idempotency_key"] == again.idempotency_key
    letters_sandbox.advance(second["id"], "mailed", at="2026-12-08T15:00:00Z")
    track_letters.fn()
    [review] = rows(mail_db, review_t, IA)
    mailed = rows(mail_db, letter_t, IA)[1]
    # The last day the new letter printed (written on 7 December, mailing days allowed): later
    # than 20 days from its mailing, and far later than the first deadline.
    assert review.cure_deadline == mailed.deadline == datetime(2026, 12, 31, 6, tzinfo=UTC)
    assert first_deadline < datetime(2026, 12, 26, tzinfo=UTC)
    refused = _decide(db_url, "2026-12-26T12:00:00Z")  # past the first deadline, not the second
    assert _refused(refused) and "right-to-cure period runs until" in str(refused.exception)


def test_a_returned_notice_of_a_review_that_closed_is_not_given_again(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any
) -> None:
    """The borrower cured after the letter came back: the review is closed, and another address
    on file brings no second notice."""
    from tasks.letters import track_letters
    from tasks.lifecycle_letters import readdress_letters
    from tasks.review import prepare_reviews

    put_in_review(mail_db, tmp_path, IA)
    _review_step("2026-12-01T17:00:00Z")
    [first] = letters_sandbox.letters()
    letters_sandbox.advance(first["id"], "returned_to_sender", at="2026-12-05T15:00:00Z")
    track_letters.fn()
    with mail_db.begin() as c:  # as the refresh leaves an account whose arrears were paid
        c.execute(
            update(account_t).where(account_t.c.account_id == IA).values(stage="cured", days_past_due=0)
        )
    prepare_reviews.fn(at("2026-12-06T17:00:00Z"))
    [review] = rows(mail_db, review_t, IA)
    assert review.decided_at is not None

    moved = us_account(
        IA, past_due_amount="825.00", oldest_due_date="2026-10-01", address_line1="7 Oak Avenue"
    )
    import_rows(mail_db, tmp_path, [moved])
    assert readdress_letters(at("2026-12-07T09:00:00Z")) == {"letters_readdressed": 0}
    assert [r.status for r in rows(mail_db, letter_t, IA)] == ["returned_to_sender"]


def test_tracking_webhook_starts_the_cure_period(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any
) -> None:
    """A mailed event signed by the sandbox Lob, posted to /letters/sandbox/tracking, sets the
    deadline; a badly signed one is refused with 403."""
    from starlette.testclient import TestClient

    from deployments.webhooks import create_app
    from integrations.providers import build_provider

    put_in_review(mail_db, tmp_path, IA)
    _review_step("2026-12-01T17:00:00Z")
    [sent] = letters_sandbox.letters()
    letters_sandbox.advance(sent["id"], "mailed", at="2026-12-08T15:00:00Z")
    headers, body = letters_sandbox.signed_callback(sent["id"])
    with build_provider("letters", "sandbox", letters_sandbox.base_url, letters_sandbox.credentials) as lob:
        app = create_app(engine=mail_db, mail_providers={"letters": {"sandbox": lob}})
        with TestClient(app) as client:
            forged = client.post(
                "/letters/sandbox/tracking", content=body, headers={**headers, "Lob-Signature": "0" * 64}
            )
            assert forged.status_code == 403
            assert client.post("/letters/sandbox/tracking", content=body, headers=headers).status_code == 200
    [review] = rows(mail_db, review_t, IA)
    assert review.cure_deadline == datetime(2026, 12, 29, 6, tzinfo=UTC)


def test_a_delivered_letter_whose_mailed_webhook_was_lost_is_looked_up_and_starts_the_cure_period(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any
) -> None:
    """DESIGN §6: a notice's legal clock starts from the provider's mailed event, and webhooks may
    be lost. Lob mails the letter and delivers it; the `letter.mailed` webhook is lost and only
    `letter.delivered` arrives. The letter, at the end of the post with no mailed date, is looked
    up: the mailed event in the provider's record starts the cure period, and once it is known the
    letter is looked up no more."""
    from integrations.providers import build_provider
    from tasks.letters import letters_in_the_post, record_tracking, track_letters

    put_in_review(mail_db, tmp_path, IA)
    _review_step("2026-12-01T17:00:00Z")
    [sent] = letters_sandbox.letters()
    letters_sandbox.advance(sent["id"], "delivered", at="2026-12-08T15:00:00Z")  # mailed, then delivered
    headers, body = letters_sandbox.signed_callback(sent["id"])  # the latest event only
    with build_provider("letters", "sandbox", letters_sandbox.base_url, letters_sandbox.credentials) as lob:
        delivered = lob.parse_callback(headers, body)
    assert [e.kind for e in delivered] == ["delivered"]
    record_tracking(delivered)
    [letter] = rows(mail_db, letter_t, IA)
    assert (letter.status, letter.mailed_at, rows(mail_db, review_t, IA)[0].cure_deadline) == (
        "delivered",
        None,
        None,
    )
    assert letters_in_the_post()

    assert track_letters.fn() == {"letters_looked_up": 1, "letters_moved": 1}
    [letter] = rows(mail_db, letter_t, IA)
    [review] = rows(mail_db, review_t, IA)
    assert letter.status == "delivered" and letter.mailed_at is not None
    assert review.cure_deadline is not None and review.cure_deadline == letter.deadline
    assert any("(learned after it was delivered)" in e.detail for e in events(mail_db, IA, "letter"))
    [notice] = events(mail_db, IA, "cure_notice")
    assert notice.data["review_id"] == review.id
    assert not letters_in_the_post()


def test_a_mailed_date_learned_late_of_a_notice_given_again_elsewhere_starts_no_cure_period(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any
) -> None:
    """A right-to-cure letter came back to sender, its mailed webhook lost, and was given again at
    another address. Its mailed date, found by a later lookup, is recorded on it, but the cure
    period counts from the new letter's mailing only: it does not start from the returned one."""
    from integrations.providers import build_provider
    from tasks.letters import record_tracking, track_letters
    from tasks.lifecycle_letters import readdress_letters

    put_in_review(mail_db, tmp_path, IA)
    _review_step("2026-12-01T17:00:00Z")
    [first] = letters_sandbox.letters()
    letters_sandbox.advance(first["id"], "returned_to_sender", at="2026-12-05T15:00:00Z")
    headers, body = letters_sandbox.signed_callback(first["id"])
    with build_provider("letters", "sandbox", letters_sandbox.base_url, letters_sandbox.credentials) as lob:
        record_tracking(lob.parse_callback(headers, body))
    moved = us_account(
        IA, past_due_amount="825.00", oldest_due_date="2026-10-01", address_line1="7 Oak Avenue"
    )
    import_rows(mail_db, tmp_path, [moved])
    assert readdress_letters(at("2026-12-07T09:00:00Z")) == {"letters_readdressed": 1}

    track_letters.fn()
    returned, again = rows(mail_db, letter_t, IA)
    assert (returned.status, again.status) == ("returned_to_sender", "pending")
    assert returned.mailed_at is not None
    assert rows(mail_db, review_t, IA)[0].cure_deadline is None
    assert events(mail_db, IA, "cure_notice") == []


def test_every_date_a_letter_prints_counts_from_its_latest_mailing_over_a_weekend() -> None:
    """Handed to the provider within a day and mailed within two business days: a notice of sale
    or a 催收函 written on Thursday evening counts its days from Tuesday, not from Sunday."""
    from arrears.letters.contexts import COLLECTION_NOTICE_DAYS, collection_notice_context
    from arrears.recovery import planned_sale_date

    thursday_evening = datetime(2027, 3, 4, 22, 0, tzinfo=UTC)  # 16:00 in Chicago, 06:00 Friday in Shanghai
    assert (
        planned_sale_date(thursday_evening, timezone="America/Chicago", calendar="US-IA", days=10)
        == datetime(2027, 3, 19).date()
    )
    notice = collection_notice_context(
        jurisdiction="CN",
        timezone="Asia/Shanghai",
        calendar="CN",
        written_at=thursday_evening - timedelta(hours=12),  # Thursday 18:00 in Shanghai
        lender="L",
        lender_contact="C",
        borrower_name="张三",
        account_reference="A-CN9",
        currency="CNY",
        past_due=Decimal("3000.00"),
        address=("上海市",),
    )
    assert notice.cure_deadline == datetime(2027, 3, 9).date() + timedelta(days=COLLECTION_NOTICE_DAYS)


@pytest.mark.parametrize(
    ("kind", "signature", "timestamp"),
    [
        ("letters", "Lob-Signature", "Lob-Signature-Timestamp"),
        ("agency", "X-Agency-Signature", "X-Agency-Timestamp"),
    ],
)
def test_a_signed_callback_that_cannot_be_read_is_400_and_a_forged_one_403(
    kind: str,
    signature: str,
    timestamp: str,
    sqlite_engine: Engine,
    letters_sandbox: Any,
    agency_sandbox: Any,
) -> None:
    """A correctly signed body that is not the vendor's shape is a bad request (400: the vendor's
    bug, not a forgery), and the same body badly signed is refused (403); both change nothing.
    It was 403 for both, so a vendor's malformed event looked like a key mix-up."""
    from starlette.testclient import TestClient

    from deployments.webhooks import create_app
    from integrations import _hmac
    from integrations.providers import build_provider

    sandbox = {"letters": letters_sandbox, "agency": agency_sandbox}[kind]
    body, now = b'{"not": "an event"}', int(time.time())
    with build_provider(kind, "sandbox", sandbox.base_url, sandbox.credentials) as provider:
        secret = provider.settings.webhook_secret.get_secret_value()
        app = create_app(engine=sqlite_engine, mail_providers={kind: {"sandbox": provider}})
        with TestClient(app) as client:
            signed = {signature: _hmac.sign(secret, now, body), timestamp: str(now)}
            malformed = client.post(f"/{kind}/sandbox/tracking", content=body, headers=signed)
            assert malformed.status_code == 400, malformed.text
            forged = {signature: _hmac.sign("not-the-secret", now, body), timestamp: str(now)}
            assert client.post(f"/{kind}/sandbox/tracking", content=body, headers=forged).status_code == 403


def test_tracking_of_another_systems_letters_is_acknowledged_and_ours_not_yet_recorded_waits(
    mail_db: Engine, letters_sandbox: Any
) -> None:
    """A lender's Lob account mails its statements too, and Lob sends their events to the same
    webhook, retrying anything but a 2xx: an event about a letter another system sent (its key is
    not of this installation) is acknowledged and changes nothing; one under this installation's
    key that no letter row has yet (its send not recorded) is 404, for Lob to push again."""
    from starlette.testclient import TestClient

    from arrears.storage.installation import installation_id
    from deployments.webhooks import create_app
    from integrations.letters.contract import make_request
    from integrations.providers import build_provider

    with mail_db.begin() as c:
        ours = installation_id(c)
    with build_provider("letters", "sandbox", letters_sandbox.base_url, letters_sandbox.credentials) as lob:
        statement = lob.send(make_request("statements-2026-11-A-77", description="statement"))
        racing = lob.send(make_request(f"{ours}-letter-a-9-review-1-right-to-cure"))
        for sent in (statement, racing):
            letters_sandbox.advance(sent.id, "mailed", at="2026-12-08T15:00:00Z")
        app = create_app(engine=mail_db, mail_providers={"letters": {"sandbox": lob}})
        with TestClient(app) as client:
            headers, body = letters_sandbox.signed_callback(statement.id)
            answer = client.post("/letters/sandbox/tracking", content=body, headers=headers)
            assert (answer.status_code, answer.json()) == (200, {"ok": True, "moved": 0, "not_ours": 1})
            headers, body = letters_sandbox.signed_callback(racing.id)
            assert client.post("/letters/sandbox/tracking", content=body, headers=headers).status_code == 404
    with mail_db.connect() as c:
        assert c.execute(select(func.count()).select_from(letter_t)).scalar() == 0


@pytest.mark.parametrize(
    ("columns", "rejected"),
    [
        (
            {"address_line1": "1 Main St", "city": "Des Moines", "state": "IA", "postal_code": "5030"},
            "postal_code",
        ),
        ({"address_line1": "1 Main St", "city": "Des Moines", "postal_code": "50309"}, "state"),
        ({"address_line1": "1 Main St", "state": "IA", "postal_code": "50309"}, "city"),
    ],
)
def test_address_columns_are_validated(columns: dict[str, str], rejected: str) -> None:
    """A mailing address is checked as a whole: a US one needs a line, a city, its state and a ZIP code."""
    from arrears.importing import parse_account

    record = {
        k: v
        for k, v in us_account("A-X").items()
        if k not in ("address_line1", "city", "state", "postal_code")
    }
    found = parse_account(2, record | columns)
    assert isinstance(found, list) and rejected in {r.field for r in found}


def test_address_is_stored_with_the_jurisdictions_country(engine: Engine, tmp_path: Path) -> None:
    """An imported address without a country takes the jurisdiction's (US for US-IA)."""
    import_rows(engine, tmp_path, [us_account("A-ADDR")])
    a = account(engine, "A-ADDR")
    assert (a.address_line1, a.city, a.state, a.postal_code, a.country) == (
        "12 Elm Street",
        "Des Moines",
        "IA",
        "50309",
        "US",
    )


def test_letter_keys_carry_the_installation_id_so_two_databases_never_share_a_letter(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two databases mailing the same account id through one Lob each get their own letter: the
    idempotency key that travels to the provider starts with the database's installation id."""
    from arrears.settings import get_settings
    from arrears.storage import get_engine, migrate
    from arrears.storage.installation import installation_id

    put_in_review(mail_db, tmp_path, IA)
    _review_step("2026-12-01T17:00:00Z")
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    other = get_engine(other_url)
    migrate(other)
    monkeypatch.setenv("ARREARS_DATABASE_URL", other_url)
    get_settings.cache_clear()
    put_in_review(other, tmp_path, IA)
    _review_step("2026-12-01T17:00:00Z")

    keys = sorted(x["idempotency_key"] for x in letters_sandbox.letters())
    with mail_db.connect() as a, other.connect() as b:
        ours = sorted(f"{installation_id(c)}-letter-a-ia1-review-1-right-to-cure" for c in (a, b))
    assert keys == ours


def _assigned(mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any, agency: Any) -> str:
    """A US-IA account whose notice was mailed, whose cure period ran out and whose approved
    repossession was assigned to the sandbox agency; returns the agency's assignment id."""
    put_in_review(mail_db, tmp_path, IA)
    _review_step("2026-12-01T17:00:00Z")
    [sent] = letters_sandbox.letters()
    letters_sandbox.advance(sent["id"], "mailed", at="2026-12-08T15:00:00Z")
    assert _cli("dispatch", "--as-of", "2026-12-08T18:00:00Z", "--database", db_url).exit_code == 0
    decided = _decide(db_url, "2026-12-29T15:00:00Z")
    assert decided.exit_code == 0, decided.output
    [assignment] = _assignments(agency)
    return str(assignment["id"])


@pytest.mark.usefixtures("prefect_harness")
def test_dispatch_looks_up_assignments_whose_webhooks_never_came(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any, agency_sandbox: Any
) -> None:
    """With no webhook pushed, `arrears dispatch` asks the agency (GET) and records the status."""
    assignment_id = _assigned(mail_db, db_url, tmp_path, letters_sandbox, agency_sandbox)
    agency_sandbox.advance(assignment_id, "located", at="2026-12-31T15:00:00Z")
    dispatched = _cli("dispatch", "--as-of", "2027-01-01T18:00:00Z", "--database", db_url, "--json")
    assert dispatched.exit_code == 0, dispatched.output
    counts = json.loads(dispatched.stdout)
    assert (counts["assignments_looked_up"], counts["assignments_moved"]) == (1, 1)
    [row] = rows(mail_db, assignment_t, IA)
    assert row.status == "located"
    assert any("located at the agency" in e.detail for e in events(mail_db, IA, "assignment"))


@pytest.mark.usefixtures("prefect_harness")
def test_recovery_in_iowa_mails_the_notice_of_sale_before_the_account_closes(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any, agency_sandbox: Any
) -> None:
    """A recovery the agency reports (found by `arrears dispatch`) writes and mails the UCC 9-614
    notice of sale; the account closes only once the notice is mailed, with the recovery and the
    first sale date in its audit trail."""
    assignment_id = _assigned(mail_db, db_url, tmp_path, letters_sandbox, agency_sandbox)
    agency_sandbox.advance(assignment_id, "recovered", at="2027-01-04T15:00:00Z")
    first = _cli("dispatch", "--as-of", "2027-01-05T18:00:00Z", "--database", db_url, "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["sale_notices_written"] == 1
    assert account(mail_db, IA).stage == "repossession_review"
    [sale] = [x for x in letters_sandbox.letters() if x["description"] == "notice_of_sale"]
    [row] = [
        x
        for x in json.loads(_cli("letters", "list", "--json", "--database", db_url).stdout)
        if x["kind"] == "notice_of_sale"
    ]
    out = tmp_path / "sale.pdf"
    assert _cli("letters", "pdf", str(row["id"]), "--output", str(out), "--database", db_url).exit_code == 0
    text = _pdf_text(out.read_bytes())
    # Written 5 January; counted from the latest planned mailing (8 January) plus 10 days.
    assert "SALE NOT BEFORE: 2027-01-18" in text and "you will still owe us the difference" in text

    letters_sandbox.advance(sale["id"], "mailed", at="2027-01-07T15:00:00Z")
    again = _cli("dispatch", "--as-of", "2027-01-07T18:00:00Z", "--database", db_url, "--json")
    assert json.loads(again.stdout)["recoveries_closed"] == 1
    closed = account(mail_db, IA)
    assert (closed.stage, closed.stage_since) == ("closed", datetime(2027, 1, 7, 15, tzinfo=UTC))
    [step] = [e for e in events(mail_db, IA, "transition") if e.data["to"] == "closed"]
    assert "notice of sale mailed 2027-01-07, no sale before 2027-01-18" in step.detail
    assert step.data["recovery"]["location"] and step.data["order_id"] == "RO-1"
    # Done: a payment now cancels no order, and a third run changes nothing.
    third = _cli("dispatch", "--as-of", "2027-01-08T18:00:00Z", "--database", db_url, "--json")
    assert json.loads(third.stdout)["recoveries_closed"] == 0


@pytest.mark.usefixtures("prefect_harness")
def test_a_notice_of_sale_blocked_for_good_is_written_again_when_an_operator_asks(
    mail_db: Engine,
    db_url: str,
    tmp_path: Path,
    letters_sandbox: Any,
    agency_sandbox: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A notice of sale that could not be rendered holds the recovered account open; once the cause
    is fixed, `arrears letters rewrite` has the recovery write it again at once, and the account
    closes at its mailed event as usual."""
    import tasks.letters

    assignment_id = _assigned(mail_db, db_url, tmp_path, letters_sandbox, agency_sandbox)
    agency_sandbox.advance(assignment_id, "recovered", at="2027-01-04T15:00:00Z")
    render = tasks.letters.render

    def broken(kind: str, *args: Any, **kwargs: Any) -> Any:
        if kind == "notice_of_sale":
            raise ValueError("template bug")
        return render(kind, *args, **kwargs)

    monkeypatch.setattr(tasks.letters, "render", broken)
    assert _cli("dispatch", "--as-of", "2027-01-05T18:00:00Z", "--database", db_url).exit_code == 0
    [notice] = [r for r in rows(mail_db, letter_t, IA) if r.kind == "notice_of_sale"]
    assert (notice.status, notice.reason) == ("blocked", "not rendered: ValueError: template bug")
    monkeypatch.setattr(tasks.letters, "render", render)  # the fix deployed

    assert _rewritten(str(notice.id), "template fixed", "2027-01-06T09:00:00Z", db_url)["status"] == "pending"
    assert _cli("dispatch", "--as-of", "2027-01-06T18:00:00Z", "--database", db_url).exit_code == 0
    [sale] = [x for x in letters_sandbox.letters() if x["description"] == "notice_of_sale"]
    assert sale["idempotency_key"] == notice.idempotency_key
    letters_sandbox.advance(sale["id"], "mailed", at="2027-01-07T15:00:00Z")
    assert _cli("dispatch", "--as-of", "2027-01-07T18:00:00Z", "--database", db_url).exit_code == 0
    assert account(mail_db, IA).stage == "closed"


def test_recovery_where_no_notice_of_sale_is_owed_closes_the_account_at_once(
    mail_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the profile owes no notice of sale, the recovery itself closes the account, and no
    letter is written."""
    from arrears.jurisdictions import profile
    from arrears.storage import assignments
    from tasks.recovery import settle_recoveries

    put_in_review(mail_db, tmp_path, IA)
    with mail_db.begin() as c:
        assignments.add_assignment(
            c, key="k-ro-9", order_id="RO-9", account_id=IA, review_id=None, at=at("2027-01-01T00:00:00Z")
        )
        [row] = assignments.assignments_to_push(c)
        assignments.mark_assigned(
            c, row_id=row.id, provider="sandbox", provider_id="asg_9", at=at("2027-01-01T01:00:00Z")
        )
        assignments.move_assignment(
            c,
            row_id=row.id,
            status="recovered",
            at=at("2027-01-03T12:00:00Z"),
            recovery={"location": "lot 4"},
        )
    no_notice = replace(profile("US-IA"), sale_notice_days=None)
    monkeypatch.setattr("tasks.recovery.policy", lambda: SimpleNamespace(profile=lambda code: no_notice))
    assert settle_recoveries(at("2027-01-04T00:00:00Z"))["recoveries_closed"] == 1
    closed = account(mail_db, IA)
    assert (closed.stage, closed.stage_since) == ("closed", datetime(2027, 1, 3, 12, tzinfo=UTC))
    [step] = [e for e in events(mail_db, IA, "transition") if e.data["to"] == "closed"]
    assert "no notice of sale owed in US-IA" in step.detail and step.data["recovery"] == {"location": "lot 4"}
    assert rows(mail_db, letter_t, IA) == []


def _cn_record(account_id: str) -> dict[str, str]:
    """A Shanghai borrower with a mailing address, 3,000 yuan behind."""
    return account_record(
        account_id=account_id,
        borrower_name="王芳",
        phone="13912345678",
        timezone="Asia/Shanghai",
        jurisdiction="CN",
        currency="CNY",
        balance="60000.00",
        installment_amount="3000.00",
        past_due_amount="3000.00",
        oldest_due_date="2026-09-26",
        address_line1="世纪大道100号",
        city="上海市",
        state="上海",
        postal_code="200120",
    )


@pytest.mark.usefixtures("prefect_harness")
def test_cn_account_entering_legal_referral_is_mailed_its_collection_notice_once(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """A CN account in legal referral gets the zh-CN 催收函 through the letters path at the next
    `arrears dispatch`, naming the amount and the last day to pay; a second run mails no other."""
    import_rows(mail_db, tmp_path, [_cn_record("A-CN1")])
    with mail_db.begin() as c:
        c.execute(
            update(account_t)
            .where(account_t.c.account_id == "A-CN1")
            .values(stage="legal_referral", stage_since=at("2026-12-01T02:00:00Z"), episode=4)
        )
    for as_of in ("2026-12-01T03:00:00Z", "2026-12-02T03:00:00Z"):
        done = _cli("dispatch", "--as-of", as_of, "--database", db_url, "--json")
        assert done.exit_code == 0, done.output
    [sent] = letters_sandbox.letters()
    assert sent["description"] == "collection_notice"
    assert sent["idempotency_key"].endswith("-letter-a-cn1-legal-4-collection-notice")
    [row] = json.loads(_cli("letters", "list", "--json", "--database", db_url).stdout)
    out = tmp_path / "cn.pdf"
    assert _cli("letters", "pdf", str(row["id"]), "--output", str(out), "--database", db_url).exit_code == 0
    text = _pdf_text(out.read_bytes())
    # Written 1 December (Shanghai), counted from the latest planned mailing (4 December) + 15 days.
    assert "催收函" in text and "3,000.00" in text and "还款期限：2026-12-19" in text


def test_an_accepted_plan_is_confirmed_by_letter_once(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any
) -> None:
    """An agent's accepted plan writes its confirmation letter in the same transaction; the
    letters path mails it, and writing it again adds nothing."""
    from tasks.letters import send_letters
    from tasks.lifecycle_letters import write_plan_letter
    from tasks.plans import accept_plan

    import_rows(mail_db, tmp_path, [us_account("A-PLAN")])
    with mail_db.begin() as c:
        c.execute(update(account_t).where(account_t.c.account_id == "A-PLAN").values(stage="negotiation"))
    plan_id, terms = accept_plan(
        mail_db,
        account_id="A-PLAN",
        kind="instalment",
        months=3,
        agent="Ana Ruiz",
        at=at("2026-12-02T16:00:00Z"),
    )
    assert send_letters.fn(as_of=at("2026-12-02T16:00:00Z"))["letters_sent"] == 1
    [sent] = letters_sandbox.letters()
    assert sent["description"] == "hardship_plan"
    assert sent["idempotency_key"].endswith(f"-letter-a-plan-plan-{plan_id}-confirmation")
    with mail_db.begin() as c:
        again = write_plan_letter(
            c,
            account_id="A-PLAN",
            plan_id=plan_id,
            terms=terms,
            accepted_on=terms.schedule[0].due,
            at=at("2026-12-03T16:00:00Z"),
        )
        assert again is False
    from arrears.storage.letters import letter_pdf

    [row] = rows(mail_db, letter_t, "A-PLAN")
    with mail_db.connect() as c:
        found = letter_pdf(c, row.id)
    assert found is not None
    text = _pdf_text(found[0])
    assert "CONFIRMATION OF YOUR PAYMENT PLAN" in text and "3 payments" in text and "2026-12-02" in text


def test_a_letter_blocked_for_want_of_an_address_is_written_when_an_import_brings_one(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """The right-to-cure letter blocked for no address is written again, in its place, when an
    accounts import brings the address; the review is no longer blocked and the letter is mailed."""
    from tasks.review import waiting

    put_in_review(mail_db, tmp_path, "A-NOADDR")
    with mail_db.begin() as c:
        c.execute(update(account_t).where(account_t.c.account_id == "A-NOADDR").values(address_line1=None))
    _review_step("2026-12-01T17:00:00Z")
    # Written before keys carried the installation id: rewritten under its own key all the same.
    with mail_db.begin() as c:
        c.execute(update(letter_t).values(idempotency_key="letter-a-noaddr-review-1-right-to-cure"))
    [blocked] = rows(mail_db, letter_t, "A-NOADDR")
    assert blocked.status == "blocked"

    again = us_account("A-NOADDR", past_due_amount="825.00", oldest_due_date="2026-10-01")
    imported = _cli("import", "accounts", str(write_csv(tmp_path / "fix.csv", [again])), "--database", db_url)
    assert imported.exit_code == 0, imported.output
    [rewritten] = rows(mail_db, letter_t, "A-NOADDR")
    assert (rewritten.id, rewritten.status, rewritten.idempotency_key) == (
        blocked.id,
        "pending",
        blocked.idempotency_key,
    )
    assert rewritten.pdf is None and rewritten.context["_recipient"]["line1"] == "12 Elm Street"
    [w] = [w for w in waiting(mail_db, now=at("2026-12-02T00:00:00Z")) if w.account_id == "A-NOADDR"]
    assert w.waits_for != "blocked"
    _review_step("2026-12-02T17:00:00Z")
    [sent] = letters_sandbox.letters()
    [mailed] = rows(mail_db, letter_t, "A-NOADDR")
    assert sent["idempotency_key"] == blocked.idempotency_key
    assert sent["pdf_sha256"] == mailed.pdf_sha256 == hashlib.sha256(mailed.pdf).hexdigest()
    assert any(
        "it was blocked: no mailing address" in e.detail for e in events(mail_db, "A-NOADDR", "letter")
    )


def test_a_plan_confirmation_without_an_address_is_written_once_one_arrives(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """A plan accepted with no address on file blocks its confirmation; an import that brings
    the address writes it in place, under the same key."""
    from tasks.plans import accept_plan

    record = us_account("A-PLAN2")
    bare = {k: v for k, v in record.items() if k not in ("address_line1", "city", "state", "postal_code")}
    import_rows(mail_db, tmp_path, [bare])
    with mail_db.begin() as c:
        c.execute(update(account_t).where(account_t.c.account_id == "A-PLAN2").values(stage="negotiation"))
    accept_plan(
        mail_db,
        account_id="A-PLAN2",
        kind="instalment",
        months=3,
        agent="Ana Ruiz",
        at=at("2026-12-02T16:00:00Z"),
    )
    [blocked] = rows(mail_db, letter_t, "A-PLAN2")
    assert (blocked.kind, blocked.status) == ("hardship_plan", "blocked")
    imported = _cli(
        "import", "accounts", str(write_csv(tmp_path / "addr.csv", [record])), "--database", db_url
    )
    assert imported.exit_code == 0, imported.output
    [written] = rows(mail_db, letter_t, "A-PLAN2")
    assert (written.id, written.status, written.idempotency_key) == (
        blocked.id,
        "pending",
        blocked.idempotency_key,
    )
    assert written.context["plan_installments"] == 3


@pytest.mark.usefixtures("prefect_harness")
def test_a_recovery_pushed_by_the_agency_webhook_writes_the_notice_of_sale_at_once(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any, agency_sandbox: Any
) -> None:
    """A signed `recovered` webhook at /agency/sandbox/status records the recovery and writes the
    notice of sale in the same request, without waiting for a cycle or a dispatch."""
    from starlette.testclient import TestClient

    from deployments.webhooks import create_app
    from integrations.providers import build_provider

    assignment_id = _assigned(mail_db, db_url, tmp_path, letters_sandbox, agency_sandbox)
    agency_sandbox.advance(assignment_id, "recovered")
    headers, body = agency_sandbox.signed_callback(assignment_id)
    with build_provider("agency", "sandbox", agency_sandbox.base_url, agency_sandbox.credentials) as agency:
        app = create_app(engine=mail_db, mail_providers={"agency": {"sandbox": agency}})
        with TestClient(app) as client:
            assert client.post("/agency/sandbox/status", content=body, headers=headers).status_code == 200
    [row] = rows(mail_db, assignment_t, IA)
    assert row.status == "recovered" and row.recovery["location"]
    notices = [x for x in rows(mail_db, letter_t, IA) if x.kind == "notice_of_sale"]
    assert [x.status for x in notices] == ["pending"]
