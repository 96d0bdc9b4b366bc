"""Page reads on a real server, where each request has its own app context (issue 18).

In-process tests share one app context, so they never see what happens between a request's teardown and a
streamed body: on PostgreSQL a page read ends its transaction with COMMIT (tracker/db.py, so psycopg keeps its
prepared statements), and the CSV export streams after that teardown, reading the objects the view loaded.
Here the board, the dashboard and the streamed CSV are read several times over (every worker answers some),
on SQLite or on PostgreSQL with TEST_DATABASE_URL.
"""
import csv
import io

from tests.reliability.conftest import AGENCY_SLUG, REQUIREMENTS, report


def test_pages_and_the_streamed_csv_read_the_same_on_every_request(deployment):
    d = deployment
    log = d.server.log_path
    start = log.stat().st_size if log.exists() else 0  # earlier tests of the package share the log
    officer = d.session()
    for n in range(6):
        for path in (f"/agencies/{AGENCY_SLUG}", f"/agencies/{AGENCY_SLUG}/dashboard"):
            page = officer.get(path)
            assert page.status == 200, (path, page.status)
        export = officer.get(f"/agencies/{AGENCY_SLUG}/export.csv")
        assert export.status == 200, (n, export.status, export.text[:300])
        rows = list(csv.reader(io.StringIO(export.text)))
        assert len(rows) == REQUIREMENTS + 1, (n, len(rows), export.text[-300:])
    with log.open("rb") as f:
        f.seek(start)
        errors = [line for line in f.read().decode("utf-8", "replace").splitlines() if "Error handling" in line]
    assert not errors, errors[:3]
    report(f"page reads ({d.backend}): board, dashboard and streamed CSV x 6, {REQUIREMENTS} rows each, no error")
