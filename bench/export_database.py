#!/usr/bin/env python3
"""Exports a ~1 GB customer database through the API of a release build and
reports throughput (bytes of database per second) and the server's peak
memory. Issue 4 target: at least 300 MB/s with the server under 100 MB.

    cargo build --release && python3 bench/export_database.py [MB]

Peer, same run, same file: `sqlite3 db.sqlite .dump | gzip -1` (the usual way
to take a portable SQL copy), and `cat db.sqlite > /dev/null` as the
disk's read speed.
"""
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Server  # noqa: E402

MB = int(sys.argv[1]) if len(sys.argv) > 1 else 1024

server = Server()
try:
    server.sign_up()
    db = server.call("POST", "/api/v1/databases", {"name": "big-export", "region": "in"})
    path = os.path.join(server.data, "tenants", "in", db["id"], "db.sqlite")
    # Fill it directly (the server opens databases per request, so it holds
    # nothing open meanwhile): contacts with realistic text.
    rnd = random.Random(7)
    words = "acme sales lead follow call invoice renewal meeting quote contract demo partner".split()
    started = time.perf_counter()
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    row = 0
    while os.path.getsize(path) < MB * 1024 * 1024:
        rows = []
        for _ in range(20000):
            row += 1
            notes = " ".join(rnd.choice(words) for _ in range(120))
            rows.append((0, f"Person {row}", f"p{row}@example.com", f"+91 80 {row:08d}", f"{row} MG Road, Bengaluru", notes, "lead,2026", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"))
        con.executemany("INSERT INTO contacts (is_company, name, email, phone, address, notes, tags, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)", rows)
        con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    size = os.path.getsize(path)
    print(f"database: {size / 1e6:.0f} MB, {row} contacts (filled in {time.perf_counter() - started:.0f} s)")

    # Disk read speed (page cache dropped when allowed).
    from common import drop_caches
    cold = drop_caches()
    t = time.perf_counter()
    subprocess.run(["sh", "-c", f"cat '{path}' > /dev/null"], check=True)
    disk = size / (time.perf_counter() - t) / 1e6

    # Peer: sqlite3 .dump | gzip -1.
    drop_caches()
    t = time.perf_counter()
    peer_out = os.path.join(server.data, "peer.sql.gz")
    subprocess.run(["sh", "-c", f"sqlite3 '{path}' .dump | gzip -1 > '{peer_out}'"], check=True)
    peer = size / (time.perf_counter() - t) / 1e6
    peer_bytes = os.path.getsize(peer_out)
    os.remove(peer_out)

    drop_caches()
    base_rss = server.status("VmRSS")
    t = time.perf_counter()
    server.conn.request("GET", f"/api/v1/databases/{db['id']}/export", headers={"authorization": f"Bearer {server.token}"})
    r = server.conn.getresponse()
    got = 0
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    elapsed = time.perf_counter() - t
    ours = size / elapsed / 1e6
    peak = server.status("VmHWM") / 1024
    print(f"disk read ({'cold' if cold else 'warm'} cache): {disk:.0f} MB/s")
    print(f"peer sqlite3 .dump | gzip -1: {peer:.0f} MB/s of database, {peer_bytes / 1e6:.0f} MB out")
    print(f"seldesk export: {ours:.0f} MB/s of database ({got / 1e6:.0f} MB archive in {elapsed:.1f} s); "
          f"ratio to peer {ours / peer:.2f}x; server memory peak {peak:.0f} MB (idle before: {base_rss / 1024:.0f} MB)")
    print(f"target 300 MB/s: {'met' if ours >= 300 else 'NOT met'}; memory under 100 MB: {'met' if peak < 100 else 'NOT met'}")
finally:
    server.stop()
    shutil.rmtree(server.data, ignore_errors=True)
