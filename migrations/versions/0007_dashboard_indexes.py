"""Indexes of the dashboard and its API: change events newest first by ``(detected_at, id)``,
fleet-wide and per machine, so every page is a keyset read of an index; events by type and
time, and scans by finish time, for the summary's counts; scans by machine and id, for
each machine's latest scans.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 13:00:00.000000

"""
from typing import Sequence, Union

from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Create the keyset indexes of change_event and the summary's indexes."""
    op.create_index('ix_change_event_detected_at_id', 'change_event', ['detected_at', 'id'])
    op.create_index('ix_change_event_machine_id_detected_at_id', 'change_event',
                    ['machine_id', 'detected_at', 'id'])
    op.create_index('ix_change_event_entity_type_detected_at', 'change_event',
                    ['entity_type', 'detected_at'])
    op.create_index('ix_scan_finished_at', 'scan', ['finished_at'])
    op.create_index('ix_scan_machine_id_id', 'scan', ['machine_id', 'id'])


def downgrade() -> None:
    """Drop them."""
    op.drop_index('ix_scan_machine_id_id', table_name='scan')
    op.drop_index('ix_scan_finished_at', table_name='scan')
    op.drop_index('ix_change_event_entity_type_detected_at', table_name='change_event')
    op.drop_index('ix_change_event_machine_id_detected_at_id', table_name='change_event')
    op.drop_index('ix_change_event_detected_at_id', table_name='change_event')
