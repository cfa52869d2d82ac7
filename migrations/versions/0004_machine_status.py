"""Machine status: the latest scan of any outcome, and the last successful one apart; the
implicit account of `snapfim scan` machines is named ``cli``.

``fim_machine_status.last_scan_status`` used to follow ``machine.last_scan_id``, which only
completed scans set: a machine whose latest scan failed showed ``succeeded``, one that only
ever failed showed NULL. Now ``last_scan_*`` is the machine's latest finished scan whatever
its outcome (succeeded, partial or failed; a scan still in flight is not an outcome yet), and
``last_success_*`` its latest ``succeeded`` scan.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:00:00.000000

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

FINISHED = "('succeeded', 'partial', 'failed')"

MACHINE_STATUS = f"""
        SELECT m.id, a.name AS account, a.cloud, m.name AS machine, m.os, m.region, m.state,
               m.present,
               s.id AS last_scan_id, s.status AS last_scan_status,
               s.finished_at AS last_scan_at, s.error AS last_scan_error,
               ok.id AS last_success_scan_id, ok.finished_at AS last_success_at,
               (SELECT count(*) FROM scan c WHERE c.machine_id = m.id
                  AND c.status IN {FINISHED}) AS scans,
               (SELECT count(*) FROM change_event e WHERE e.machine_id = m.id) AS total_changes
        FROM machine m
        JOIN account a ON a.id = m.account_id
        LEFT JOIN scan s ON s.id = (SELECT max(l.id) FROM scan l WHERE l.machine_id = m.id
                                      AND l.status IN {FINISHED})
        LEFT JOIN scan ok ON ok.id = (SELECT max(g.id) FROM scan g WHERE g.machine_id = m.id
                                        AND g.status = 'succeeded')"""

OLD_MACHINE_STATUS = """
        SELECT m.id, a.name AS account, a.cloud, m.name AS machine, m.os, m.region, m.state,
               m.present, s.id AS last_scan_id, s.status AS last_scan_status,
               s.finished_at AS last_scan_at,
               (SELECT count(*) FROM change_event e WHERE e.machine_id = m.id) AS total_changes
        FROM machine m
        JOIN account a ON a.id = m.account_id
        LEFT JOIN scan s ON s.id = m.last_scan_id"""

_ACCOUNT = sa.table("account", sa.column("id", sa.Integer), sa.column("name", sa.String),
                    sa.column("cloud", sa.String), sa.column("config", sa.JSON))


def _rename_implicit(old: str, new: str) -> None:
    """Rename the account `snapfim scan` creates (a ``local`` one without an image
    directory), unless the new name is taken."""
    conn = op.get_bind()
    if conn.execute(sa.select(_ACCOUNT.c.id).where(_ACCOUNT.c.name == new)).first():
        return
    row = conn.execute(sa.select(_ACCOUNT.c.id, _ACCOUNT.c.config)
                       .where(_ACCOUNT.c.name == old, _ACCOUNT.c.cloud == "local")).first()
    if row is not None and "images" not in (row.config or {}):
        conn.execute(_ACCOUNT.update().where(_ACCOUNT.c.id == row.id).values(name=new))


def upgrade() -> None:
    """Recreate fim_machine_status; rename the implicit account ``local`` to ``cli``."""
    op.execute("DROP VIEW IF EXISTS fim_machine_status")
    op.execute(f"CREATE VIEW fim_machine_status AS {MACHINE_STATUS}")
    _rename_implicit("local", "cli")


def downgrade() -> None:
    """The 0002 view and account name."""
    _rename_implicit("cli", "local")
    op.execute("DROP VIEW IF EXISTS fim_machine_status")
    op.execute(f"CREATE VIEW fim_machine_status AS {OLD_MACHINE_STATUS}")
