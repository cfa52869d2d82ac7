#!/usr/bin/env python3
"""Latency of the dashboard and the API over a large PostgreSQL database: p50/p95 of the
overview, of a filtered changes page and of the API's changes endpoint (first and deep
pages), with N change events over M machines (default 1,000,000 over 1,000).

The database is filled in SQL (generate_series) with the shapes real scans write: each
machine a baseline 30 days ago and a scan a day since (every 50th machine's last one failed),
each scan's events stamped with its finish time and counted in its row, files and registry
values, every category, fields changed and before/after values. The overview's change counts are
cached while no scan commits (scanner/web/cache.py); the moving-window summary shows the
uncached cost. Requests go through
the whole application in-process (middleware, queries, templates, JSON), without a network.

    python3 -m benchmarks.bench_web [--events 1000000] [--machines 1000] [--requests 40]
        [--admin-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--keep]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

from sqlalchemy import create_engine, text

FILL = """
INSERT INTO account (id, name, cloud, config, enabled, created_at)
VALUES (1000, 'bench', 'aws', '{}', true, now());
INSERT INTO machine (id, account_id, name, os, present, created_at)
SELECT i, 1000, 'm-' || lpad(i::text, 4, '0'), CASE WHEN i % 4 = 0 THEN 'windows' ELSE 'linux' END,
       true, now() - interval '40 days'
FROM generate_series(1, :machines) i;
INSERT INTO scan (id, machine_id, status, started_at, finished_at, baseline, entities, added,
                  removed, modified, attempts, policies, coverage, error)
SELECT d * :machines + m, m,
       CASE WHEN d = 0 AND m % 50 = 0 THEN 'failed' ELSE 'succeeded' END,
       now() - d * interval '1 day' - interval '1 minute', now() - d * interval '1 day',
       d = 30, 1000, 0, 0, 0, 1, '["/etc/*.conf"]', '{"volumes": [], "notes": []}',
       CASE WHEN d = 0 AND m % 50 = 0 THEN 'no readable filesystem' END
FROM generate_series(1, :machines) m, generate_series(0, 30) d;
UPDATE machine SET last_scan_id = id;
INSERT INTO change_event (machine_id, scan_id, previous_scan_id, detected_at, window_start,
                          window_end, entity_type, category, path, value_name, fields_changed,
                          previous, current, policies)
SELECT m, d * :machines + m, (d + 1) * :machines + m, now() - d * interval '1 day',
       now() - (d + 1) * interval '1 day', now() - d * interval '1 day',
       CASE WHEN i % 5 = 0 THEN 'registry' ELSE 'file' END,
       (ARRAY['added', 'removed', 'modified', 'modified'])[1 + i % 4],
       CASE WHEN i % 5 = 0 THEN 'HKLM\\SOFTWARE\\Run\\\\v' || (i % 997)
            WHEN i % 3 = 0 THEN '/etc/conf' || (i % 4999) || '.conf'
            ELSE '/usr/bin/tool' || (i % 7919) END,
       CASE WHEN i % 5 = 0 THEN 'v' || (i % 997) END,
       CASE WHEN i % 4 >= 2 THEN '["sha256", "size"]'::jsonb ELSE '[]'::jsonb END,
       CASE WHEN i % 4 <> 0 THEN jsonb_build_object('size', i % 1000, 'sha256', md5(i::text))
       END,
       CASE WHEN i % 4 <> 1 THEN jsonb_build_object('size', i % 1001, 'sha256', md5((i + 1)::text))
       END,
       '["/etc/*.conf"]'::jsonb
FROM (SELECT i, 1 + (i % :machines) AS m,
             CASE WHEN (i / :machines) % 30 = 0 AND (1 + i % :machines) % 50 = 0 THEN 1
                  ELSE (i / :machines) % 30 END AS d
      FROM generate_series(1, :events) i) g;
UPDATE scan SET added = c.added, removed = c.removed, modified = c.modified
FROM (SELECT scan_id, count(*) FILTER (WHERE category = 'added') AS added,
             count(*) FILTER (WHERE category = 'removed') AS removed,
             count(*) FILTER (WHERE category = 'modified') AS modified
      FROM change_event GROUP BY scan_id) c
WHERE c.scan_id = scan.id;
SELECT setval(pg_get_serial_sequence('scan', 'id'), 31 * :machines + 1);
"""

def timed(call: Callable[[], Any], runs: int) -> tuple[float, float]:
    """p50 and p95 wall time in milliseconds of ``runs`` calls (after one warm-up)."""
    call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))]


def main() -> None:
    """Fill a fresh database, measure, drop it (unless --keep)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--machines", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--admin-url",
                        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()

    from scanner.storage.db import make_engine, upgrade
    from scanner.storage.repository import Repository
    from scanner.web.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    name = f"snapfim_bench_web_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = args.admin_url.rsplit("/", 1)[0] + "/" + name
    try:
        engine = make_engine(url)
        upgrade(engine)
        start = time.perf_counter()
        with engine.begin() as conn:
            for statement in FILL.split(";\n"):
                if statement.strip():
                    conn.execute(text(statement), {"machines": args.machines,
                                                   "events": args.events})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        print(f"filled {args.events:,} events over {args.machines:,} machines in "
              f"{time.perf_counter() - start:.1f} s ({url})")
        client = TestClient(create_app(Repository(engine), token=None))

        def get(path: str) -> Callable[[], Any]:
            def call() -> Any:
                response = client.get(path)
                assert response.status_code == 200, (path, response.text[:200])
                return response
            return call

        deep = client.get("/api/v1/changes?limit=50").json()
        for _ in range(200):                      # 10,000 rows in: a deep page
            deep = client.get(f"/api/v1/changes?limit=50&cursor={deep['next_cursor']}").json()
        cases = {
            "overview (30 days; counts cached while unchanged)": "/",
            "changes page: category=modified, path=/etc/*.conf, since=7d":
                "/changes?category=modified&path=/etc/*.conf&since=7d",
            "changes page: machine=m-0042, field=sha256": "/changes?machine=m-0042&field=sha256",
            "api changes, first page (50)": "/api/v1/changes?limit=50",
            "api changes, page 201 (cursor)":
                f"/api/v1/changes?limit=50&cursor={deep['next_cursor']}",
            "api changes: type=registry, since=1d": "/api/v1/changes?type=registry&since=1d",
            "api machines (failed/stale first)": "/api/v1/machines?limit=50",
            "api summary (30 whole days; counts cached while unchanged)": "/api/v1/summary",
            "api summary since=30d (a moving window: never cached)": "/api/v1/summary?since=30d",
        }
        print(f"{'request':64} {'p50 ms':>8} {'p95 ms':>8}")
        for label, path in cases.items():
            p50, p95 = timed(get(path), args.requests)
            print(f"{label:64} {p50:8.1f} {p95:8.1f}")
        engine.dispose()
    finally:
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
