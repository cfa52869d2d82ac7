"""Recommended registry keys whose content lives in subkeys are walked two levels deep.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00.000000

``HKLM\\SECURITY\\Policy\\Secrets`` keeps each LSA secret in a subkey (its data in
``CurrVal``/``OldVal`` below), ``Winlogon`` registers DLLs in ``GPExtensions``/``Notify``
subkeys, ``RunOnceEx`` entries are subkeys, the firewall profiles keep their exceptions in
``AuthorizedApplications\\List``/``GloballyOpenPorts\\List``: at depth 0 none of that was seen.
The seeded recommended entities (still at depth 0) get depth 2.

The keys this makes visible are new coverage, as when an entity is added: each machine's
last completed scan forgets these entities, so its next scan records what they now cover
quietly instead of reporting every existing secret as added (a change to what was already
covered is still reported).
"""
import json
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_SW = 'HKLM\\SOFTWARE\\'
_FIREWALL = ('HKLM\\SYSTEM\\CurrentControlSet\\Services\\SharedAccess\\Parameters\\'
             'FirewallPolicy\\')
DEEPER = (
    'HKLM\\SECURITY\\POLICY\\SECRETS',
    _SW + 'Microsoft\\Windows NT\\CurrentVersion\\Winlogon',
    _SW + 'WOW6432Node\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon',
    _SW + 'Microsoft\\Windows\\CurrentVersion\\RunOnceEx',
    _SW + 'WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\RunOnceEx',
    _FIREWALL + 'DomainProfile',
    _FIREWALL + 'PublicProfile',
    _FIREWALL + 'StandardProfile',
)
DEPTH = 2

_policy = sa.table('policy_entity', sa.column('depth', sa.Integer), sa.column('path', sa.Text),
                   sa.column('name', sa.Text), sa.column('source', sa.String))
_scan = sa.table('scan', sa.column('id', sa.BigInteger), sa.column('machine_id', sa.BigInteger),
                 sa.column('status', sa.String), sa.column('policies', sa.JSON))


def _set_depth(old: int, new: int) -> list[str]:
    """Move the seeded entities from depth ``old`` to ``new``; returns their names."""
    conn = op.get_bind()
    where = sa.and_(_policy.c.source == 'recommended', _policy.c.path.in_(DEEPER),
                    _policy.c.depth == old)
    names = [r.name for r in conn.execute(sa.select(_policy.c.name).where(where))]
    conn.execute(_policy.update().where(where).values(depth=new))
    return names


def upgrade() -> None:
    """Depth 2 for the recommended keys whose content is in subkeys; their newly covered
    keys are new coverage on each machine's next scan."""
    names = set(_set_depth(0, DEPTH))
    if not names:
        return
    conn = op.get_bind()
    last = (sa.select(sa.func.max(_scan.c.id))
            .where(_scan.c.status.in_(('succeeded', 'partial')))
            .group_by(_scan.c.machine_id))
    for row in conn.execute(sa.select(_scan.c.id, _scan.c.policies)
                            .where(_scan.c.id.in_(last))):
        policies = row.policies
        if isinstance(policies, str):
            policies = json.loads(policies)
        kept = [p for p in policies or () if p not in names]
        if kept != list(policies or ()):
            conn.execute(_scan.update().where(_scan.c.id == row.id).values(policies=kept))


def downgrade() -> None:
    """Back to depth 0 (the deeper keys' state rows are dropped by the next scan quietly)."""
    _set_depth(DEPTH, 0)
