"""`record`: the immutable records the daily cycle builds for every account, message and contact.

A frozen dataclass sets each field through `object.__setattr__`, to get past its own guard: on the
2-core CI machine a 17-field frozen record takes 5-6 µs to build, the same class unfrozen 1 µs.
The advance builds about ten such records an account (its view, facts, decision, steps, and each
message's request, state and verdict), a million accounts a cycle.

A `record` class is a slotted dataclass, compared and hashed by its fields as a frozen one is,
that type checkers treat as frozen (PEP 681's `frozen_default`): assigning to a field is a mypy
error, as it is with `frozen=True`, but nothing stops it at run time, and CI's mypy gate is what
keeps it out. Use it for what is built per account, message or contact; elsewhere
`@dataclass(frozen=True, slots=True)`, whose guard costs nothing that counts.
"""

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

__all__ = ["record"]

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[_T]) -> type[_T]:
    return dataclass(slots=True, unsafe_hash=True)(cls)
