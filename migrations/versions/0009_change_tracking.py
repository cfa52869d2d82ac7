"""Change tracking: the inventory state (software, services, daemons), the sources read, the
kept content of small text files, and each change event's package, package verdict and
content diff.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 17:00:00.000000

The tables start empty: each machine's next scan records its inventory quietly (a source read
for the first time is a baseline), and events stored before have no package verdict.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')


def upgrade() -> None:
    """Add inventory_state, inventory_source and change_event.package/package_verdict."""
    op.create_table('inventory_state',
                    sa.Column('machine_id', _ID, nullable=False),
                    sa.Column('path', sa.Text(), nullable=False),
                    sa.Column('kind', sa.String(length=16), nullable=False),
                    sa.Column('name', sa.Text(), nullable=False),
                    sa.Column('source', sa.String(length=32), nullable=False),
                    sa.Column('version', sa.Text(), nullable=True),
                    sa.Column('architecture', sa.Text(), nullable=True),
                    sa.Column('digest', sa.String(length=64), nullable=True),
                    sa.Column('detail', _JSON, nullable=False),
                    sa.Column('policies', _JSON, nullable=False),
                    sa.Column('scan_id', sa.BigInteger(), nullable=False),
                    sa.ForeignKeyConstraint(['machine_id'], ['machine.id'],
                                            name=op.f('fk_inventory_state_machine_id_machine'),
                                            ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('machine_id', 'path', name=op.f('pk_inventory_state')))
    op.create_table('inventory_source',
                    sa.Column('machine_id', _ID, nullable=False),
                    sa.Column('source', sa.String(length=32), nullable=False),
                    sa.Column('scan_id', sa.BigInteger(), nullable=False),
                    sa.ForeignKeyConstraint(['machine_id'], ['machine.id'],
                                            name=op.f('fk_inventory_source_machine_id_machine'),
                                            ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('machine_id', 'source',
                                            name=op.f('pk_inventory_source')))
    op.create_table('content_blob',
                    sa.Column('sha256', sa.String(length=64), nullable=False),
                    sa.Column('data', sa.LargeBinary(), nullable=False),
                    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_content_blob')))
    # plain ALTER TABLE (no batch copy: views read change_event)
    op.add_column('change_event', sa.Column('package', sa.Text(), nullable=True))
    op.add_column('change_event',
                  sa.Column('package_verdict', sa.String(length=32), nullable=True))
    op.add_column('change_event', sa.Column('content_diff', sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop them."""
    op.drop_column('change_event', 'content_diff')
    op.drop_column('change_event', 'package_verdict')
    op.drop_column('change_event', 'package')
    op.drop_table('content_blob')
    op.drop_table('inventory_source')
    op.drop_table('inventory_state')
