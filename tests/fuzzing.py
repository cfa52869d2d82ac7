"""Fuzzing hostile disks: deterministic corruption cases and a bounded scan runner.

Every case is made from ``(target, seed)`` alone (:func:`make_case`): a few edits inside the
metadata ranges a target located on its pristine image (:class:`Region`), so the same seed
gives the same bytes on every machine. A case is scanned by the real command line
(``snapfim scan IMAGE --machine M --json``) as the next state of a machine whose baseline is
the pristine image, in a child process with an address-space limit (``RLIMIT_AS``) and a
wall-clock limit, and its outcome is classified (:func:`classify`):

===========  ==========================================================================
ok           exit 0, scan ``succeeded`` (changes it reports are allowed)
partial      exit 0 or 3, scan ``partial`` (something was unreadable; its state was kept)
failed       exit 1, exactly one ``snapfim: error: ...`` line on stderr, nothing stored
VIOLATION    anything else: a traceback, more than one line of error, a timeout, the memory
             bound hit, or a ``removed`` event that an independent checker (e2fsck/debugfs,
             xfs_repair/xfs_db, ntfsls, regipy) does not confirm as really gone: from a
             ``succeeded`` scan (the issue's rule), and from a ``partial`` one too (what
             could not be read keeps its state; a removal elsewhere must be real)
===========  ==========================================================================

Scans run in children forked from one *scan server* (:class:`ScanServer`, ``python -m
tests.fuzzing --serve``) that has the scanner already imported, so a case costs its scan, not
the 0.7 s of interpreter start-up and imports; the child is the command line all the same
(``scanner.cli.main`` with ``sys.argv``, an uncaught exception printed as Python prints it).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MEMORY_LIMIT = 2 << 30      # bytes of address space per scan (a bound against bombs)
TIME_LIMIT = 60.0           # seconds per scan (generous: a bound, not a speed test)
MACHINE = "fuzz-01"
EXIT_PARTIAL = 3            # what `snapfim scan` may exit with after a partial scan


# -- cases ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Region:
    """A byte range ``[start, end)`` of a file holding metadata: ``name`` is the kind of
    structure (``"inode"``, ``"gpt header"``: cases pick kinds uniformly), ``what`` this one
    (``"inode of /etc"``). ``file`` says which file of the target it is in (``""``: the disk
    image; a target with hives or logs names them). ``endian`` is the byte order of the
    structure (``"<"`` or ``">"``), for multi-byte field edits."""

    name: str
    what: str
    start: int
    end: int
    file: str = ""
    endian: str = "<"


@dataclass(frozen=True)
class Edit:
    """Replace (``op="set"``) or XOR (``op="xor"``) the bytes at ``offset`` with ``data``."""

    offset: int
    op: str
    data: bytes

    def apply(self, buf: bytearray) -> None:
        """Apply the edit to ``buf`` in place (edits past the end are clipped)."""
        end = min(self.offset + len(self.data), len(buf))
        for i in range(self.offset, end):
            byte = self.data[i - self.offset]
            buf[i] = buf[i] ^ byte if self.op == "xor" else byte

    def describe(self) -> str:
        return f"{self.op} {self.data.hex()} @{self.offset:#x}"


@dataclass(frozen=True)
class Case:
    """One corruption of one target: ``edits`` in the file ``file`` of the target, all inside
    the region ``region``; ``fixup``: the target recomputes the checksums an attacker would
    (GPT CRCs, LVM CRCs, the hive base-block checksum) so the corruption reaches the parser."""

    target: str
    seed: int
    region: str
    what: str
    file: str
    kind: str
    edits: tuple[Edit, ...]
    fixup: bool

    def describe(self) -> str:
        edits = ", ".join(e.describe() for e in self.edits)
        where = f"{self.file}: " if self.file else ""
        return (f"{self.target} seed {self.seed}: {self.kind} in {where}{self.what}"
                f"{' (checksums fixed)' if self.fixup else ''}: {edits}")


_BOUNDARY = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000,
             0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 0x7FFFFFFFFFFFFFFF)


def make_case(target: str, seed: int, regions: Sequence[Region], *,
              fixup_rate: float = 0.0) -> Case:
    """The case ``seed`` of ``target``: deterministic in ``(target, seed, regions)``.

    A region is picked (names first, uniformly, so a target with many inode ranges and one
    superblock still hits the superblock often), then one of: a single byte XORed with a
    random non-zero value, a single bit flipped, a single byte set to 0x00/0xFF/0x7F/0x80,
    an aligned 2/4/8-byte field set to a boundary value in the region's byte order, a run of
    2-16 random or zero bytes, or 2-4 single-byte XORs scattered over the region.
    """
    rng = random.Random(f"{target}:{seed}")
    names = sorted({r.name for r in regions})
    name = rng.choice(names)
    region = rng.choice([r for r in regions if r.name == name])
    length = region.end - region.start
    kind = rng.choice(["byte", "bit", "byte-set", "field", "run", "scatter"])

    def at(width: int = 1, align: int = 1) -> int:
        span = max(length - width, 0)
        return region.start + (rng.randrange(span + 1) // align) * align

    edits: list[Edit]
    if kind == "byte":
        edits = [Edit(at(), "xor", bytes([rng.randrange(1, 256)]))]
    elif kind == "bit":
        edits = [Edit(at(), "xor", bytes([1 << rng.randrange(8)]))]
    elif kind == "byte-set":
        edits = [Edit(at(), "set", bytes([rng.choice((0, 0xFF, 0x7F, 0x80))]))]
    elif kind == "field":
        width = rng.choice([w for w in (2, 4, 8) if w <= length] or [1])
        value = rng.choice(_BOUNDARY + (rng.getrandbits(8 * width),)) & ((1 << 8 * width) - 1)
        data = value.to_bytes(width, "little" if region.endian == "<" else "big")
        edits = [Edit(at(width, width), "set", data)]
    elif kind == "run":
        width = min(rng.randrange(2, 17), length)
        data = bytes(width) if rng.random() < 0.3 else rng.randbytes(width)
        edits = [Edit(at(width), "set", data)]
    else:
        edits = [Edit(at(), "xor", bytes([rng.randrange(1, 256)]))
                 for _ in range(rng.randrange(2, 5))]
    fixup = rng.random() < fixup_rate
    return Case(target, seed, region.name, region.what, region.file, kind, tuple(edits), fixup)


def apply_edits(data: bytes | bytearray, edits: Sequence[Edit]) -> bytearray:
    """A copy of ``data`` with ``edits`` applied."""
    buf = bytearray(data)
    for edit in edits:
        edit.apply(buf)
    return buf


def patch_file(path: Path, edits: Sequence[Edit]) -> None:
    """Apply ``edits`` to a file in place, touching only the bytes they cover."""
    with path.open("r+b") as fh:
        for edit in edits:
            fh.seek(edit.offset)
            old = fh.read(len(edit.data))
            fh.seek(edit.offset)
            fh.write(bytes(apply_edits(old, [Edit(0, edit.op, edit.data)])))


# -- running a scan in a bounded child ---------------------------------------------------------

@dataclass
class RunResult:
    """What one command did: exit status (negative: killed by that signal), output, wall
    seconds, peak resident memory (MiB) and whether the time limit killed it."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mb: float
    timed_out: bool


_PRELOAD = ("scanner.cli", "scanner.runner", "scanner.pipeline", "scanner.sources.local",
            "scanner.storage.db", "scanner.storage.repository", "scanner.collectors.registry",
            "scanner.registry.replay", "scanner.systems.windows", "alembic.command",
            "alembic.config",
            "pytsk3", "pyfsxfs", "pyfsext", "pyvslvm", "typer._adapters", "pydantic", "sqlite3",
            "rich.json", "platformdirs", "regipy")


def _child(request: dict[str, Any]) -> None:
    """In the forked child: bound memory, point stdout/stderr at files, run the CLI."""
    import traceback

    code = 1
    try:
        limit = int(request["memory"])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        os.environ.update(request["env"])
        out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
        os.dup2(err, 2)
        import faulthandler

        faulthandler.register(signal.SIGUSR1, all_threads=True)  # the stack, on a timeout
        sys.argv = ["snapfim", *request["argv"]]
        from scanner.cli import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
        except BaseException:  # what the interpreter does with an uncaught exception
            traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _serve() -> None:
    """The scan server: import the scanner once, then fork one child per request line."""
    import importlib

    for name in _PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    for line in sys.stdin:
        request = json.loads(line)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(request)
        fd = os.pidfd_open(pid)
        ready, _, _ = select.select([fd], [], [], float(request["timeout"]))
        timed_out = not ready
        if timed_out:  # where it is stuck goes to its stderr, then it is killed
            os.kill(pid, signal.SIGUSR1)
            select.select([fd], [], [], 2.0)
            os.kill(pid, signal.SIGKILL)
        _, status, usage = os.wait4(pid, 0)
        os.close(fd)
        reply = {"returncode": os.waitstatus_to_exitcode(status),
                 "seconds": time.monotonic() - started,
                 "max_rss_mb": usage.ru_maxrss / 1024, "timed_out": timed_out}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


class ScanServer:
    """A long-lived ``python -m tests.fuzzing --serve`` process; :meth:`run` executes one
    ``snapfim`` command in a fresh child forked from it, under the given bounds."""

    def __init__(self, scratch: Path, env: dict[str, str] | None = None) -> None:
        self.scratch = scratch
        scratch.mkdir(parents=True, exist_ok=True)
        root = str(Path(__file__).resolve().parent.parent)
        base = {**os.environ, "TZ": "UTC", "SNAPFIM_HASH_WORKERS": "1",
                "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
                **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fuzzing", "--serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=base, cwd=root)
        self._count = 0

    def run(self, argv: Sequence[str], env: dict[str, str], *, timeout: float = TIME_LIMIT,
            memory: int = MEMORY_LIMIT) -> RunResult:
        """Run ``snapfim ARGV`` with ``env`` added to the environment."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._count += 1
        out, err = self.scratch / f"{self._count}.out", self.scratch / f"{self._count}.err"
        request = {"argv": list(argv), "env": env, "stdout": str(out), "stderr": str(err),
                   "timeout": timeout, "memory": memory}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the scan server died")
        reply = json.loads(line)
        result = RunResult(reply["returncode"], out.read_text(errors="replace"),
                           err.read_text(errors="replace"), reply["seconds"],
                           reply["max_rss_mb"], reply["timed_out"])
        out.unlink()
        err.unlink()
        return result

    def close(self) -> None:
        """Stop the server (it ends when its standard input closes)."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)

    def __enter__(self) -> ScanServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- outcomes ---------------------------------------------------------------------------------

@dataclass
class Outcome:
    """The verdict on one case: ``kind`` is ok / partial / failed / VIOLATION; ``detail`` a
    one-line summary (the error line, or why it is a violation)."""

    case: Case
    kind: str
    detail: str
    seconds: float = 0.0
    max_rss_mb: float = 0.0
    removed: list[str] = field(default_factory=list)

    @property
    def violation(self) -> bool:
        return self.kind == "VIOLATION"

    def describe(self) -> str:
        return (f"{self.case.describe()}\n    -> {self.kind}: {self.detail} "
                f"({self.seconds:.2f} s, {self.max_rss_mb:.0f} MiB)")


def event_label(event: dict[str, Any]) -> str:
    """A removed entity as one string: its path, or ``KEY [value]`` for a registry value."""
    if event.get("ConfigChangeType") == "Registry":
        value = event.get("ValueName")
        return str(event["RegistryKey"]) + (f" [{value}]" if value is not None else "")
    return str(event["FileSystemPath"])


def removed_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of a scan's ``--json`` report that say an entity was removed."""
    return [e for e in events if e.get("ChangeCategory") == "Removed"]


Checker = Callable[[list[dict[str, Any]]], list[str]]


def classify(case: Case, result: RunResult, check_removed: Checker) -> Outcome:
    """Classify one scan of a corrupted image (see the module docstring). ``check_removed``
    gets the ``removed`` events of a succeeded or partial scan and returns those the independent
    checker does not confirm as really gone (as :func:`event_label` strings)."""
    def outcome(kind: str, detail: str, removed: list[str] | None = None) -> Outcome:
        return Outcome(case, kind, detail, result.seconds, result.max_rss_mb, removed or [])

    stderr_lines = [line for line in result.stderr.splitlines() if line.strip()]
    if result.timed_out:
        frames = [ln.strip() for ln in stderr_lines if ln.strip().startswith("File ")]
        return outcome("VIOLATION", f"time bound: killed after {result.seconds:.0f} s, in "
                       f"{' <- '.join(frames[:3]) or 'unknown'}")
    if "Traceback" in result.stderr or "MemoryError" in result.stderr:
        last = stderr_lines[-1] if stderr_lines else ""
        what = "memory bound" if "MemoryError" in result.stderr else "traceback"
        return outcome("VIOLATION", f"{what}: {last[:300]}")
    if result.returncode < 0:
        return outcome("VIOLATION", f"killed by signal {-result.returncode} "
                       f"(peak {result.max_rss_mb:.0f} MiB): {' | '.join(stderr_lines)[:300]}")
    try:
        report = json.loads(result.stdout)
        status, events = report["status"], report["events"]
    except (ValueError, KeyError, TypeError) as exc:
        if result.returncode == 0:
            return outcome("VIOLATION", f"exit 0 without a JSON report ({exc}): "
                           f"{result.stdout[:200]!r}")
        if len(stderr_lines) == 1 and stderr_lines[0].startswith("snapfim: error: "):
            return outcome("failed", stderr_lines[0][:300])
        return outcome("VIOLATION", f"exit {result.returncode} with {len(stderr_lines)} "
                       f"stderr lines: {' | '.join(stderr_lines)[:300]}")
    extra = [line for line in stderr_lines if not line.startswith("warning: scan ")]
    if extra:
        return outcome("VIOLATION", f"exit {result.returncode}, unexpected stderr: "
                       f"{' | '.join(extra)[:300]}")
    allowed = {"succeeded": (0,), "partial": (0, EXIT_PARTIAL)}.get(status, ())
    if result.returncode not in allowed:
        return outcome("VIOLATION", f"exit {result.returncode} with status {status!r}")
    removed = removed_events(events)
    unconfirmed = check_removed(removed) if removed else []
    if unconfirmed:
        return outcome("VIOLATION", f"{status} with {len(unconfirmed)} removed that the "
                       f"checker does not confirm: {', '.join(unconfirmed[:8])}"
                       f"{' ...' if len(unconfirmed) > 8 else ''}", unconfirmed)
    summary = f"{len(events)} events" + (f" ({len(removed)} removed, confirmed)"
                                         if removed else "")
    return outcome("partial" if status == "partial" else "ok", summary)


def checkpoint(database: Path) -> None:
    """Fold a SQLite database's write-ahead log into the main file (a scan child ends with
    ``os._exit``, which leaves the log behind), so copying the one file copies everything."""
    import sqlite3

    conn = sqlite3.connect(database)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def fresh_database(template: Path, dest: Path) -> str:
    """Copy a (checkpointed) baseline SQLite database to ``dest`` and return its URL."""
    shutil.copyfile(template, dest)
    return f"sqlite:///{dest}"


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    _serve()
