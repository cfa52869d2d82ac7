"""Delivery of events and alerts to sinks: the registered sinks, alert records (failed and
stale scans) and the outbox (one delivery row per record and sink).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
_STAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create sink, alert and delivery."""
    op.create_table('sink',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('registered_at', _STAMP, nullable=False),
    sa.Column('locked_at', _STAMP, nullable=True),
    sa.Column('last_delivered_at', _STAMP, nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_sink'))
    )
    op.create_table('alert',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('machine_id', _ID, nullable=False),
    sa.Column('scan_id', sa.BigInteger(), nullable=True),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('created_at', _STAMP, nullable=False),
    sa.Column('detail', _JSON, nullable=False),
    sa.ForeignKeyConstraint(['machine_id'], ['machine.id'],
                            name=op.f('fk_alert_machine_id_machine'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_alert_dedupe_key'))
    )
    op.create_table('delivery',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('sink', sa.String(length=32), nullable=False),
    sa.Column('event_id', _ID, nullable=True),
    sa.Column('alert_id', _ID, nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', _STAMP, nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', _STAMP, nullable=False),
    sa.Column('delivered_at', _STAMP, nullable=True),
    sa.ForeignKeyConstraint(['alert_id'], ['alert.id'],
                            name=op.f('fk_delivery_alert_id_alert'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['event_id'], ['change_event.id'],
                            name=op.f('fk_delivery_event_id_change_event'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery'))
    )
    op.create_index(op.f('ix_delivery_event_id'), 'delivery', ['event_id'], unique=False)
    op.create_index(op.f('ix_delivery_alert_id'), 'delivery', ['alert_id'], unique=False)
    op.create_index('ix_delivery_pending', 'delivery', ['sink', 'id'], unique=False,
                    sqlite_where=sa.text('delivered_at IS NULL'),
                    postgresql_where=sa.text('delivered_at IS NULL'))


def downgrade() -> None:
    """Drop the outbox, the alerts and the sinks."""
    op.drop_index('ix_delivery_pending', table_name='delivery')
    op.drop_index(op.f('ix_delivery_alert_id'), table_name='delivery')
    op.drop_index(op.f('ix_delivery_event_id'), table_name='delivery')
    op.drop_table('delivery')
    op.drop_table('alert')
    op.drop_table('sink')
