"""The audit log is a hash chain; tampering is detected and the database refuses changes."""
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from tests.conftest import PG_URL
from tests.factories import make_agency
from tracker.models import AuditEvent
from tracker.services import audit


def _write_events(db, n=5):
    agency = make_agency()
    for i in range(n):
        audit.record("test.event", agency, before={"i": i}, after={"i": i + 1})
    db.session.commit()
    return agency


def test_chain_links_each_event_to_the_one_before(db):
    _write_events(db)
    events = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
    assert events[0].prev_hash == audit.GENESIS
    for prev, event in zip(events, events[1:], strict=False):
        assert event.prev_hash == prev.hash
    checked, bad, reason = audit.verify_chain()
    assert (checked, bad, reason) == (5, None, None)


def test_cli_verify_ok_and_tampered(app, db, pg_schema):
    _write_events(db)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0 and "5 event(s) verified" in result.output

    third = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id).offset(2).limit(1)).scalar_one()
    _tamper(db, pg_schema, third.id)
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert f"BROKEN at event #{third.id}" in result.output
    assert "2 event(s) before it verified" in result.output


@contextmanager
def as_owner(db, pg_schema):
    """A connection with the table owner's rights (the app's own on SQLite), committed at the end: what an
    attacker holding the owner's credentials has. The app under test may run as a role without them."""
    if pg_schema is None:
        yield db.session.connection()
        db.session.commit()
        return
    db.session.commit()
    with pg_schema.begin() as conn:
        yield conn


def _lift_guards(conn):
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DROP TRIGGER audit_event_no_update")
        conn.exec_driver_sql("DROP TRIGGER audit_event_no_delete")
    else:
        conn.exec_driver_sql("ALTER TABLE audit_event DISABLE TRIGGER USER")


def _restore_guards(conn):
    if conn.dialect.name != "sqlite":
        conn.exec_driver_sql("ALTER TABLE audit_event ENABLE TRIGGER USER")


def _tamper(db, pg_schema, event_id):
    """What an attacker with raw database access would do: drop the guard, edit a row."""
    with as_owner(db, pg_schema) as conn:
        _lift_guards(conn)
        conn.exec_driver_sql(f"UPDATE audit_event SET after = '{{\"i\": 99}}' WHERE id = {int(event_id)}")
        _restore_guards(conn)


def test_deleted_event_breaks_the_chain(db, pg_schema):
    _write_events(db)
    with as_owner(db, pg_schema) as conn:
        _lift_guards(conn)
        conn.exec_driver_sql("DELETE FROM audit_event WHERE id = 2")
        _restore_guards(conn)
    checked, bad, reason = audit.verify_chain()
    assert bad.id == 3 and "prev_hash" in reason and checked == 1


@pytest.mark.parametrize("statement", ["UPDATE audit_event SET action = 'x'", "DELETE FROM audit_event"])
def test_database_refuses_update_and_delete(db, statement):
    _write_events(db, 2)
    with pytest.raises(sa.exc.DatabaseError):
        db.session.execute(sa.text(statement))
        db.session.flush()
    db.session.rollback()
    assert db.session.execute(sa.select(sa.func.count()).select_from(AuditEvent)).scalar() == 2


def test_failed_action_leaves_no_event(db):
    agency = make_agency()
    db.session.commit()
    audit.record("test.event", agency)
    db.session.rollback()  # the action failed: its event goes with it
    assert db.session.execute(sa.select(sa.func.count()).select_from(AuditEvent)).scalar() == 0


def test_security_events_are_logged_as_json_lines(client, auth, db, caplog):
    import json
    import logging

    from tests.factories import make_user

    other = make_agency(slug="not-mine")
    make_user("spy@example.test", role="officer", agency=make_agency())
    db.session.commit()
    with caplog.at_level(logging.INFO, logger="tracker.security"):
        auth.login("spy@example.test")
        client.get(f"/agencies/{other.slug}")
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "tracker.security"]
    assert {"event": "auth.login", "outcome": "success"}.items() <= events[0].items()
    denied = [e for e in events if e["event"] == "authz.denied"]
    assert denied and denied[0]["agency"] == "not-mine" and denied[0]["actor"] == "spy@example.test"


@pytest.mark.skipif(not PG_URL, reason="TRUNCATE is PostgreSQL's (SQLite: DELETE fires the row trigger)")
@pytest.mark.parametrize("table", ["audit_event", "audit_checkpoint"])
def test_truncate_is_refused_even_to_the_table_owner(db, pg_schema, table):
    _write_events(db, 2)
    with pytest.raises(sa.exc.DBAPIError, match=f"{table} is append-only"), pg_schema.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {table}")
    assert db.session.execute(sa.select(sa.func.count()).select_from(AuditEvent)).scalar() == 2
