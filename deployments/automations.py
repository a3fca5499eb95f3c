"""Automations declared with the deployments (DESIGN §9): what pages operations, and through what.

Each automation sends a notification through a Prefect notification block that the operator
configures (Slack, e-mail, a custom webhook …) and names in `ARREARS_NOTIFICATION_BLOCK` as
`BLOCK-TYPE/BLOCK-NAME`, e.g. `slack-webhook/collections-ops`. They are applied, created or
updated by name, by `arrears serve` and by `prefect deploy` (`automations_step`, a build step of
`deployments/prefect.yaml`; `python -m deployments.automations` applies them by hand):

- a daily cycle failed or crashed (Prefect's own flow-run events);
- a provider outage (`arrears.provider.outage`, emitted by dispatch);
- blocked messages above the threshold in one cycle (`arrears.messages.blocked` whose resource
  is labelled `arrears.blocked.over-threshold: true` by the cycle's report);
- reviews waiting for their reviewer past their deadline (`arrears.reviews.overdue`);
- letters the law says to mail by a date, past it and not mailed (`arrears.letters.overdue`: a
  deficiency explanation asked for, UCC 9-616(b); a GB notice of sums in arrears, CCA 1974 s.86B;
  a US-CA validation notice, Reg F 1006.34).

Notifications carry counts and names, never a phone number.
"""

import os
import sys
from dataclasses import dataclass
from typing import Any
from uuid import UUID

__all__ = [
    "AUTOMATIONS",
    "NOTIFICATION_BLOCK_ENV",
    "Alert",
    "apply_automations",
    "automations",
    "automations_step",
]

NOTIFICATION_BLOCK_ENV = "ARREARS_NOTIFICATION_BLOCK"
PREFIX = "arrears: "


@dataclass(frozen=True, slots=True)
class Alert:
    name: str
    description: str
    events: tuple[str, ...]
    match: dict[str, str]
    match_related: dict[str, str] | None
    subject: str
    body: str


AUTOMATIONS: tuple[Alert, ...] = (
    Alert(
        "cycle failed",
        "The daily cycle failed or crashed: accounts were not advanced or messages not sent.",
        ("prefect.flow-run.Failed", "prefect.flow-run.Crashed"),
        {"prefect.resource.id": "prefect.flow-run.*"},
        {"prefect.resource.role": "flow", "prefect.resource.name": "daily-cycle"},
        "arrears: {{ event.resource.name }} ended ({{ event.event }})",
        "Flow run {{ event.resource.name }} ended with {{ event.event }}. Retry it from the Prefect UI "
        "or run `arrears cycle` again: a retried cycle repeats nothing already done.",
    ),
    Alert(
        "provider outage",
        "A provider could not be reached for a whole dispatch: messages wait, scheduled.",
        ("arrears.provider.outage",),
        {"prefect.resource.id": "arrears.*"},
        None,
        "arrears: provider outage ({{ event.resource.id }})",
        "Dispatch could not reach {{ event.resource.id }}; the messages wait and go out when it "
        "answers again. Details: {{ event.payload }}",
    ),
    Alert(
        "sender faults",
        "An SMS provider's delivery reports of the day before failed for our message or sender too often "
        "(ARREARS_SENDER_FAULT_ALERT_SHARE, ARREARS_SENDER_FAULT_ALERT_MIN).",
        ("arrears.provider.sender-faults",),
        {"prefect.resource.id": "arrears.provider.sms.*"},
        None,
        "arrears: {{ event.payload.provider }} failing for our message or sender",
        "{{ event.payload.sender_faults }} of {{ event.payload.reports }} delivery reports of the day before "
        "failed for a fault of our message or sender, by code: {{ event.payload.by_code }}; templates: "
        "{{ event.payload.templates }}. No number is marked for them: they go on failing until a person "
        "changes the template or registers the sender.",
    ),
    Alert(
        "messages blocked",
        "More messages blocked in one cycle than the threshold (ARREARS_BLOCKED_ALERT_THRESHOLD).",
        ("arrears.messages.blocked",),
        {"prefect.resource.id": "arrears.cycle.*", "arrears.blocked.over-threshold": "true"},
        None,
        "arrears: {{ event.payload.blocked }} messages blocked in one cycle",
        "The cycle of {{ event.resource['arrears.business-date'] }} blocked {{ event.payload.blocked }} "
        "messages (threshold {{ event.payload.threshold }}). By reason: {{ event.payload.by_reason }}",
    ),
    Alert(
        "reviews overdue",
        "Repossession reviews waiting for their reviewer past their deadline.",
        ("arrears.reviews.overdue",),
        {"prefect.resource.id": "arrears.cycle.*"},
        None,
        "arrears: {{ event.payload.overdue }} reviews wait past their deadline",
        "{{ event.payload.overdue }} repossession reviews have waited for a decision more than "
        "{{ event.payload.deadline_days }} days after their cure period ended; oldest first: "
        "{{ event.payload.accounts }}. `arrears review list` shows each with its flow run.",
    ),
    Alert(
        "letters overdue",
        "Letters the law says to mail by a date (a deficiency explanation asked for, a GB notice of sums "
        "in arrears) past it, not mailed.",
        ("arrears.letters.overdue",),
        {"prefect.resource.id": "arrears.cycle.*"},
        None,
        "arrears: {{ event.payload.count }} letters not mailed by the day the law says",
        "{{ event.payload.count }} letters the law says to mail by a date are past it and not mailed; "
        "oldest first: {{ event.payload.first }}. `arrears letters list --overdue` shows why each waits.",
    ),
)


def _block_id(slug: str) -> UUID:
    """The notification block named `BLOCK-TYPE/BLOCK-NAME`."""
    from prefect.client.orchestration import get_client

    block_type, _, name = slug.partition("/")
    if not block_type or not name:
        raise ValueError(f"{NOTIFICATION_BLOCK_ENV} must be BLOCK-TYPE/BLOCK-NAME, e.g. slack-webhook/ops")
    with get_client(sync_client=True) as client:
        return client.read_block_document_by_name(name, block_type_slug=block_type).id


def automations(block_id: UUID) -> list[Any]:
    """The automations, each notifying through the block `block_id`."""
    from prefect.automations import Automation, EventTrigger, Posture, SendNotification

    return [
        Automation(
            name=PREFIX + alert.name,
            description=alert.description,
            trigger=EventTrigger(
                expect=set(alert.events),
                match=alert.match,
                match_related=alert.match_related or {},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[SendNotification(block_document_id=block_id, subject=alert.subject, body=alert.body)],
        )
        for alert in AUTOMATIONS
    ]


def apply_automations(block: str | None = None) -> list[str]:
    """Create or update every automation by name; returns their names. Without a notification
    block configured there is nothing to notify through: says so on stderr and applies none."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    slug = block or os.environ.get(NOTIFICATION_BLOCK_ENV)
    if not slug:
        sys.stderr.write(
            f"automations not applied: set {NOTIFICATION_BLOCK_ENV}=BLOCK-TYPE/BLOCK-NAME "
            "to a Prefect notification block\n"
        )
        return []
    block_id = _block_id(slug)
    applied = []
    with get_client(sync_client=True) as client:
        for automation in automations(block_id):
            # Replaced by name (Prefect 3.9's update endpoint refuses the `owner_resource` its
            # own client sends): applying twice leaves one automation of each name.
            for existing in client.read_automations_by_name(automation.name):
                client.delete_automation(existing.id)
            client.create_automation(AutomationCore(**automation.model_dump(exclude={"id"})))
            applied.append(automation.name)
    return applied


def automations_step() -> dict[str, Any]:
    """`prefect deploy`'s build step: a Python step runs in the `prefect` process itself, where a
    shell step's `python` was whichever interpreter PATH found first (often one without Prefect)."""
    names = apply_automations()
    for name in names:
        print(f"automation applied: {name}")
    return {"automations": names}


if __name__ == "__main__":
    automations_step()
