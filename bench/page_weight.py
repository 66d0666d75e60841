#!/usr/bin/env python3
"""The weight and speed of the pages a customer uses (issue 34): for a
database holding 10,000 contacts (the list is paged), each page's bytes on
the wire (gzip, as browsers ask) and unpacked, and the median time to its
last byte over loopback, which is the server's time plus a few microseconds.

    cargo build --release && python3 bench/page_weight.py [CONTACTS] [ROUNDS]
    SELDESK_BENCH_BINARY=target/debug/seldesk python3 bench/page_weight.py

Targets: under 100 KB transferred and under 50 ms for every page.
"""
import gzip
import http.client
import os
import re
import sqlite3
import statistics
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PASSWORD, Server  # noqa: E402

CONTACTS = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 20


def fetch(port, method, path, headers, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    c.request(method, path, body, headers)
    r = c.getresponse()
    raw = r.read()
    elapsed = time.perf_counter() - started
    return r, raw, elapsed


server = Server()
try:
    server.sign_up("pages@example.com")
    db = server.call("POST", "/api/v1/databases", {"name": "ten-thousand", "region": "in"})
    path = os.path.join(server.data, "tenants", "in", db["id"], "db.sqlite")
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    rows = [(0, f"Person {i:05d}", f"p{i}@example.com", f"+91 80 {i:08d}", f"{i} MG Road", "Met at the fair; wants a quote.",
             "lead", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z") for i in range(CONTACTS)]
    con.executemany("INSERT INTO contacts (is_company, name, email, phone, address, notes, tags, created_at, updated_at) "
                    "VALUES (?,?,?,?,?,?,?,?,?)", rows)
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    for i in range(3):
        server.call("POST", "/api/v1/me/requests", {"kind": "question", "message": f"Question {i}"})

    # Sign in through the form, as a browser does.
    r, raw, _ = fetch(server.port, "GET", "/signin", {})
    cookies = {}
    for k, v in r.getheaders():
        if k.lower() == "set-cookie":
            name, value = v.split(";")[0].split("=", 1)
            cookies[name] = value
    token = re.search(rb'name="csrf" value="([^"]+)"', raw).group(1).decode()
    jar = "; ".join(f"{k}={v}" for k, v in cookies.items())
    form = urllib.parse.urlencode({"csrf": token, "email": "pages@example.com", "password": PASSWORD, "next": "/databases"})
    r, _, _ = fetch(server.port, "POST", "/signin",
                    {"cookie": jar, "content-type": "application/x-www-form-urlencoded"}, form)
    for k, v in r.getheaders():
        if k.lower() == "set-cookie" and v.startswith("seldesk_session="):
            cookies["seldesk_session"] = v.split(";")[0].split("=", 1)[1]
    jar = "; ".join(f"{k}={v}" for k, v in cookies.items())
    headers = {"cookie": jar, "accept-encoding": "gzip"}

    pages = ["/", "/pricing", "/privacy", "/databases", f"/databases/{db['id']}"]
    pages += [f"/databases/{db['id']}?tab={t}" for t in ("backups", "location", "billing", "access", "settings")]
    pages += [f"/databases/{db['id']}?q=Person%2001", "/account", "/account/requests", "/account/billing"]
    binary = os.environ.get("SELDESK_BENCH_BINARY", "target/release/seldesk")
    print(f"{CONTACTS:,} contacts; median of {ROUNDS} requests each; {binary}")
    print(f"{'page':<44} {'status':>6} {'gzip KB':>8} {'KB':>7} {'ms':>7}")
    worst_kb, worst_ms = 0.0, 0.0
    for page in pages:
        times, size, unpacked, status = [], 0, 0, 0
        for _ in range(ROUNDS):
            r, raw, elapsed = fetch(server.port, "GET", page, headers)
            status = r.status
            size = len(raw)
            unpacked = len(gzip.decompress(raw)) if r.getheader("content-encoding") == "gzip" else len(raw)
            times.append(elapsed * 1000)
        ms = statistics.median(times)
        worst_kb, worst_ms = max(worst_kb, size / 1024), max(worst_ms, ms)
        shown = page.replace(db["id"], "{id}")
        print(f"{shown:<44} {status:>6} {size / 1024:>8.1f} {unpacked / 1024:>7.1f} {ms:>7.1f}")
    print(f"heaviest {worst_kb:.1f} KB transferred (target < 100), slowest {worst_ms:.1f} ms (target < 50)")
finally:
    server.stop()
