#!/usr/bin/env python3
"""Throughput of a page with browser-data recording on and off (issue 6:
on must reach at least 95% of off). Two release servers over their own data
folders, the same page, wrk on loopback, alternating rounds so the noisy
machine affects both alike; the ratio is taken from the medians.

    cargo build --release && python3 bench/record_visits.py [ROUNDS] [SECONDS]
"""
import os
import re
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Server  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
if not shutil.which("wrk"):
    sys.exit("install wrk first: apt-get install wrk")


def start(record):
    os.environ["SELDESK_RECORD_VISITS"] = "true" if record else "false"
    s = Server()
    del os.environ["SELDESK_RECORD_VISITS"]
    return s


def rate(server):
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{SECONDS}s", "-H", "Accept-Language: en-IN", f"http://127.0.0.1:{server.port}/privacy"],
        capture_output=True, text=True, check=True,
    ).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


on, off = start(True), start(False)
try:
    rates = {"on": [], "off": []}
    for _ in range(ROUNDS):
        rates["off"].append(rate(off))
        rates["on"].append(rate(on))
    stored = sum(1 for _ in os.scandir(os.path.join(on.data, "visits")))
    m_on, m_off = statistics.median(rates["on"]), statistics.median(rates["off"])
    print(f"recording off: {m_off:.0f} req/s (rounds {', '.join(f'{r:.0f}' for r in rates['off'])})")
    print(f"recording on:  {m_on:.0f} req/s (rounds {', '.join(f'{r:.0f}' for r in rates['on'])}); {stored} partition file(s) written")
    print(f"ratio on/off: {m_on / m_off:.3f}; target 0.95: {'met' if m_on / m_off >= 0.95 else 'NOT met'}")
finally:
    for s in (on, off):
        s.stop()
        shutil.rmtree(s.data, ignore_errors=True)
