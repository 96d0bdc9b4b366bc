"""Exports at scale (issue 18, target 5): a 100,000-requirement agency's CSV matrix and XLSX.

Run by bench/run.py in a fresh process per measurement, so each figure is one worker's own: the time
to the first data row of the CSV, the whole download, the CPU it took, and how far the process's peak
resident memory rose above what it held before the request (VmHWM after resetting it through
/proc/self/clear_refs). `python bench/exports.py build URL` fills a database; `... measure URL csv|xlsx`
prints one JSON line.
"""
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROWS = int(os.environ.get("BENCH_EXPORT_ROWS", 100_000))
CONFIG = {"TRACKER_ENV": "development", "SECRET_KEY": "bench-only-secret-key", "MFA_REQUIRED_ROLES": [],
          "SESSION_COOKIE_SECURE": False, "RATELIMIT_ENABLED": False, "HSTS": False, "PAGE_CACHE_ENTRIES": 0}


def _status_kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak():
    # Writing 5 resets the peak resident set size (VmHWM) to the current one (Linux 4.0+).
    Path("/proc/self/clear_refs").write_text("5")


def build(db_url, work):
    from bench.run import build as build_rows
    from tracker import create_app

    app = create_app({**CONFIG, "SQLALCHEMY_DATABASE_URI": db_url, "EVIDENCE_DIR": f"{work}/evidence"})
    # bench-big, a 10-requirement agency, warms the export path (imports, compiled queries) before measuring.
    build_rows(app, agencies=1, per_agency=ROWS, history=0, evidence=2, monitored=1, big=10)
    print(json.dumps({"built": ROWS}))


def measure(db_url, kind, work):
    from bench.run import PASSWORD
    from tracker import create_app

    app = create_app({**CONFIG, "SQLALCHEMY_DATABASE_URI": db_url, "EVIDENCE_DIR": f"{work}/evidence"})
    client = app.test_client()
    import re

    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    client.post("/login", data={"email": "admin@bench.example", "password": PASSWORD, "csrf_token": token})
    client.get("/agencies/bench-big/export.csv").close()  # warm-up: first-use costs, not the export's
    client.get("/agencies/bench-big/export.xlsx").close()
    _reset_peak()
    before_kb = _status_kb("VmRSS")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    response = client.get(f"/agencies/bench-000/export.{kind}", buffered=False)
    assert response.status_code == 200, response.status_code
    first_row_s, size, newlines = None, 0, 0
    for chunk in response.response:
        size += len(chunk)
        if first_row_s is None:
            newlines += chunk.count(b"\n") if kind == "csv" else 0
            if kind != "csv" or newlines >= 2:  # the header line, then the first data row
                first_row_s = time.perf_counter() - wall0
    response.close()
    wall = time.perf_counter() - wall0
    return {"kind": kind, "rows": ROWS, "first_row_ms": round(1000 * first_row_s, 1), "total_s": round(wall, 2),
            "cpu_s": round(time.process_time() - cpu0, 2), "bytes": size,
            "peak_growth_mb": round((_status_kb("VmHWM") - before_kb) / 1024, 1)}


if __name__ == "__main__":
    action, url, work = sys.argv[1], sys.argv[2], sys.argv[-1]
    if action == "build":
        build(url, work)
    else:
        print(json.dumps(measure(url, sys.argv[3], work)))
