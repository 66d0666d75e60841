#!/usr/bin/env python3
"""Requests through a node that is not the database's home, against the
same requests sent to the home node directly (issue 30: at least 0.8x the
requests per second, at most 1 ms more at p50, on loopback).

    cargo build --release && python3 bench/forwarding.py [SECONDS]

Starts two release nodes on one control plane (a SQLite file both open):
`uk` and `in`, each with an internal listener and the same cluster secret.
A database is made in India; wrk (2 threads, 50 connections) then reads
one of its contacts (`GET /api/v1/databases/{id}/contacts/{cid}`) and adds
contacts, first from the India node, then through the uk node, in the same
run; then the same with one connection, for the latency forwarding adds
without queueing. Needs `wrk` (apt-get install wrk).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import WRK_DONE, Server, free_port, wrk_result  # noqa: E402

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
if not shutil.which("wrk"):
    sys.exit("wrk is needed: apt-get install wrk")

LUA = r"""
wrk.headers["authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
wrk.headers["content-type"] = "application/json"
if os.getenv("BENCH_METHOD") == "POST" then
  wrk.method = "POST"
  wrk.body = '{"name":"Ada Lovelace","email":"ada@example.com"}'
end
""" + WRK_DONE


def wrk(port, path, token, method, script, connections=50):
    out = subprocess.run(
        ["wrk", "-t1" if connections == 1 else "-t2", f"-c{connections}", f"-d{SECONDS}s", "-s", script,
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, env={**os.environ, "BENCH_TOKEN": token, "BENCH_METHOD": method}).stdout
    return wrk_result(out)


work = tempfile.mkdtemp(prefix="seldesk-bench-fwd-")
nodes = []
try:
    secret = os.path.join(work, "cluster.secret")
    with open(secret, "w") as f:
        f.write("a cluster secret for the forwarding benchmark\n")
    control = f"sqlite://{os.path.join(work, 'control.db')}"

    def node(name, region):
        internal = free_port()
        return Server(data=os.path.join(work, name), args=[
            "--database-url", control, "--region", region, "--node-name", name,
            "--internal-listen", f"127.0.0.1:{internal}", "--cluster-secret-file", secret])

    home = node("in-1", "in")
    nodes.append(home)
    other = node("uk-1", "uk")
    nodes.append(other)
    home.sign_up()
    other.token = home.token
    db = home.call("POST", "/api/v1/databases", {"name": "forwarded", "region": "in"})["id"]
    cid = home.call("POST", f"/api/v1/databases/{db}/contacts", {"name": "Asha Rao"})["id"]
    script = os.path.join(work, "bench.lua")
    with open(script, "w") as f:
        f.write(LUA)
    results = {}
    for name, method, path in [("read", "GET", f"/api/v1/databases/{db}/contacts/{cid}"),
                               ("write", "POST", f"/api/v1/databases/{db}/contacts")]:
        direct = wrk(home.port, path, home.token, method, script)
        through = wrk(other.port, path, home.token, method, script)
        # The latency forwarding adds, with one connection (no queueing).
        alone = wrk(home.port, path, home.token, method, script, 1)
        alone_through = wrk(other.port, path, home.token, method, script, 1)
        results[name] = {"direct": direct, "forwarded": through, "direct_1": alone, "forwarded_1": alone_through}
        print(f"{name:<6} direct {direct['rps']:>7,.0f} req/s p50 {direct['p50_ms']:.2f} ms p99 {direct['p99_ms']:.1f} ms | "
              f"forwarded {through['rps']:>7,.0f} req/s p50 {through['p50_ms']:.2f} ms p99 {through['p99_ms']:.1f} ms | "
              f"ratio {through['rps'] / direct['rps']:.2f}x, p50 +{through['p50_ms'] - direct['p50_ms']:.2f} ms, "
              f"errors {direct['errors']}/{through['errors']}", flush=True)
        print(f"{'':<6} one connection: p50 {alone['p50_ms']:.2f} ms direct, {alone_through['p50_ms']:.2f} ms forwarded "
              f"(+{alone_through['p50_ms'] - alone['p50_ms']:.2f} ms)", flush=True)
    print("JSON", json.dumps(results))
finally:
    for n in nodes:
        n.stop()
    shutil.rmtree(work, ignore_errors=True)
