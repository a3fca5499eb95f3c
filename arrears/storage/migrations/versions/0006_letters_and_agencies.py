"""letters, agency assignments, mailing address

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 07:30:00

A placeholder in the chain so that work landing in parallel keeps one linear history: it changes
nothing until its change fills it.
"""

from collections.abc import Sequence

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
