#!/usr/bin/env python3
"""What continuous protection costs the hot path (issue 31): the same
write load on a release build with commits streamed to both backup regions
(`backup_stream_ms = 500`, the default) and with streaming off, in
alternating order, and how far behind the backup regions were meanwhile.

    cargo build --release && python3 bench/stream_cost.py [SECONDS] [ROUNDS]

Each round: a fresh server and database per mode, wrk adding contacts with
50 connections for SECONDS (default 15). With streaming on, /metrics is
read every 100 ms: `seldesk_stream_last_delay_seconds` (how long the oldest
commit of the last shipment had waited: the shipping lag), and at the end
the bytes written to each region per commit against the raw bytes of the
pages the commits wrote. Needs `wrk` (apt-get install wrk).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import WRK_DONE, Server, wrk_result  # noqa: E402

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
if not shutil.which("wrk"):
    sys.exit("wrk is needed: apt-get install wrk")

BODY = {"name": "Ada Lovelace", "email": "ada@example.com", "notes": "Met at the analytical engine demo."}
LUA = r"""
local token = os.getenv("BENCH_TOKEN")
local path = os.getenv("BENCH_PATH")
local body = os.getenv("BENCH_BODY")
wrk.headers["authorization"] = "Bearer " .. token
wrk.headers["content-type"] = "application/json"
request = function() return wrk.format("POST", path, nil, body) end
""" + WRK_DONE


def percentile(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def run(mode, script):
    server = Server(env={"SELDESK_BACKUP_STREAM_MS": "500" if mode == "on" else "0"})
    try:
        server.sign_up()
        db = server.call("POST", "/api/v1/databases", {"name": "stream-cost", "region": "uk"})["id"]
        env = {**os.environ, "BENCH_TOKEN": server.token, "BENCH_PATH": f"/api/v1/databases/{db}/contacts",
               "BENCH_BODY": json.dumps(BODY)}
        delays, stop = [], threading.Event()

        def sample():
            while not stop.is_set():
                m = server.metrics()
                if "seldesk_stream_last_delay_seconds" in m:
                    delays.append(m["seldesk_stream_last_delay_seconds"])
                time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        if mode == "on":
            sampler.start()
        out = subprocess.run(["wrk", "-t2", "-c50", f"-d{SECONDS}s", "--timeout", "10s", "-s", script,
                              f"http://127.0.0.1:{server.port}"], capture_output=True, text=True, env=env).stdout
        time.sleep(1.5)
        stop.set()
        if mode == "on":
            sampler.join()
        r = wrk_result(out)
        m = server.metrics()
        if mode == "on":
            commits = max(m.get("seldesk_stream_commits_total", 0), 1)
            r["lag_p50_s"] = percentile(delays, 50)
            r["lag_p99_s"] = percentile(delays, 99)
            r["lag_max_s"] = max(delays or [0])
            r["bytes_per_commit"] = m.get("seldesk_stream_bytes_total", 0) / commits
            r["page_bytes_per_commit"] = m.get("seldesk_stream_page_bytes_total", 0) / commits
            r["commits"] = commits
        return r
    finally:
        server.stop()
        shutil.rmtree(server.data, ignore_errors=True)


work = tempfile.mkdtemp(prefix="seldesk-bench-stream-")
try:
    script = os.path.join(work, "post.lua")
    with open(script, "w") as f:
        f.write(LUA)
    results = []
    for i in range(ROUNDS):
        order = ["off", "on"] if i % 2 == 0 else ["on", "off"]
        got = {mode: run(mode, script) for mode in order}
        ratio = got["on"]["rps"] / got["off"]["rps"]
        on = got["on"]
        print(f"round {i + 1}: off {got['off']['rps']:,.0f} req/s (p99 {got['off']['p99_ms']:.0f} ms), "
              f"on {on['rps']:,.0f} req/s (p99 {on['p99_ms']:.0f} ms): {ratio:.3f}x; "
              f"shipping lag p50 {on['lag_p50_s']:.2f} s p99 {on['lag_p99_s']:.2f} s max {on['lag_max_s']:.2f} s; "
              f"{on['bytes_per_commit']:,.0f} bytes shipped per group commit for {on['page_bytes_per_commit']:,.0f} "
              f"bytes of pages ({on['commits']:,.0f} commits)", flush=True)
        results.append({"ratio": ratio, **{f"{k}_{m}": v for m in got for k, v in got[m].items()}})
    print("JSON", json.dumps(results))
finally:
    shutil.rmtree(work, ignore_errors=True)
