"""The digest of each registry hive a machine's state was last read from.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 13:30:00.000000

A rescan whose hive has the same digest (same bytes, same registry entities walking it, same
collector rules) stages none of that hive's keys and values: its state rows are kept as they
are (``scanner.storage.hives``). A machine without a row here is staged in full, so the
table starts empty.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Add the registry_hive table."""
    op.create_table('registry_hive',
                    sa.Column('machine_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                              nullable=False),
                    sa.Column('mount', sa.Text(), nullable=False),
                    sa.Column('digest', sa.String(length=64), nullable=False),
                    sa.Column('scan_id', sa.BigInteger(), nullable=False),
                    sa.ForeignKeyConstraint(['machine_id'], ['machine.id'],
                                            name=op.f('fk_registry_hive_machine_id_machine'),
                                            ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('machine_id', 'mount', name=op.f('pk_registry_hive')))


def downgrade() -> None:
    """Drop the registry_hive table."""
    op.drop_table('registry_hive')
