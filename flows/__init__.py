"""Prefect flows: they compose tasks and never call a provider directly (DESIGN §1)."""

from flows._state_masking import install_state_masking

# Every process that runs a flow imports this package first (a served or pooled run imports only
# its flow's module): from then on a failed run's state message is masked like its logs.
install_state_masking()
