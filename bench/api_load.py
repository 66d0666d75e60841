#!/usr/bin/env python3
"""The hot path of hosting customer databases under load (issue 29):
requests per second and latency percentiles of a release build, with wrk,
beside the raw-SQLite limit measured in the same run.

    cargo build --release && python3 bench/api_load.py [SECONDS]
    SELDESK_BENCH_BINARY=/path/to/other/seldesk python3 bench/api_load.py [SECONDS]

Scenarios (50 connections unless said otherwise, SECONDS each, default 15):
  post      POST /api/v1/databases/{id}/contacts
  search    GET  /api/v1/databases/{id}/contacts?q=Person%2012345&limit=20
            (20,000 contacts, none added meanwhile: the same scan every
            time; one match, so a build without `limit` answers the same)
  search-many  the same with q=Person%20123: 111 matches, the first 20 by name
  search-short the same with q=on: too short for the search index, a scan
            that stops at the first 20 matches
  search-common the same with q=example: every contact matches
  get-db    GET  /api/v1/databases/{id}
  home      GET  /
  mixed     one database, 10 connections adding contacts and 40 reading one
            (GET .../contacts/{cid}) at once
  spread    POST contacts to 1,000 databases at random
BENCH_SCENARIOS=search,search-many (a comma list) runs only those.
The raw limit: the same insert with Python's sqlite3, one transaction
each, WAL and synchronous=NORMAL, one thread, on a file in the same folder.
Needs `wrk` (apt-get install wrk).
"""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import WRK_DONE, Server, wrk_result  # noqa: E402

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
SPREAD = 1000
if not shutil.which("wrk"):
    sys.exit("wrk is needed: apt-get install wrk")

BODY = {"name": "Ada Lovelace", "email": "ada@example.com", "notes": "Met at the analytical engine demo."}

LUA = r"""
local token = os.getenv("BENCH_TOKEN")
local paths = {}
for p in string.gmatch(os.getenv("BENCH_PATHS"), "[^ ]+") do paths[#paths + 1] = p end
local method = os.getenv("BENCH_METHOD")
local body = os.getenv("BENCH_BODY")
wrk.headers["authorization"] = "Bearer " .. token
wrk.headers["content-type"] = "application/json"
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 1000)
request = function()
  local p = paths[math.random(#paths)]
  if method == "POST" then return wrk.format("POST", p, nil, body) end
  return wrk.format("GET", p)
end
""" + WRK_DONE


def wrk(server, script, method, paths, connections, seconds=SECONDS):
    env = {**os.environ, "BENCH_TOKEN": server.token or "", "BENCH_PATHS": " ".join(paths),
           "BENCH_METHOD": method, "BENCH_BODY": json.dumps(BODY)}
    return subprocess.Popen(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", script,
         f"http://127.0.0.1:{server.port}"],
        stdout=subprocess.PIPE, text=True, env=env)


def result(proc):
    out, _ = proc.communicate()
    return wrk_result(out)


def raw_sqlite_limit(folder, seconds=3):
    path = os.path.join(folder, "raw.sqlite")
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")
    con.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, notes TEXT,"
                " created_at TEXT NOT NULL, updated_at TEXT NOT NULL)")
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(500):
            con.execute("BEGIN")
            con.execute("INSERT INTO contacts (name, email, notes, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                        (BODY["name"], BODY["email"], BODY["notes"], "now", "now"))
            con.execute("COMMIT")
        n += 500
    rate = n / (time.perf_counter() - t0)
    con.close()
    return rate


def show(name, r, raw):
    print(f"{name:<8} {r['rps']:>9,.0f} req/s  p50 {r['p50_ms']:>7.1f} ms  p99 {r['p99_ms']:>7.1f} ms  "
          f"errors {r['errors']:<4} raw SQLite {raw:,.0f}/s ({r['rps'] / raw:.3f}x)", flush=True)


server = Server(env={"SELDESK_DATABASES__TRIALS_PER_ACCOUNT": str(SPREAD + 10), **json.loads(os.environ.get("BENCH_ENV", "{}"))})
work = tempfile.mkdtemp(prefix="seldesk-bench-load-")
try:
    script = os.path.join(work, "bench.lua")
    with open(script, "w") as f:
        f.write(LUA)
    server.sign_up()
    db = server.call("POST", "/api/v1/databases", {"name": "load-test", "region": "uk"})["id"]
    searched = server.call("POST", "/api/v1/databases", {"name": "search-test", "region": "uk"})["id"]
    # Contacts to search among.
    server.call("POST", f"/api/v1/databases/{searched}/sql", {"sql": (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) "
        "INSERT INTO contacts (name, email, created_at, updated_at) "
        "SELECT 'Person ' || i, 'p' || i || '@example.com', 'now', 'now' FROM n")})
    base = f"/api/v1/databases/{db}"
    raw = raw_sqlite_limit(work)
    print(f"raw SQLite insert limit: {raw:,.0f}/s (one transaction each, WAL, synchronous=NORMAL)")
    figures = {}
    only = [s for s in os.environ.get("BENCH_SCENARIOS", "").split(",") if s]
    wanted = lambda name: not only or name in only  # noqa: E731
    search = f"/api/v1/databases/{searched}/contacts?limit=20&q="
    for name, method, paths in [
        ("post", "POST", [f"{base}/contacts"]),
        ("search", "GET", [search + "Person%2012345"]),
        ("search-many", "GET", [search + "Person%20123"]),
        ("search-short", "GET", [search + "on"]),
        ("search-common", "GET", [search + "example"]),
        ("get-db", "GET", [base]),
        ("home", "GET", ["/"]),
    ]:
        if not wanted(name):
            continue
        figures[name] = result(wrk(server, script, method, paths, 50))
        show(name, figures[name], raw)
    if not wanted("mixed") and not wanted("spread"):
        print(f"server memory peak {server.status('VmHWM') / 1024:.0f} MB")
        print("JSON", json.dumps({"raw": raw, **figures}))
        sys.exit(0)
    writers = wrk(server, script, "POST", [f"{base}/contacts"], 10)
    readers = wrk(server, script, "GET", [f"{base}/contacts/{cid}" for cid in range(1, 1001)], 40)
    figures["mixed-w"], figures["mixed-r"] = result(writers), result(readers)
    show("mixed-w", figures["mixed-w"], raw)
    show("mixed-r", figures["mixed-r"], raw)
    ids = [server.call("POST", "/api/v1/databases", {"name": f"spread-{i}", "region": "uk"})["id"]
           for i in range(SPREAD)]
    figures["spread"] = result(wrk(server, script, "POST", [f"/api/v1/databases/{i}/contacts" for i in ids], 50))
    show("spread", figures["spread"], raw)
    print(f"server memory peak {server.status('VmHWM') / 1024:.0f} MB")
    print("JSON", json.dumps({"raw": raw, **figures}))
finally:
    server.stop()
    shutil.rmtree(server.data, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
