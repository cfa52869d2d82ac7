"""Azure: managed disks of a subscription's VMs, snapshotted and read through SAS URLs.

:mod:`scanner.cloud.azure.pageblob` reads a snapshot's page blob (a fixed VHD) through its SAS
URL and asks Azure for the pages that changed between two snapshots; the Resource Manager side
(discovery, snapshots, access grants) builds on it.
"""
