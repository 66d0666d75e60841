#!/usr/bin/env python3
"""A point-in-time restore against a plain snapshot restore and restic's
restore of the same file (issue 31), release build, same run.

    cargo build --release && python3 bench/pitr_restore.py [MB] [CHANGES] [ROUNDS]

A database of MB megabytes (default 500) is loaded with Python's sqlite3,
snapshotted (`seldesk backup run`), then CHANGES (default 5,000) updates of
random contacts go through the API, as a busy hour of a customer's
application would make them, and are streamed to both backup regions.
Then, ROUNDS times (default 3), in turn:
- `seldesk backup restore SNAPSHOT --to-new-database` (the snapshot alone);
- `seldesk backup restore DB --at NOW --to-new-database` (the snapshot and
  every change after it: the point-in-time restore);
- `restic restore` of a repository holding the database file as it is at
  the end (restic cannot go to a moment between its snapshots), then sync.
Targets: the point-in-time restore in <= 2x the plain snapshot restore, and
faster than restic's. Medians are compared; every time is printed.
"""
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BINARY, Server, drop_caches, fill_contacts  # noqa: E402

MB = int(sys.argv[1]) if len(sys.argv) > 1 else 500
CHANGES = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
if not shutil.which("restic"):
    sys.exit("install restic first: apt-get install restic")


def timed(cmd, env=None, then_sync=False):
    drop_caches()
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    if then_sync:
        os.sync()
    return time.perf_counter() - t, out


server = Server()
repo = tempfile.mkdtemp(prefix="restic-pitr-")
target = tempfile.mkdtemp(prefix="restic-pitr-restore-")
try:
    server.sign_up()
    db = server.call("POST", "/api/v1/databases", {"name": "pitr", "region": "uk"})["id"]
    path = os.path.join(server.data, "tenants", "uk", db, "db.sqlite")
    words = "acme sales lead follow call invoice renewal meeting quote contract demo partner".split()
    size, row = fill_contacts(path, MB, 31, words, phone="+44 20", street="High St")
    print(f"database: {size / 1e6:.0f} MB, {row} contacts", flush=True)

    base = ["--data", server.data, "--database-url", f"sqlite://{server.data}/control.db"]
    # A first change opens the database's writer: its chain of streamed
    # commits begins; the snapshot is taken during it.
    server.call("PATCH", f"/api/v1/databases/{db}/contacts/1", {"notes": "first change"})
    time.sleep(1.5)
    subprocess.run([BINARY, "backup", "run", "--database", db, *base], check=True, capture_output=True)
    listing = subprocess.run([BINARY, "backup", "list", "--database", db, *base], check=True, capture_output=True, text=True).stdout
    snapshot = listing.splitlines()[1].split()[0]

    # The changes: random contacts updated through the API from 4 threads.
    def change(n, seed):
        s = Server.__new__(Server)
        s.port, s.token = server.port, server.token
        import http.client
        s.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        r = random.Random(seed)
        for i in range(n):
            s.call("PATCH", f"/api/v1/databases/{db}/contacts/{r.randint(1, row)}", {"notes": f"changed {seed}-{i}"})

    t = time.perf_counter()
    threads = [threading.Thread(target=change, args=(CHANGES // 4, k)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print(f"{CHANGES} changes in {time.perf_counter() - t:.1f} s", flush=True)
    time.sleep(3)  # shipped (every second)
    m = server.metrics()
    print(f"streamed: {m.get('seldesk_stream_commits_total', 0):,.0f} commits in "
          f"{m.get('seldesk_stream_segments_total', 0):,.0f} segments, "
          f"{m.get('seldesk_stream_bytes_total', 0) / 1e6:.1f} MB per region", flush=True)
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))

    env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": repo, "RESTIC_CACHE_DIR": os.path.join(repo, ".cache")}
    subprocess.run(["restic", "init"], check=True, env=env, stdout=subprocess.DEVNULL)
    check = sqlite3.connect(path)
    check.execute("PRAGMA wal_checkpoint(PASSIVE)")
    check.close()
    subprocess.run(["restic", "backup", path], check=True, env=env, stdout=subprocess.DEVNULL)

    times = {}
    for k in range(ROUNDS):
        secs, _ = timed([BINARY, "backup", "restore", snapshot, "--to-new-database", f"snap-{k}", "--reason", "benchmark", *base])
        times.setdefault("snapshot restore", []).append(secs)
        secs, out = timed([BINARY, "backup", "restore", db, "--at", at, "--to-new-database", f"pitr-{k}", "--reason", "benchmark", *base])
        times.setdefault("point-in-time restore", []).append(secs)
        if k == 0:
            print(out.strip(), flush=True)
        shutil.rmtree(target)
        os.mkdir(target)
        secs, _ = timed(["restic", "restore", "latest", "--target", target], env=env, then_sync=True)
        times.setdefault("restic restore then sync", []).append(secs)
    for label, ts in times.items():
        print(f"  {label}: " + " / ".join(f"{t:.2f}" for t in ts) + " s")
    med = {label: statistics.median(ts) for label, ts in times.items()}
    snap, pitr, restic = med["snapshot restore"], med["point-in-time restore"], med["restic restore then sync"]
    print(f"medians of {ROUNDS}: snapshot {snap:.2f} s ({size / snap / 1e6:.0f} MB/s), point in time {pitr:.2f} s "
          f"({pitr / snap:.2f}x the snapshot's; target <= 2x), restic {restic:.2f} s "
          f"(point in time {restic / pitr:.2f}x faster; target > 1x)")
    print("JSON", json.dumps({"size": size, "changes": CHANGES, **med}))
finally:
    server.stop()
    shutil.rmtree(repo, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(server.data, ignore_errors=True)
