"""Fleet: disks, snapshots, scan lifecycle, discovery fields, and the query views.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 05:55:38.598318

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


VIEWS = {
    "fim_change_events": """
        SELECT e.id, e.detected_at, a.name AS account, a.cloud, m.name AS machine, m.os,
               e.entity_type, e.category, e.path, e.value_name, e.fields_changed,
               e.previous, e.current, e.policies, e.scan_id, e.previous_scan_id,
               e.window_start, e.window_end
        FROM change_event e
        JOIN machine m ON m.id = e.machine_id
        JOIN account a ON a.id = m.account_id""",
    "fim_machine_status": """
        SELECT m.id, a.name AS account, a.cloud, m.name AS machine, m.os, m.region, m.state,
               m.present, s.id AS last_scan_id, s.status AS last_scan_status,
               s.finished_at AS last_scan_at,
               (SELECT count(*) FROM change_event e WHERE e.machine_id = m.id) AS total_changes
        FROM machine m
        JOIN account a ON a.id = m.account_id
        LEFT JOIN scan s ON s.id = m.last_scan_id""",
}


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('disk',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('machine_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('resource_id', sa.Text(), nullable=False),
    sa.Column('device', sa.String(length=64), nullable=True),
    sa.Column('size_bytes', sa.BigInteger(), nullable=True),
    sa.Column('present', sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['machine_id'], ['machine.id'], name=op.f('fk_disk_machine_id_machine'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_disk')),
    sa.UniqueConstraint('machine_id', 'resource_id', name=op.f('uq_disk_machine_id_resource_id'))
    )
    op.create_table('snapshot',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('scan_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('disk_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('parent_id', sa.BigInteger(), nullable=True),
    sa.Column('cloud_id', sa.Text(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('locator', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('ready_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['disk_id'], ['disk.id'], name=op.f('fk_snapshot_disk_id_disk'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['scan_id'], ['scan.id'], name=op.f('fk_snapshot_scan_id_scan'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_snapshot')),
    sa.UniqueConstraint('scan_id', 'disk_id', name=op.f('uq_snapshot_scan_id_disk_id'))
    )
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_discovered_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('discovery_error', sa.Text(), nullable=True))

    with op.batch_alter_table('machine', schema=None) as batch_op:
        batch_op.add_column(sa.Column('region', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('state', sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column('tags', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))
        batch_op.add_column(sa.Column('present', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('scan', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('emitted_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('uq_scan_active_machine', ['machine_id'], unique=True, sqlite_where=sa.text("status IN ('snapshotting', 'queued', 'running')"), postgresql_where=sa.text("status IN ('snapshotting', 'queued', 'running')"))

    for name, query in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {query}")



def downgrade() -> None:
    """Downgrade schema."""
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    with op.batch_alter_table('scan', schema=None) as batch_op:
        batch_op.drop_index('uq_scan_active_machine', sqlite_where=sa.text("status IN ('snapshotting', 'queued', 'running')"), postgresql_where=sa.text("status IN ('snapshotting', 'queued', 'running')"))
        batch_op.drop_column('emitted_at')
        batch_op.drop_column('attempts')

    with op.batch_alter_table('machine', schema=None) as batch_op:
        batch_op.drop_column('last_seen_at')
        batch_op.drop_column('present')
        batch_op.drop_column('tags')
        batch_op.drop_column('state')
        batch_op.drop_column('region')

    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_column('discovery_error')
        batch_op.drop_column('last_discovered_at')

    op.drop_table('snapshot')
    op.drop_table('disk')
