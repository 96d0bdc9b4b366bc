"""Cold render cost of the board and the dashboard (page cache off), in process: CPU per request of N test-client
GETs, against the bare /healthz route, on agencies built like bench/run.py's build() (120 requirements, and one of
1,000). Prints JSON. Usage: .venv/bin/python bench/board_cold.py [N]"""
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import PASSWORD, build  # noqa: E402 - after the path is set
from tracker import create_app  # noqa: E402

CONFIG = {"TRACKER_ENV": "testing", "TESTING": True, "SECRET_KEY": "bench-only", "PAGE_CACHE_ENTRIES": 0,
          "ARGON2_TIME_COST": 1, "ARGON2_MEMORY_KIB": 8, "ARGON2_PARALLELISM": 1, "RATELIMIT_ENABLED": False,
          "MFA_REQUIRED_ROLES": [], "SESSION_COOKIE_SECURE": False, "HSTS": False}


def per_request(client, url, n):
    for _ in range(3):
        assert client.get(url).status_code == 200, url
    start = time.process_time()
    for _ in range(n):
        client.get(url).close()
    return (time.process_time() - start) / n


def main(n=40):
    work = Path(tempfile.mkdtemp())
    app = create_app({**CONFIG, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{work / 'bench.db'}",
                      "EVIDENCE_DIR": str(work / "evidence")})
    build(app, agencies=1, per_agency=120, big=1000)
    client = app.test_client()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"',
                      client.get("/login").get_data(as_text=True)).group(1)
    client.post("/login", data={"email": "officer@bench.example", "password": PASSWORD, "csrf_token": token})
    bare = per_request(client, "/healthz", n * 5)
    pages = {"board_120": "/agencies/bench-000", "dashboard_120": "/agencies/bench-000/dashboard",
             "board_1000": "/agencies/bench-big"}
    result = {"bare_ms": round(bare * 1000, 3)}
    for name, url in pages.items():
        cost = per_request(client, url, n)
        result[f"{name}_ms"] = round(cost * 1000, 2)
        result[f"{name}_pct_of_bare"] = round(100 * bare / cost, 2)
    result["board_1000_vs_120"] = round(result["board_1000_ms"] / result["board_120_ms"], 2)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
