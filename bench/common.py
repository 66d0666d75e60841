"""Shared helpers for the benchmark scripts: start a release server over a
temporary data folder, talk JSON to it, read its memory from /proc."""
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Another build to compare with (e.g. the previous commit's) can be named.
BINARY = os.environ.get("SELDESK_BENCH_BINARY") or os.path.join(ROOT, "target", "release", "seldesk")
PASSWORD = "violet tractor lemon"


def fill_contacts(path, mb, seed, words, phone="+44 20", street="High St"):
    """Adds contacts to the customer database file at `path`, 20,000 a
    transaction, until it holds `mb` MiB; the same seed gives the same rows.
    Returns (file size in bytes, contacts)."""
    import random
    import sqlite3
    rnd = random.Random(seed)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    row = 0
    while os.path.getsize(path) < mb * 1024 * 1024:
        rows = []
        for _ in range(20000):
            row += 1
            notes = " ".join(rnd.choice(words) for _ in range(40)) + f" #{rnd.getrandbits(64):x}"
            rows.append((0, f"Person {row}", f"p{row}@example.com", f"{phone} {row:08d}", f"{row} {street}", notes,
                         "lead", "2026-01-01", "2026-01-01"))
        con.executemany("INSERT INTO contacts (is_company, name, email, phone, address, notes, tags, created_at, "
                        "updated_at) VALUES (?,?,?,?,?,?,?,?,?)", rows)
        con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return os.path.getsize(path), row


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """`seldesk serve` on a free port, jobs off; stopped by stop()."""

    def __init__(self, data=None, workers=0, env=None, args=None):
        if not os.path.exists(BINARY):
            sys.exit("build first: cargo build --release")
        self.data = data or tempfile.mkdtemp(prefix="seldesk-bench-")
        self.port = free_port()
        self.admin_port = free_port()
        self.proc = subprocess.Popen(
            [BINARY, "serve", "--data", self.data, "--listen", f"127.0.0.1:{self.port}",
             "--admin-listen", f"127.0.0.1:{self.admin_port}",
             *(args or [])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "SELDESK_JOBS__WORKERS": str(workers), **(env or {})},
        )
        for _ in range(300):
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit("the server did not start")
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        self.token = None

    def call(self, method, path, body=None):
        headers = {"content-type": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        self.conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        r = self.conn.getresponse()
        payload = r.read()
        if r.status >= 300:
            sys.exit(f"{method} {path}: {r.status} {payload!r}")
        return json.loads(payload) if payload else None

    def sign_up(self, email="bench@example.com"):
        self.call("POST", "/api/v1/accounts", {"name": "Bench Mark", "company": "B", "email": email, "password": PASSWORD})
        self.token = self.call("POST", "/api/v1/auth/token", {"email": email, "password": PASSWORD})["token"]

    def status(self, field):
        """A line of /proc/<pid>/status in kB, e.g. VmRSS or VmHWM (peak)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def open_files(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def metrics(self):
        """The admin listener's /metrics, as {name: value} (labels dropped)."""
        c = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
        c.request("GET", "/metrics")
        out = {}
        for line in c.getresponse().read().decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name.split("{")[0]] = out.get(name.split("{")[0], 0) + float(value)
                except ValueError:
                    pass
        return out

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def drop_caches():
    """Cold cache for a fair disk read (needs root; harmless otherwise)."""
    try:
        subprocess.run(["sync"], check=False)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


# A wrk script's `done` hook that prints one line for wrk_result.
WRK_DONE = r"""
done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %d %f %d %d %d\n", summary.requests, summary.duration / 1e6,
    latency:percentile(50), latency:percentile(99), errors))
end
"""


def wrk_result(out):
    """Requests per second, p50 and p99 in ms and errors, from wrk's output
    with WRK_DONE in its script."""
    for line in out.splitlines():
        if line.startswith("RESULT "):
            n, secs, p50, p99, errors = line.split()[1:]
            return {"rps": int(n) / float(secs), "p50_ms": int(p50) / 1000, "p99_ms": int(p99) / 1000,
                    "errors": int(errors)}
    sys.exit(f"wrk said:\n{out}")
