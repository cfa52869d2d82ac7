"""Purge the stored content of paths change tracking no longer keeps.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 18:10:00.000000

Content diffs now keep content only under opted-in places (/etc and the like) and never for
secret-looking paths (backups of shadow files, VPN and Wi-Fi credentials, private keys...):
what the wider rule of 0009 stored for such paths is deleted
(``scanner.changetracking.content.purge_stored``). No schema change; nothing to undo.
"""
from typing import Sequence, Union

from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Delete the content of paths that are no longer kept."""
    from scanner.changetracking.content import purge_stored

    purge_stored(op.get_bind())


def downgrade() -> None:
    """Nothing: purged content cannot come back (the next scans keep what is kept)."""
