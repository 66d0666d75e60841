#!/usr/bin/env python3
"""Kills `seldesk backup run` at random moments, many times, then checks that
the vault is whole and that each backup region alone restores every
snapshot (issue 27, item 10; promises BAK-1 and BAK-4).

    cargo build --release && python3 bench/backup_kill_drill.py [KILLS] [MB] [SEED]

Defaults: 200 kills of a 40 MB database, seed 27. Before every run about 1%
of the rows change (other rows each time), so each run has new blocks to
write and a kill can leave them in one region and not the other. Every
tenth run is let finish. At the end: one more run, `backup check
--read-data` (must exit 0), then every snapshot is restored with only
`in`, then only `sg` (the other region's store pointed at an empty folder).

Prints one line per 20 kills and a summary; exits 1 on any failure.
"""
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BINARY, Server  # noqa: E402

KILLS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
MB = int(sys.argv[2]) if len(sys.argv) > 2 else 40
SEED = int(sys.argv[3]) if len(sys.argv) > 3 else 27
if KILLS < 1 or MB < 1:
    sys.exit("usage: backup_kill_drill.py [KILLS >= 1] [MB >= 1] [SEED]")

rnd = random.Random(SEED)
server = Server()
failures = []
try:
    server.sign_up()
    db = server.call("POST", "/api/v1/databases", {"name": "drill", "region": "uk"})
    path = os.path.join(server.data, "tenants", "uk", db["id"], "db.sqlite")
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    row = 0
    while os.path.getsize(path) < MB * 1024 * 1024:
        rows = []
        for _ in range(5000):
            row += 1
            rows.append((f"Person {row}", f"p{row}@example.com", f"{rnd.getrandbits(128):x}" * 6, "2026-01-01", "2026-01-01"))
        con.executemany("INSERT INTO contacts (name, email, notes, created_at, updated_at) VALUES (?,?,?,?,?)", rows)
        con.commit()
    print(f"database: {os.path.getsize(path) / 1e6:.0f} MB, {row} contacts; seed {SEED}")

    base = ["--data", server.data, "--database-url", f"sqlite://{server.data}/control.db"]
    run = [BINARY, "backup", "run", "--database", db["id"], *base]

    def change():
        k = rnd.randrange(97)
        con.execute("UPDATE contacts SET notes = substr(notes, 2) || ?1 WHERE id % 97 = ?2", (f"{rnd.getrandbits(16):x}", k))
        con.commit()

    # How long a whole run takes: kills land anywhere within it.
    change()
    t = time.perf_counter()
    subprocess.run(run, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    span = max(time.perf_counter() - t, 0.05)
    print(f"a whole incremental run: {span:.2f} s")

    killed = finished = 0
    while killed < KILLS:
        change()
        p = subprocess.Popen(run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if (killed + finished) % 10 == 9:
            if p.wait() != 0:
                failures.append("a run after kills failed")
            finished += 1
            continue
        time.sleep(rnd.uniform(0, span * 1.2))
        p.send_signal(signal.SIGKILL)
        p.wait()
        killed += 1
        if killed % 20 == 0:
            print(f"  {killed} kills, {finished} runs finished")
    con.close()
    subprocess.run(run, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    check = subprocess.run([BINARY, "backup", "check", "--read-data", *base], capture_output=True, text=True)
    if check.returncode != 0:
        failures.append(f"backup check: {check.stdout.strip()[-2000:]}")
    listed = subprocess.run([BINARY, "backup", "list", "--database", db["id"], *base], capture_output=True, text=True, check=True)
    snapshots = [line.split()[0] for line in listed.stdout.splitlines() if db["id"] in line]
    print(f"{len(snapshots)} snapshots after {killed} kills and {finished + 2} finished runs; check exit {check.returncode}")

    # Each region alone: the other region's store is pointed at an empty folder.
    for region, other in (("in", "sg"), ("sg", "in")):
        empty = tempfile.mkdtemp(prefix=f"drill-no-{other}-")
        env = {**os.environ, f"SELDESK_BACKUP_STORES__{other.upper()}": empty}
        restored = 0
        for snap in snapshots:
            out = tempfile.mkdtemp(prefix="drill-restore-")
            target = os.path.join(out, "r")
            r = subprocess.run(
                [BINARY, "backup", "restore", snap, "--to-folder", target, "--reason", "kill drill", *base],
                capture_output=True,
                text=True,
                env=env,
            )
            if r.returncode == 0 and os.path.exists(os.path.join(target, "db.sqlite")):
                restored += 1
            else:
                failures.append(f"{region} alone cannot restore {snap}: {r.stderr.strip()[-300:]}")
            shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(empty, ignore_errors=True)
        print(f"{region} alone restores {restored} of {len(snapshots)} snapshots")
finally:
    server.stop()

for f in failures[:20]:
    print("FAILED:", f)
print("drill passed" if not failures else f"drill failed: {len(failures)} problems")
sys.exit(1 if failures else 0)
