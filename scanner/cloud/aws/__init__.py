"""The AWS provider: STS sessions, EC2 discovery and snapshots, EBS direct API reads.

Modules: ``session`` (credentials, clients), ``faults`` (botocore errors -> our tree),
``discovery`` (regions, instances, volumes), ``snapshots`` (create, refresh, delete, sweep),
``ratelimit`` (one limiter per account and region), ``ebs`` (the block fetcher and the
``ebs`` locator), ``provider`` (:class:`AwsProvider`).
"""
