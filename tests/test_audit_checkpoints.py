"""Signed checkpoints anchor the audit chain outside the database (issue 19 §1).

Before them, `flask audit verify` said "OK" after a TRUNCATE, after the newest rows were deleted and after
every hash was recomputed with the app's own function. Each attack below now fails verification, naming the
event, whether the checkpoint comes from the table, from AUDIT_CHECKPOINT_DIR or from a file a monitor kept.
"""
import io
import json
import os
import stat
import zipfile
from datetime import timedelta

import pytest
import sqlalchemy as sa
import time_machine

from tests.factories import make_agency, make_user
from tests.test_audit import as_owner
from tracker.config import ConfigError
from tracker.models import AuditCheckpoint, AuditEvent, utcnow
from tracker.services import audit, checkpoints


def _events(db, n):
    agency = make_agency(slug=f"agency-{db.session.execute(sa.select(sa.func.count(AuditEvent.id))).scalar()}")
    for i in range(n):
        audit.record("test.event", agency, after={"i": i})
    db.session.commit()


def _verify(app, *args):
    result = app.test_cli_runner().invoke(args=["audit", "verify", *args])
    return result.exit_code, result.output


def _unguarded(conn, *tables):
    for table in tables:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_update")
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        else:
            conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")


def _delete_events_after(db, pg_schema, event_id, *, checkpoints_too=False):
    """The owner's credentials: lift the guards and remove the newest events (and the checkpoint rows)."""
    with as_owner(db, pg_schema) as conn:
        tables = ("audit_event", "audit_checkpoint") if checkpoints_too else ("audit_event",)
        _unguarded(conn, *tables)
        conn.execute(sa.delete(AuditEvent).where(AuditEvent.id > event_id))
        if checkpoints_too:
            conn.execute(sa.delete(AuditCheckpoint))


def _rehash_from(db, pg_schema, event_id):
    """Change one event and recompute every hash from it on, exactly as the app computes them."""
    events = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
    db.session.expunge_all()
    with as_owner(db, pg_schema) as conn:
        _unguarded(conn, "audit_event")
        prev = audit.GENESIS
        for event in events:
            if event.id == event_id:
                event.after = {"i": "rewritten"}
            if event.id >= event_id:
                new_hash = audit.compute_hash(prev, audit.event_payload(event))
                conn.execute(sa.update(AuditEvent).where(AuditEvent.id == event.id)
                             .values(after=event.after, prev_hash=prev, hash=new_hash))
                event.hash = new_hash
            prev = event.hash


def test_checkpoint_command_signs_the_head_and_keeps_a_file(app, db, tmp_path):
    _events(db, 3)
    result = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert result.exit_code == 0, result.output
    checkpoint = db.session.execute(sa.select(AuditCheckpoint)).scalar_one()
    head = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
    assert (checkpoint.event_id, checkpoint.event_hash, checkpoint.event_count) == (head.id, head.hash, 3)
    files = list((tmp_path / "audit-checkpoints").glob("*.json"))
    assert len(files) == 1
    doc = json.loads(files[0].read_text())
    assert doc["event_id"] == head.id and doc["signature"] == checkpoint.signature and doc["public_key"]
    code, output = _verify(app)
    assert code == 0 and "Audit chain OK: 3 event(s) verified, against 1 signed checkpoint(s)" in output


def test_deleting_the_newest_events_is_detected(app, db, pg_schema):
    _events(db, 5)
    checkpoints.make("manual")
    db.session.commit()
    _delete_events_after(db, pg_schema, 3)

    assert audit.verify_chain()[1] is None  # the chain alone still links: what used to pass
    code, output = _verify(app)
    assert code == 1
    assert "BROKEN at event #4" in output
    assert "the chain ends at event #3 but the checkpoint of" in output and "signed event #5" in output
    assert "the newest events (#4 to #5) were deleted" in output


def test_emptying_both_audit_tables_is_detected_from_the_checkpoint_folder(app, db, pg_schema):
    """TRUNCATE on PostgreSQL, DELETE on SQLite, both tables, with the owner's rights: the files remain."""
    _events(db, 4)
    checkpoints.make("manual")
    db.session.commit()
    with as_owner(db, pg_schema) as conn:
        _unguarded(conn, "audit_event", "audit_checkpoint")
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("DELETE FROM audit_event")
            conn.exec_driver_sql("DELETE FROM audit_checkpoint")
        else:
            conn.exec_driver_sql("TRUNCATE audit_event, audit_checkpoint")
    code, output = _verify(app)
    assert code == 1, output
    assert "Audit chain OK" not in output
    assert "is missing from the database: audit_checkpoint rows were deleted" in output
    assert "the chain ends at event #0" in output and "signed event #4" in output


def test_recomputing_every_hash_is_detected_and_the_event_range_named(app, db, pg_schema):
    _events(db, 3)
    first = checkpoints.make("manual")
    db.session.commit()
    _events(db, 3)
    checkpoints.make("manual")
    db.session.commit()
    _rehash_from(db, pg_schema, first.event_id + 2)

    assert audit.verify_chain()[1] is None  # internally consistent again
    code, output = _verify(app)
    assert code == 1
    newest = first.event_id + 3
    assert f"BROKEN at event #{newest}" in output
    assert "its hash differs, so the chain was rewritten and every hash recomputed" in output
    assert f"after #{first.event_id} (the newest event a checkpoint still confirms) and at or before #{newest}" \
        in output


def test_deleting_older_events_and_rehashing_is_detected_by_the_count(app, db, pg_schema):
    _events(db, 5)
    checkpoints.make("manual")
    db.session.commit()
    head = db.session.execute(sa.select(sa.func.max(AuditEvent.id))).scalar()
    with as_owner(db, pg_schema) as conn:
        _unguarded(conn, "audit_event")
        conn.execute(sa.delete(AuditEvent).where(AuditEvent.id == 2))
    _rehash_from(db, pg_schema, 3)
    code, output = _verify(app)
    assert code == 1 and f"event #{head} does not match" in output and "1 event(s) before it were removed" in output


def test_a_monitors_file_catches_what_the_installation_lost(app, db, pg_schema, tmp_path):
    """Rows and the checkpoint folder gone: the JSON a monitor downloaded still proves the truncation."""
    _events(db, 4)
    checkpoint = checkpoints.make("report")
    db.session.commit()
    kept = tmp_path / "kept-by-monitor.json"
    doc = checkpoints.document(checkpoint)
    kept.write_text(json.dumps(doc))
    _delete_events_after(db, pg_schema, 2, checkpoints_too=True)
    for path in (tmp_path / "audit-checkpoints").glob("*.json"):
        path.unlink()

    assert _verify(app)[0] == 0  # nothing left inside the installation to compare with
    code, output = _verify(app, "--checkpoint", str(kept))
    assert code == 1 and "the chain ends at event #2" in output
    manifest = tmp_path / "manifest.json"  # as in an evidence package or a backup
    manifest.write_text(json.dumps({"items": [], "audit_checkpoint": doc}))
    code, output = _verify(app, "--checkpoint", str(manifest))
    assert code == 1 and "the chain ends at event #2" in output


def test_an_altered_or_forged_checkpoint_fails(app, db, tmp_path):
    _events(db, 2)
    checkpoint = checkpoints.make("manual")
    db.session.commit()
    doc = checkpoints.document(checkpoint)
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**doc, "event_count": 1}))
    code, output = _verify(app, "--checkpoint", str(forged))
    assert code == 1 and "its signature does not verify: the checkpoint was altered or forged" in output

    stranger = tmp_path / "stranger.json"
    stranger.write_text(json.dumps({**doc, "key_id": "0" * 16}))
    code, output = _verify(app, "--checkpoint", str(stranger))
    assert code == 1 and "which is not trusted here" in output


def test_filing_a_period_signs_a_checkpoint_in_its_transaction(app, db):
    from datetime import date

    from tracker.models import MonitoringPeriod
    from tracker.services import monitoring

    agency = make_agency()
    monitor = make_user("mon@example.test", role="monitor", agency=agency)
    period = MonitoringPeriod(agency_id=agency.id, name="Report 1", start_date=date(2025, 1, 1),
                              end_date=date(2025, 6, 30))
    db.session.add(period)
    db.session.commit()
    if hasattr(monitoring, "file_period"):  # issue 13's filing with the court
        monitoring.file_period(period, date(2025, 7, 15), "Dkt. 1", actor=monitor)
    else:
        monitoring.close_period(period, actor=monitor)
    filing = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action.in_(audit.CHECKPOINT_AFTER))
                                ).scalar_one()
    checkpoint = db.session.execute(sa.select(AuditCheckpoint)).scalar_one()
    assert (checkpoint.reason, checkpoint.event_id, checkpoint.event_hash) == ("period_filed", filing.id, filing.hash)
    assert not list(_folder(app).glob("*.json"))  # the file waits for the commit
    db.session.commit()
    assert len(list(_folder(app).glob("*.json"))) == 1


def _folder(app):
    from pathlib import Path

    return Path(app.config["AUDIT_CHECKPOINT_DIR"])


def test_a_rolled_back_checkpoint_leaves_no_file(app, db):
    _events(db, 1)
    checkpoints.make("manual")
    db.session.rollback()
    assert not list(_folder(app).glob("*.json"))


def test_hourly_checkpoint_after_a_write_once_events_are_an_hour_old(app, db, client, auth):
    make_user("me@example.test", role="officer", agency=make_agency())
    db.session.commit()
    auth.login("me@example.test")
    assert db.session.execute(sa.select(sa.func.count(AuditCheckpoint.id))).scalar() == 0  # events are fresh
    with time_machine.travel(utcnow() + timedelta(minutes=61)):
        app.extensions.pop("audit_checkpoints", None)
        auth.logout()
    made = db.session.execute(sa.select(AuditCheckpoint)).scalars().all()
    assert [c.reason for c in made] == ["hourly"]
    assert app.test_cli_runner().invoke(args=["audit", "checkpoint", "--if-due"]).output.startswith(
        "No checkpoint made: none is due.")


def test_the_report_the_package_and_the_backup_carry_a_checkpoint(app, db, client, auth, tmp_path):
    from datetime import date

    from tracker.models import MonitoringPeriod

    agency = make_agency(slug="harbor")
    make_user("mon@example.test", role="monitor", agency=agency)
    period = MonitoringPeriod(agency_id=agency.id, name="Report 1", start_date=date(2025, 1, 1),
                              end_date=date(2025, 6, 30), state="filed")
    db.session.add(period)
    db.session.commit()
    auth.login("mon@example.test")
    page = client.get(f"/agencies/harbor/periods/{period.id}/report").get_data(as_text=True)
    checkpoint = db.session.execute(sa.select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc())).scalars().first()
    assert checkpoint.reason == "report" and checkpoint.event_hash in page
    download = client.get(f"/audit/checkpoints/{checkpoint.id}.json")
    assert download.status_code == 200 and download.json["signature"] == checkpoint.signature
    assert "attachment" in download.headers["Content-Disposition"]
    # The head did not move: the package reuses the same checkpoint.
    package = client.get(f"/agencies/harbor/periods/{period.id}/evidence-package.zip")
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(package.data)).read("manifest.json"))
    package.close()
    assert manifest["audit_checkpoint"]["signature"] == checkpoint.signature

    from tracker.services.backup import backup

    if db.engine.dialect.name == "sqlite":  # (pg_dump's backup is in tests/reliability)
        rows = db.session.execute(sa.select(sa.func.count(AuditCheckpoint.id))).scalar()
        result = backup(tmp_path / "backup")
        assert result["audit_checkpoint"]["event_id"] >= checkpoint.event_id
        assert result["audit_checkpoint"]["reason"] == "backup"
        # Signed from the copy: no row written in the live database during the backup, a file in the folder.
        assert db.session.execute(sa.select(sa.func.count(AuditCheckpoint.id))).scalar() == rows
        assert any(json.loads(p.read_text())["reason"] == "backup" for p in _folder(app).glob("*.json"))
        code, output = _verify(app, "--checkpoint", str(tmp_path / "backup" / "manifest.json"))
        assert code == 0, output


def test_admin_page_shows_the_public_key(app, db, client, auth):
    make_user("admin@example.test", is_admin=True)
    db.session.commit()
    auth.login("admin@example.test")
    page = client.get("/admin/audit").get_data(as_text=True)
    assert checkpoints.public_key()[1] in page


def test_production_refuses_to_start_without_a_signing_key(make_app, tmp_path):
    with pytest.raises(ConfigError, match="AUDIT_SIGNING_KEY is not set"):
        make_app(TRACKER_ENV="production", AUDIT_SIGNING_KEY=None,
                 AUDIT_SIGNING_KEY_FILE=str(tmp_path / "missing.key"))
    make_app(TRACKER_ENV="production", AUDIT_SIGNING_KEY=None, AUDIT_CHECKPOINTS=False)


def test_development_creates_its_key_once_readable_by_the_owner_only(make_app, tmp_path):
    path = tmp_path / "audit-signing.key"
    first = make_app(TRACKER_ENV="development", AUDIT_SIGNING_KEY=None, AUDIT_SIGNING_KEY_FILE=str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second = make_app(TRACKER_ENV="development", AUDIT_SIGNING_KEY=None, AUDIT_SIGNING_KEY_FILE=str(path))
    with first.app_context():
        first_key = checkpoints.public_key()
    with second.app_context():
        assert checkpoints.public_key() == first_key


def test_a_busy_database_shows_the_newest_checkpoint_instead_of_failing_the_report(app, db, client, auth,
                                                                                    monkeypatch):
    from datetime import date

    from tracker import anchoring
    from tracker.models import MonitoringPeriod

    agency = make_agency(slug="harbor")
    make_user("mon@example.test", role="monitor", agency=agency)
    period = MonitoringPeriod(agency_id=agency.id, name="Report 1", start_date=date(2025, 1, 1),
                              end_date=date(2025, 6, 30), state="filed")
    db.session.add(period)
    db.session.commit()
    auth.login("mon@example.test")
    older = checkpoints.make("manual")
    db.session.commit()
    _events(db, 1)

    def busy(session, reason):
        raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(anchoring, "sign_head", busy)
    page = client.get(f"/agencies/harbor/periods/{period.id}/report")
    assert page.status_code == 200 and older.signature in page.get_data(as_text=True)
