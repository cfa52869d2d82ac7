"""Package database parses kept by the digest of the bytes parsed.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 20:30:00.000000

A rescan whose dpkg ``status`` / ``*.md5sums``, ``rpmdb.sqlite`` or apk ``installed`` have the
same SHA-256 as at the machine's previous scan reuses what parsing them gave then
(``scanner.changetracking.parses``): ``package_parse`` holds, per machine, the parses its last
scan used (zlib-compressed JSON). A machine without a row parses everything, so the table
starts empty.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Add the package_parse table."""
    op.create_table('package_parse',
                    sa.Column('machine_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                              nullable=False),
                    sa.Column('data', sa.LargeBinary(), nullable=False),
                    sa.Column('scan_id', sa.BigInteger(), nullable=False),
                    sa.ForeignKeyConstraint(['machine_id'], ['machine.id'],
                                            name=op.f('fk_package_parse_machine_id_machine'),
                                            ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('machine_id', name=op.f('pk_package_parse')))


def downgrade() -> None:
    """Drop the package_parse table."""
    op.drop_table('package_parse')
