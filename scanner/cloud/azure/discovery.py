"""Azure discovery: the subscription's virtual machines (running, stopped or deallocated,
with their power state from the instance view), their managed OS and data disks, OS type
and tags. Three listings per subscription, whatever its size: the VMs, their statuses, the
disks (for sizes)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from scanner.cloud.azure.faults import translate
from scanner.cloud.azure.session import AzureAccount, compute, text
from scanner.cloud.provider import DiskInfo, MachineInfo
from scanner.errors import SourceError

GIB = 1 << 30
MAX_ITEMS = 200_000  # VMs or disks of one subscription: beyond this a reply is not believed


def _bounded(items: Iterable[Any], what: str) -> list[Any]:
    out = []
    for item in items:
        out.append(item)
        if len(out) > MAX_ITEMS:
            raise SourceError(f"{what}: more than {MAX_ITEMS} items listed; refusing the reply")
    return out


def power_state(vm: Any) -> str:
    """``running``, ``stopped``, ``deallocated``... from the instance view ('' if none)."""
    view = getattr(vm, "instance_view", None)
    for status in getattr(view, "statuses", None) or []:
        code = text(getattr(status, "code", None))
        if code.startswith("PowerState/"):
            return code.split("/", 1)[1][:40]
    return ""


def _disk_size(disk: Any) -> int | None:
    if disk is None:
        return None
    if isinstance(disk.disk_size_bytes, int) and disk.disk_size_bytes > 0:
        return int(disk.disk_size_bytes)
    if isinstance(disk.disk_size_gb, int) and disk.disk_size_gb > 0:
        return int(disk.disk_size_gb) * GIB
    return None


def disks_of(vm: Any, sizes: dict[str, Any]) -> tuple[DiskInfo, ...]:
    """The VM's managed disks: the OS disk first, then the data disks by LUN (unmanaged
    VHD disks are not snapshotted and left out)."""
    profile = getattr(vm, "storage_profile", None)
    found: list[DiskInfo] = []
    os_disk = getattr(profile, "os_disk", None)
    managed = getattr(os_disk, "managed_disk", None)
    if managed is not None and managed.id:
        found.append(DiskInfo(str(managed.id), "os", _disk_size(sizes.get(managed.id.lower()))))
    data = [d for d in getattr(profile, "data_disks", None) or []
            if d.managed_disk is not None and d.managed_disk.id]
    for disk in sorted(data, key=lambda d: int(d.lun or 0)):
        disk_id = str(disk.managed_disk.id)
        found.append(DiskInfo(disk_id, f"lun{int(disk.lun or 0)}",
                              _disk_size(sizes.get(disk_id.lower()))))
    return tuple(found)


def os_type(vm: Any) -> str:
    """``windows`` or ``linux`` from the OS disk's type (a hint: the disk decides)."""
    profile = getattr(vm, "storage_profile", None)
    value = text(getattr(getattr(profile, "os_disk", None), "os_type", None))
    return "windows" if value.lower() == "windows" else "linux"


def discover(account: AzureAccount) -> list[MachineInfo]:
    """Every VM of the subscription (of the configured regions, if any), with its disks."""
    client = compute(account)
    what = f"listing the virtual machines of subscription {account.subscription_id}"
    try:
        vms = _bounded(client.virtual_machines.list_all(), what)
        states = {str(vm.id).lower(): power_state(vm) for vm in _bounded(
            client.virtual_machines.list_all(status_only="true"), what)}
        sizes = {str(d.id).lower(): d for d in _bounded(client.disks.list(), what)}
    except Exception as exc:
        raise translate(exc, what) from exc
    machines = []
    for vm in sorted(vms, key=lambda v: str(v.id).lower()):
        region = str(vm.location or "").lower()
        if account.regions and region not in account.regions:
            continue
        tags = {str(k): str(v) for k, v in (vm.tags or {}).items()}
        machines.append(MachineInfo(str(vm.id), str(vm.name or vm.id), disks_of(vm, sizes),
                                    os_type(vm), region, states.get(str(vm.id).lower(), ""),
                                    tags))
    return machines
