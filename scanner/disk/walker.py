"""Policy-driven walk of mounted filesystems.

Paths are resolved inside the image, never on the host: symlinks in intermediate components
are followed from the image's root (absolute targets) or the link's directory (relative
ones), across mount points, with a hop limit. The last component is not followed, except
that a directory entity that is a symlink (``/bin -> usr/bin`` on merged-/usr systems) is
recorded as the symlink *and* its target tree is walked. Entities are always named by their
resolved (canonical) path, so ``/bin/login`` and ``/usr/bin/login`` are one entity,
``/usr/bin/login``, covered by both policy entries.

Every byte of the disk is the attacker's, so the walk trusts no listing:

- a name holding ``/`` or NUL is one component (escaped, :func:`scanner.paths.decode_component`)
  and is flagged in :attr:`WalkResult.flagged`;
- a name two entries of one directory claim (folded on case-insensitive filesystems) is a
  conflict: neither entry is taken, the path is unreadable (its previous state is kept);
- a directory reached again under another path (a hard-linked directory, a loop) is not
  walked again: unreadable, with the first path in the reason;
- :class:`~scanner.limits.Limits` bounds the depth below a mount and the names of one directory.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field

from scanner.disk.nodes import FileKind, Filesystem, Node
from scanner.errors import CorruptFilesystem, SourceReadError, UnlistableDirectory
from scanner.limits import Limits
from scanner.paths import join, names_a_separator
from scanner.policy import ExcludeMatcher, PolicyEntity, segment_regex

MAX_SYMLINK_HOPS = 40


@dataclass(slots=True)
class Mount:
    """A filesystem mounted at an absolute path of the machine's tree."""

    mountpoint: str
    fs: Filesystem
    volume: str


@dataclass(slots=True)
class WalkRoot:
    """Where one policy entity reaches: a canonical path and how deep below it."""

    path: str
    depth: int | None
    policy: str
    excludes: ExcludeMatcher


@dataclass(slots=True)
class Found:
    """A node the walk found, with the mount it lives on."""

    node: Node
    mount: Mount


@dataclass
class WalkResult:
    """Everything the walk saw: nodes by canonical path, roots, and what it could not read."""

    found: dict[str, Found] = field(default_factory=dict)
    roots: list[WalkRoot] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> reason
    flagged: dict[str, str] = field(default_factory=dict)     # path -> what is odd about it

    def policy_assigner(self) -> PolicyAssigner:
        """A function from a found path to the names of the entities covering it."""
        return PolicyAssigner(self.roots)


class PolicyAssigner:
    """Names the policy entities covering each path (depth and excludes honoured).

    Root chains are memoised per directory, so a walk of 100k entries costs one dict
    lookup and a short filter per path.
    """

    def __init__(self, roots: list[WalkRoot]) -> None:
        self._by_path: dict[str, list[WalkRoot]] = {}
        for root in roots:
            self._by_path.setdefault(root.path, []).append(root)
        self._chains: dict[str, list[tuple[WalkRoot, int]]] = {}
        self._interned: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._children_of: dict[str, tuple[tuple[str, ...], list[WalkRoot]]] = {}

    def _chain(self, directory: str) -> list[tuple[WalkRoot, int]]:
        """Roots at or above ``directory`` that can still reach below it, with its level."""
        chain = self._chains.get(directory)
        if chain is None:
            above = [] if directory == "/" else self._chain(posixpath.dirname(directory))
            chain = [(root, level + 1) for root, level in above
                     if root.depth is None or level + 1 < root.depth]
            chain += [(root, 0) for root in self._by_path.get(directory, ())
                      if root.depth != 0]
            self._chains[directory] = chain
        return chain

    def _below(self, directory: str) -> tuple[tuple[str, ...], list[WalkRoot]]:
        """For children of ``directory``: names that always cover them, and roots with excludes."""
        cached = self._children_of.get(directory)
        if cached is None:
            chain = self._chain(directory)
            plain = self._intern({root.policy for root, _ in chain if not root.excludes.patterns})
            cached = (plain, [root for root, _ in chain if root.excludes.patterns])
            self._children_of[directory] = cached
        return cached

    def _intern(self, names: set[str]) -> tuple[str, ...]:
        key = tuple(sorted(names))
        return self._interned.setdefault(key, key)

    def __call__(self, path: str) -> tuple[str, ...]:
        directory = path.rpartition("/")[0] or "/"
        plain, filtered = self._children_of.get(directory) or self._below(directory)
        own = self._by_path.get(path)
        if not own and not filtered:
            return plain
        names = set(plain)
        names.update(root.policy for root in filtered if not root.excludes.excluded(path))
        names.update(root.policy for root in own or () if not root.excludes.excluded(path))
        return self._intern(names)


@dataclass(frozen=True, slots=True)
class _Conflict:
    """A name the walk cannot take: claimed by several entries of one directory
    (:meth:`claimed`), or a live entry whose metadata cannot be read (``Node.unreadable``).
    Its path is unreadable (its previous state is kept)."""

    name: str
    reason: str

    @classmethod
    def claimed(cls, nodes: list[Node]) -> _Conflict:
        """The conflict of several entries claiming one name."""
        return cls(nodes[0].name, f"conflict: {len(nodes)} directory entries claim this name "
                                  f"(inodes {', '.join(str(n.inode) for n in nodes)}); none of "
                                  "them is taken")


class Walker:
    """Resolves policy entities against mounted filesystems and walks their trees."""

    def __init__(self, mounts: list[Mount],
                 on_found: Callable[[str, Found], None] | None = None,
                 blocked: dict[str, str] | None = None, limits: Limits | None = None) -> None:
        """``on_found`` is called once per newly found path, as the walk goes. ``blocked``
        maps mount points whose volume cannot be read to the reason: the walk never looks at
        what lies below them on the parent filesystem, and records them unreadable when a
        policy reaches them. ``limits`` bounds path depth and names per directory."""
        if not any(m.mountpoint == "/" for m in mounts):
            raise ValueError("a root mount is required")
        self._on_found = on_found
        self._blocked = dict(blocked or {})
        self._mounts = {m.mountpoint: m for m in mounts}
        # directories holding a mount point (their entries may be another filesystem's root)
        self._mount_parents = {posixpath.dirname(m) for m in self._mounts if m != "/"}
        self._limits = limits or Limits()
        self._listings: dict[tuple[int, int], dict[str, Node | _Conflict]] = {}
        self._visited: dict[str, int | None] = {}
        self._dir_paths: dict[tuple[int, int], str] = {}  # (mount, inode) -> first path walked
        self.result = WalkResult()

    # -- public ---------------------------------------------------------------------------
    def walk_entity(self, entity: PolicyEntity) -> None:
        """Find everything one Linux-path entity covers and add it to :attr:`result`."""
        excludes = ExcludeMatcher(entity.excludes, entity.case_sensitive)
        if entity.is_pattern:
            parent, pattern = posixpath.split(entity.path)
            resolved = self.resolve(parent, follow_last=True)
            if resolved is None or resolved[1].kind is not FileKind.DIRECTORY:
                return
            dir_path, dir_node, mount = resolved
            regex = segment_regex(pattern, entity.case_sensitive)
            try:
                children = list(self._listing(dir_node, mount, dir_path).values())
            except (CorruptFilesystem, SourceReadError, UnlistableDirectory) as exc:
                self.result.unreadable[dir_path] = str(exc)
                return
            for child in children:
                if not regex.match(child.name):
                    continue
                if isinstance(child, _Conflict):
                    self.result.unreadable[join(dir_path, child.name)] = child.reason
                else:
                    self._add_root(join(dir_path, child.name), child, mount, entity, excludes)
            return
        resolved = self.resolve(entity.path, follow_last=False)
        if resolved is None:
            return
        path, node, mount = resolved
        self._add_root(path, node, mount, entity, excludes)
        if node.kind is FileKind.SYMLINK and entity.depth != 0:
            target = self.resolve(path, follow_last=True)
            if target is not None and target[1].kind is FileKind.DIRECTORY:
                self._add_root(*target, entity, excludes)

    # -- resolution -----------------------------------------------------------------------
    def _mount_at(self, path: str) -> Mount | None:
        return self._mounts.get(path)

    def _root(self) -> tuple[str, Node, Mount]:
        mount = self._mounts["/"]
        return "/", mount.fs.root(), mount

    def _list(self, directory: Node, mount: Mount, dir_path: str) -> list[Node | _Conflict]:
        """A directory's entries, bounded, with names claimed twice turned into conflicts and
        names holding ``/`` or NUL flagged. Raises what the backend raises, or
        UnlistableDirectory."""
        limit = self._limits.names_per_directory
        fold = not mount.fs.case_sensitive
        by_key: dict[str, Node | list[Node]] = {}
        odd = False  # a name claimed twice, or a live entry whose record is unreadable
        for count, child in enumerate(mount.fs.children(directory), 1):
            if count > limit:
                raise UnlistableDirectory(f"more than {limit} names in one directory "
                                  "(SNAPFIM_MAX_DIR_ENTRIES)")
            name = child.name
            key = name.casefold() if fold else name
            seen = by_key.get(key)
            if seen is None:
                by_key[key] = child
                odd = odd or child.unreadable is not None
            elif isinstance(seen, list):
                seen.append(child)
            else:
                by_key[key] = [seen, child]
                odd = True
            if "\\x" in name and names_a_separator(name):  # (the cheap test first)
                self.result.flagged[join(dir_path, name)] = (
                    f"a directory entry whose name holds '/' or NUL (inode {child.inode}), "
                    "reported under its escaped name")
        if not odd:  # the usual directory: every entry is a node of its own
            return list(by_key.values())  # type: ignore[arg-type]
        return [_Conflict.claimed(v) if isinstance(v, list)
                else _Conflict(v.name, v.unreadable) if v.unreadable is not None else v
                for v in by_key.values()]

    def _listing(self, directory: Node, mount: Mount,
                 dir_path: str) -> dict[str, Node | _Conflict]:
        key = (id(mount), directory.inode)
        listing = self._listings.get(key)
        if listing is None:
            fold = not mount.fs.case_sensitive
            listing = {(c.name.casefold() if fold else c.name): c
                       for c in self._list(directory, mount, dir_path)}
            self._listings[key] = listing
        return listing

    def _child(self, directory: Node, mount: Mount, name: str,
               dir_path: str) -> Node | _Conflict | None:
        listing = self._listing(directory, mount, dir_path)
        return listing.get(name.casefold() if not mount.fs.case_sensitive else name)

    def resolve(self, path: str, *, follow_last: bool) -> tuple[str, Node, Mount] | None:
        """Resolve an absolute path inside the image; None when it does not exist."""
        stack = [self._root()]
        parts = [p for p in path.split("/") if p]
        hops = 0
        while parts:
            name = parts.pop(0)
            cur_path, cur_node, cur_mount = stack[-1]
            if name == ".":
                continue
            if name == "..":
                if len(stack) > 1:
                    stack.pop()
                continue
            if cur_node.kind is not FileKind.DIRECTORY:
                return None
            child_path = join(cur_path, name)
            if child_path in self._blocked:
                self.result.unreadable[child_path] = self._blocked[child_path]
                return None
            sub = self._mount_at(child_path)
            try:
                child = self._child(cur_node, cur_mount, name, cur_path)
            except (CorruptFilesystem, SourceReadError, UnlistableDirectory) as exc:
                self.result.unreadable[cur_path] = str(exc)
                return None
            if isinstance(child, _Conflict) and sub is None:
                self.result.unreadable[join(cur_path, child.name)] = child.reason
                return None
            if sub is not None:
                child_node, child_mount = sub.fs.root(), sub
                child_node.name = name
            elif child is None or isinstance(child, _Conflict):
                return None
            else:
                child_node, child_mount = child, cur_mount
                child_path = join(cur_path, child.name)  # the on-disk spelling
            if child_node.kind is FileKind.SYMLINK and (parts or follow_last):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    self.result.unreadable[child_path] = "too many levels of symbolic links"
                    return None
                try:
                    target = child_mount.fs.read_link(child_node)
                except (CorruptFilesystem, SourceReadError) as exc:
                    self.result.unreadable[child_path] = str(exc)
                    return None
                if target.startswith("/"):
                    stack = [self._root()]
                parts = [p for p in target.split("/") if p] + parts
                continue
            stack.append((child_path, child_node, child_mount))
        return stack[-1]

    # -- walking --------------------------------------------------------------------------
    def _add_root(self, path: str, node: Node, mount: Mount, entity: PolicyEntity,
                  excludes: ExcludeMatcher) -> None:
        if excludes.excluded(path):
            return
        if path in self._blocked:
            self.result.unreadable[path] = self._blocked[path]
            return
        self.result.roots.append(WalkRoot(path, entity.depth, entity.name, excludes))
        self._record(path, node, mount)
        if node.kind is FileKind.DIRECTORY and entity.depth != 0:
            self._walk_tree(path, node, mount, entity.depth, excludes)

    def _walk_tree(self, path: str, node: Node, mount: Mount, depth: int | None,
                   excludes: ExcludeMatcher) -> None:
        stack: list[tuple[str, Node, Mount, int | None]] = [(path, node, mount, depth)]
        max_depth = self._limits.path_depth
        excluding, blocked = bool(excludes.patterns), self._blocked
        found, on_found = self.result.found, self._on_found
        while stack:
            dir_path, dir_node, dir_mount, budget = stack.pop()
            if not self._claim(dir_path, budget):
                continue
            first = self._dir_paths.setdefault((id(dir_mount), dir_node.inode), dir_path)
            if first != dir_path:
                self.result.unreadable[dir_path] = (
                    f"directory inode {dir_node.inode} was already walked as {first} (a "
                    "hard-linked directory or a loop): not walked again")
                continue
            if _depth_below(dir_path, dir_mount.mountpoint) >= max_depth:
                self.result.unreadable[dir_path] = (
                    f"entries deeper than {max_depth} components below {dir_mount.mountpoint} "
                    "are not walked (SNAPFIM_MAX_PATH_DEPTH)")
                continue
            child_budget = None if budget is None else budget - 1
            try:
                children = self._children(dir_path, dir_node, dir_mount)
            except (CorruptFilesystem, SourceReadError, UnlistableDirectory) as exc:
                self.result.unreadable[dir_path] = str(exc)
                continue
            for child_path, child, child_mount in children:  # the hot loop: one per entry
                if excluding and excludes.excluded(child_path):
                    continue
                if blocked and child_path in blocked:
                    self.result.unreadable[child_path] = blocked[child_path]
                    continue
                if isinstance(child, _Conflict):
                    self.result.unreadable[child_path] = child.reason
                    continue
                if child_path not in found:  # as _record does
                    here = found[child_path] = Found(child, child_mount)
                    if on_found is not None:
                        on_found(child_path, here)
                if child.kind is FileKind.DIRECTORY and child_budget != 0:
                    stack.append((child_path, child, child_mount, child_budget))

    def _record(self, path: str, node: Node, mount: Mount) -> None:
        if path not in self.result.found:
            found = self.result.found[path] = Found(node, mount)
            if self._on_found is not None:
                self._on_found(path, found)

    def _claim(self, path: str, budget: int | None) -> bool:
        """Mark a directory as walked with this depth budget; False if already walked deeper."""
        if path in self._visited:
            seen = self._visited[path]
            if seen is None or (budget is not None and budget <= seen):
                return False
        self._visited[path] = budget
        return True

    def _children(self, dir_path: str, dir_node: Node,
                  mount: Mount) -> list[tuple[str, Node | _Conflict, Mount]]:
        """A directory's entries with their paths (:func:`join`), each on its mount (the
        root of a filesystem mounted there takes the entry's place)."""
        prefix = "/" if dir_path == "/" else dir_path + "/"
        listed = self._list(dir_node, mount, dir_path)
        if dir_path not in self._mount_parents:  # the usual directory: no mount point in it
            return [(prefix + child.name, child, mount) for child in listed]
        mounts = self._mounts
        out: list[tuple[str, Node | _Conflict, Mount]] = []
        for child in listed:
            child_path = prefix + child.name
            sub = mounts.get(child_path)
            if sub is not None and sub is not mount:
                root = sub.fs.root()
                root.name = child.name
                out.append((child_path, root, sub))
            else:
                out.append((child_path, child, mount))
        return out


def _depth_below(path: str, mountpoint: str) -> int:
    """Number of components of ``path`` below ``mountpoint`` (``/a/b`` below ``/``: 2)."""
    if path == mountpoint:
        return 0
    return path.count("/") - (0 if mountpoint == "/" else mountpoint.count("/"))
