"""Linux daemons: systemd units (``.service``, ``.timer``, ``.socket``, ``.path``) and SysV
init scripts, read through the scan's mounts.

A systemd unit is the first file of its name in the unit search path (:data:`UNIT_DIRS`:
``/etc/systemd/system.control``, ``/etc/systemd/system``, ``/run/systemd/system``,
``/usr/local/lib/systemd/system``, ``/usr/lib/systemd/system``, ``/lib/systemd/system``;
``/run`` is a tmpfs, absent from a snapshot at rest: what ``systemctl --runtime`` or a
generator put there is not seen); it is *enabled* when a ``*.wants`` or ``*.requires``
directory of ``/etc/systemd/system`` links it (an instance ``getty@tty1.service`` enables its
template ``getty@.service``), *masked* when its name in ``/etc/systemd/system`` links to
``/dev/null``. Recorded: the unit's SHA-256 (digest), whether it is enabled, ``ExecStart``
(every one, in order), ``User`` and where the file is. A SysV script of ``/etc/init.d`` is
recorded with its SHA-256 and the runlevels whose ``/etc/rcN.d`` start it (``S??name``).

Drop-ins are part of a unit's effective definition, as systemd.unit(5) says: the ``*.conf``
files of ``<unit>.d/`` in every directory of the search path, of the template's
(``foo@.service.d/``), of the name's dash prefixes (``foo-.service.d/`` for
``foo-bar.service``) and of the unit type (``service.d/``). A drop-in name found in several
of these directories is taken from the first (``/etc`` masks ``/usr/lib``; a link to
``/dev/null`` masks it without content); the drop-ins are applied after the unit file in the
lexical order of their names. ``ExecStart`` is then the effective one (an empty
``ExecStart=`` resets the list; ``User=`` and ``Description=`` take the last value), the
drop-ins are listed in ``detail["drop_ins"]`` and the digest covers the unit file and its
drop-ins in order (a unit without drop-ins keeps the SHA-256 of its file). A drop-in that
cannot be read or is past its bounds (:data:`MAX_UNIT_BYTES` each; :data:`MAX_DROP_INS` and
:data:`MAX_DROP_IN_BYTES` per unit) keeps the unit's previous state and names the file in the
coverage (partial).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

from scanner.changetracking.model import DAEMON, Inventory, InventoryEntity, clip, item_id
from scanner.changetracking.parses import Parses
from scanner.changetracking.reading import (
    ReadBudget,
    fail_if_unreadable,
    list_nodes,
    read_node,
)
from scanner.disk.nodes import FileKind, Filesystem, Node
from scanner.disk.walker import Walker
from scanner.errors import DiskError, InventoryError, SourceReadError

UNIT_DIRS = ("/etc/systemd/system.control", "/etc/systemd/system", "/run/systemd/system",
             "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
ETC_UNITS = "/etc/systemd/system"  # where units are enabled and masked
UNIT_SUFFIXES = (".service", ".timer", ".socket", ".path")
MAX_UNIT_BYTES = 1 << 20
MAX_DROP_INS = 256  # effective drop-ins of one unit
MAX_DROP_IN_BYTES = 4 << 20  # all the drop-ins of one unit
MAX_CACHED_BYTES = 16 << 20  # drop-ins kept in memory to be read once (service.d/ and such)
MAX_SCRIPT_BYTES = 16 << 20
MAX_LINE_CHARS = 16 << 10
_RC = re.compile(r"S\d\d(.+)")
_READ_ERRORS = (DiskError, SourceReadError, InventoryError)
_LISTS = frozenset({"ExecStart"})  # settings that accumulate (an empty one resets them)
_SETTINGS = {("Service", "ExecStart"): "ExecStart", ("Service", "User"): "User",
             ("Unit", "Description"): "Description"}


def parse_unit(data: bytes, *drop_ins: bytes) -> dict[str, str]:
    """``ExecStart`` (every line of it, ``; ``-joined), ``User`` and ``Description`` of a
    unit file and its drop-ins applied in order (continuation lines joined, each line
    bounded): ``ExecStart`` accumulates and an empty ``ExecStart=`` resets it, ``User`` and
    ``Description`` take their last value (an empty one resets them)."""
    out: dict[str, list[str]] = {}
    for text in (data, *drop_ins):
        _parse_into(text, out)
    return {_FIELDS[k]: clip("; ".join(v)) for k, v in out.items() if v}


def _parse_into(data: bytes, out: dict[str, list[str]]) -> None:
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
        setting = _SETTINGS.get((section, key.strip())) if sep else None
        if setting is None:
            continue
        value = value.strip()
        if not value:  # an empty assignment resets the setting
            out.pop(setting, None)
        elif setting in _LISTS:
            out.setdefault(setting, []).append(value)
        else:
            out[setting] = [value]


_FIELDS = {"ExecStart": "exec_start", "User": "user", "Description": "description"}
_SETTING_NAMES = frozenset(_FIELDS.values())


def _link(fs: Filesystem, node: Node) -> str | None:
    if node.kind is not FileKind.SYMLINK:
        return None
    try:
        return fs.read_link(node)
    except _READ_ERRORS:
        return None


def collect_daemons(walker: Walker, inventory: Inventory, parses: Parses | None = None
                    ) -> None:
    """The systemd units and SysV scripts of the root ``walker`` walks, into ``inventory``;
    a unit directory that cannot be listed makes that source unreadable (kept).
    ``parses``: a unit whose file and drop-ins have the digest they had at the previous
    scan takes the settings parsed then (:mod:`.parses`; default: every unit parsed)."""
    for source, reader in (("systemd", _systemd), ("sysv", _sysv)):
        seen = set(walker.result.unreadable)
        try:
            reader(walker, inventory, parses or Parses())
        except _READ_ERRORS as exc:
            inventory.fail(source, str(exc), getattr(exc, "path", None))
            continue
        fail_if_unreadable(walker, seen, source, inventory)


def drop_in_dirs(name: str) -> list[str]:
    """The drop-in directory names of unit ``name``, most specific first: the unit's own,
    its template's (``foo@.service.d``), its dash prefixes (``foo-bar-.service.d``,
    ``foo-.service.d``) and its type's (``service.d``), as systemd.unit(5) lists them."""
    stem, dot, kind = name.rpartition(".")
    if not dot or not stem:
        return []
    names = [stem]
    if "@" in stem and not stem.endswith("@"):
        names.append(stem.split("@", 1)[0] + "@")
    base = stem.split("@", 1)[0] if "@" in stem else stem
    names += [base[:i + 1] for i in range(len(base) - 1, 0, -1) if base[i] == "-"]
    return [*dict.fromkeys(f"{n}.{kind}.d" for n in names), f"{kind}.d"]


class _Tree:
    """The unit search path of one root: each directory listed once (one that is another's
    alias, ``/lib`` on merged-/usr systems, is skipped), drop-in directories listed and
    drop-ins read on first use."""

    def __init__(self, walker: Walker, budget: ReadBudget) -> None:
        self.walker = walker
        self.budget = budget
        self.dirs: list[tuple[str, list[Node], Filesystem]] = []
        self.claimed_twice: set[str] = set()  # paths two entries of a directory claim
        self._dropin_dirs: list[set[str]] = []
        self._listed: dict[str, list[tuple[Node, Filesystem]]] = {}
        self._read: dict[str, bytes | None] = {}
        self._cached = 0
        seen: set[str] = set()
        for directory in UNIT_DIRS:
            found = walker.resolve(directory, follow_last=True)
            if found is None or found[1].kind is not FileKind.DIRECTORY or found[0] in seen:
                continue
            seen.add(found[0])
            listed = list_nodes(walker, directory)
            if listed is None:
                continue
            self.dirs.append((directory, *listed))
            fold = not listed[1].case_sensitive
            keys = Counter(n.name.casefold() if fold else n.name for n in listed[0])
            self.claimed_twice.update(f"{directory}/{n.name}" for n in listed[0]
                                      if keys[n.name.casefold() if fold else n.name] > 1)
            self._dropin_dirs.append({n.name for n in listed[0] if n.name.endswith(".d")})

    def drop_ins(self, name: str) -> list[tuple[str, Node, Filesystem] | None] | str:
        """The effective drop-ins of unit ``name`` in the order they apply: (path, node,
        filesystem) each, None for one masked by a link to ``/dev/null``; when there are
        more than :data:`MAX_DROP_INS`, the directory where the bound was passed."""
        chosen: dict[str, tuple[str, Node, Filesystem] | None] = {}
        variants = drop_in_dirs(name)
        for (directory, _nodes, _fs), present in zip(self.dirs, self._dropin_dirs,
                                                      strict=True):
            for variant in variants:
                if variant not in present:
                    continue
                path = f"{directory}/{variant}"
                for node, fs in self._conf_files(path):
                    if node.name in chosen:  # a higher-priority one of this name
                        continue
                    if len(chosen) >= MAX_DROP_INS:
                        return path
                    masked = _link(fs, node) == "/dev/null"
                    chosen[node.name] = None if masked else (f"{path}/{node.name}", node, fs)
        return [chosen[n] for n in sorted(chosen)]

    def _conf_files(self, path: str) -> list[tuple[Node, Filesystem]]:
        """The ``*.conf`` entries (files and links) of a drop-in directory, listed once."""
        listed = self._listed.get(path)
        if listed is None:
            found = list_nodes(self.walker, path)
            listed = [] if found is None else [
                (n, found[1]) for n in found[0]
                if n.name.endswith(".conf") and n.kind in (FileKind.FILE, FileKind.SYMLINK)]
            self._listed[path] = listed
        return listed

    def read(self, path: str) -> bytes | None:
        """A drop-in's content (bounded; kept in memory up to :data:`MAX_CACHED_BYTES` in
        all, so that a type-level drop-in is read once); None when it is not a regular
        file. Raises :class:`InventoryError` past :data:`MAX_UNIT_BYTES` (or the source's
        budget), DiskError / SourceReadError when it cannot be read."""
        if path in self._read:
            return self._read[path]
        found = self.walker.resolve(path, follow_last=True)
        data = None
        if found is not None and found[1].kind is FileKind.FILE:
            if found[1].size > MAX_UNIT_BYTES:
                raise InventoryError(f"{found[1].size} bytes, larger than {MAX_UNIT_BYTES}, "
                                     "the bound for one drop-in: its content is not read",
                                     path)
            data = read_node(found[2].fs, found[1], MAX_UNIT_BYTES, self.budget, path)
        if self._cached + len(data or b"") <= MAX_CACHED_BYTES:
            self._cached += len(data or b"")
            self._read[path] = data
        return data


def _systemd(walker: Walker, inventory: Inventory, parses: Parses) -> None:
    budget = ReadBudget("systemd")
    tree = _Tree(walker, budget)
    units: dict[str, tuple[str, Node, Filesystem]] = {}
    masked: set[str] = set()
    enabled: set[str] = set()
    for directory, nodes, fs in tree.dirs:
        for node in nodes:
            name = node.name
            if directory == ETC_UNITS and node.kind is FileKind.DIRECTORY \
                    and name.endswith((".wants", ".requires")):
                wanted = list_nodes(walker, f"{directory}/{name}")
                enabled.update(n.name for n in (wanted[0] if wanted else ()))
                continue
            if not name.endswith(UNIT_SUFFIXES) or name in units:
                continue
            if _link(fs, node) == "/dev/null":
                masked.add(name)
            units[name] = (f"{directory}/{name}", node, fs)
    if not tree.dirs:
        return
    inventory.sources.add("systemd")
    templates = {n.split("@", 1)[0] + "@" + n.rsplit(".", 1)[-1] for n in enabled if "@" in n}
    for name, (path, node, fs) in sorted(units.items()):
        template = name.endswith(tuple(f"@.{s.lstrip('.')}" for s in UNIT_SUFFIXES)) and (
            name.split("@", 1)[0] + "@" + name.rsplit(".", 1)[-1] in templates)
        detail: dict[str, object] = {"enabled": name in enabled or bool(template),
                                     "unit_file": path}
        digest = None
        drop_ins = _drop_ins(tree, inventory, name)
        if drop_ins is None:  # not read whole: the unit keeps its previous state
            continue
        if drop_ins:
            detail["drop_ins"] = [p for p, _ in drop_ins]
        if name in masked:
            detail["masked"] = True
        else:
            # a regular file its directory lists once is read as listed; a link, or a name
            # claimed twice (a conflict: the walker names it unreadable), is resolved
            listed = (node, fs) if node.kind is FileKind.FILE and \
                path not in tree.claimed_twice else None
            data = _read_item(walker, inventory, path, MAX_UNIT_BYTES, budget, detail, listed)
            if data is not None:
                digest = _digest(data, drop_ins)
                detail.update(_settings(parses, digest, data, drop_ins))
        inventory.add(InventoryEntity(item_id("systemd", name), DAEMON, name, "systemd",
                                      digest=digest, detail=detail, policies=("systemd",)))


def _drop_ins(tree: _Tree, inventory: Inventory, name: str
              ) -> list[tuple[str, bytes]] | None:
    """The effective drop-ins of unit ``name`` with their content, in order; None when one
    cannot be read or they are past their bounds (named in the coverage; the unit's
    previous state is kept)."""
    unit = item_id("systemd", name)
    found = tree.drop_ins(name)
    if isinstance(found, str):
        inventory.read_in_part("systemd", f"{name} has more than {MAX_DROP_INS} drop-ins, "
                               "the bound", found, within=unit)
        return None
    out = []
    total = 0
    for entry in found:
        if entry is None:
            continue
        path = entry[0]
        try:
            data = tree.read(path)
        except (DiskError, SourceReadError) as exc:
            inventory.read_in_part("systemd", str(exc), path, within=unit)
            return None
        except InventoryError as exc:
            if tree.budget.left < 0:  # the source's whole budget: not one unit's problem
                raise
            inventory.read_in_part("systemd", str(exc), path, within=unit)
            return None
        if data is None:
            continue
        total += len(data)
        if total > MAX_DROP_IN_BYTES:
            inventory.read_in_part("systemd", f"{name}: its drop-ins add up to more than "
                                   f"{MAX_DROP_IN_BYTES} bytes, the bound", path, within=unit)
            return None
        out.append((path, data))
    return out


def _settings(parses: Parses, digest: str, data: bytes, drop_ins: list[tuple[str, bytes]]
              ) -> dict[str, str]:
    """:func:`parse_unit` of a unit file and its drop-ins, or the parse kept under their
    ``digest`` (:func:`_digest`: it covers every byte parsed, and each drop-in's path) and
    their lengths. The lengths make the key unambiguous: the digest alone is one stream, so
    a unit file ending with a drop-in's header and text hashes as the shorter unit plus
    that drop-in, while systemd (and :func:`parse_unit`) read the two differently."""
    lengths = ",".join(f"{len(path.encode('utf-8', 'surrogateescape'))}/{len(content)}"
                       for path, content in drop_ins)
    layout = hashlib.sha256(f"{digest}:{len(data)}:{lengths}".encode()).hexdigest()
    return parses.reuse(parses.key("systemd-unit", layout, ()),
                        lambda: parse_unit(data, *(d for _, d in drop_ins)), dict, _kept)


def _kept(kept: object) -> dict[str, str]:
    """A kept unit parse read back (a dict of the settings parse_unit gives, as strings)."""
    if not isinstance(kept, dict) or not all(
            k in _SETTING_NAMES and isinstance(v, str) for k, v in kept.items()):
        raise ValueError("not a unit parse")
    return dict(kept)


def _digest(data: bytes, drop_ins: list[tuple[str, bytes]]) -> str:
    """SHA-256 of a unit file, then of each drop-in (path, length, content) in order."""
    digest = hashlib.sha256(data)
    for path, content in drop_ins:
        digest.update(f"\n#drop-in {path} {len(content)}\n".encode(
            "utf-8", "surrogateescape"))
        digest.update(content)
    return digest.hexdigest()


def _sysv(walker: Walker, inventory: Inventory, _parses: Parses) -> None:
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
               budget: ReadBudget, detail: dict[str, object],
               listed: tuple[Node, Filesystem] | None = None) -> bytes | None:
    """The content of one unit file or script; None when there is none or when it is larger
    than ``max_bytes``: then it is recorded without digest, ``detail["oversized"]`` its size,
    and its path is unreadable in the scan (partial). One hostile file is bounded by itself:
    the other units are read and diffed. ``listed``: the regular file at ``path`` as its
    directory's listing gave it (not resolved again)."""
    if listed is None:
        found = walker.resolve(path, follow_last=True)
        if found is None or found[1].kind is not FileKind.FILE:
            return None
        listed = (found[1], found[2].fs)
    node, fs = listed
    if node.size > max_bytes:
        detail["oversized"] = node.size
        inventory.unread(path, f"{node.size} bytes, larger than {max_bytes}, the bound "
                         "for one unit file: its content is not read")
        return None
    return read_node(fs, node, max_bytes, budget, path)
