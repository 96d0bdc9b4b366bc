"""Exit 0 when the database URL answers a query within 3 seconds, 1 otherwise (used by `make test`)."""
import sys

import sqlalchemy as sa

url = sys.argv[1]
if url.startswith("postgresql://"):
    url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
try:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
    print(f"database not ready: {exc.__class__.__name__}", file=sys.stderr)
    sys.exit(1)
