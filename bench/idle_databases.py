#!/usr/bin/env python3
"""Puts N customer databases (default 100,000) on one node and measures the
idle server's memory and open files. Issue 4 target: under 500 MB.

    cargo build --release && python3 bench/idle_databases.py [N]

The databases are real: each a copy of the empty database the server
prepares for new ones, with its control-plane record. They are laid out
directly (creating 100,000 through the API is what create_databases.py
measures). The same run measures the idle server with no databases, as the
baseline the ratio is taken against.
"""
import os
import shutil
import sqlite3
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Server  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000

server = Server()
try:
    server.sign_up()
    first = server.call("POST", "/api/v1/databases", {"name": "seed", "region": "sg"})
    time.sleep(3)
    baseline = server.status("VmRSS") / 1024
    baseline_fds = server.open_files()
    data = server.data
    server.stop()

    template = [f for f in os.listdir(os.path.join(data, "tenants")) if f.startswith(".template-")][0]
    template = os.path.join(data, "tenants", template)
    con = sqlite3.connect(os.path.join(data, "control.db"))
    account = con.execute("SELECT account_id FROM databases WHERE id = ?", (first["id"],)).fetchone()[0]
    regions = ["in", "sg", "uk"]
    started = time.perf_counter()
    rows = []
    touched = []
    for i in range(N):
        dbid = uuid.uuid4().hex
        region = regions[i % 3]
        d = os.path.join(data, "tenants", region, dbid)
        os.makedirs(os.path.join(d, "files"))
        shutil.copyfile(template, os.path.join(d, "db.sqlite"))
        if i % (N // 50 or 1) == 0:
            touched.append(dbid)
        now = int(time.time() * 1000)
        rows.append((dbid, account, f"idle-{i:06d}", region, "trial", "active", now + 15 * 86_400_000, now))
        if len(rows) == 10000:
            con.executemany("INSERT INTO databases (id, account_id, name, region, plan, status, trial_ends_at, created_at) VALUES (?,?,?,?,?,?,?,?)", rows)
            con.commit()
            rows = []
    if rows:
        con.executemany("INSERT INTO databases (id, account_id, name, region, plan, status, trial_ends_at, created_at) VALUES (?,?,?,?,?,?,?,?)", rows)
        con.commit()
    con.close()
    print(f"laid out {N} databases in {time.perf_counter() - started:.0f} s")

    server = Server(data)
    # Use a few, as traffic would, then let the server go idle again.
    server.token = server.call("POST", "/api/v1/auth/token", {"email": "bench@example.com", "password": "violet tractor lemon"})["token"]
    for dbid in touched:
        server.call("POST", f"/api/v1/databases/{dbid}/contacts", {"name": "Someone"})
    time.sleep(5)
    idle = server.status("VmRSS") / 1024
    fds = server.open_files()
    print(f"idle server: {baseline:.0f} MB and {baseline_fds} open files with 1 database; "
          f"{idle:.0f} MB and {fds} open files with {N + 1} databases "
          f"(ratio {idle / baseline:.2f}x); target under 500 MB: {'met' if idle < 500 else 'NOT met'}")
finally:
    server.stop()
    shutil.rmtree(server.data, ignore_errors=True)
