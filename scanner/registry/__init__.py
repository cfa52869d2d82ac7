"""Windows registry hives, read offline.

* :mod:`scanner.registry.hive`: the hive file reader (keys, values, security cells).
* :mod:`scanner.registry.replay`: :func:`~scanner.registry.replay.open_hive`, a hive brought up
  to date from its transaction logs.
* :mod:`scanner.registry.controlset`: ``CurrentControlSet`` resolved in a SYSTEM hive.

Policy entities are matched against hives by :mod:`scanner.collectors.registry`.
"""
