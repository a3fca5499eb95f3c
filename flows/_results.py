"""What Prefect keeps of a run in its result storage: nothing of a borrower (DESIGN §9).

Prefect writes a run's results to its result storage (`PREFECT_LOCAL_STORAGE_PATH`, by default
`~/.prefect/storage`: files readable by every local user, kept until someone deletes them) when
persistence is on, and it is on as soon as an operator sets `PREFECT_RESULTS_PERSIST_BY_DEFAULT`
or `PREFECT_TASKS_DEFAULT_PERSIST_RESULT`, or gives the server a default storage block. Our
results would be borrower data there: the Metro 2 file of a month (names, addresses, SSNs),
review and referral states, a reviewer's context. Nothing of ours reads a result back from that
storage: every task has `cache_policy=NO_CACHE`; a retry runs again in the same process; a
suspended review or referral re-runs from the top and reads what it did from our tables (DESIGN
§7); a shard's counts stay with its worker, the cycle reads the outcome from the database they
share; the CLI runs its flows in its own process. So every flow and task of ours says
`persist_result=False`, whatever the settings (`tests/test_compliance_masking.py` checks each).

One thing Prefect writes even then: a failed flow run's exception (`flow_engine.handle_exception`
persists it unconditionally), pickled whole. Its message is masked in the run's state, but the
pickle keeps every argument and attribute: a database error keeps its statement's parameters (a
borrower's number, name and address) though `hide_parameters` leaves them out of its text, and a
refused Metro 2 file keeps the values its validator quoted. Each flow of ours therefore writes
its results with `FAILURE_TEXT`, which keeps only what the run's state message already shows: the
exception's type and message, masked. Read back from another process (`state.result()`), it
raises Prefect's `FailedRun` with that text.
"""

from typing import Any, Literal

from prefect.serializers import Serializer

from arrears.masking import mask_text

__all__ = ["FAILURE_TEXT", "FailureText"]


class FailureText(Serializer):  # not Serializer[Any]: a new pydantic class Prefect cannot register
    """A failed run's exception as one masked line of text; any other result is refused, loudly
    (our flows and tasks persist none: a result reaching here means that was undone)."""

    type: Literal["arrears/failure-text"] = "arrears/failure-text"

    def dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, BaseException):
            raise TypeError(
                f"arrears keeps no run results in Prefect's storage (persist_result=False): "
                f"refused to write a {type(obj).__name__}"
            )
        return mask_text(f"{type(obj).__name__}: {obj}").encode()

    def loads(self, blob: bytes) -> str:
        return blob.decode()


FAILURE_TEXT = FailureText()
