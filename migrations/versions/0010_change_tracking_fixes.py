"""Change tracking fixes: the package owner of each packaged file (for removed files'
verdicts), and a purge of the stored content of paths no longer kept.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 18:10:00.000000

Content diffs now keep content only under opted-in places (/etc and the like) and never for
secret-looking paths (backups of shadow files, VPN and Wi-Fi credentials, private keys...):
what the wider rule of 0009 stored for such paths is deleted
(``scanner.changetracking.content.purge_stored``). ``package_owner`` holds, per machine, the
owning package of each monitored packaged file at its last scan (zlib-compressed JSON): a
removed file is ``matches-package`` only when that owner was removed or upgraded.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Add package_owner; delete the content of paths that are no longer kept."""
    from scanner.changetracking.content import purge_stored

    op.create_table('package_owner',
                    sa.Column('machine_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                              nullable=False),
                    sa.Column('data', sa.LargeBinary(), nullable=False),
                    sa.Column('scan_id', sa.BigInteger(), nullable=False),
                    sa.ForeignKeyConstraint(['machine_id'], ['machine.id'],
                                            name=op.f('fk_package_owner_machine_id_machine'),
                                            ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('machine_id', name=op.f('pk_package_owner')))

    purge_stored(op.get_bind())


def downgrade() -> None:
    """Drop package_owner (purged content cannot come back)."""
    op.drop_table('package_owner')
