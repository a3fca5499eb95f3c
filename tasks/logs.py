"""The logger of the Prefect run we are in, or a plain one outside any run.

The cycle's worker processes run task bodies, never runs, and never import Prefect (its import is
~3 s of CPU a process on two cores): a process without Prefect loaded is in no run, so it logs
to the standard logger without loading Prefect to be told so.
"""

import logging
import sys

__all__ = ["run_logger"]


def run_logger(outside: str = "arrears") -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run's logger (to the Prefect API) inside a flow or task run; `outside` otherwise (a
    worker process, a task body called with `.fn`, the webhook, a test)."""
    if "prefect" in sys.modules:
        from prefect import get_run_logger
        from prefect.exceptions import MissingContextError

        try:
            return get_run_logger()
        except MissingContextError:
            pass
    return logging.getLogger(outside)
