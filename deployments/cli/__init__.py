"""The `arrears` command line (DESIGN §8).

Each command group lives in its own module and registers itself on `app`; this module only
assembles them and turns expected failures into one-line errors instead of tracebacks.
"""

import os
import sys
import traceback

from arrears.masking import install_log_masking, mask_text
from deployments.cli._common import (
    CliError,
    app,
    console_err,
    database_error,
    quiet_console_logs,
    reflow_help,
)

# Importing a command module registers its commands on `app`, in the order --help lists them.
from deployments.cli import (  # noqa: F401  isort: skip
    demo,
    importing,
    cycle,
    report,
    promise,
    hold,
    contact,
    plan,
    settlement,
    review,
    referral,
    sale,
    letters,
    serve,
    schema,
    providers,
    bureau,
    compliance,
    quarantine,
    callbacks,
)

reflow_help(app)

__all__ = ["app", "main"]


def main() -> None:
    # Flow and task logs go to Prefect's API (the UI) at INFO; the terminal gets our own output.
    quiet_console_logs()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry from a lender's machine
    # The ephemeral server migrates a fresh database on first use: Prefect's 20 s are too few for
    # that on a busy two-core machine (the demo then fails before it starts).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    install_log_masking()  # phone numbers and national ids never reach a log in clear
    try:
        app()
    except CliError as error:
        console_err.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except Exception as error:
        # A policy file (ARREARS_POLICY_FILE) missing, malformed or loosening a statute, met by a
        # command that reads the policy as it works (`settlement record`, `plan accept`): bad
        # settings, one line naming the file and the key, exit 2 as `policy_ready` says at start.
        policy = sys.modules.get("arrears.policy")
        if policy is not None and isinstance(error, policy.PolicyError):
            said = CliError(f"invalid settings: ARREARS_POLICY_FILE: {error}")
            console_err.print(f"[red]error:[/red] {said}", highlight=False, soft_wrap=True)
            sys.exit(said.exit_code)
        # The database refused (read only, full disk, gone away): one line, the driver's words, never
        # the statement or its parameters (names, numbers); the transaction was rolled back. Only a
        # command that loaded SQLAlchemy can raise its errors (`--help` loads none).
        loaded = sys.modules.get("sqlalchemy.exc")
        if loaded is None or not isinstance(error, loaded.SQLAlchemyError):
            # Anything else: its traceback, as Python would print it, for a bug report, but masked
            # like a log record (under cron or systemd stderr is a log): a provider's refusal or a
            # row's value in the exception's text may quote a phone number or a national id.
            sys.stderr.write(mask_text("".join(traceback.format_exception(error))))
            sys.exit(1)
        said = CliError(f"database error: {database_error(error)}", exit_code=1)
        console_err.print(f"[red]error:[/red] {said}", highlight=False, soft_wrap=True)
        sys.exit(said.exit_code)
