"""``HKLM\\SYSTEM\\CurrentControlSet``: not stored in the SYSTEM hive, resolved through
``Select\\Current`` to the ``ControlSet00N`` key that is."""

from __future__ import annotations

import struct

from scanner.registry.hive import REG_DWORD, Hive, HiveError

__all__ = ["resolve_current_control_set"]


def resolve_current_control_set(system_hive: Hive) -> str:
    """The on-disk name of the current control set (``ControlSet001``) of a SYSTEM hive,
    from ``Select\\Current``; raise :class:`HiveError` when it cannot be resolved."""
    select = system_hive.find("Select")
    if select is None:
        raise HiveError("cannot resolve CurrentControlSet: no Select key")
    current = next((v for v in system_hive.values(select) if v.name.upper() == "CURRENT"), None)
    if current is None or current.type != REG_DWORD or len(current.data) != 4:
        raise HiveError("cannot resolve CurrentControlSet: no REG_DWORD Select\\Current")
    name = f"ControlSet{struct.unpack('<I', current.data)[0]:03d}"
    key = system_hive.subkey(system_hive.root, name)
    if key is None:
        raise HiveError(f"cannot resolve CurrentControlSet: {name} does not exist")
    return key.name
