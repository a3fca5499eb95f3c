"""Privacy (issue 4, part 8): phone numbers and national ids masked in text and in every log record."""

import base64
import binascii
import contextlib
import json
import logging
import time
from pathlib import Path

import pytest

from arrears.masking import install_log_masking, mask_national_id, mask_phone, mask_text


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+8613912341234", "+86*******1234"),
        ("+12133734253", "+1******4253"),
        ("+442079460000", "+44******0000"),
        ("13912345678", "*******5678"),
        ("123", "***"),
    ],
)
def test_phone_keeps_its_country_code_and_last_four_digits(number: str, masked: str) -> None:
    """`+86*******1234`: the country code and the last four digits stay, every other digit is starred,
    in our logs and in the providers' exception messages and reprs alike."""
    from integrations._masking import mask_phone as provider_mask

    assert mask_phone(number) == masked
    assert provider_mask(number) == masked


def test_national_ids_keep_their_last_four() -> None:
    """A CN resident id and a US SSN keep only their last four characters."""
    assert mask_national_id("11010519491231002X") == "**************002X"
    assert mask_national_id("123-45-6789") == "***-**-6789"


def test_free_text_is_masked_and_other_figures_are_left_alone() -> None:
    """Numbers in E.164, spaced or national form and ids are masked; dates, offsets, run ids, keys
    and amounts are not."""
    text = (
        "to +86 139 1234 5678, +1 (213) 373-4253, 13912345678, (212) 736-5600, id 11010519491231002X, "
        "ssn 123-45-6789; at 2026-12-01T00:00:00+08:00 run 3f2a1b4c-1234-5678-9abc-def012345678 "
        "key A-0000042:reminder:1:day-5 amount ¥3,000.00 message 1234567"
    )
    masked = mask_text(text)
    for secret in ("139 1234", "13912345678", "373-4253", "736-5600", "1949123100", "123-45"):
        assert secret not in masked, secret
    for kept in (
        "2026-12-01T00:00:00+08:00",
        "3f2a1b4c-1234-5678-9abc-def012345678",
        "A-0000042:reminder:1:day-5",
        "¥3,000.00",
        "message 1234567",
        "+86*******5678",
        "***-**-6789",
    ):
        assert kept in masked, kept


@pytest.mark.parametrize(
    ("written", "masked"),
    [
        ("6262411110", "******1110"),
        ("(626) 241-1110", "******1110"),
        ("626.241.1110", "******1110"),
        ("626 241 1110", "******1110"),
        ("1 626 241 1110", "*******1110"),
        ("+1 626 241 1110", "+1******1110"),
        ("123456789", "*****6789"),
        ("123 45 6789", "*** ** 6789"),
        ("139 1234 1234", "*******1234"),
        ("139-1234-1234", "*******1234"),
        ("+86 139 1234 1234", "+86*******1234"),
        ("8613912341234", "*********1234"),
        ("11010519491231002x", "**************002x"),
        ("07700 900123", "*******0123"),
        ("07700900123", "*******0123"),
        ("+353 87 123 4567", "+353*****4567"),
        ("087 123 4567", "******4567"),
        ("zhang.wei+loan@example.com", "***@example.com"),
    ],
)
def test_every_way_a_number_is_written_is_masked(written: str, masked: str) -> None:
    """A bare ten-digit North American number, an SSN without dashes, a CN mobile written in groups
    and a UK or IE number without its spaces are numbers too, in a sentence as much as alone; an
    e-mail address keeps only its domain."""
    assert mask_text(written) == masked
    assert mask_text(f"reply from {written}: call me.") == f"reply from {masked}: call me."


@pytest.mark.parametrize(
    "kept",
    [
        "account A-0000042 and LN-2345678901",
        "amount 12345.67, 6262411110.50 and 1,234,567,890",
        "2026-12-01, 2026-12-01T09:00:00+08:00, 2026-12-01 09:00:00.123456+00:00, 20261201",
        "run 3f2a1b4c-1234-5678-9abc-def012345678 and 12345678-1234-1234-1234-123456789012",
        "epoch 1733500000, 1733500000000 ms; 1000000 accounts, 1234567890 in all",
        "Task run 'send-batch-12' - Finished in state Completed()",
        'HTTP Request: POST http://127.0.0.1:8123/api/flow_runs/ "HTTP/1.1 201 Created"',
        "zip 62701-1234, postal 100020, VIN 1HGCM82633A004352, Twilio 30003, retry in 3600 s",
        "ssn 000123456 666123456 987654321 123004567 123450000",
        "message 123456789 sent, message 2345678901 failed, outbox #234567890",
    ],
)
def test_figures_that_are_no_number_are_left_alone(kept: str) -> None:
    """Ids, amounts, dates, timestamps, run ids, counts and Prefect's own lines stay as written: a
    log line masked where it names no person would be useless. A bare 9-digit figure SSA never
    issues (area 000, 666 or 9xx, group 00, serial 0000) is no SSN, nor is a message's row id."""
    assert mask_text(kept) == kept


def test_a_long_run_of_letters_around_an_at_sign_is_read_in_linear_time() -> None:
    """A log line with a base64 blob beside an `@` is masked at once: an e-mail pattern that tried
    every start in the run took 36 s on 40,000 characters, on every line like it."""
    blob = "a" * 20_000 + "@" + "b" * 20_000
    started = time.perf_counter()
    assert mask_text(f"{blob} and zw@qq.com") == f"{blob} and ***@qq.com"
    assert time.perf_counter() - started < 1.0


def test_numbers_written_against_chinese_words_are_masked() -> None:
    """Chinese puts no space between a word and a number: 电话13912345678 is a number all the same,
    and so is an id after 身份证 or an E.164 number before 。; one glued to Latin letters or digits
    (an account id, a longer figure) is not."""
    masked = mask_text("我换号了，新号码是13800000000。身份证11010519491231002X，电话+8613912345678。")
    for secret in ("13800000000", "11010519491231002X", "8613912345678"):
        assert secret not in masked, secret
    assert "新号码是*******0000。" in masked and "电话+86*******5678。" in masked
    assert mask_text("A13912345678 139123456789") == "A13912345678 139123456789"


def test_log_records_are_masked_before_any_handler_sees_them(caplog: pytest.LogCaptureFixture) -> None:
    """Once installed, a record logged with a number in its message or its arguments reaches the
    handlers masked."""
    install_log_masking()
    install_log_masking()  # idempotent
    with caplog.at_level(logging.INFO, logger="arrears.test"):
        logging.getLogger("arrears.test").info("texting %s about %d days", "+8613912341234", 5)
        logging.getLogger("arrears.test").warning("number +12133734253 refused")
    assert [r.getMessage() for r in caplog.records] == [
        "texting +86*******1234 about 5 days",
        "number +1******4253 refused",
    ]


def test_a_logged_exceptions_traceback_is_masked_too() -> None:
    """A record logged with `exc_info` (as Prefect logs a failed run) whose exception carries a
    statement's parameters reaches a handler's formatted output masked, traceback included."""
    import io

    install_log_masking()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("arrears.test.traceback")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("UNIQUE failed [parameters: ('+8613912341234', '110101199003071234')]")
        except ValueError as e:
            logger.error("Task run failed with exception: %r", e, exc_info=True)
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "Traceback" in text and "ValueError: UNIQUE failed" in text, text
    assert "13912341234" not in text and "1101011990" not in text, text
    assert "+86*******1234" in text


def test_a_database_error_carries_no_statement_parameters(tmp_path: Path) -> None:
    """A driver's error from our engine names its statement, never its parameters: its text ends up
    in quarantine rows, logs and a failed run's state message in Prefect's UI, and a name or an
    address there is nothing `mask_text` would find."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from arrears.storage.engine import get_engine

    engine = get_engine(f"sqlite:///{tmp_path / 'params.db'}")
    row = {"phone": "+8613912341234", "name": "Zhang Wei, 1 Main St"}
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (phone TEXT UNIQUE, name TEXT)")
        connection.execute(text("INSERT INTO t VALUES (:phone, :name)"), row)
    with pytest.raises(IntegrityError) as caught, engine.begin() as connection:
        connection.execute(text("INSERT INTO t VALUES (:phone, :name)"), row)
    said = str(caught.value)
    assert "UNIQUE constraint failed" in said
    assert "13912341234" not in said and "Zhang Wei" not in said, said


@pytest.mark.parametrize(
    "flow_module",
    [
        "flows.daily_cycle",
        "flows.account_lifecycle",
        "flows.repossession_review",
        "flows.legal_referral",
        "flows.bureau_furnishing",
    ],
)
def test_every_flow_masks_its_logs_in_a_process_of_its_own(flow_module: str) -> None:
    """A served or pooled flow run runs in a process that imports only its flow (Prefect's runner
    loads the entrypoint): importing any flow module masks the numbers in that process's logs."""
    import subprocess
    import sys

    code = (
        f"import logging, {flow_module}\n"
        "logging.basicConfig(format='%(message)s')\n"
        "logging.getLogger('arrears.test').warning('party id 110101199003071234, +8613912341234')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "party id" in done.stderr, done.stderr
    assert "110101199003071234" not in done.stderr and "13912341234" not in done.stderr, done.stderr


@pytest.mark.usefixtures("prefect_harness")
def test_a_failed_runs_state_message_shows_no_number() -> None:
    """A task whose exception quotes a phone number and a national id fails its run: the state
    messages the Prefect API holds for the task run and its flow run (what the UI shows, and its
    events and notifications carry) name the exception with the numbers masked."""
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    import flows  # noqa: F401 (what every flow module imports)

    @task
    def refused() -> None:
        raise ValueError("provider refused +8613912341234 (party 11010519491231002X, 626 241 1110)")

    @flow
    def texting() -> None:
        refused()

    state = texting(return_state=True)
    assert state.is_failed()
    runs = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        for _ in range(600):  # a task run and its states reach the API as events, after the flow's
            task_runs = client.read_task_runs(flow_run_filter=runs)
            if task_runs and task_runs[0].state is not None and task_runs[0].state.is_final():
                break
            time.sleep(0.1)
    [task_run] = task_runs
    assert run.state is not None and task_run.state is not None and task_run.state.is_failed()
    for message in (run.state.message or "", task_run.state.message or ""):
        assert "ValueError: provider refused +86*******1234 (party **************002X, ******1110)" in message
        assert "13912341234" not in message and "1101051949" not in message, message


FLOW_AND_TASK_MODULES = sorted(
    f"{path.parent.name}.{path.stem}"
    for package in ("flows", "tasks")
    for path in (Path(__file__).parents[1] / package).glob("*.py")
    if path.stem != "__init__"
)


def test_no_flow_or_task_persists_its_result() -> None:
    """Every flow and task of ours says `persist_result=False`, so that an operator's
    `PREFECT_RESULTS_PERSIST_BY_DEFAULT` (or a server's default storage block) never writes a
    Metro 2 file, a review's state or a list of accounts into Prefect's result storage; and every
    flow writes a failure as its masked text (`flows._results.FAILURE_TEXT`), not pickled whole."""
    import importlib

    from prefect import Flow, Task

    from flows._results import FailureText

    flows_found, tasks_found = {}, {}
    for name in FLOW_AND_TASK_MODULES:
        for value in vars(importlib.import_module(name)).values():
            if isinstance(value, Flow) and value.fn.__module__ == name:
                flows_found[value.name] = value
            elif isinstance(value, Task) and value.fn.__module__ == name:
                tasks_found[value.name] = value
    assert len(flows_found) >= 6 and len(tasks_found) >= 40  # the walk found them
    assert [n for n, t in tasks_found.items() if t.persist_result is not False] == []
    assert [n for n, f in flows_found.items() if f.persist_result is not False] == []
    assert [n for n, f in flows_found.items() if not isinstance(f.result_serializer, FailureText)] == []


def _stored(store: Path) -> list[bytes]:
    """Every file under Prefect's result storage, as written and decoded: Prefect writes a pickle
    in base64, alone or as the `result` of a JSON record."""
    found: list[bytes] = []
    for path in store.rglob("*"):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        found.append(raw)
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        blob = record["result"] if isinstance(record, dict) and "result" in record else raw
        with contextlib.suppress(binascii.Error, ValueError):
            found.append(base64.b64decode(blob))
    return found


@pytest.mark.usefixtures("prefect_harness")
def test_a_failed_run_leaves_no_number_in_prefects_result_storage(tmp_path: Path) -> None:
    """A borrower's number typed as the cycle's `as_of` in the UI's form fails the run. Prefect
    writes a failed flow run's exception to its result storage whatever the persistence settings
    (files any local user may read, kept for good): the file holds the masked text of the run's
    state message, not the exception pickled with the number, and the result read back through the
    API says the same."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings

    from flows.daily_cycle import daily_cycle

    store = tmp_path / "prefect-results"
    with temporary_settings({PREFECT_RESULTS_LOCAL_STORAGE_PATH: store}):
        state = daily_cycle(as_of="13912341234", return_state=True)
        assert state.is_failed()
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(state.state_details.flow_run_id)
        assert run.state is not None
        with pytest.raises(Exception) as read_back:
            run.state.result()
    stored = _stored(store)
    assert stored, "Prefect wrote no failure: the test no longer tests what it says"
    assert not [s for s in stored if b"13912341234" in s], stored
    assert any(b"ValueError: '*******1234' is not an ISO 8601 instant" in s for s in stored), stored
    assert "13912341234" not in str(read_back.value) and "*******1234" in str(read_back.value)
    assert "13912341234" not in (run.state.message or "")
