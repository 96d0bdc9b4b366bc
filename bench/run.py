"""`make bench`: synthetic data at scale, gunicorn, wrk, and query counts.

Generates 200 agencies x 120 requirements (10 history rows and 2 evidence items each, two monitoring
periods with findings), serves the app with gunicorn on loopback, and measures with wrk at 8
connections: a bare route (the ceiling), the board of a 120-requirement agency, the agency dashboard,
the review queue, the cross-agency roll-up and the CSV export, once as configured (fragment cache on)
and once with PAGE_CACHE_ENTRIES=0, where every request renders. Then counts the queries each page
issues at 10 and at 1,000 requirements, rendering and from the cache. Prints a table and writes
bench-results.json.
"""
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import date, timedelta
from http.cookiejar import CookieJar
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AGENCIES = int(os.environ.get("BENCH_AGENCIES", 200))
PER_AGENCY = 120
DURATION = os.environ.get("BENCH_DURATION", "8s")
CONNECTIONS = 8
WORKERS = int(os.environ.get("BENCH_WORKERS", 4))
PASSWORD = "bench passphrase for loopback only"  # noqa: S105 - throwaway benchmark accounts


def log(msg):
    print(msg, flush=True)


def build(app, agencies=AGENCIES, per_agency=PER_AGENCY, history=10, evidence=2, monitored=10):
    """Bulk-load synthetic data with Core inserts (seconds, not minutes)."""
    import sqlalchemy as sa

    from tracker.extensions import db
    from tracker.models import (
        Agency,
        ComplianceScale,
        Evidence,
        Finding,
        Instrument,
        Membership,
        MonitoringPeriod,
        Recommendation,
        Requirement,
        StatusChange,
        User,
        utcnow,
    )
    from tracker.passwords import hash_password
    from tracker.services import paragraphs
    from tracker.services.catalog import load_catalog

    with app.app_context():
        db.create_all()
        load_catalog(ROOT / "seed" / "catalog.yaml")
        db.session.commit()
        scale = db.session.execute(sa.select(ComplianceScale).where(ComplianceScale.key == "cleveland")).scalar_one()
        levels = [lvl for lvl in scale.levels]
        recs = db.session.execute(sa.select(Recommendation)).scalars().all()
        now = utcnow()
        pw = hash_password(PASSWORD)
        users = [{"email": "admin@bench.example", "name": "Bench Admin", "password_hash": pw, "is_admin": True,
                  "active": True, "failed_logins": 0, "created_at": now},
                 {"email": "monitor@bench.example", "name": "Bench Monitor", "password_hash": pw, "is_admin": False,
                  "active": True, "failed_logins": 0, "created_at": now},
                 {"email": "officer@bench.example", "name": "Bench Officer", "password_hash": pw,
                  "is_admin": False, "active": True, "failed_logins": 0, "created_at": now}]
        db.session.execute(sa.insert(User), users)
        ids = dict(db.session.execute(sa.select(User.email, User.id)).all())
        monitor_id, officer_id = ids["monitor@bench.example"], ids["officer@bench.example"]
        db.session.execute(sa.insert(Agency), [
            {"name": f"Bench City {i:03d} Police Department", "slug": f"bench-{i:03d}", "state": "OH",
             "public_enabled": False, "created_at": now} for i in range(agencies)])
        agency_ids = db.session.execute(sa.select(Agency.id).order_by(Agency.id)).scalars().all()
        db.session.execute(sa.insert(Instrument), [
            {"agency_id": a, "short_name": "Consent Decree", "title": "Consent decree", "position": 0,
             "effective_date": date(2024, 1, 1) + timedelta(days=i), "scale_id": scale.id, "sustainment_months": 24,
             "created_at": now} for i, a in enumerate(agency_ids)])
        instrument_ids = dict(db.session.execute(sa.select(Instrument.agency_id, Instrument.id)).all())
        db.session.execute(sa.insert(Membership), [
            *({"user_id": monitor_id, "agency_id": a, "role": "monitor", "created_at": now}
              for a in agency_ids[:monitored]),
            *({"user_id": officer_id, "agency_id": a, "role": "officer", "created_at": now} for a in agency_ids)])
        statuses = ("not_started", "in_progress", "implemented", "not_applicable")
        today = date.today()
        for a_index, agency_id in enumerate(agency_ids):
            rows = []
            for n in range(per_agency):
                rec = recs[n % len(recs)]
                code = rec.code if n < len(recs) else f"¶ {100 + n}"
                rows.append({
                    "agency_id": agency_id, "instrument_id": instrument_ids[agency_id],
                    "recommendation_id": rec.id if n < len(recs) else None, "module_id": rec.module_id, "code": code,
                    "code_key": paragraphs.id_key(code), "sort_key": paragraphs.sort_key(code),
                    "title": rec.title, "summary": rec.summary, "citation_text": f"Decree ¶ {100 + n}",
                    "status": statuses[(n + a_index) % 4], "owner_id": officer_id if n % 3 else None,
                    "due_date": today + timedelta(days=(n * 7) % 400 - 60), "due_date_derived": False,
                    "notes": "", "row_version": 1, "created_at": now, "updated_at": now,
                })
            db.session.execute(sa.insert(Requirement), rows)
            req_ids = db.session.execute(sa.select(Requirement.id).where(Requirement.agency_id == agency_id)
                                         .order_by(Requirement.id)).scalars().all()
            if history:
                db.session.execute(sa.insert(StatusChange), [
                    {"requirement_id": r, "old_status": statuses[h % 4], "new_status": statuses[(h + 1) % 4],
                     "note": "bench", "actor_id": officer_id, "created_at": now - timedelta(days=h)}
                    for r in req_ids for h in range(history)])
            db.session.execute(sa.insert(Evidence), [
                {"requirement_id": r, "kind": "link", "title": f"Evidence {e}", "description": "",
                 "visibility": "shareable", "url": "https://example.org/evidence",
                 "review_state": "submitted" if e == 0 else "accepted", "superseded": False,
                 "uploaded_by_id": officer_id, "created_at": now - timedelta(days=e)}
                for r in req_ids for e in range(evidence)])
            db.session.execute(sa.insert(MonitoringPeriod), [
                {"agency_id": agency_id, "name": "Report 1", "start_date": date(2025, 1, 1),
                 "end_date": date(2025, 6, 30), "state": "filed", "filed_at": now},
                {"agency_id": agency_id, "name": "Report 2", "start_date": date(2025, 7, 1),
                 "end_date": date(2025, 12, 31), "state": "open"}])
            periods = db.session.execute(sa.select(MonitoringPeriod.id).where(
                MonitoringPeriod.agency_id == agency_id).order_by(MonitoringPeriod.end_date)).scalars().all()
            db.session.execute(sa.insert(Finding), [
                {"requirement_id": r, "period_id": p, "level_id": levels[(i + k) % len(levels)].id,
                 "narrative": "bench", "monitor_id": monitor_id, "is_current": True, "created_at": now}
                for k, p in enumerate(periods) for i, r in enumerate(req_ids) if i % 2 == 0])
            db.session.commit()
        db.session.execute(sa.text("ANALYZE") if db.engine.dialect.name != "sqlite" else sa.text("ANALYZE"))
        db.session.commit()
        return agency_ids


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sign_in(base, email):
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/login").read().decode()  # noqa: S310 - loopback
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode({"email": email, "password": PASSWORD, "csrf_token": token}).encode()
    opener.open(urllib.request.Request(f"{base}/login", data=data,  # noqa: S310 - loopback
                                       headers={"Referer": f"{base}/login"}))
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    check = opener.open(f"{base}/account")  # noqa: S310 - loopback URL built here
    assert check.status == 200, "sign-in failed"
    return cookie


def wrk(url, cookie):
    env = {**os.environ, "BENCH_COOKIE": cookie}
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{DURATION}", "--latency", "-s",  # noqa: S603,S607
                          str(ROOT / "bench" / "report.lua"), url], capture_output=True, text=True, env=env,
                         check=True)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1]
    return json.loads(line)


def query_counts(make_app_config):
    """Queries per page at 10 and at 1,000 requirements, in-process with the test client."""
    import sqlalchemy as sa

    from tracker import create_app
    from tracker.extensions import db

    results = {}
    for size in (10, 1000):
        tmp = tempfile.mkdtemp(prefix=f"bench-q{size}-")
        app = create_app({**make_app_config, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/q.db",
                          "EVIDENCE_DIR": f"{tmp}/evidence"})
        build(app, agencies=3, per_agency=size, history=2, evidence=2, monitored=3)
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        client.post("/login", data={"email": "admin@bench.example", "password": PASSWORD, "csrf_token": token})
        monitor = app.test_client()
        page = monitor.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        monitor.post("/login", data={"email": "monitor@bench.example", "password": PASSWORD, "csrf_token": token})
        counts = {}
        with app.app_context():
            engine = db.engine

        def count(c, path, engine=engine):
            # Each request runs in its own app context, as under gunicorn (nothing carried in `g`).
            counter = {"n": 0}

            def listener(*args, **kwargs):
                counter["n"] += 1

            sa.event.listen(engine, "after_cursor_execute", listener)
            with c.get(path.format(slug="bench-000")) as response:
                response.get_data()
                assert response.status_code == 200, (path, response.status_code)
            sa.event.remove(engine, "after_cursor_execute", listener)
            return counter["n"]

        for name, who, path in PAGES:
            c = monitor if who == "monitor" else client
            # The rendering work (a cache miss), then a repeat served from the fragment cache.
            app.extensions["fragment_cache"].clear()
            counts[name] = count(c, path)
            counts[name + " (cached)"] = count(c, path)
        engine.dispose()
        results[size] = counts
        shutil.rmtree(tmp, ignore_errors=True)
    return results


PAGES = [
    ("bare route (ceiling)", "admin", "/healthz"),
    ("board, 120 requirements", "admin", "/agencies/{slug}"),
    ("agency dashboard", "admin", "/agencies/{slug}/dashboard"),
    ("review queue", "monitor", "/reviews"),
    ("cross-agency roll-up", "admin", "/rollup"),
    ("CSV export", "admin", "/agencies/{slug}/export.csv"),
]


def serve_and_measure(db_url, work, config, extra_env, label):
    """Serve with gunicorn and run wrk against every page; returns {page name: figures}."""
    log(f"Measuring {label} ...")
    port = free_port()
    env = {**os.environ, "TRACKER_ENV": "development", "SECRET_KEY": config["SECRET_KEY"], "DATABASE_URL": db_url,
           "EVIDENCE_DIR": str(work / "evidence"), "RATELIMIT_ENABLED": "false", "MFA_REQUIRED_ROLES": "",
           "HSTS": "false", **extra_env}
    server = subprocess.Popen([str(ROOT / ".venv" / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{port}",  # noqa: S603
                               "--workers", str(WORKERS), "--log-level", "warning", "wsgi:app"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    measured = {}
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)  # noqa: S310 - loopback
                break
            except OSError:
                time.sleep(0.2)
        cookies = {"admin": sign_in(base, "admin@bench.example"), "monitor": sign_in(base, "monitor@bench.example")}
        for name, who, path in PAGES:
            url = base + path.format(slug="bench-000")
            wrk(url, cookies[who])  # warm-up
            measured[name] = wrk(url, cookies[who])
            m = measured[name]
            log(f"  {name:<26} {m['rps']:>8.1f} req/s  p50 {m['p50_ms']:6.1f} ms  p95 {m['p95_ms']:6.1f} ms"
                f"  errors {m['errors'] + m['non2xx']}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return measured


def main():
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed; `make bench` installs it with apt-get.")
    config = {"TRACKER_ENV": "development", "SECRET_KEY": "bench-only-secret-key", "MFA_REQUIRED_ROLES": [],
              "SESSION_COOKIE_SECURE": False, "SESSION_COOKIE_NAME": "tracker_session", "RATELIMIT_ENABLED": False,
              "HSTS": False}
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    db_url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{work / 'bench.db'}"
    from tracker import create_app

    log(f"Generating {AGENCIES} agencies x {PER_AGENCY} requirements into {db_url} ...")
    started = time.time()
    app = create_app({**config, "SQLALCHEMY_DATABASE_URI": db_url, "EVIDENCE_DIR": str(work / "evidence")})
    build(app)
    with app.app_context():
        from tracker.extensions import db

        db.engine.dispose()
    log(f"  done in {time.time() - started:.0f} s")

    measured = serve_and_measure(db_url, work, config, {}, "with the fragment cache (the default)")
    uncached = serve_and_measure(db_url, work, config, {"PAGE_CACHE_ENTRIES": "0"},
                                 "without it (PAGE_CACHE_ENTRIES=0): every request renders")
    log("Counting queries at 10 and 1,000 requirements ...")
    counts = query_counts({**config})
    ceiling = measured[PAGES[0][0]]["rps"]
    results = []
    for name, _who, _path in PAGES:
        m, u = measured[name], uncached[name]
        results.append({"name": name, "rps": round(m["rps"], 1), "p50_ms": round(m["p50_ms"], 2),
                        "p95_ms": round(m["p95_ms"], 2), "fraction_of_ceiling": round(m["rps"] / ceiling, 3),
                        "queries_small": counts[10][name], "queries_large": counts[1000][name],
                        "queries_cached_small": counts[10][name + " (cached)"],
                        "queries_cached_large": counts[1000][name + " (cached)"],
                        "uncached_rps": round(u["rps"], 1), "uncached_p95_ms": round(u["p95_ms"], 2),
                        "errors": m["errors"] + m["non2xx"] + u["errors"] + u["non2xx"]})
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "processor": platform.processor() or platform.machine(), "workers": WORKERS,
               "connections": CONNECTIONS, "duration": DURATION, "database": db_url.split(":")[0],
               "agencies": AGENCIES, "requirements": AGENCIES * PER_AGENCY}
    (ROOT / "bench-results.json").write_text(json.dumps({"machine": machine, "pages": results}, indent=2) + "\n")
    log("")
    log("| page | req/s | p50 ms | p95 ms | share of ceiling | uncached req/s | uncached p95 ms "
        "| queries @10 | queries @1000 | cached @10 / @1000 |")
    log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        log(f"| {r['name']} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
            f"{100 * r['fraction_of_ceiling']:.0f} % | {r['uncached_rps']:.0f} | {r['uncached_p95_ms']:.1f} | "
            f"{r['queries_small']} | {r['queries_large']} | "
            f"{r['queries_cached_small']} / {r['queries_cached_large']} |")
    log(f"\nMachine: {machine['cpus']} CPUs, {machine['processor']}, Python {machine['python']}, "
        f"gunicorn {WORKERS} sync workers, wrk {CONNECTIONS} connections for {DURATION}, {machine['database']}.")
    misses = [r["name"] for r in results[1:] if r["fraction_of_ceiling"] < 0.10 or r["p95_ms"] > 50
              or r["queries_small"] != r["queries_large"] or r["queries_cached_small"] != r["queries_cached_large"]]
    if misses:
        log(f"Targets missed by: {', '.join(misses)}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
