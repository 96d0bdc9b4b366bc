"""Overload never loses input or answers 500 (issue 18, target 4).

A write that cannot get the database in time (SQLite: the write lock is held past the busy timeout;
PostgreSQL: a row lock past lock_timeout) answers 503 "busy, try again" with Retry-After, writes
nothing, and on an htmx row edit leaves the row (and the user's input) in place while the message
goes to the status region. Runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""
import re
import sqlite3
import threading

import pytest
import sqlalchemy as sa

from tests.conftest import Auth
from tests.factories import make_agency, make_module, make_requirement, make_user
from tracker.models import AuditEvent, Requirement, StatusChange
from tracker.views.errors import is_busy


@pytest.fixture
def row(app, db):
    module = make_module("cit", "Crisis Intervention Teams", 1)
    agency = make_agency(slug="agency-a")
    make_user("officer@example.test", role="officer", agency=agency)
    req = make_requirement(agency, module=module, code="CIT-001", title="Crisis line staffing")
    db.session.commit()
    auth = Auth(app.test_client())
    auth.login("officer@example.test")
    page = f"/agencies/agency-a/requirements/{req.id}"
    html = auth.client.get(page).get_data(as_text=True)
    version = re.search(r'name="row_version" type="hidden" value="(\d+)"', html).group(1)
    return {"req_id": req.id, "auth": auth, "page": page, "version": version}


def _counts(db):
    db.session.rollback()
    return (db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)),
            db.session.scalar(sa.select(sa.func.count()).select_from(StatusChange)))


class HeldLock:
    """Another connection holding the lock the status change needs, for as long as the test says."""

    def __init__(self, db, req_id):
        self.engine = db.engine
        self.req_id = req_id
        self.release = threading.Event()
        self.ready = threading.Event()

    def _hold(self):
        if self.engine.dialect.name == "sqlite":
            conn = sqlite3.connect(self.engine.url.database, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")  # the database's write lock
            self.ready.set()
            self.release.wait(30)
            conn.execute("ROLLBACK")
            conn.close()
        else:
            with self.engine.connect() as conn:
                conn.execute(sa.select(Requirement.id).where(Requirement.id == self.req_id).with_for_update())
                self.ready.set()
                self.release.wait(30)
                conn.rollback()

    def __enter__(self):
        self.thread = threading.Thread(target=self._hold)
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.thread.join(30)


def test_a_write_that_cannot_get_the_lock_answers_busy_and_writes_nothing(app, db, row):
    before = _counts(db)
    with HeldLock(db, row["req_id"]):
        answer = row["auth"].post(row["page"] + "/status", {"status": "in_progress", "note": "typed with care",
                                                            "row_version": row["version"]})
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "2"
    assert "busy" in answer.get_data(as_text=True) and "Nothing was saved" in answer.get_data(as_text=True)
    assert _counts(db) == before
    assert db.session.get(Requirement, row["req_id"]).status == "not_started"
    # Once the lock is gone the same form goes through.
    again = row["auth"].post(row["page"] + "/status", {"status": "in_progress", "note": "typed with care",
                                                      "row_version": row["version"]})
    assert again.status_code == 303


def test_an_htmx_row_edit_keeps_the_row_and_shows_the_message_in_the_status_region(app, db, row):
    with HeldLock(db, row["req_id"]):
        answer = row["auth"].post(row["page"] + "/status", {"status": "implemented", "note": "",
                                                            "row_version": row["version"]},
                                  headers={"HX-Request": "true"})
    assert answer.status_code == 503
    assert answer.headers["HX-Retarget"] == "#flash" and answer.headers["HX-Reswap"] == "innerHTML"
    assert "<html" not in answer.get_data(as_text=True)  # a fragment for the status region, not a page


def test_the_page_tells_htmx_to_show_a_503_without_an_error_swap(app, db, row):
    html = row["auth"].client.get(row["page"]).get_data(as_text=True)
    assert '{"code":"503","swap":true,"error":false}' in html


@pytest.mark.parametrize("message, busy", [
    ("database is locked", True),
    ("database is busy", True),
    ("no such table: requirement", False),
    ("disk I/O error", False),
])
def test_only_lock_waits_count_as_busy(message, busy):
    error = sa.exc.OperationalError("UPDATE requirement", {}, sqlite3.OperationalError(message))
    assert is_busy(error) is busy


def test_a_pool_timeout_is_busy_and_an_integrity_error_is_not():
    assert is_busy(sa.exc.TimeoutError("QueuePool limit reached"))
    assert not is_busy(sa.exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")))
