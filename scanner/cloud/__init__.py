"""Control plane: providers that discover machines and disks, make, wait for, open and
delete snapshots. Data plane reads go through block sources (:mod:`scanner.sources`)."""
