"""`arrears.records.record`: immutable to the type checker, compared, hashed and pickled as a
frozen dataclass is, and built without the frozen guard's cost."""

import gc
import pickle
import textwrap
from dataclasses import FrozenInstanceError, dataclass, field, replace
from pathlib import Path

import pytest
from mypy import api as mypy

from arrears.compliance.caps import Contact
from arrears.lifecycle import Step
from arrears.records import record

ROOT = Path(__file__).resolve().parent.parent


@record
class Reading:
    account_id: str
    amounts: tuple[int, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class FrozenReading:
    account_id: str
    amounts: tuple[int, ...] = field(default=())


def test_a_record_compares_hashes_and_copies_as_a_frozen_dataclass_does() -> None:
    one, same, other = Reading("A-1", (1, 2)), Reading("A-1", (1, 2)), Reading("A-2")
    assert one == same and one != other
    assert hash(one) == hash(same) == hash(FrozenReading("A-1", (1, 2)))
    assert {one: "first"}[same] == "first"
    assert replace(one, account_id="A-3") == Reading("A-3", (1, 2))
    assert pickle.loads(pickle.dumps(one)) == one  # shards and batches cross to worker processes
    assert not hasattr(one, "__dict__")  # slotted: no attribute can be added by mistake
    with pytest.raises(AttributeError):
        one.note = "x"  # type: ignore[attr-defined]


def test_the_cycle_records_hash_by_their_fields() -> None:
    """A step is a cache key of the transition's audit text (`storage.cycle._transition`)."""
    assert hash(Step("reminder", "negotiation", "31 days")) == hash(
        Step("reminder", "negotiation", "31 days")
    )
    assert len({Step("a", "b", "c"), Step("a", "b", "c"), Step("a", "b", "d")}) == 2
    assert Contact.__hash__ is not None


def test_the_type_checker_refuses_an_assignment_to_a_record_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `frozen=True` refuses at run time, mypy (a CI gate) refuses in the code."""
    monkeypatch.setenv("MYPYPATH", str(ROOT))  # the checkout, as the gate reads it
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from arrears.records import record

            @record
            class Reading:
                account_id: str

            reading = Reading("A-1")
            reading.account_id = "A-2"
            """
        )
    )
    threshold = gc.get_threshold()
    try:
        out, _, status = mypy.run(
            ["--no-incremental", "--config-file", str(ROOT / "pyproject.toml"), str(snippet)]
        )
    finally:  # mypy raises the collector's thresholds for the whole (pytest) process it runs in
        gc.set_threshold(*threshold)
    assert status == 1, out
    assert 'Property "account_id" defined in "Reading" is read-only' in out


def test_a_frozen_dataclass_guards_at_run_time_where_a_record_does_not() -> None:
    """Why the type check matters: the run-time guard is what `record` leaves out."""
    with pytest.raises(FrozenInstanceError):
        FrozenReading("A-1").account_id = "A-2"  # type: ignore[misc]
    loose = Reading("A-1")
    loose.account_id = "A-2"  # type: ignore[misc]
    assert loose.account_id == "A-2"
