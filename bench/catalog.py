"""Catalog load at scale (issue 18, target 6): 1,000 recommendations into an empty database.

The seed catalog's recommendations are repeated under new ids (DIV-101, DIV-102, ...) until there are
ROWS of them; `python bench/catalog.py URL WORKDIR` loads that file once into a fresh schema, in a fresh
process, and prints one JSON line: parse and total CPU seconds and wall seconds.
"""
import copy
import json
import os
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ROWS = int(os.environ.get("BENCH_CATALOG_ROWS", 1000))


def big_catalog(target):
    data = yaml.load((ROOT / "seed" / "catalog.yaml").read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    seed = data["recommendations"]
    recs, n = [], 0
    while len(recs) < ROWS:
        for rec in seed:
            if len(recs) == ROWS:
                break
            clone = copy.deepcopy(rec)
            prefix = rec["id"].split("-")[0]
            clone["id"] = f"{prefix}-{1001 + n}"
            recs.append(clone)
            n += 1
    data["recommendations"] = recs
    target.write_text(yaml.dump(data, Dumper=yaml.CSafeDumper, allow_unicode=True, sort_keys=False),
                      encoding="utf-8")
    return target


def main(db_url, work):
    from tracker import create_app
    from tracker.extensions import db
    from tracker.services.catalog import load_catalog, parse_catalog

    path = big_catalog(Path(work) / "catalog-1000.yaml")
    app = create_app({"TRACKER_ENV": "development", "SECRET_KEY": "bench-only-secret-key",
                      "SQLALCHEMY_DATABASE_URI": db_url, "EVIDENCE_DIR": f"{work}/evidence"})
    with app.app_context():
        db.create_all()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        parse_catalog(path)
        parse_cpu = time.process_time() - cpu0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        report = load_catalog(path)
        db.session.commit()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        print(json.dumps({"recommendations": len(report.added), "parse_cpu_s": round(parse_cpu, 2),
                          "cpu_s": round(cpu, 2), "wall_s": round(wall, 2)}))
        db.drop_all()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
