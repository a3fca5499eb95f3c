"""`arrears serve`: the deployments with their schedules, served from this process."""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from deployments.cli._common import (
    CliError,
    DatabaseOption,
    app,
    console,
    open_database,
    policy_ready,
    use_database,
)

if TYPE_CHECKING:
    from deployments.webhooks import WebhookServer


@app.command()
def serve(
    database: DatabaseOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the deployments and schedules, then exit.")
    ] = False,
) -> None:
    """Serve the daily cycle (cron, lender's time zone), the outbox sweep, reviews, referrals and webhooks.

    The cycle starts one repossession-review/review run per review and one legal-referral/referral
    run per referral; they wait suspended, holding no process, until a person or the court answers.
    The webhook server (ARREARS_WEBHOOK_HOST/PORT) takes delivery receipts, STOP and other
    replies, court status callbacks, letter tracking and the agency's assignment statuses. Point
    PREFECT_API_URL at a running `prefect server start` so runs survive this process; without it
    Prefect starts a temporary local server.
    """
    url = use_database(database)
    policy_ready()  # every run it serves would read it
    open_database(url, create=True, upgrade=True)
    from deployments.schedules import InvalidSchedule
    from deployments.serve import SERVE_LIMIT, deployments, describe_schedule, serve_all

    try:
        served = deployments()
    except InvalidSchedule as error:
        raise CliError(f"invalid settings: {error}") from None
    for deployment in served:
        schedules = (
            ", ".join(describe_schedule(s.schedule) for s in deployment.schedules or []) or "on demand"
        )
        limit = f"at most {deployment.concurrency_limit} at a time"
        console.print(f"[bold]{deployment.flow_name}/{deployment.name}[/bold]: {schedules}; {limit}")
    console.print(f"[bold]runs[/bold]: at most {SERVE_LIMIT} at a time in this process")
    if not dry_run:
        with _webhooks() as hooks:
            console.print(f"[bold]webhooks[/bold]: {hooks.url}")
            serve_all()


@contextmanager
def _webhooks() -> Iterator["WebhookServer"]:
    """The webhook server while the block runs. One that cannot start is one line, not a
    traceback: settings it refuses (an empty webhook secret) exit 2, a port taken exit 1; an error
    of the block itself (Prefect's runner) is not caught here."""
    from deployments.webhooks import (
        LifecycleRunner,
        WebhookConfigError,
        WebhookNotStarted,
        run_lifecycle_deployment,
        webhook_server,
    )
    from integrations.errors import ConfigError

    with ExitStack() as stack:
        try:
            hooks = stack.enter_context(
                webhook_server(lifecycle=LifecycleRunner(run=run_lifecycle_deployment()))
            )
        except (WebhookConfigError, ConfigError) as error:
            raise CliError(f"the webhook server cannot start: {error}") from None
        except WebhookNotStarted as error:
            raise CliError(str(error), exit_code=1) from None
        yield hooks
