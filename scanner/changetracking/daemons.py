"""Linux daemons: systemd units (``.service``, ``.timer``, ``.socket``, ``.path``) and SysV
init scripts, read through the scan's mounts.

A systemd unit is the first file of its name in ``/etc/systemd/system``, then
``/usr/lib/systemd/system`` (``/lib/...`` on unmerged systems); it is *enabled* when a
``*.wants`` or ``*.requires`` directory of ``/etc/systemd/system`` links it (an instance
``getty@tty1.service`` enables its template ``getty@.service``), *masked* when its name in
``/etc/systemd/system`` links to ``/dev/null``. Recorded: the unit file's SHA-256 (digest),
whether it is enabled, ``ExecStart`` (every one, in order), ``User`` and where the file is.
A SysV script of ``/etc/init.d`` is recorded with its SHA-256 and the runlevels whose
``/etc/rcN.d`` start it (``S??name``).

Drop-in directories (``unit.d/*.conf``) are not read yet.
"""

from __future__ import annotations

import hashlib
import re

from scanner.changetracking.model import DAEMON, Inventory, InventoryEntity, clip, item_id
from scanner.changetracking.reading import (
    ReadBudget,
    fail_if_unreadable,
    list_nodes,
    read_node,
)
from scanner.disk.nodes import FileKind, Filesystem, Node
from scanner.disk.walker import Walker
from scanner.errors import DiskError, InventoryError, SourceReadError

UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
UNIT_SUFFIXES = (".service", ".timer", ".socket", ".path")
MAX_UNIT_BYTES = 1 << 20
MAX_SCRIPT_BYTES = 16 << 20
MAX_LINE_CHARS = 16 << 10
_RC = re.compile(r"S\d\d(.+)")
_READ_ERRORS = (DiskError, SourceReadError, InventoryError)


def parse_unit(data: bytes) -> dict[str, str]:
    """``ExecStart`` (every line of it, ``; ``-joined), ``User`` and ``Description`` of a
    unit file (continuation lines joined, each line bounded)."""
    out: dict[str, list[str]] = {}
    section = ""
    pending = ""
    for raw in data.split(b"\n"):
        line = pending + raw.decode("utf-8", "surrogateescape")[:MAX_LINE_CHARS]
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if sep and (section, key) in (("Service", "ExecStart"), ("Service", "User"),
                                      ("Unit", "Description")):
            if key == "ExecStart" and not value.strip():  # an empty one resets the list
                out.pop(key, None)
                continue
            out.setdefault(key, []).append(value.strip())
    return {_FIELDS[k]: clip("; ".join(v)) for k, v in out.items()}


_FIELDS = {"ExecStart": "exec_start", "User": "user", "Description": "description"}


def _link(fs: Filesystem, node: Node) -> str | None:
    if node.kind is not FileKind.SYMLINK:
        return None
    try:
        return fs.read_link(node)
    except _READ_ERRORS:
        return None


def collect_daemons(walker: Walker, inventory: Inventory) -> None:
    """The systemd units and SysV scripts of the root ``walker`` walks, into ``inventory``;
    a unit directory that cannot be listed makes that source unreadable (kept)."""
    for source, reader in (("systemd", _systemd), ("sysv", _sysv)):
        seen = set(walker.result.unreadable)
        try:
            reader(walker, inventory)
        except _READ_ERRORS as exc:
            inventory.fail(source, str(exc), getattr(exc, "path", None))
            continue
        fail_if_unreadable(walker, seen, source, inventory)


def _systemd(walker: Walker, inventory: Inventory) -> None:
    budget = ReadBudget("systemd")
    units: dict[str, tuple[str, Node, Filesystem]] = {}
    masked: set[str] = set()
    enabled: set[str] = set()
    found = False
    for directory in UNIT_DIRS:
        listed = list_nodes(walker, directory)
        if listed is None:
            continue
        found = True
        nodes, fs = listed
        for node in nodes:
            name = node.name
            if directory == UNIT_DIRS[0] and node.kind is FileKind.DIRECTORY \
                    and name.endswith((".wants", ".requires")):
                wanted = list_nodes(walker, f"{directory}/{name}")
                enabled.update(n.name for n in (wanted[0] if wanted else ()))
                continue
            if not name.endswith(UNIT_SUFFIXES) or name in units:
                continue
            if _link(fs, node) == "/dev/null":
                masked.add(name)
            units[name] = (f"{directory}/{name}", node, fs)
    if not found:
        return
    inventory.sources.add("systemd")
    templates = {n.split("@", 1)[0] + "@" + n.rsplit(".", 1)[-1] for n in enabled if "@" in n}
    for name, (path, _node, _fs) in sorted(units.items()):
        template = name.endswith(tuple(f"@.{s.lstrip('.')}" for s in UNIT_SUFFIXES)) and (
            name.split("@", 1)[0] + "@" + name.rsplit(".", 1)[-1] in templates)
        detail: dict[str, object] = {"enabled": name in enabled or bool(template),
                                     "unit_file": path}
        digest = None
        if name in masked:
            detail["masked"] = True
        else:
            data = _read_item(walker, inventory, path, MAX_UNIT_BYTES, budget, detail)
            if data is not None:
                digest = hashlib.sha256(data).hexdigest()
                detail.update(parse_unit(data))
        inventory.add(InventoryEntity(item_id("systemd", name), DAEMON, name, "systemd",
                                      digest=digest, detail=detail, policies=("systemd",)))


def _sysv(walker: Walker, inventory: Inventory) -> None:
    listed = list_nodes(walker, "/etc/init.d")
    if listed is None:
        return
    inventory.sources.add("sysv")
    budget = ReadBudget("sysv")
    levels: dict[str, list[str]] = {}
    for level in "0123456S":
        links = list_nodes(walker, f"/etc/rc{level}.d")
        for node in (links[0] if links else ()):
            match = _RC.fullmatch(node.name)
            if match:
                levels.setdefault(match.group(1), []).append(level)
    for node in sorted(listed[0], key=lambda n: n.name):
        if node.kind is not FileKind.FILE or node.name.startswith(".") \
                or node.name in ("README", "skeleton"):
            continue
        started = "".join(levels.get(node.name, ()))
        detail: dict[str, object] = {"enabled": bool(set(started) - set("016")),
                                     "start_levels": started}
        data = _read_item(walker, inventory, f"/etc/init.d/{node.name}", MAX_SCRIPT_BYTES,
                          budget, detail)
        inventory.add(InventoryEntity(
            item_id("sysv", node.name), DAEMON, node.name, "sysv",
            digest=None if "oversized" in detail else hashlib.sha256(data or b"").hexdigest(),
            detail=detail, policies=("sysv",)))


def _read_item(walker: Walker, inventory: Inventory, path: str, max_bytes: int,
               budget: ReadBudget, detail: dict[str, object]) -> bytes | None:
    """The content of one unit file or script; None when there is none or when it is larger
    than ``max_bytes``: then it is recorded without digest, ``detail["oversized"]`` its size,
    and its path is unreadable in the scan (partial). One hostile file is bounded by itself:
    the other units are read and diffed."""
    found = walker.resolve(path, follow_last=True)
    if found is None or found[1].kind is not FileKind.FILE:
        return None
    if found[1].size > max_bytes:
        detail["oversized"] = found[1].size
        inventory.unread(path, f"{found[1].size} bytes, larger than {max_bytes}, the bound "
                         "for one unit file: its content is not read")
        return None
    return read_node(found[2].fs, found[1], max_bytes, budget, path)
