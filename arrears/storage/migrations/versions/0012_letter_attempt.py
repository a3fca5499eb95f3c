"""a letter's attempt: written again after the provider refused it, under a new provider key

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 23:20:00

A letter the provider refused (Lob's 422 for an address it cannot mail to) is written again once an
import brings another address. It keeps its row and its own key (collection notices and plan
letters are matched to their stay or plan by that key), but goes to the provider under
`<key>-retry-<attempt>`: a provider may answer a key it refused with the same refusal for a day,
and Lob's lookup by the key's metadata must never take an earlier attempt for this one. Existing
letters are attempt 0: their provider key is their key, as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("letter", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("letter", schema=None) as batch_op:
        batch_op.drop_column("attempt")
