#!/usr/bin/env python3
"""Backs up, incrementally backs up and restores a ~500 MB customer database
with `seldesk backup` (release build) and with restic from Debian's packages,
same machine, same run, same file (issue 5).

    cargo build --release && python3 bench/backup_database.py [MB]

The rows are loaded with Python's sqlite3 before the first backup; the 1%
update goes through Seldesk's SQL API, as a customer's changes do.

Targets: first backup >= 3x restic, after updating 1% of rows scattered
through the file >= 10x restic, restore >= 2x restic, vault no larger than
restic's repository. Throughput is bytes of database per second.

Beside them it reports what bounds them on the machine at hand:
- the cold read speed of the file (backups read it all);
- the durable write speed of the file (a Seldesk restore syncs what it wrote
  before it registers the database; restic's restore does not sync, so its
  restore is also timed followed by `sync`, the same guarantee).
"""
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BINARY, Server, drop_caches  # noqa: E402

MB = int(sys.argv[1]) if len(sys.argv) > 1 else 500
if not shutil.which("restic"):
    sys.exit("install restic first: apt-get install restic")


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def timed(cmd, env=None, then_sync=False):
    drop_caches()
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    if then_sync:
        os.sync()
    return time.perf_counter() - t


def durable_write(source, target):
    """Seconds to write `source`'s bytes (already in memory) to a new file and fsync it."""
    with open(source, "rb") as f:
        data = f.read()
    os.sync()
    t = time.perf_counter()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view[: 64 << 20]) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    secs = time.perf_counter() - t
    os.remove(target)
    return secs


server = Server()
try:
    server.sign_up()
    db = server.call("POST", "/api/v1/databases", {"name": "big-backup", "plan": "subscribed", "region": "uk"})
    path = os.path.join(server.data, "tenants", "uk", db["id"], "db.sqlite")
    rnd = random.Random(11)
    words = "acme sales lead follow call invoice renewal meeting quote contract demo partner bengaluru mumbai".split()
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    row = 0
    while os.path.getsize(path) < MB * 1024 * 1024:
        rows = []
        for _ in range(20000):
            row += 1
            notes = " ".join(rnd.choice(words) for _ in range(40)) + f" #{rnd.getrandbits(64):x}"
            rows.append((0, f"Person {row}", f"p{row}@example.com", f"+91 80 {row:08d}", f"{row} MG Road", notes, "lead", "2026-01-01", "2026-01-01"))
        con.executemany("INSERT INTO contacts (is_company, name, email, phone, address, notes, tags, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)", rows)
        con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    size = os.path.getsize(path)
    print(f"database: {size / 1e6:.0f} MB, {row} contacts")

    drop_caches()
    t = time.perf_counter()
    subprocess.run(["sh", "-c", f"cat '{path}' > /dev/null"], check=True)
    disk = size / (time.perf_counter() - t) / 1e6
    write = size / durable_write(path, os.path.join(server.data, "write-test")) / 1e6

    base = ["--data", server.data, "--database-url", f"sqlite://{server.data}/control.db"]
    repo = tempfile.mkdtemp(prefix="restic-bench-")
    env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": repo, "RESTIC_CACHE_DIR": os.path.join(repo, ".cache")}
    subprocess.run(["restic", "init"], check=True, env=env, stdout=subprocess.DEVNULL)

    r_first = timed(["restic", "backup", path], env)
    s_first = timed([BINARY, "backup", "run", "--database", db["id"], *base])

    # Update 1% of rows, scattered through the file, the way every change
    # reaches a hosted database: through Seldesk (here its SQL API). Seldesk
    # checkpoints the WAL into the file before it answers, so restic backs up
    # the updated file; Seldesk's backup reads only the pages its change log
    # lists (crates/tenants/src/changes.rs).
    sql = "UPDATE contacts SET notes = notes || ' updated' WHERE id % 100 = 37"
    updated = server.call("POST", f"/api/v1/databases/{db['id']}/sql", {"sql": sql})
    print(f"updated: {updated['changed']} rows")
    r_second = timed(["restic", "backup", path], env)
    s_second = timed([BINARY, "backup", "run", "--database", db["id"], *base])

    target = tempfile.mkdtemp(prefix="restic-restore-")
    r_restore = timed(["restic", "restore", "latest", "--target", target], env)
    shutil.rmtree(target)
    r_restore_synced = timed(["restic", "restore", "latest", "--target", target], env, then_sync=True)
    shutil.rmtree(target)
    listing = subprocess.run([BINARY, "backup", "list", "--database", db["id"], *base], check=True, capture_output=True, text=True).stdout
    newest = listing.splitlines()[1].split()[0]
    s_restore = timed([BINARY, "backup", "restore", newest, "--to-new-database", "restored", "--reason", "benchmark", *base])

    repo_bytes = du(repo) - du(os.path.join(repo, ".cache"))
    vault_bytes = du(os.path.join(server.data, "backups", "in", "objects"))
    rate = lambda secs: size / secs / 1e6  # noqa: E731
    print(f"cold read of the file: {disk:.0f} MB/s; durable write of it: {write:.0f} MB/s")
    print(f"first backup:       seldesk {rate(s_first):.0f} MB/s, restic {rate(r_first):.0f} MB/s, ratio {r_first / s_first:.1f}x (target 3x)")
    print(f"after 1% updates:   seldesk {s_second:.2f} s, restic {r_second:.2f} s, ratio {r_second / s_second:.1f}x (target 10x)")
    print(f"restore:            seldesk {rate(s_restore):.0f} MB/s, restic {rate(r_restore):.0f} MB/s, ratio {r_restore / s_restore:.1f}x (target 2x)")
    print(f"  restic then sync:  {rate(r_restore_synced):.0f} MB/s, ratio {r_restore_synced / s_restore:.1f}x (both restores on disk)")
    print(f"stored (one region): seldesk {vault_bytes / 1e6:.0f} MB, restic {repo_bytes / 1e6:.0f} MB (target: no larger)")
    shutil.rmtree(repo)
finally:
    server.stop()
