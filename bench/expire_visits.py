#!/usr/bin/env python3
"""Expiring 2 months of browser data, 10 million visits (issue 6: under a
second), against a DELETE of the same rows from one table (the peer).

    cargo build --release && python3 bench/expire_visits.py [ROWS]

Lays out 61 daily partitions as the server writes them, runs
`seldesk retention run` with the clock 2 months and 2 days later (SELDESK_TEST_NOW
is not used: the partitions are dated in the past instead), and times it.
The peer is one SQLite table with the same rows and an index on the time,
emptied by `DELETE FROM visits WHERE at < cutoff`.
"""
import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "seldesk")
if not os.path.exists(BINARY):
    sys.exit("build first: cargo build --release")
SCHEMA = """CREATE TABLE IF NOT EXISTS visits (
    id INTEGER PRIMARY KEY, at INTEGER NOT NULL, ip TEXT NOT NULL, browser TEXT NOT NULL,
    browser_version TEXT NOT NULL, platform TEXT NOT NULL, referrer TEXT, path TEXT NOT NULL,
    language TEXT, country TEXT, person TEXT, hold_id INTEGER)"""
DAYS = 61
data = tempfile.mkdtemp(prefix="seldesk-expire-")
try:
    subprocess.run([BINARY, "migrate", "--data", data], check=True, capture_output=True)
    visits_dir = os.path.join(data, "visits")
    os.makedirs(visits_dir)
    peer = sqlite3.connect(os.path.join(data, "peer.sqlite"))
    peer.execute("PRAGMA journal_mode=WAL")
    peer.execute(SCHEMA)
    peer.execute("CREATE INDEX visits_at ON visits (at)")
    # Days ending more than 2 months ago: all are due.
    first = dt.date.today() - dt.timedelta(days=70 + DAYS)
    per_day = ROWS // DAYS
    started = time.perf_counter()
    for d in range(DAYS):
        day = first + dt.timedelta(days=d)
        base = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp() * 1000)
        rows = [(base + i * 8, f"203.0.{i % 250}.{i % 200}", "Chrome", "120", "Linux", None, "/", "en", "IN") for i in range(per_day)]
        con = sqlite3.connect(os.path.join(visits_dir, f"{day.isoformat()}.sqlite"))
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(SCHEMA)
        con.executemany("INSERT INTO visits (at, ip, browser, browser_version, platform, referrer, path, language, country) VALUES (?,?,?,?,?,?,?,?,?)", rows)
        con.commit()
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        peer.executemany("INSERT INTO visits (at, ip, browser, browser_version, platform, referrer, path, language, country) VALUES (?,?,?,?,?,?,?,?,?)", rows)
        peer.commit()
    peer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print(f"laid out {per_day * DAYS:,} visits in {DAYS} daily partitions and in one table ({time.perf_counter() - started:.0f} s)")

    t = time.perf_counter()
    out = subprocess.run([BINARY, "retention", "run", "--data", data], check=True, capture_output=True, text=True).stdout
    ours = time.perf_counter() - t
    left = len([f for f in os.listdir(visits_dir) if f.endswith(".sqlite")])
    assert left == 0, f"{left} partitions left: {out}"

    cutoff = int((dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=62)).timestamp() * 1000)
    t = time.perf_counter()
    n = peer.execute("DELETE FROM visits WHERE at < ?", (cutoff,)).rowcount
    peer.commit()
    theirs = time.perf_counter() - t
    print(f"seldesk retention run (whole command, drops {DAYS} partitions): {ours:.2f} s")
    print(f"peer DELETE of {n:,} rows from one table: {theirs:.2f} s")
    print(f"ratio: {theirs / ours:.0f}x faster; target under 1 s: {'met' if ours < 1 else 'NOT met'}")
finally:
    shutil.rmtree(data, ignore_errors=True)
