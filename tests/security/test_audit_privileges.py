"""Least privilege on PostgreSQL (issue 19): the app's role may read and append audit rows, nothing more.

make test-postgres runs the whole suite as that role (TEST_APP_ROLE=tracker_app); this test also runs
without it, creating the role itself.
"""
import pytest
import sqlalchemy as sa

from scripts.db_roles import ensure_role, grant_app, refused
from tests.conftest import APP_ROLE, PG_URL
from tests.factories import make_agency
from tracker.models import AuditEvent
from tracker.services import audit

pytestmark = pytest.mark.skipif(not PG_URL, reason="database roles are PostgreSQL's")
ROLE = APP_ROLE or "tracker_app"


def test_the_suite_runs_as_the_restricted_role(db):
    if not APP_ROLE:
        pytest.skip("TEST_APP_ROLE not set: the app under test connects as the schema's owner")
    assert db.session.execute(sa.select(sa.func.current_user())).scalar() == APP_ROLE


def test_app_role_cannot_update_delete_truncate_or_alter_audit_event(db, pg_schema):
    with pg_schema.begin() as conn:
        ensure_role(conn, ROLE)
        grant_app(conn, ROLE)
    audit.record("test.event", make_agency())
    db.session.commit()

    answers = refused(pg_schema.url.render_as_string(hide_password=False), ROLE)

    assert answers.keys() == {"UPDATE", "DELETE", "TRUNCATE", "ALTER"}
    for kind in ("UPDATE", "DELETE", "TRUNCATE"):
        assert answers[kind] and "permission denied for table audit_event" in answers[kind], answers
    assert answers["ALTER"] and "must be owner of table audit_event" in answers["ALTER"], answers
    assert db.session.execute(sa.select(sa.func.count()).select_from(AuditEvent)).scalar() == 1


def test_app_role_can_append_and_read(db, pg_schema):
    """The restricted role is enough for the app: an event recorded as it verifies."""
    with pg_schema.begin() as conn:
        ensure_role(conn, ROLE)
        grant_app(conn, ROLE)
    url = pg_schema.url.set(username=ROLE, password=None)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(AuditEvent)).scalar() == 0
        conn.execute(sa.insert(AuditEvent).values(
            created_at=sa.func.now(), actor_label="system", action="test.event", object_type="", object_id="",
            ip="", outcome="success", prev_hash=audit.GENESIS, hash="e" * 64))
    engine.dispose()
    assert db.session.execute(sa.select(AuditEvent.hash)).scalar() == "e" * 64
