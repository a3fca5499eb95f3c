"""A failed or crashed run's state message masked, as its logs are (DESIGN §9).

Prefect writes that message from the run's exception (`Flow run encountered an exception:
ValueError: …`) and shows it in the UI on the run's page, in its state events and in the
notifications automations send. Log records are masked where they are made
(`arrears.masking.install_log_masking`), but this message is no log record: it is built by
`prefect.states.format_exception`, so a provider's refusal or a row's value quoted in an
exception reached the UI with its phone number or national id in clear. Prefect offers no hook
that runs before the state is proposed (`on_failure` runs after), so the one function both of its
state builders call (`prefect.states` and `prefect._internal.states`, for async and sync runs,
failed and crashed) is wrapped, once, in every process that imports a flow.
"""

import warnings
from collections.abc import Callable
from types import ModuleType, TracebackType

import prefect._internal.states
import prefect.states

from arrears.masking import mask_text

__all__ = ["install_state_masking"]

_Format = Callable[[BaseException, TracebackType | None], str]
_masked: set[str] = set()


def _masking(original: _Format) -> _Format:
    def format_exception(exc: BaseException, tb: TracebackType | None = None) -> str:
        return mask_text(original(exc, tb))

    return format_exception


def install_state_masking() -> None:
    """Mask the numbers in every state message Prefect makes from an exception (idempotent)."""
    module: ModuleType
    for module in (prefect.states, prefect._internal.states):
        if module.__name__ in _masked:
            continue
        original = getattr(module, "format_exception", None)
        if original is None:  # a Prefect that builds its messages elsewhere: say so, loudly
            warnings.warn(
                f"{module.__name__}.format_exception is gone: failed runs' state messages are not masked",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        # setattr: mypy knows the module, and that it has no such attribute to assign
        setattr(module, "format_exception", _masking(original))  # noqa: B010
        _masked.add(module.__name__)
