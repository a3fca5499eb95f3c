"""A borrower's PLAN answered in the cycle's refresh: the options text decided and put in the outbox.

Called by `tasks.promises` for each PLAN (方案, OPTIONS) reply, in the refresh transaction. The
account is loaded as a shard of one (`storage.cycle.load_shard`), the text decided by the pure
`arrears.plan_options.answer_plan_request` with the offers the borrower's bureau income estimate
affords (`storage.plans.payment_ceilings`, as the recorded offer has them), and written as the
advance writes its messages (`storage.cycle.write_decisions`: the outbox row once under its key,
a blocked or deferred verdict audited); the dispatch sends it, checked again at send time. What
became of the request is noted on the timeline either way.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from arrears.clock import business_date as lender_date
from arrears.lifecycle import Decision
from arrears.plan_options import answer_plan_request
from arrears.policy import Policy
from arrears.settings import get_settings
from arrears.storage import accounts, plans
from arrears.storage import cycle as store
from arrears.vocabulary import MessageStatus, Segment
from tasks.shards import Shard, load_rows

__all__ = ["ASKED", "answer_options"]

ASKED = "borrower asked for the plan options (reply PLAN)"


def answer_options(
    connection: Connection,
    *,
    account_id: str,
    as_of: datetime,
    rules: Policy,
    data: dict[str, Any],
    at: datetime,
    cycle_id: int | None,
) -> bool:
    """Answer a PLAN read at `as_of` (received at `at`) with the options text; whether one was
    written to the outbox (blocked, deferred or due now). `data` names the reply on the timeline."""
    day = lender_date(as_of, get_settings().lender_timezone)
    loaded = load_rows(connection, Shard.single(account_id), as_of, day, rules)
    row = accounts.account_row(connection, account_id)
    if not loaded or row is None:  # an account that left the lifecycle is not loaded
        _note(connection, account_id, at, f"{ASKED}, not answered: the account is closed", data, cycle_id)
        return False
    [shard_row] = loaded
    ceiling = plans.payment_ceilings(connection, [row])[account_id]
    answer = answer_plan_request(shard_row.view, shard_row.facts, plans.loan_of(row), rules, as_of, ceiling)
    if isinstance(answer, str):
        _note(connection, account_id, at, f"{ASKED}, not answered: {answer}", data, cycle_id)
        return False
    view = shard_row.view
    decision = Decision(account_id, view.stage, view.episode, Segment(shard_row.segment), messages=(answer,))
    written = store.write_decisions(
        connection, rows=[shard_row], decisions=[decision], texts={}, now=as_of, cycle_id=cycle_id
    )
    if not written["messages"]:  # the key was taken meanwhile: the options went out already
        _note(connection, account_id, at, f"{ASKED}, not answered: already answered on {day}", data, cycle_id)
        return False
    if answer.blocked:
        outcome = f"{MessageStatus.BLOCKED.value} ({answer.blocked})"
    elif answer.deferred:
        outcome = f"deferred to {answer.not_before:%Y-%m-%dT%H:%MZ} ({answer.deferred})"
    else:
        outcome = MessageStatus.SCHEDULED.value
    detail = f"{ASKED}: answered with the options text, {outcome}"
    _note(connection, account_id, at, detail, {**data, "key": answer.key}, cycle_id)
    return True


def _note(
    connection: Connection,
    account_id: str,
    at: datetime,
    detail: str,
    data: dict[str, Any],
    cycle_id: int | None,
) -> None:
    accounts.note(
        connection, account_id=account_id, at=at, kind="plan", detail=detail, data=data, cycle_id=cycle_id
    )
