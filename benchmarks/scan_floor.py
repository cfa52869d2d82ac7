"""The floor of a scan: a bare pytsk3 walk of an ext4 image plus SHA-256 of every regular file.

No policy, no metadata beyond what the walk needs, no xattrs, no entities, no database: what
reading and hashing the image costs at least with this library. With one process the walk
hashes each file as it meets it; with N processes the walking process hashes a file itself
while it has hashed less than half of what each helper got, and hands the others to N - 1
forked helpers through a queue (each opens the image itself), so walking and hashing overlap
from the first file. Used by :mod:`benchmarks.bench_scan` to print the floor beside the
scan's figures.

    python3 -m benchmarks.scan_floor IMAGE [--processes N]
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import time
from typing import Any

_CHUNK = 1 << 20


def _open(image: str) -> Any:
    import pytsk3

    return pytsk3.FS_Info(pytsk3.Img_Info(image))


def _hash(fs: Any, inode: int, size: int) -> int:
    handle = fs.open_meta(inode=inode)
    digest = hashlib.sha256()
    offset = 0
    while offset < size:
        data = handle.read_random(offset, min(_CHUNK, size - offset))
        if not data:
            break
        digest.update(data)
        offset += len(data)
    digest.hexdigest()
    return offset


def _walk(fs: Any, hand: Any = None, helpers: int = 0) -> tuple[int, int]:
    """Every allocated entry under the root (no ``.``/``..``, no deleted names, no NTFS-style
    ``$`` system files); regular files hashed here, or put on ``hand`` (a queue) for the
    ``helpers``. Returns (entries, bytes hashed here)."""
    import pytsk3

    alloc = int(pytsk3.TSK_FS_NAME_FLAG_ALLOC)
    reg, dir_ = pytsk3.TSK_FS_META_TYPE_REG, pytsk3.TSK_FS_META_TYPE_DIR
    entries = mine = handed = 0
    stack = [fs.open_dir(path="/")]
    seen: set[int] = set()
    while stack:
        for entry in stack.pop():
            name, meta = entry.info.name, entry.info.meta
            if name is None or meta is None or not int(name.flags) & alloc \
                    or name.name in (b".", b"..") or name.name.startswith(b"$"):
                continue
            entries += 1
            if meta.type == dir_:
                if meta.addr not in seen:
                    seen.add(meta.addr)
                    stack.append(entry.as_directory())
            elif meta.type == reg and meta.size:
                if hand is None or 2 * mine * helpers <= handed:  # the walker also walks
                    mine += _hash(fs, meta.addr, meta.size)
                else:
                    hand.put((meta.addr, meta.size))
                    handed += meta.size
    return entries, mine


def _helper(image: str, hand: Any, done: Any) -> None:
    fs = _open(image)
    total = 0
    while (item := hand.get()) is not None:
        total += _hash(fs, *item)
    done.put(total)


def floor(image: str, processes: int = 1) -> dict[str, Any]:
    """Walk and hash ``image`` with ``processes`` processes: wall seconds, entries, bytes."""
    start = time.perf_counter()
    fs = _open(image)
    if processes <= 1:
        entries, hashed = _walk(fs)
    else:
        context = multiprocessing.get_context("fork")
        hand, done = context.Queue(maxsize=4096), context.Queue()
        helpers = [context.Process(target=_helper, args=(image, hand, done))
                   for _ in range(processes - 1)]
        for helper in helpers:
            helper.start()
        entries, hashed = _walk(fs, hand, len(helpers))
        for _ in helpers:
            hand.put(None)
        hashed += sum(done.get() for _ in helpers)
        for helper in helpers:
            helper.join()
    return {"wall_s": time.perf_counter() - start, "entries": entries, "bytes": hashed,
            "processes": processes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    result = floor(args.image, args.processes)
    print(f"floor ({result['processes']} process(es)): {result['wall_s']:.2f} s, "
          f"{result['entries']:,} entries, {result['bytes'] / 1e9:.2f} GB hashed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
