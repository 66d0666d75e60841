#!/usr/bin/env python3
"""Upgrades a ~1 GB version-1 database through the Database Upgrade service
of a release build (issue 11: report time and memory; aim for the disk's
speed with memory under 200 MB).

    cargo build --release && python3 bench/upgrade_database.py [MB]

Writes a version-1 Seldesk database (the frozen version-1 schema below) with
contacts until it reaches MB, uploads it as a SQLite file, and times the
upgrade job from upload to "done" (check, conversion through the import
sandbox, migration, export archive). The disk's cold read speed of the same
file, measured in the same run, is the limit it is compared with.
"""
import http.client
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Server, drop_caches  # noqa: E402

MB = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
# Version 1 of the Seldesk app's schema: frozen, as databases made then have it.
SCHEMA_V1 = """
CREATE TABLE seldesk_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE contacts (id INTEGER PRIMARY KEY, is_company INTEGER NOT NULL DEFAULT 0, name TEXT NOT NULL,
    email TEXT, phone TEXT, address TEXT, notes TEXT, company_id INTEGER REFERENCES contacts (id) ON DELETE SET NULL,
    tags TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX contacts_name ON contacts (name);
CREATE TABLE attachments (id INTEGER PRIMARY KEY, contact_id INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    file_name TEXT NOT NULL, stored_name TEXT NOT NULL, size INTEGER NOT NULL, created_at TEXT NOT NULL);
INSERT INTO seldesk_meta (key, value) VALUES ('schema_version', '1');
"""

server = Server(workers=1)
work = server.data + "-input"
os.makedirs(work)
try:
    path = os.path.join(work, "old.sqlite")
    con = sqlite3.connect(path)
    con.executescript(SCHEMA_V1)
    rnd = random.Random(11)
    words = "order invoice call visit quote renewal meeting partner demo support".split()
    row = 0
    while os.path.getsize(path) < MB * 1024 * 1024:
        rows = []
        for _ in range(20000):
            row += 1
            rows.append((f"Person {row} Example", f"p{row}@example.com", " ".join(rnd.choice(words) for _ in range(120))))
        con.executemany("INSERT INTO contacts (name, email, notes, created_at, updated_at) VALUES (?, ?, ?, 'now', 'now')", rows)
        con.commit()
    con.close()
    size = os.path.getsize(path)
    print(f"version-1 database: {size / 1e6:.0f} MB, {row} contacts")

    cold = drop_caches()
    t = time.perf_counter()
    subprocess.run(["sh", "-c", f"cat '{path}' > /dev/null"], check=True)
    disk = size / (time.perf_counter() - t) / 1e6

    server.sign_up()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=3600)
    drop_caches()
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        conn.request("POST", "/api/v1/upgrades?name=old.sqlite", body=f,
                     headers={"authorization": f"Bearer {server.token}", "content-length": str(size)})
        r = conn.getresponse()
        req = json.loads(r.read())
    if r.status != 202:
        sys.exit(f"upload: {r.status} {req}")
    uploaded = time.perf_counter() - t0
    peak_rss = 0
    while True:
        state = server.call("GET", f"/api/v1/upgrades/{req['id']}")
        peak_rss = max(peak_rss, server.status("VmRSS"))
        if state["status"] in ("done", "failed"):
            break
        time.sleep(0.2)
    total = time.perf_counter() - t0
    upgrade = total - uploaded
    if state["status"] != "done":
        sys.exit(f"upgrade failed: {state['error']}")
    peak = server.status("VmHWM") / 1024
    print(f"disk read ({'cold' if cold else 'warm'} cache): {disk:.0f} MB/s")
    print(f"upload {uploaded:.1f} s; upgrade job {upgrade:.1f} s = {size / upgrade / 1e6:.0f} MB/s of database "
          f"({size / upgrade / 1e6 / disk:.2f}x the disk's read speed); server memory peak {peak:.0f} MB")
    print(f"memory under 200 MB: {'met' if peak < 200 else 'NOT met'}; versions {state['from_version']} -> {state['to_version']}")
    print("steps (ms):", json.dumps((state.get("report") or {}).get("took_ms")))
finally:
    server.stop()
    shutil.rmtree(server.data, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
