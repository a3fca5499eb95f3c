"""Compliance rules: pure checks run at decision time (advance) and again at send time (dispatch)."""

from arrears.compliance.hours import contact_allowed, next_allowed_instant

__all__ = ["contact_allowed", "next_allowed_instant"]
