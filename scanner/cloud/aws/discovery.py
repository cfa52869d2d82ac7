"""EC2 discovery: the account's regions, their instances (running and stopped) and volumes."""

from __future__ import annotations

from typing import Any

from scanner.cloud.aws.faults import translate
from scanner.cloud.aws.session import AwsAccount, client
from scanner.cloud.provider import DiskInfo, MachineInfo

LIVE_STATES = ("pending", "running", "stopping", "stopped")
GIB = 1 << 30


def regions(account: AwsAccount, home: str = "us-east-1") -> list[str]:
    """The account's configured regions, or every region enabled for it."""
    if account.regions:
        return list(account.regions)
    ec2 = client(account, "ec2", home)
    try:
        found = ec2.describe_regions(AllRegions=False)["Regions"]
    except Exception as exc:
        raise translate(exc, "listing the regions") from exc
    return sorted(str(r["RegionName"]) for r in found)


def os_hint(instance: dict[str, Any]) -> str:
    """``windows`` or ``linux`` from the instance's platform (a hint: the disk decides)."""
    platform = str(instance.get("Platform") or instance.get("PlatformDetails") or "")
    return "windows" if "windows" in platform.lower() else "linux"


def _tags(instance: dict[str, Any]) -> dict[str, str]:
    return {str(t["Key"]): str(t.get("Value") or "") for t in instance.get("Tags") or []}


def instances(account: AwsAccount, region: str) -> list[MachineInfo]:
    """Instances of one region that are not terminated, each with its EBS volumes (in
    device order: the root device first)."""
    ec2 = client(account, "ec2", region)
    found: list[dict[str, Any]] = []
    try:
        for page in ec2.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-state-name", "Values": list(LIVE_STATES)}]):
            for reservation in page.get("Reservations", []):
                found.extend(reservation.get("Instances", []))
        volume_ids = sorted({m["Ebs"]["VolumeId"] for i in found
                             for m in i.get("BlockDeviceMappings", []) if "Ebs" in m})
        sizes: dict[str, int] = {}
        for start in range(0, len(volume_ids), 200):
            for page in ec2.get_paginator("describe_volumes").paginate(
                    VolumeIds=volume_ids[start:start + 200]):
                sizes.update({v["VolumeId"]: int(v["Size"]) * GIB for v in page["Volumes"]})
    except Exception as exc:
        raise translate(exc, f"listing the instances of {region}") from exc
    machines = []
    for inst in sorted(found, key=lambda i: str(i["InstanceId"])):
        root = inst.get("RootDeviceName")
        mappings = sorted((m for m in inst.get("BlockDeviceMappings", []) if "Ebs" in m),
                          key=lambda m: (m.get("DeviceName") != root, str(m.get("DeviceName"))))
        disks = tuple(DiskInfo(m["Ebs"]["VolumeId"], m.get("DeviceName"),
                               sizes.get(m["Ebs"]["VolumeId"])) for m in mappings)
        tags = _tags(inst)
        machines.append(MachineInfo(str(inst["InstanceId"]), tags.get("Name") or inst["InstanceId"],
                                    disks, os_hint(inst), region,
                                    str(inst.get("State", {}).get("Name") or ""), tags))
    return machines


def discover(account: AwsAccount) -> list[MachineInfo]:
    """Every instance of every region of the account."""
    out: list[MachineInfo] = []
    for region in regions(account):
        out.extend(instances(account, region))
    return out
