"""Windows: DOS attributes of NTFS files, and the registry state.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 09:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

OID_TREES = ('HKLM\\SOFTWARE\\Microsoft\\Cryptography\\OID\\*',
             'HKLM\\SOFTWARE\\WOW6432Node\\Microsoft\\Cryptography\\OID\\*')
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    """Add file_state.attributes and the registry_state table."""
    with op.batch_alter_table('file_state') as batch:
        batch.add_column(sa.Column('attributes', sa.Text(), nullable=True))
    op.create_table('registry_state',
    sa.Column('machine_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('key_path', sa.Text(), nullable=False),
    sa.Column('value_name', sa.Text(), nullable=True),
    sa.Column('last_write', sa.BigInteger(), nullable=True),
    sa.Column('acl', sa.Text(), nullable=True),
    sa.Column('subkey_count', sa.Integer(), nullable=True),
    sa.Column('value_count', sa.Integer(), nullable=True),
    sa.Column('type', sa.String(length=48), nullable=True),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('preview', sa.Text(), nullable=True),
    sa.Column('policies', _JSON, nullable=False),
    sa.Column('scan_id', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['machine_id'], ['machine.id'],
                            name=op.f('fk_registry_state_machine_id_machine'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('machine_id', 'path', name=op.f('pk_registry_state'))
    )


    # The recommended OID wildcards now monitor their whole trees.
    policy = sa.table('policy_entity', sa.column('depth', sa.Integer), sa.column('path', sa.Text),
                      sa.column('source', sa.String))
    op.execute(policy.update()
               .where(policy.c.source == 'recommended', policy.c.path.in_(OID_TREES))
               .values(depth=None))


def downgrade() -> None:
    """Drop the registry state and the attributes column."""
    op.drop_table('registry_state')
    with op.batch_alter_table('file_state') as batch:
        batch.drop_column('attributes')
