"""The schema (SQLAlchemy Core). Alembic migrations in ``migrations/`` create and upgrade it.

Times of scans and events are timezone-aware; file times are integer nanoseconds.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})



class Json(TypeDecorator[object]):
    """JSON, stored as JSONB on PostgreSQL. The PostgreSQL type is looked up when a
    PostgreSQL database is used, so SQLite never imports that dialect (start-up time)."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[object]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())

Id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER keys only
Stamp = DateTime(timezone=True)

account = Table(
    "account", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("cloud", String(16), nullable=False),          # local | aws | azure
    Column("config", Json, nullable=False, default=dict),  # ids, regions, role refs: never secrets
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", Stamp, nullable=False, server_default=func.now()),
    Column("last_discovered_at", Stamp),
    Column("discovery_error", Text),
)

machine = Table(
    "machine", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", ForeignKey("account.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(300), nullable=False),
    Column("os", String(16)),
    Column("resource_id", Text),
    Column("region", String(64)),
    Column("state", String(24)),                           # as the cloud says (running, ...)
    Column("tags", Json),
    Column("present", Boolean, nullable=False, default=True),  # still seen by discovery
    Column("created_at", Stamp, nullable=False, server_default=func.now()),
    Column("last_seen_at", Stamp),
    Column("last_scan_id", BigInteger),
    # the content settings its last scan kept content under (JSON; NULL: the built-in
    # list), scanner.changetracking.keeping.ContentRules (0012)
    Column("content_rules", Text),
    UniqueConstraint("account_id", "name"),
)

disk = Table(
    "disk", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("machine_id", ForeignKey("machine.id", ondelete="CASCADE"), nullable=False),
    Column("resource_id", Text, nullable=False),           # cloud volume / disk id, or image path
    Column("device", String(64)),
    Column("size_bytes", BigInteger),
    Column("present", Boolean, nullable=False, default=True),
    Column("created_at", Stamp, nullable=False, server_default=func.now()),
    UniqueConstraint("machine_id", "resource_id"),
)

scan = Table(
    "scan", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("machine_id", ForeignKey("machine.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),
    # snapshotting | queued | running | succeeded | partial | failed
    Column("started_at", Stamp, nullable=False),
    Column("finished_at", Stamp),
    Column("source", Json),
    Column("baseline", Boolean, nullable=False, default=False),
    Column("entities", Integer, nullable=False, default=0),
    Column("added", Integer, nullable=False, default=0),
    Column("removed", Integer, nullable=False, default=0),
    Column("modified", Integer, nullable=False, default=0),
    Column("policies", Json),                               # active entity names
    Column("coverage", Json),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("emitted_at", Stamp),
    Index(None, "machine_id", "started_at"),
)
ACTIVE_SCAN_STATES = ("snapshotting", "queued", "running")
# Never two scans of one machine at once: one active scan row per machine, enforced here.
# Partial indexes: the migrations create them with their WHERE on both databases; the
# metadata names the SQLite spelling only, since a ``postgresql_where`` would import the
# whole PostgreSQL dialect into every command (start-up) and the schema is never created
# from this metadata.
Index("uq_scan_active_machine", scan.c.machine_id, unique=True,
      sqlite_where=scan.c.status.in_(ACTIVE_SCAN_STATES))

snapshot = Table(
    "snapshot", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("scan_id", ForeignKey("scan.id", ondelete="CASCADE"), nullable=False),
    Column("disk_id", ForeignKey("disk.id", ondelete="CASCADE"), nullable=False),
    Column("parent_id", BigInteger),                        # previous snapshot of the disk
    Column("cloud_id", Text),                               # provider's snapshot id
    # requested | pending | ready | scanning | scanned | deleted | failed
    Column("state", String(16), nullable=False),
    Column("locator", Json),                                # JSON-able block source locator
    Column("error", Text),
    Column("created_at", Stamp, nullable=False, server_default=func.now()),
    Column("ready_at", Stamp),
    Column("deleted_at", Stamp),
    UniqueConstraint("scan_id", "disk_id"),
)

policy_entity = Table(
    "policy_entity", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", ForeignKey("account.id", ondelete="CASCADE")),  # NULL: global
    Column("name", String(500), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("path", Text, nullable=False),
    Column("depth", Integer),
    Column("excludes", Json, nullable=False, default=list),
    Column("value_names", Json, nullable=False, default=list),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("source", String(16), nullable=False),
    Column("created_at", Stamp, nullable=False, server_default=func.now()),
    Column("content", String(8)),            # keep | never; NULL: default (0012)
)
# One name per scope; NULL (global) counts as one scope on every database.
Index("uq_policy_entity_scope_name", func.coalesce(policy_entity.c.account_id, 0),
      policy_entity.c.name, unique=True)

file_state = Table(
    "file_state", metadata,
    Column("machine_id", ForeignKey("machine.id", ondelete="CASCADE"), primary_key=True),
    Column("path", Text, primary_key=True),
    Column("type", String(16), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mode", Integer, nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("gid", BigInteger, nullable=False),
    Column("mtime", BigInteger),
    Column("ctime", BigInteger),
    Column("crtime", BigInteger),
    Column("atime", BigInteger),
    Column("inode", BigInteger, nullable=False),
    Column("nlink", Integer, nullable=False),
    Column("link_target", Text),
    Column("sha256", String(64)),
    Column("acl", Text),
    Column("capability", Text),
    Column("xattrs", Json, nullable=False, default=dict),
    Column("policies", Json, nullable=False, default=list),
    Column("scan_id", BigInteger, nullable=False),
    Column("attributes", Text),                             # NTFS DOS attributes
    # digest of the row's values (scanner.storage.sqldiff): a rescan stages (path,
    # row_digest) and compares whole rows only where it differs; NULL: always compared
    Column("row_digest", LargeBinary),                      # 0013
)

registry_state = Table(
    "registry_state", metadata,
    Column("machine_id", ForeignKey("machine.id", ondelete="CASCADE"), primary_key=True),
    Column("path", Text, primary_key=True),                 # key path or value id
    Column("kind", String(8), nullable=False),              # key | value
    Column("key_path", Text, nullable=False),
    Column("value_name", Text),
    Column("last_write", BigInteger),                       # keys
    Column("acl", Text),
    Column("subkey_count", Integer),
    Column("value_count", Integer),
    Column("type", String(48)),                             # values
    Column("size", BigInteger),
    Column("sha256", String(64)),
    Column("preview", Text),
    Column("policies", Json, nullable=False, default=list),
    Column("scan_id", BigInteger, nullable=False),
    Column("row_digest", LargeBinary),                      # as file_state's (0013)
)

# The digest of each hive the machine's registry state was last read from (see
# scanner.storage.hives): an unchanged hive's rows are not staged again.
registry_hive = Table(
    "registry_hive", metadata,
    Column("machine_id", ForeignKey("machine.id", ondelete="CASCADE"), primary_key=True),
    Column("mount", Text, primary_key=True),                # HKLM\SOFTWARE, HKU\<user>
    Column("digest", String(64), nullable=False),
    Column("scan_id", BigInteger, nullable=False),
)

# Change tracking (migration 0009): installed software, Windows services and Linux daemons,
# one row per item (scanner.changetracking.model.InventoryEntity), and the sources of a
# machine's inventory read at least once (a source read for the first time is a baseline).
inventory_state = Table(
    "inventory_state", metadata,
    Column("machine_id", ForeignKey("machine.id", ondelete="CASCADE"), primary_key=True),
    Column("path", Text, primary_key=True),                 # source\\name[:arch]
    Column("kind", String(16), nullable=False),             # software | service | daemon
    Column("name", Text, nullable=False),
    Column("source", String(32), nullable=False),           # dpkg | rpm | apk | systemd ...
    Column("version", Text),
    Column("architecture", Text),
    Column("digest", String(64)),
    Column("detail", Json, nullable=False, default=dict),
    Column("policies", Json, nullable=False, default=list),
    Column("scan_id", BigInteger, nullable=False),
    Column("row_digest", LargeBinary),                      # as file_state's (0013)
)

# Small text files' content (zlib), de-duplicated by SHA-256 across machines: the two sides
# of a content diff (scanner.changetracking.content).
content_blob = Table(
    "content_blob", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

# The owning package of each monitored packaged file at the machine's last scan (migration
# 0010): zlib-compressed JSON {path: item id}, for the verdicts of removed files.
package_owner = Table(
    "package_owner", metadata,
    Column("machine_id", ForeignKey("machine.id", ondelete="CASCADE"), primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("scan_id", BigInteger, nullable=False),
)

# Package database parses by the digest of the bytes parsed (migration 0011): zlib-compressed
# JSON, what a rescan reuses for unchanged database files (scanner.changetracking.parses).
package_parse = Table(
    "package_parse", metadata,
    Column("machine_id", ForeignKey("machine.id", ondelete="CASCADE"), primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("scan_id", BigInteger, nullable=False),
)

inventory_source = Table(
    "inventory_source", metadata,
    Column("machine_id", ForeignKey("machine.id", ondelete="CASCADE"), primary_key=True),
    Column("source", String(32), primary_key=True),
    Column("scan_id", BigInteger, nullable=False),
)

change_event = Table(
    "change_event", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("machine_id", ForeignKey("machine.id", ondelete="CASCADE"), nullable=False),
    Column("scan_id", ForeignKey("scan.id", ondelete="CASCADE"), nullable=False),
    Column("previous_scan_id", BigInteger),
    Column("detected_at", Stamp, nullable=False),
    Column("window_start", Stamp),
    Column("window_end", Stamp, nullable=False),
    Column("entity_type", String(16), nullable=False),     # file | registry
    Column("category", String(16), nullable=False),        # added | removed | modified
    Column("path", Text, nullable=False),
    Column("value_name", Text),
    Column("fields_changed", Json, nullable=False, default=list),
    Column("previous", Json),
    Column("current", Json),
    Column("policies", Json, nullable=False, default=list),
    Column("package", Text),                                # owner "name version" (0009)
    Column("package_verdict", String(32)),                  # matches-package ... (0009)
    Column("content_diff", Text),                           # unified diff (0009)
    Index(None, "machine_id", "detected_at"),
    Index(None, "scan_id"),
)
# The dashboard's pages of events, newest first, by keyset (migration 0007).
Index("ix_change_event_detected_at_id", change_event.c.detected_at, change_event.c.id)
Index("ix_change_event_machine_id_detected_at_id", change_event.c.machine_id,
      change_event.c.detected_at, change_event.c.id)
Index("ix_change_event_entity_type_detected_at", change_event.c.entity_type,
      change_event.c.detected_at)
Index("ix_scan_finished_at", scan.c.finished_at)
Index("ix_scan_machine_id_id", scan.c.machine_id, scan.c.id)

# -- delivery of events and alerts to the configured sinks (the outbox) -----------------------
# A sink is registered (by name: jsonl, syslog, webhook) the first time a process with it
# configured commits a scan or delivers; from then on every committed event and every alert
# gets one delivery row per registered sink, in the transaction that creates it.
sink = Table(
    "sink", metadata,
    Column("name", String(32), primary_key=True),
    Column("registered_at", Stamp, nullable=False),
    Column("locked_at", Stamp),                              # last delivery run (its row lock)
    Column("last_delivered_at", Stamp),
    Column("last_error", Text),
)

alert = Table(
    "alert", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("machine_id", ForeignKey("machine.id", ondelete="CASCADE"), nullable=False),
    Column("scan_id", BigInteger),
    Column("kind", String(24), nullable=False),            # scan_failed | scan_stale
    Column("dedupe_key", String(200), nullable=False, unique=True),
    Column("created_at", Stamp, nullable=False),
    Column("detail", Json, nullable=False, default=dict),
)

delivery = Table(
    "delivery", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),  # the order of delivery per sink
    Column("sink", String(32), nullable=False),
    Column("event_id", ForeignKey("change_event.id", ondelete="CASCADE")),
    Column("alert_id", ForeignKey("alert.id", ondelete="CASCADE")),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Stamp),
    Column("last_error", Text),
    Column("created_at", Stamp, nullable=False),
    Column("delivered_at", Stamp),
    Index(None, "event_id"),
    Index(None, "alert_id"),
)
Index("ix_delivery_pending", delivery.c.sink, delivery.c.id,  # partial: see the scan index
      sqlite_where=delivery.c.delivered_at.is_(None))
