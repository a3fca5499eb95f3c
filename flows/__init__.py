"""Prefect flows: they compose tasks and never call a provider directly (DESIGN §1)."""
