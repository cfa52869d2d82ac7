"""Azure: managed disks of a subscription's VMs, snapshotted and read through SAS URLs.

:mod:`scanner.cloud.azure.pageblob` reads a snapshot's page blob (a fixed VHD) through its SAS
URL and asks Azure for the pages that changed between two snapshots; the Resource Manager side
builds on it: ``settings`` (endpoints of the cloud, grant lifetime), ``session``
(DefaultAzureCredential, the compute client), ``faults`` (azure-core errors -> our tree),
``discovery`` (VMs, disks), ``snapshots`` (create, refresh, delete, sweep), ``grants`` (read
SAS within the per-disk limit), ``provider`` (:class:`AzureProvider`).
"""
