"""`make bench`: synthetic data at scale, gunicorn, wrk, worker CPU from /proc, on SQLite and PostgreSQL.

For each database (SQLite always; PostgreSQL when it answers): generates 200 agencies x 120 requirements
(10 history rows and 2 evidence items each, two monitoring periods with findings) and one agency of 1,000,
serves the app with gunicorn (gthread) on loopback and measures with wrk at 8 connections, reporting per
page req/s, p95 and the workers' CPU milliseconds per request:
- every page on its own, with the fragment cache and cold (PAGE_CACHE_ENTRIES=0), in five rounds, each page
  measured right after the bare route (medians reported);
- mixed load: readers of the board, dashboard, review queue and roll-up spread over all 200 agencies
  while a writer POSTs 5 status changes a second into random agencies (warm-up under the same load
  first), with the cache hit rate and the writes' p95 and outcomes;
- overload: the bare route with and without 20 status changes a second on the same workers;
- exports of a 100,000-requirement agency (bench/exports.py), a 1,000-recommendation catalog load
  (bench/catalog.py) and a 5,000-row decree paragraph import (bench/imports.py), each in a fresh process.
Then counts the queries each page issues at 10 and at 1,000 requirements. Prints tables and the
issue-18 targets, and writes bench-results.json.
"""
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import load  # noqa: E402 - after the path is set

AGENCIES = int(os.environ.get("BENCH_AGENCIES", 200))
PER_AGENCY = 120
BIG = 1000
DURATION = os.environ.get("BENCH_DURATION", "8s")
WARM = os.environ.get("BENCH_WARM", "3s")
# Long enough for every worker to have rendered every agency's page once: the steady state of a server that
# has been up for a while, which is what users meet (a restart is measured by the cold figures).
MIXED_WARM = os.environ.get("BENCH_MIXED_WARM", "40s")
# Pages on their own: rounds of PAGE_DURATION each, medians reported (the guide: repeat, take the median).
PAGE_ROUNDS = int(os.environ.get("BENCH_PAGE_ROUNDS", 5))
PAGE_DURATION = os.environ.get("BENCH_PAGE_DURATION", "3s")
CONNECTIONS = 8
# gthread: a worker thread waiting on a lock or a slow write does not hold the whole process.
WORKERS = int(os.environ.get("BENCH_WORKERS", 2))
THREADS = int(os.environ.get("BENCH_THREADS", 4))
WRITES_PER_SECOND = 5
OVERLOAD_WRITES_PER_SECOND = 20
PASSWORD = "bench passphrase for loopback only"  # noqa: S105 - throwaway benchmark accounts


def log(msg):
    print(msg, flush=True)


def build(app, agencies=AGENCIES, per_agency=PER_AGENCY, history=10, evidence=2, monitored=10, big=0):
    """Bulk-load synthetic data with Core inserts (seconds, not minutes). `big`: one more agency, bench-big,
    with that many requirements (the large-agency board)."""
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
             "public_enabled": False, "created_at": now} for i in range(agencies)]
            + ([{"name": "Bench Big City Police Department", "slug": "bench-big", "state": "OH",
                 "public_enabled": False, "created_at": now}] if big else []))
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
            for n in range(big if a_index == agencies else per_agency):
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
        build(app, agencies=3, per_agency=size, history=2, evidence=2, monitored=3, big=size)
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
    ("board, 1,000 requirements", "admin", "/agencies/bench-big"),
    ("agency dashboard", "admin", "/agencies/{slug}/dashboard"),
    ("review queue", "monitor", "/reviews"),
    ("cross-agency roll-up", "admin", "/rollup"),
    ("CSV export", "admin", "/agencies/{slug}/export.csv"),
]
# The mixed load: readers of these pages spread over every agency while the writer changes statuses.
MIXED = ["board, 120 requirements", "agency dashboard", "review queue", "cross-agency roll-up"]
CONFIG = {"TRACKER_ENV": "development", "SECRET_KEY": "bench-only-secret-key", "MFA_REQUIRED_ROLES": [],
          "SESSION_COOKIE_SECURE": False, "SESSION_COOKIE_NAME": "tracker_session", "RATELIMIT_ENABLED": False,
          "HSTS": False}


def shared_cache_url():
    """The page cache's shared level, as production runs it (README), when the local Redis answers;
    BENCH_REDIS=0 measures the workers' own caches alone."""
    import socket

    if os.environ.get("BENCH_REDIS", "1") == "0":
        return ""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return "redis://127.0.0.1:6379/13" if s.recv(16).startswith(b"+PONG") else ""
    except OSError:
        return ""


SHARED_CACHE = shared_cache_url()


def server_env(db_url, work, **extra):
    return {**os.environ, "TRACKER_ENV": "development", "SECRET_KEY": CONFIG["SECRET_KEY"], "DATABASE_URL": db_url,
            "EVIDENCE_DIR": str(work / "evidence"), "RATELIMIT_ENABLED": "false", "MFA_REQUIRED_ROLES": "",
            "HSTS": "false", "PAGE_CACHE_REDIS_URL": SHARED_CACHE, **extra}


def accounts(server):
    return {who: load.sign_in(server.base, f"{who}@bench.example", PASSWORD) for who in ("admin", "monitor",
                                                                                        "officer")}


def measure_pages(server, label):
    """Every page on its own, as served by `server`, in PAGE_ROUNDS rounds. In each round every page is measured
    right after the bare route, PAGE_DURATION each, and its share is its req/s against that bare measurement:
    this host's speed moves by half within a minute, so a bare route measured once a round, 30 s before the
    round's last page, gave shares of 4 % and 21 % to the same page. Per page: the median req/s, p95 and worker
    CPU ms per request over the rounds, and `share`, the median of its per-round shares."""
    log(f"  pages {label}:")
    signed_in = accounts(server)
    bare_name, bare_who, bare_path = PAGES[0]
    for _name, who, path in PAGES:
        load.wrk(server, path, signed_in[who][0], WARM)
    rounds = {name: [] for name, _w, _p in PAGES}
    pairs = {name: [] for name, _w, _p in PAGES[1:]}
    for _n in range(PAGE_ROUNDS):
        for name, who, path in PAGES[1:]:
            bare = load.wrk(server, bare_path, signed_in[bare_who][0], PAGE_DURATION)
            page = load.wrk(server, path, signed_in[who][0], PAGE_DURATION)
            rounds[bare_name].append(bare)
            rounds[name].append(page)
            pairs[name].append((page, bare))
    pairs[bare_name] = [(b, b) for b in rounds[bare_name]]
    measured = {}
    for name, _w, _p in PAGES:
        runs = rounds[name]
        measured[name] = m = {key: _median([r[key] for r in runs]) for key in ("rps", "p95_ms", "cpu_ms_per_request")}
        m["errors"] = sum(r["errors"] + r["non2xx"] for r in runs)
        m["share"] = round(_median([r["rps"] / b["rps"] for r, b in pairs[name]]), 4)
        m["rounds"] = [{"rps": r["rps"], "p95_ms": r["p95_ms"], "cpu_ms_per_request": r["cpu_ms_per_request"],
                        "share": round(r["rps"] / b["rps"], 4)} for r, b in pairs[name]]
        log(f"    {name:<26} {m['rps']:>8.1f} req/s  p95 {m['p95_ms']:6.1f} ms  CPU {m['cpu_ms_per_request']:6.2f} ms"
            f"  {100 * m['share']:5.1f} % of bare  errors {m['errors']}  (rounds: "
            + ", ".join(f"{100 * r['share']:.1f} %" for r in m["rounds"]) + ")")
    return measured


def _median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def requirement_ids(db_url):
    import sqlalchemy as sa

    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT a.slug, r.id FROM requirement r JOIN agency a ON a.id = r.agency_id "
            "WHERE a.slug LIKE 'bench-%' AND a.slug != 'bench-big'")).all()
    engine.dispose()
    return [(slug, req_id) for slug, req_id in rows]


def measure_mixed(db_url, work, reqs, versions):
    """Readers spread over all agencies, a writer at WRITES_PER_SECOND: per page, after a warm-up under
    the same load, req/s, p95 and CPU of the readers, the writes' p95 and outcomes, the cache hit rate."""
    log(f"  mixed load: readers over {AGENCIES} agencies, {WRITES_PER_SECOND} status changes/s:")
    results = {}
    for name in MIXED:
        who, path = next((who, path) for n, who, path in PAGES if n == name)
        with load.Server(server_env(db_url, work), WORKERS, THREADS, work / f"stats-{len(results)}") as server:
            signed_in = accounts(server)
            cookie, token = signed_in["officer"]
            with load.Writer(server, cookie, token, reqs, WRITES_PER_SECOND, versions=versions):
                load.wrk(server, path, signed_in[who][0], MIXED_WARM, agencies=AGENCIES)
            hits0, misses0, missed0 = server.cache_stats()
            with load.Writer(server, cookie, token, reqs, WRITES_PER_SECOND, versions=versions) as writer:
                m = load.wrk(server, path, signed_in[who][0], DURATION, agencies=AGENCIES)
            time.sleep(1)  # the workers' stats files catch up
            hits1, misses1, missed1 = server.cache_stats()
        hits, misses = hits1 - hits0, misses1 - misses0
        m["hit_rate"] = round(hits / max(hits + misses, 1), 3)
        m["misses"] = {name: n - missed0.get(name, 0) for name, n in missed1.items() if n > missed0.get(name, 0)}
        m["writes"] = writer.figures()
        results[name] = m
        log(f"    {name:<26} {m['rps']:>8.1f} req/s  p95 {m['p95_ms']:6.1f} ms  CPU {m['cpu_ms_per_request']:6.2f} ms"
            f"  hits {100 * m['hit_rate']:.0f} %  writes {m['writes']}  misses {m['misses']}")
    return results


def measure_overload(db_url, work, reqs, versions):
    """The bare route unloaded, then with OVERLOAD_WRITES_PER_SECOND status changes on the same workers."""
    log(f"  overload: {OVERLOAD_WRITES_PER_SECOND} status changes/s on the same workers:")
    with load.Server(server_env(db_url, work), WORKERS, THREADS, work / "stats-overload") as server:
        signed_in = accounts(server)
        load.wrk(server, "/healthz", signed_in["admin"][0], WARM)
        unloaded = load.wrk(server, "/healthz", signed_in["admin"][0], DURATION)
        cookie, token = signed_in["officer"]
        with load.Writer(server, cookie, token, reqs, OVERLOAD_WRITES_PER_SECOND, threads=4,
                         versions=versions) as writer:
            loaded = load.wrk(server, "/healthz", signed_in["admin"][0], DURATION)
    result = {"unloaded_rps": unloaded["rps"], "loaded_rps": loaded["rps"],
              "read_share": round(loaded["rps"] / unloaded["rps"], 3), "writes": writer.figures()}
    log(f"    reads {unloaded['rps']:.0f} -> {loaded['rps']:.0f} req/s ({100 * result['read_share']:.0f} %), "
        f"writes {result['writes']}")
    return result


def run_script(script, *args):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT,  # noqa: S603
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "TRACKER_ENV": "development", "SECRET_KEY": CONFIG["SECRET_KEY"]})
    return json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1])


def measure_exports(url, work):
    log("  exports of a 100,000-requirement agency ...")
    run_script("exports.py", "build", url, str(work))
    results = {kind: run_script("exports.py", "measure", url, kind, str(work)) for kind in ("csv", "xlsx")}
    for m in results.values():
        log(f"    {m['kind']}: first row {m['first_row_ms']} ms, whole {m['total_s']} s, CPU {m['cpu_s']} s, "
            f"peak memory +{m['peak_growth_mb']} MB")
    return results


def measure_catalog(url, work):
    m = run_script("catalog.py", url, str(work))
    log(f"  catalog of {m['recommendations']} recommendations: CPU {m['cpu_s']} s, wall {m['wall_s']} s")
    return m


def measure_import(url, work):
    m = run_script("imports.py", url, str(work))
    log(f"  import of {m['rows']:,} rows ({m['bytes'] // 1024} KB): {m['import']['wall_s']} s wall, "
        f"{m['import']['cpu_s']} s CPU, peak +{m['import']['peak_mb']} MB; unchanged again "
        f"{m['reimport_unchanged']['wall_s']} s; refusals: " + ", ".join(
            f"{name} {f['wall_s']} s" for name, f in m["refused"].items()))
    return m


def databases(work):
    """SQLite always; PostgreSQL when BENCH_POSTGRES_URL (or the local server) answers. Fresh databases."""
    import sqlalchemy as sa

    chosen = os.environ.get("BENCH_DATABASES", "sqlite,postgresql").split(",")
    if "sqlite" in chosen:
        yield "sqlite", lambda name: f"sqlite:///{work / name}.db"
    pg = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    if "postgresql" not in chosen:
        return
    admin = sa.create_engine(pg, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError:
        log(f"PostgreSQL at {pg} does not answer: SQLite only.")
        return

    def fresh(name):
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "bench_{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "bench_{name}"'))
        return pg.rsplit("/", 1)[0] + f"/bench_{name}"

    yield "postgresql", fresh


def bench_database(label, fresh, work):
    url = fresh("pages")
    log(f"[{label}] generating {AGENCIES} agencies x {PER_AGENCY} requirements and one of {BIG} ...")
    started = time.time()
    from tracker import create_app

    app = create_app({**CONFIG, "SQLALCHEMY_DATABASE_URI": url, "EVIDENCE_DIR": str(work / "evidence")})
    build(app, big=BIG)
    with app.app_context():
        from tracker.extensions import db

        db.engine.dispose()
    log(f"  done in {time.time() - started:.0f} s")
    with load.Server(server_env(url, work), WORKERS, THREADS, work / "stats-cached") as server:
        cached = measure_pages(server, "with the fragment cache (the default)")
    with load.Server(server_env(url, work, PAGE_CACHE_ENTRIES="0"), WORKERS, THREADS, work / "stats-cold") as server:
        cold = measure_pages(server, "cold: PAGE_CACHE_ENTRIES=0, every request renders")
    reqs, versions = requirement_ids(url), {}
    return {"pages": {name: {"cached": cached[name], "cold": cold[name]} for name, _w, _p in PAGES},
            "mixed": measure_mixed(url, work, reqs, versions), "overload": measure_overload(url, work, reqs, versions),
            "exports": measure_exports(fresh("exports"), work), "catalog": measure_catalog(fresh("catalog"), work),
            "import": measure_import(fresh("import"), work)}


def targets(result):
    """Issue 18's targets, each (description, figure, met)."""
    pages, ceiling = result["pages"], result["pages"]["bare route (ceiling)"]["cached"]["rps"]
    checks = []
    for name, m in result["mixed"].items():
        share = m["rps"] / ceiling
        checks.append((f"mixed: {name} >= 10 % of bare, p95 <= 50 ms, no errors",
                       f"{100 * share:.1f} %, p95 {m['p95_ms']:.0f} ms, errors {m['errors'] + m['non2xx']}",
                       share >= 0.10 and m["p95_ms"] <= 50 and m["errors"] + m["non2xx"] == 0))
        w = m["writes"]
        checks.append((f"mixed: writes during {name} p95 <= 100 ms, all 303", f"p95 {w['p95_ms']} ms, {w['outcomes']}",
                       w["p95_ms"] <= 100 and set(w["outcomes"]) <= {"303"}))
    for name, floor in (("board, 120 requirements", 0.06), ("agency dashboard", 0.08)):
        share = pages[name]["cold"]["share"]
        checks.append((f"cold: {name} >= {100 * floor:.0f} % of bare", f"{100 * share:.1f} %", share >= floor))
    small, big = (pages[n]["cold"]["cpu_ms_per_request"] for n in ("board, 120 requirements",
                                                                  "board, 1,000 requirements"))
    checks.append(("cold: 1,000-requirement board <= 1.5 x the 120 board (CPU ms)", f"{big / small:.2f} x",
                   big <= 1.5 * small))
    o = result["overload"]
    bad = {k: n for k, n in o["writes"]["outcomes"].items() if k not in {"303", "503"}}
    checks.append(("overload: every write 303 or 503, reads >= 25 %",
                   f"{o['writes']['outcomes']}, reads {100 * o['read_share']:.0f} %",
                   not bad and o["read_share"] >= 0.25))
    csv_m, xlsx_m = result["exports"]["csv"], result["exports"]["xlsx"]
    checks.append(("CSV 100,000 rows: first row <= 300 ms, memory +50 MB at most",
                   f"{csv_m['first_row_ms']} ms, +{csv_m['peak_growth_mb']} MB",
                   csv_m["first_row_ms"] <= 300 and csv_m["peak_growth_mb"] <= 50))
    checks.append(("XLSX 100,000 rows within 150 MB", f"+{xlsx_m['peak_growth_mb']} MB",
                   xlsx_m["peak_growth_mb"] <= 150))
    c = result["catalog"]
    checks.append(("catalog 1,000: < 1 s CPU, < 2 s wall", f"{c['cpu_s']} s CPU, {c['wall_s']} s wall",
                   c["cpu_s"] < 1 and c["wall_s"] < 2))
    i = result["import"]
    checks.append(("import 5,000 rows (issue 12): < 20 s wall, < 150 MB; over-limit files refused < 2 s",
                   f"{i['import']['wall_s']} s, +{i['import']['peak_mb']} MB; refused in "
                   + " / ".join(f"{f['wall_s']} s" for f in i["refused"].values()),
                   i["import"]["wall_s"] < 20 and i["import"]["peak_mb"] < 150
                   and all(f["wall_s"] < 2 for f in i["refused"].values())))
    return checks


def main():
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed; `make bench` installs it with apt-get.")
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    results = {}
    try:
        for label, fresh in databases(work):
            results[label] = bench_database(label, fresh, work)
            results[label]["targets"] = [{"target": t, "measured": f, "met": ok}
                                         for t, f, ok in targets(results[label])]
        log("Counting queries at 10 and 1,000 requirements (SQLite) ...")
        counts = query_counts({**CONFIG})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "processor": platform.processor() or platform.machine(), "workers": WORKERS, "threads": THREADS,
               "worker_class": "gthread", "connections": CONNECTIONS, "duration": DURATION,
               "agencies": AGENCIES, "requirements": AGENCIES * PER_AGENCY + BIG, "date": date.today().isoformat(),
               "shared_page_cache": SHARED_CACHE or "off"}
    (ROOT / "bench-results.json").write_text(json.dumps(
        {"machine": machine, "databases": results, "query_counts": counts}, indent=2) + "\n")
    report(machine, results, counts)


def report(machine, results, counts):
    for label, result in results.items():
        log(f"\n### {label}\n")
        log("| page | req/s | % of bare | p95 ms | CPU ms/req | cold req/s | cold % of bare | cold p95 ms "
            "| cold CPU ms/req |")
        log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, m in result["pages"].items():
            c, u = m["cached"], m["cold"]
            log(f"| {name} | {c['rps']:.0f} | {100 * c['share']:.1f} | {c['p95_ms']:.1f} "
                f"| {c['cpu_ms_per_request']:.2f} "
                f"| {u['rps']:.0f} | {100 * u['share']:.1f} | {u['p95_ms']:.1f} | {u['cpu_ms_per_request']:.2f} |")
        log("\n| target | measured | met |\n| --- | --- | --- |")
        for t in result["targets"]:
            log(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
    log("\n| page | queries @10 | queries @1000 | cached @10 / @1000 |\n| --- | ---: | ---: | ---: |")
    for name, _who, _path in PAGES:
        log(f"| {name} | {counts[10][name]} | {counts[1000][name]} | "
            f"{counts[10][name + ' (cached)']} / {counts[1000][name + ' (cached)']} |")
    log(f"\nMachine: {machine['cpus']} CPUs, {machine['processor']}, Python {machine['python']}, gunicorn "
        f"{WORKERS} gthread workers x {THREADS} threads, wrk {CONNECTIONS} connections; pages: median of "
        f"{PAGE_ROUNDS} rounds of {PAGE_DURATION}, mixed load and overload: {DURATION}; "
        f"shared page cache: {machine['shared_page_cache']}.")
    missed = [t["target"] for r in results.values() for t in r["targets"] if not t["met"]]
    log("All targets met." if not missed else f"Targets missed: {len(missed)}")


if __name__ == "__main__":
    main()
