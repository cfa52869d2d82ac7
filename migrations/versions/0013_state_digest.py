"""A digest of each state row's recorded values.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 20:00:00.000000

``row_digest`` of ``file_state``, ``registry_state`` and ``inventory_state`` (every state
``scanner.storage.sqldiff`` diffs) holds a digest of what each row was built from: a rescan
stages only (path, row digest) and compares whole rows where the digests differ. Existing rows get none: a NULL digest always differs, so the
first rescan after the upgrade compares every row in full (exactly as before) and stores
the digests of the rows it writes or confirms; no backfill is needed for correctness.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0013'
down_revision: Union[str, Sequence[str], None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_TABLES = ('file_state', 'registry_state', 'inventory_state')


def upgrade() -> None:
    """Add the row digest column of the state tables (NULL for existing rows)."""
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('row_digest', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    """Drop the row digest columns."""
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column('row_digest')
