"""The disk layer: volumes on a block source, filesystems on volumes, and a path walker."""
