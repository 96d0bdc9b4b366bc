"""Load generation for `make bench`: gunicorn, wrk, worker CPU from /proc, and a writer making status changes.

Everything here talks to a real server over loopback: wrk for the readers, http.client for the writer,
which POSTs the same status form a user sends (CSRF token, row_version) and does not follow the redirect.
"""
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STATUSES = ("not_started", "in_progress", "implemented", "not_applicable")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn serving the app on a loopback port; `cpu_seconds()` is its workers' CPU so far."""

    def __init__(self, env, workers, threads, stats_dir):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.stats_dir = Path(stats_dir)
        self.stats_dir.mkdir(parents=True, exist_ok=True)
        self.env = {**env, "BENCH_CACHE_STATS": str(self.stats_dir)}
        self.args = [str(ROOT / ".venv" / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{self.port}",
                     "--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads),
                     "--log-level", "warning", "--config", str(ROOT / "bench" / "gunicorn_bench.py"), "wsgi:app"]

    def __enter__(self):
        self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env)  # noqa: S603 - our own gunicorn
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{self.base}/healthz", timeout=1)  # noqa: S310 - loopback
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer within 30 s")

    def __exit__(self, *exc):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)

    def worker_pids(self):
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:  # field 4 of /proc/PID/stat: the parent's pid
                pids.append(int(stat.parent.name))
        return pids

    def cpu_seconds(self):
        """utime + stime of every worker (fields 14 and 15 of /proc/PID/stat)."""
        total = 0
        for pid in self.worker_pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / CLOCK_TICKS

    def cache_stats(self):
        """Hits, misses and misses by fragment name of the fragment cache so far, summed over the workers (files
        they keep)."""
        hits = misses = 0
        missed = {}
        for path in self.stats_dir.glob("*.json"):
            data = json.loads(path.read_text())
            hits, misses = hits + data["hits"], misses + data["misses"]
            for name, n in data.get("missed", {}).items():
                missed[name] = missed.get(name, 0) + n
            missed["(found in Redis)"] = missed.get("(found in Redis)", 0) + data.get("shared_hits", 0)
        return hits, misses, missed


def sign_in(base, email, password):
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/login").read().decode()  # noqa: S310 - loopback
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode({"email": email, "password": password, "csrf_token": token}).encode()
    opener.open(urllib.request.Request(f"{base}/login", data=data,  # noqa: S310 - loopback
                                       headers={"Referer": f"{base}/login"}))
    account = opener.open(f"{base}/account")  # noqa: S310 - loopback
    assert account.status == 200, "sign-in failed"
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', account.read().decode()).group(1)
    return "; ".join(f"{c.name}={c.value}" for c in jar), token


def wrk(server, path, cookie, duration, agencies=0, connections=8):
    """wrk against `path` ({slug} spread over `agencies` agencies when given); figures plus worker CPU ms."""
    env = {**os.environ, "BENCH_COOKIE": cookie, "BENCH_PATH": path, "BENCH_AGENCIES": str(agencies)}
    cpu0 = server.cpu_seconds()
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}", "--latency",  # noqa: S603,S607
                          "-s", str(ROOT / "bench" / "report.lua"), server.base], capture_output=True, text=True,
                         env=env, check=True)
    cpu = server.cpu_seconds() - cpu0
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1]
    figures = json.loads(line)
    figures["cpu_ms_per_request"] = round(1000 * cpu / max(figures["requests"], 1), 2)
    return figures


class Writer:
    """Status changes at `rate` per second into random requirements of random agencies, through the real
    form endpoint, from `threads` threads (each its own keep-alive connection and pace)."""

    def __init__(self, server, cookie, token, requirements, rate, threads=1, versions=None):
        self.server, self.cookie, self.token = server, cookie, token
        self.requirements = requirements  # [(slug, requirement id)]
        # {requirement id: (row_version, in flight)}, shared by the writers of one database
        self.versions = {} if versions is None else versions
        self.rate, self.threads = rate, threads
        self.latencies, self.codes = [], {}
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def __enter__(self):
        self._workers = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for worker in self._workers:
            worker.join(30)

    def _pick(self, rng):
        with self._lock:
            while True:
                slug, req_id = rng.choice(self.requirements)
                if self.versions.get(req_id, (1, False))[1] is False:
                    version = self.versions.get(req_id, (1, False))[0]
                    self.versions[req_id] = (version, True)  # in flight: no other thread takes it
                    return slug, req_id, version

    def _run(self, index):
        rng = random.Random(index)  # noqa: S311 - load generation, not security
        interval = self.threads / self.rate
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        next_at = time.monotonic() + rng.random() * interval
        while not self._stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            next_at += interval
            slug, req_id, version = self._pick(rng)
            body = urllib.parse.urlencode({"csrf_token": self.token, "row_version": version, "note": "bench",
                                           "status": STATUSES[(version + req_id) % len(STATUSES)]})
            started = time.perf_counter()
            try:
                conn.request("POST", f"/agencies/{slug}/requirements/{req_id}/status", body=body, headers={
                    "Cookie": self.cookie, "Content-Type": "application/x-www-form-urlencoded",
                    "Origin": self.server.base, "Referer": self.server.base + "/"})
                response = conn.getresponse()
                response.read()
                code = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
                code = "connection error"
            elapsed = time.perf_counter() - started
            with self._lock:
                self.versions[req_id] = (version + 1 if code == 303 else version, False)
                self.latencies.append(elapsed)
                self.codes[code] = self.codes.get(code, 0) + 1
        conn.close()

    def figures(self):
        done = sorted(self.latencies)
        p95 = done[int(0.95 * (len(done) - 1))] if done else 0
        return {"writes": len(done), "p95_ms": round(1000 * p95, 1),
                "outcomes": {str(code): n for code, n in sorted(self.codes.items(), key=str)}}
