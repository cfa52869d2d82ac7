"""Store + diff benchmark: the set-based SQL diff of a 1,000,000-entity machine on PostgreSQL.

What is measured, per machine size (default 1,000,000 entities, compared with 100,000):

1. **baseline**: a first scan of N synthetic file entities committed through
   :meth:`Repository.commit_scan` (one transaction: COPY into the staging table, copy into
   ``file_state``, scan row, commit);
2. **unchanged**: a second scan identical to the first (no events): every entity's id and row
   digest is still staged and joined with the state's, but no row differs, so nothing is
   compared in full, rewritten or returned to Python, and memory must not move with N;
3. **rescan**: a third scan where 1% of the entities are modified (new sha256, mtime and
   ctime for files; new mode for directories; new target for symlinks), 0.1% are added and
   0.1% removed; the rows whose digest differs are read back from the diff's spill file and
   compared in full, and only the changed rows come back to Python to become events, so
   memory grows with the number of *changes* (1% of N here), not with N.

For each step: wall time of the whole ``commit_scan`` transaction, number of events, and the
client process's resident memory. The step's entities are built before its clock starts, in a
list, as a real scan hands the store the entities its walk collected (``ScanOutcome.entities``,
a dict): the figures are the store's alone, and "RSS before" includes the entities (the growth
is the store's). The rescan is also run once more before it, in another child process (so that
its freed heap cannot hide the rescan's growth), with the entities generated lazily while COPY
streams them (the earlier figure: generation included, in one thread with the store; rolled
back), and the generation cost alone is reported. Memory: RSS before the step, peak RSS during
it (a thread samples ``VmRSS`` in ``/proc/self/status`` every 50 ms) and the growth. Each
machine size runs in a fresh child process so the RSS figures are not blurred by a previous
run's freed heap. The PostgreSQL server's memory is not included. CPU seconds are printed beside
the wall time: this process's (user + system) and the PostgreSQL backend's serving it (from
``/proc/<pid>/stat``; the server must run on this host, else they read 0). On a machine shared
with other work the wall time moves with the load while CPU seconds mostly do not: compare two
versions by CPU when it is busy. The ``rescan`` line is the issue's figure (target: under 8 s on
a quiet machine), printed both ways. On PostgreSQL the floor of that rescan as the issue defines
it is printed too (:func:`floor`: COPY of whole rows built from the same list, full outer join,
upsert of the differing rows; no events): the store moves less than that floor (ids and digests,
then the differing rows only), so it can go below it.

Entities come from a generator, deterministic for a seed: paths such
as ``/usr/lib/pkg0042/file0137``, one directory per 1,000 entries, a symlink every 50, sizes,
modes, sha256 hex digests and nanosecond times derived from a hash of (seed, index), and
policies tuples such as ``('/usr/bin',)``. Which entities change is decided by a seeded
permutation of the indices, so the rescan has exactly N/100 modified, N/1000 added and N/1000
removed entities; the event counts (and the state row count) are asserted.

    python3 -m benchmarks.bench_store [--entities 1000000] [--compare 100000]
                                     [--database-url URL] [--keep] [--seed 1]

Without ``--database-url`` a temporary database ``snapfim_bench_<random>`` is created on
``postgresql://postgres@127.0.0.1:5432`` and dropped afterwards (unless ``--keep``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scanner.entities import FileEntity

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Top-level monitored directories; each also names the policy entity covering it.
TOPS = ("/usr/lib", "/usr/lib", "/usr/share", "/usr/lib", "/usr/bin", "/etc", "/opt",
        "/usr/lib", "/var/lib", "/usr/share")
POLICIES = sorted(set(TOPS))
_POLICY_TUPLES = {top: (top,) for top in POLICIES}
PER_DIR = 1000                       # entries per package directory (index 0 is the directory)
SYMLINK_EVERY = 50
REF_NS = 1_748_736_000 * 10**9        # 2025-06-01T00:00:00Z
_YEARS_S = 3 * 365 * 86400


# -- the synthetic machine ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ChangePlan:
    """Which indices change in the rescan: a seeded permutation ``r = (a*i + b) mod n``;
    ranks below ``modified`` are modified, the next ``removed`` ranks are removed, the next
    ``added`` ranks get a new sibling file."""

    n: int
    a: int
    b: int
    modified: int
    removed: int
    added: int

    @classmethod
    def for_size(cls, n: int, seed: int) -> ChangePlan:
        a = max(1, int(n * 0.6180339887) + seed)
        while math.gcd(a, n) != 1:
            a += 1
        return cls(n, a, (seed * 7919) % max(n, 1), n // 100, n // 1000, n // 1000)

    def rank(self, i: int) -> int:
        return (self.a * i + self.b) % self.n


def _digest(seed: int, i: int, version: int = 0) -> str:
    return hashlib.sha256(b"%d:%d:%d" % (seed, i, version)).hexdigest()


def make_entity(i: int, seed: int) -> FileEntity:
    """Entity number ``i`` of the synthetic machine (same seed, same entity)."""
    group, j = divmod(i, PER_DIR)
    top = TOPS[group % len(TOPS)]
    directory = f"{top}/pkg{group:04d}"
    h = _digest(seed, i)
    x = int(h[:16], 16)
    mtime = REF_NS - (x % _YEARS_S) * 10**9 - (x >> 40) % 10**9
    ctime = mtime + (x >> 20) % 86400 * 10**9
    atime = ctime + (x >> 8) % 3600 * 10**9
    policies = _POLICY_TUPLES[top]
    if j == 0:
        return FileEntity(directory, "directory", 4096, 0o755, 0, 0, mtime, ctime, ctime, atime,
                          inode=i + 12, nlink=2, policies=policies)
    name = f"{directory}/file{j:04d}"
    if j % SYMLINK_EVERY == SYMLINK_EVERY - 1:
        target = f"file{j - 1:04d}"
        return FileEntity(name, "symlink", len(target), 0o777, 0, 0, mtime, ctime, ctime, atime,
                          inode=i + 12, nlink=1, link_target=target, policies=policies)
    size = int(2 ** (5 + (x % 1500) / 100))            # 32 B .. ~1 MiB, log-uniform
    mode = 0o755 if top == "/usr/bin" or j % 17 == 0 else 0o644
    return FileEntity(name, "file", size, mode, 0, 0, mtime, ctime, ctime, atime,
                      inode=i + 12, nlink=1, sha256=h, policies=policies)


def _modified(e: FileEntity, i: int, seed: int) -> FileEntity:
    later = 3600 * 10**9
    e.ctime = (e.ctime or 0) + later
    if e.type == "directory":
        e.mode = 0o700
    elif e.type == "symlink":
        e.link_target = f"{e.link_target}.1"
        e.size = len(e.link_target)
        e.mtime = (e.mtime or 0) + later
    else:
        e.sha256 = _digest(seed, i, 1)
        e.mtime = (e.mtime or 0) + later
    return e


def _added(e: FileEntity, i: int, seed: int) -> FileEntity:
    return FileEntity(f"{e.path}.new", "file", 1234, 0o644, 0, 0, REF_NS, REF_NS, REF_NS,
                      REF_NS, inode=10**12 + i, nlink=1, sha256=_digest(seed, i, 2),
                      policies=e.policies)


def machine_state(n: int, seed: int, changes: ChangePlan | None = None) -> Iterator[FileEntity]:
    """The machine's ``n`` entities, lazily; with ``changes``, the rescan's view of it."""
    for i in range(n):
        e = make_entity(i, seed)
        if changes is None:
            yield e
            continue
        r = changes.rank(i)
        if r < changes.modified:
            yield _modified(e, i, seed)
            continue
        r -= changes.modified
        if r < changes.removed:
            continue
        yield e
        if r - changes.removed < changes.added:
            yield _added(e, i, seed)


# -- CPU accounting -----------------------------------------------------------------------------
def backend_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (a PostgreSQL backend on this host);
    0.0 when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- memory sampling ------------------------------------------------------------------------------
def rss_kib() -> int:
    """Current resident set size of this process, in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Samples VmRSS every ``interval`` seconds in a thread; ``peak`` is the highest seen."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.start_kib = self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_kib = max(self.peak_kib, rss_kib())

    def __enter__(self) -> RssSampler:
        self.start_kib = self.peak_kib = rss_kib()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, rss_kib())


# -- one machine size (child process) -----------------------------------------------------------
def run_size(url: str, n: int, seed: int) -> dict[str, Any]:
    """Baseline, unchanged rescan and rescan with changes of an ``n``-entity machine."""
    from sqlalchemy import func, select

    from scanner.storage.db import make_engine
    from scanner.storage.repository import Repository
    from scanner.storage.sqldiff import count_state
    from scanner.storage.tables import change_event

    engine = make_engine(url)
    repo = Repository(engine)
    name = f"bench-store-{n}-{secrets.token_hex(3)}"
    with repo.transaction() as conn:
        machine_id = repo.machine_id(conn, name, create=True, os_family="linux")
    changes = ChangePlan.for_size(n, seed)
    results: dict[str, Any] = {"entities": n, "machine": name, "steps": []}

    steps = (("baseline", None, None), ("unchanged", None, None),
             ("rescan", changes, changes))
    scan_id = 0  # the last committed scan's
    for step, plan, expect in steps:
        if step == "rescan":  # its floor and its lazy run: in a child, so that their freed
            # heap cannot hide this process's growth
            results.update(run_child(url, n, seed, "--before-rescan", "--machine-id",
                                     str(machine_id), "--scan-id", str(scan_id)))
        entities = list(machine_state(n, seed, plan))  # built before the clock, as a walk
        figures, scan_id, diff = timed_scan(repo, machine_id, entities, keep=True)
        del entities
        counts = diff.counts()
        with repo.transaction() as conn:
            state_rows = count_state(conn, machine_id)
            stored_events = conn.execute(select(func.count()).select_from(change_event)
                                         .where(change_event.c.scan_id == scan_id)).scalar()
        if step == "baseline":
            assert diff.baseline and not diff.events, "the first scan must be a silent baseline"
            assert state_rows == n, f"baseline stored {state_rows} rows, expected {n}"
        else:
            expected = _expected(expect)
            assert counts == expected, f"{step} events {counts}, expected {expected}"
            assert stored_events == len(diff.events), "events returned != events stored"
            rows = n if plan is None else n - plan.removed + plan.added
            assert state_rows == rows, f"{state_rows} state rows after {step}, expected {rows}"
        del diff
        results["steps"].append({"step": step, **figures, "events": stored_events, **counts,
                                 "state_rows": state_rows})

    start = time.perf_counter()
    cpu_start = time.process_time()
    generated = sum(1 for _ in machine_state(n, seed, changes))
    results["generate_s"] = time.perf_counter() - start
    results["generate_cpu_s"] = time.process_time() - cpu_start
    results["generated"] = generated
    results["process_peak_mib"] = _vm_hwm_kib() / 1024
    engine.dispose()
    return results


def before_rescan(url: str, n: int, seed: int, machine_id: int, scan_id: int
                  ) -> dict[str, Any]:
    """The rescan's floor (PostgreSQL) and the rescan with its entities generated while it
    runs (the earlier figure), both rolled back, against the state the rescan will find."""
    from scanner.storage.db import make_engine
    from scanner.storage.repository import Repository

    engine = make_engine(url)
    changes = ChangePlan.for_size(n, seed)
    out: dict[str, Any] = {}
    if engine.dialect.name == "postgresql":
        out["floor"] = floor(engine, machine_id, scan_id, list(machine_state(n, seed, changes)))
    out["lazy_rescan"], _, diff = timed_scan(Repository(engine), machine_id,
                                             machine_state(n, seed, changes), keep=False)
    assert diff.counts() == _expected(changes), "the lazy rescan's events differ"
    engine.dispose()
    return out


def _expected(plan: ChangePlan | None) -> dict[str, int]:
    """The event counts of a rescan by ``plan`` (None: unchanged)."""
    if plan is None:
        return {"added": 0, "removed": 0, "modified": 0}
    return {"added": plan.added, "removed": plan.removed, "modified": plan.modified}


def timed_scan(repo: Any, machine_id: int, entities: Iterable[FileEntity], *, keep: bool
               ) -> tuple[dict[str, float], int, Any]:
    """One scan of ``entities`` through :meth:`Repository.commit_scan`, timed: wall, client
    and PostgreSQL backend CPU seconds, RSS before, peak and growth. ``keep``: committed,
    else rolled back. Returns the figures, the scan id and the diff."""
    from sqlalchemy import func, select

    postgres = repo.engine.dialect.name == "postgresql"
    with RssSampler() as rss:
        start = time.perf_counter()
        cpu_start = time.process_time()
        with repo.engine.connect() as conn:
            transaction = conn.begin()
            backend = int(conn.execute(select(func.pg_backend_pid())).scalar() or 0) \
                if postgres else 0  # SQLite runs in this process: its CPU is the client's
            server_start = backend_cpu_s(backend)
            previous = repo.previous_scan(conn, machine_id)
            now = datetime.now(UTC)
            scan_id, diff = repo.commit_scan(
                conn, machine_id, entities=entities, unreadable=(), previous=previous,
                started_at=now, finished_at=now, status="succeeded",
                source={"kind": "synthetic"}, coverage={}, policies=POLICIES)
            server_cpu = backend_cpu_s(backend) - server_start
            if keep:
                transaction.commit()
            else:
                transaction.rollback()
        wall = time.perf_counter() - start
        client_cpu = time.process_time() - cpu_start
    return {"wall_s": wall, "client_cpu_s": client_cpu, "server_cpu_s": server_cpu,
            "rss_before_mib": rss.start_kib / 1024, "rss_peak_mib": rss.peak_kib / 1024,
            "rss_growth_mib": (rss.peak_kib - rss.start_kib) / 1024}, scan_id, diff


def floor(engine: Any, machine_id: int, scan_id: int, entities: list[FileEntity]
          ) -> dict[str, float]:
    """The floor of the rescan on PostgreSQL, what the issue names: the rescan's rows (built from
    ``entities`` by the store's own row builder) sent by one COPY into an unindexed
    temporary table, one full outer join with the machine's state counting the rows that
    differ, and an upsert of only those rows plus a delete of the gone ones; no events, no
    SQLAlchemy. Run just before the rescan and rolled back, so both see the same state. Wall
    and CPU seconds per step."""
    from scanner.storage.sqldiff import FILE_STATE

    columns = FILE_STATE.columns
    names = ", ".join(columns)
    differs = " OR ".join(f"s.{c} IS DISTINCT FROM f.{c}" for c in columns[1:])
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    out: dict[str, float] = {}
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        backend = int(cursor.execute("SELECT pg_backend_pid()").fetchone()[0])

        def step(name: str, run: Any) -> None:
            wall, cpu, server = time.perf_counter(), time.process_time(), backend_cpu_s(backend)
            run()
            out[name + "_s"] = time.perf_counter() - wall
            out[name + "_cpu_s"] = time.process_time() - cpu
            out[name + "_server_cpu_s"] = backend_cpu_s(backend) - server

        cursor.execute(f"CREATE TEMP TABLE floor_stage AS SELECT {names} FROM file_state "
                       "WITH NO DATA")
        cursor.execute("SET LOCAL work_mem = '64MB'")

        def copy() -> None:  # sent from a thread while rows are built, as the store does
            from psycopg.copy import QueuedLibpqWriter

            with cursor.copy(f"COPY floor_stage ({names}) FROM STDIN",
                             writer=QueuedLibpqWriter(cursor)) as pipe:
                for e in entities:
                    pipe.write_row(FILE_STATE.row(e))

        def join() -> None:
            cursor.execute(
                "SELECT count(*) FROM floor_stage f FULL JOIN (SELECT * FROM file_state "
                f"WHERE machine_id = {machine_id}) s ON s.path = f.path "
                f"WHERE s.path IS NULL OR f.path IS NULL OR {differs}")
            out["differing"] = float(cursor.fetchone()[0])

        def upsert() -> None:
            cursor.execute(
                f"INSERT INTO file_state (machine_id, scan_id, {names}) "
                f"SELECT {machine_id}, {scan_id}, f.* FROM floor_stage f LEFT JOIN file_state s "
                f"ON s.machine_id = {machine_id} AND s.path = f.path "
                f"WHERE s.path IS NULL OR {differs} "
                f"ON CONFLICT (machine_id, path) DO UPDATE SET {updates}")
            cursor.execute(
                f"DELETE FROM file_state s WHERE s.machine_id = {machine_id} AND NOT EXISTS "
                "(SELECT 1 FROM floor_stage f WHERE f.path = s.path)")

        step("copy", copy)
        step("join", join)
        step("upsert", upsert)
    finally:
        raw.rollback()
        raw.close()
    return out


def _vm_hwm_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


# -- database setup and the report ------------------------------------------------------------
def create_database() -> tuple[str, str]:
    """A fresh ``snapfim_bench_<random>`` database; returns (url, name)."""
    import psycopg

    name = f"snapfim_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:5432/{name}", name


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_child(url: str, n: int, seed: int, *extra: str) -> dict[str, Any]:
    """``run_size`` (with ``extra``: ``before_rescan``) in a fresh interpreter, so its RSS is
    its own."""
    argv = [sys.executable, "-m", "benchmarks.bench_store", "--child", "--entities", str(n),
            "--seed", str(seed), "--database-url", url, *extra]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark of {n} entities failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(runs: list[dict[str, Any]], url: str, load: tuple[float, float, float]) -> None:
    print(f"database: {url}  (PostgreSQL; client process RSS, server memory not included)")
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{os.cpu_count()} CPUs")
    header = (f"{'entities':>10} {'step':9} {'store+diff s':>12} {'client CPU':>10} "
              f"{'server CPU':>10} {'entities/s':>11} "
              f"{'events':>7} {'modified':>8} {'added':>6} {'removed':>7} "
              f"{'RSS before':>10} {'RSS peak':>9} {'RSS growth':>10}")
    print(header)
    print("-" * len(header))
    for run in runs:
        for s in run["steps"]:
            print(f"{run['entities']:>10,} {s['step']:9} {s['wall_s']:12.2f} "
                  f"{s.get('client_cpu_s', 0):10.2f} {s.get('server_cpu_s', 0):10.2f} "
                  f"{run['entities'] / s['wall_s']:11,.0f} {s['events']:7,} "
                  f"{s['modified']:8,} {s['added']:6,} {s['removed']:7,} "
                  f"{s['rss_before_mib']:8.0f} MiB {s['rss_peak_mib']:5.0f} MiB "
                  f"{s['rss_growth_mib']:6.0f} MiB")
    for run in runs:
        lazy = run["lazy_rescan"]
        print(f"{run['entities']:>10,} rescan with the entities generated while it runs (the "
              f"earlier figure, rolled back): {lazy['wall_s']:.2f} s wall, "
              f"{lazy['client_cpu_s']:.2f} s client + {lazy['server_cpu_s']:.2f} s server CPU, "
              f"RSS growth {lazy['rss_growth_mib']:.0f} MiB; generating them alone takes "
              f"{run['generate_s']:.2f} s, {run.get('generate_cpu_s', 0):.2f} s of CPU "
              f"(not in the table above); process peak RSS (VmHWM) "
              f"{run['process_peak_mib']:.0f} MiB")
    if len(runs) == 2:
        small, big = sorted(runs, key=lambda r: r["entities"])
        ratio = big["entities"] / small["entities"]
        for step in range(len(small["steps"])):
            g_small = small["steps"][step]["rss_growth_mib"]
            g_big = big["steps"][step]["rss_growth_mib"]
            events = big["steps"][step]["events"]
            per_event = f"; {g_big * 1024 / events:.1f} KiB per event at {big['entities']:,}" \
                if events else ""
            print(f"{small['steps'][step]['step']}: RSS growth {g_small:.0f} MiB at "
                  f"{small['entities']:,} vs {g_big:.0f} MiB at {big['entities']:,} "
                  f"({ratio:.0f}x the entities{per_event})")
    for run in runs:
        f = run.get("floor")
        if f:
            total = sum(f[k + "_s"] for k in ("copy", "join", "upsert"))
            print(f"{run['entities']:>10,} floor of the rescan (COPY + full outer join + "
                  f"upsert of {f['differing']:,.0f} differing rows, no events): "
                  f"{total:.2f} s wall = COPY {f['copy_s']:.2f} + join {f['join_s']:.2f} + "
                  f"upsert {f['upsert_s']:.2f}; client CPU "
                  f"{sum(f[k + '_cpu_s'] for k in ('copy', 'join', 'upsert')):.2f} s, "
                  f"server CPU "
                  f"{sum(f[k + '_server_cpu_s'] for k in ('copy', 'join', 'upsert')):.2f} s")
    big = max(runs, key=lambda r: r["entities"])
    slowest = max(s["wall_s"] for s in big["steps"])
    print(f"target: store+diff under 60 s at {big['entities']:,} entities: "
          f"{'met' if slowest < 60 else 'NOT met'} (slowest step {slowest:.1f} s)")
    rescan, lazy = big["steps"][-1], big["lazy_rescan"]
    print(f"issue 11: rescan of {big['entities']:,} entities (1% modified, 0.1% added, 0.1% "
          f"removed) {rescan['wall_s']:.2f} s wall, {rescan.get('client_cpu_s', 0):.2f} s "
          f"client + {rescan.get('server_cpu_s', 0):.2f} s server CPU, RSS growth "
          f"{rescan['rss_growth_mib']:.0f} MiB (store only); with the entities generated "
          f"during it {lazy['wall_s']:.2f} s wall, {lazy['client_cpu_s']:.2f} s client CPU "
          f"(target: under 8 s on a quiet machine)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--compare", type=int, default=100_000,
                        help="second machine size, to show memory is flat (0: skip)")
    parser.add_argument("--database-url", help="default: a temporary PostgreSQL database")
    parser.add_argument("--keep", action="store_true", help="keep the temporary database")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--before-rescan", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--machine-id", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scan-id", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.entities < 1000:
        parser.error("--entities must be at least 1000")

    if args.child and args.before_rescan:
        print(json.dumps(before_rescan(args.database_url, args.entities, args.seed,
                                       args.machine_id, args.scan_id)))
        return 0
    if args.child:
        print(json.dumps(run_size(args.database_url, args.entities, args.seed)))
        return 0

    from scanner.storage.db import make_engine, upgrade

    created = None
    url = args.database_url
    if url is None:
        url, created = create_database()
    try:
        load = os.getloadavg()
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        sizes = [s for s in (args.compare, args.entities) if s]
        runs = []
        for n in sorted(set(sizes)):
            print(f"running {n:,} entities ...", flush=True)
            runs.append(run_child(url, n, args.seed))
        report(runs, url, load)
    finally:
        if created and not args.keep:
            drop_database(created)
        elif created:
            print(f"kept database {created}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
