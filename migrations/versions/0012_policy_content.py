"""Content keeping as a policy setting: each monitored entity's content setting, and the
settings each machine's last scan kept content under.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 20:00:00.000000

``policy_entity.content`` is ``keep`` or ``never`` (NULL: the built-in list decides, as
before). ``machine.content_rules`` holds the settings in force at the machine's last scan
(JSON; NULL: none), so that the next scan after a change reads the content of files newly
kept and purges the content of those no longer kept. Existing rows keep NULL: nothing
changes until a setting is made.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0012'
down_revision: Union[str, Sequence[str], None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Add policy_entity.content and machine.content_rules."""
    # plain ALTER TABLE (no batch copy: views read machine)
    op.add_column('policy_entity', sa.Column('content', sa.String(length=8), nullable=True))
    op.add_column('machine', sa.Column('content_rules', sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop both columns (the settings are lost: content is kept by the built-in list)."""
    op.drop_column('machine', 'content_rules')
    op.drop_column('policy_entity', 'content')
