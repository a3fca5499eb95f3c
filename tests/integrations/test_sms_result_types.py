"""The SMS result types refuse what arrears cannot store (docs/adding-a-provider.md §1)."""

from datetime import UTC, datetime

import pytest

from integrations.sms.protocol import DeliveryReport


def test_delivery_report_refuses_a_naive_time() -> None:
    """A plugin's naive `at` is refused where it is made, not by the database at every push (a 500)."""
    with pytest.raises(ValueError, match="time-zone aware"):
        DeliveryReport(provider_id="m-1", status="delivered", at=datetime(2026, 12, 1, 9, 0))
    assert DeliveryReport(provider_id="m-1", status="delivered", at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
