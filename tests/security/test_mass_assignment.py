"""T03: mass assignment. Every write route gets the fields it expects plus fields that name columns it must
never let a user set (agency_id, review_state, uploaded_by_id, is_admin, owner_id on the status form, status
on the owner form, scale_id on the period form, ...). The whole database is compared before and after:
only the changes the form is for may appear.

tests/test_board.py already checks status/owner/notes with a fixed set of extras; this covers the other
routes, and hypothesis throws random extra fields at the status route.
"""
import csv
import io
import itertools

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import PASSWORD
from tests.security.conftest import PDF, post_multipart, signed_in
from tracker.models import (
    ApiToken,
    AuditEvent,
    Base,
    Comment,
    DeadlineChange,
    DocumentRequestExtension,
    Evidence,
    EvidenceReview,
    Finding,
    Membership,
    MonitoringPeriod,
    PlanItem,
    Requirement,
    User,
)

pytestmark = pytest.mark.security

VOLATILE = {("user_session", "last_seen_at"), ("api_token", "last_used_at")}


def snapshot(db):
    """{table: {primary key: {column: value}}} for the whole schema."""
    db.session.commit()
    result = {}
    for table in Base.metadata.sorted_tables:
        pk = list(table.primary_key.columns)
        rows = {}
        for row in db.session.execute(sa.select(table)).mappings():
            key = tuple(row[c.name] for c in pk)
            rows[key] = {k: v for k, v in row.items() if (table.name, k) not in VOLATILE}
        result[table.name] = rows
    db.session.commit()
    return result


def diff(before, after):
    """{table: {"added": n, "removed": n, "changed": {pk: set of columns}}}, only tables that differ."""
    result = {}
    for name in before:
        b, a = before[name], after[name]
        added, removed = set(a) - set(b), set(b) - set(a)
        changed = {}
        for key in set(a) & set(b):
            cols = {c for c in a[key] if a[key][c] != b[key][c]}
            if cols:
                changed[key] = cols
        if added or removed or changed:
            result[name] = {"added": len(added), "removed": len(removed), "changed": changed}
    return result


def _only(d, **allowed):
    """Assert the diff touches only the named tables, each as described: int = rows added, set = columns changed."""
    for table, spec in d.items():
        assert table in allowed, f"unexpected change in {table}: {spec}"
        want = allowed[table]
        added = want if isinstance(want, int) else 0
        columns = want if isinstance(want, set) else set()
        if isinstance(want, tuple):
            added, columns = want
        assert spec["removed"] == 0, f"{table}: rows removed"
        assert spec["added"] == added, f"{table}: {spec['added']} rows added, expected {added}"
        got = set().union(*spec["changed"].values()) if spec["changed"] else set()
        assert got <= columns, f"{table}: columns {got - columns} changed"


HOSTILE = {
    "id": "424242", "agency_id": None, "requirement_id": None, "user_id": None, "owner_id": None,
    "created_by": None, "created_by_id": None, "author_id": None, "actor_id": None, "uploaded_by_id": None,
    "reviewer_id": None, "monitor_id": None, "filed_by_id": None, "is_admin": "1", "active": "0", "role": "admin",
    "review_state": "accepted", "status": "implemented", "state": "filed", "row_version": "99", "scale_id": None,
    "created_at": "2000-01-01", "updated_at": "2000-01-01", "filed_at": "2000-01-01", "terminated_at": "2000-01-01",
    "sha256": "0" * 64, "size_bytes": "1", "media_type": "text/html", "filename": "evil.html", "superseded": "1",
    "supersedes_id": None, "is_current": "0", "period_id": None, "level_id": None, "token_hash": "0" * 64,
    "prefix": "dt_api_xxxx", "revoked_at": "2000-01-01", "password_hash": "x", "totp_secret": "JBSWY3DPEHPK3PXP",
    "failed_logins": "99", "locked_at": "2000-01-01", "email": "evil@example.org", "public_enabled": "y",
    "slug": "hijacked", "code": "HACKED", "title": "Hacked", "summary": "Hacked", "module_id": "999",
    "recommendation_id": "1", "due_date": "2001-01-01", "notes": "sneaky", "note": "sneaky", "kind": "api",
}


def hostile(world, *keep):
    """The hostile fields with ids that point elsewhere (agency B, other users), minus the ones in `keep`."""
    ids = {"agency_id": world["b"].id, "requirement_id": world["req_b"].id, "user_id": world["users"]["admin"].id,
           "owner_id": world["users"]["officer2"].id, "created_by": world["users"]["admin"].id,
           "created_by_id": world["users"]["admin"].id, "author_id": world["users"]["admin"].id,
           "actor_id": world["users"]["admin"].id, "uploaded_by_id": world["users"]["officer_b"].id,
           "reviewer_id": world["users"]["officer"].id, "monitor_id": world["users"]["officer"].id,
           "filed_by_id": world["users"]["officer"].id, "scale_id": world["b"].scale_id,
           "supersedes_id": world["link"].id, "period_id": world["period_b"].id,
           "level_id": world["levels"]["full"].id}
    data = {k: (ids[k] if v is None else v) for k, v in HOSTILE.items()}
    for k in keep:
        data.pop(k, None)
    return {k: str(v) for k, v in data.items()}


@pytest.fixture
def staff(app, world):
    return {role: signed_in(app, f"{role}@example.test") for role in ("admin", "officer", "monitor")}


def _post(db, auth, url, data, **kw):
    before = snapshot(db)
    response = auth.post(url, data, **kw)
    return response, diff(before, snapshot(db))


def test_due_date_and_comment_forms_ignore_extra_fields(db, world, staff):
    req = world["req"]
    base = f"/agencies/agency-a/requirements/{req.id}"
    officer = staff["officer"]
    r, d = _post(db, officer, f"{base}/due-date", {**hostile(world), "due_date": "2027-03-31",
                                                   "reason": "Court order", "row_version": "1"})
    assert r.status_code == 303
    _only(d, requirement={"due_date", "due_date_derived", "row_version", "updated_at"}, deadline_change=1,
          audit_event=1)
    req_row = db.session.get(Requirement, req.id)
    assert (req_row.status, req_row.owner_id, req_row.notes) == ("not_started", None, "")
    assert req_row.agency_id == world["a"].id
    change = db.session.execute(sa.select(DeadlineChange)).scalar_one()
    assert change.actor_id == world["users"]["officer"].id and change.requirement_id == req.id

    r, d = _post(db, officer, f"{base}/comments", {**hostile(world), "body": "A comment"})
    assert r.status_code == 303
    _only(d, comment=1, audit_event=1)
    comment = db.session.execute(sa.select(Comment).order_by(Comment.id.desc()).limit(1)).scalar_one()
    assert (comment.author_id, comment.requirement_id, comment.body) == (world["users"]["officer"].id, req.id,
                                                                          "A comment")
    assert comment.created_at.year != 2000 and comment.id != 424242


def test_status_form_with_owner_and_row_version_tampering(db, world, staff):
    req = world["req"]
    base = f"/agencies/agency-a/requirements/{req.id}"
    # A tampered row_version is a conflict, never a way to force a write.
    r, d = _post(db, staff["officer"], f"{base}/status", {"status": "implemented", "row_version": "99",
                                                          "owner_id": str(world["users"]["officer2"].id)})
    assert r.status_code == 409 and d == {}
    r, d = _post(db, staff["officer"], f"{base}/owner", {"owner_id": str(world["users"]["officer2"].id),
                                                         "row_version": "1", "status": "implemented",
                                                         "note": "sneaky", "due_date": "2001-01-01"})
    assert r.status_code == 303
    _only(d, requirement={"owner_id", "row_version", "updated_at"}, audit_event=1, notification=1,
          outbox_message=1)  # the new owner is told at once (issue 15)


def test_evidence_upload_ignores_server_decided_fields(app, db, world, staff):
    req = world["req"]
    before = snapshot(db)
    fields = {**hostile(world, "kind", "title"), "kind": "file", "title": "Roster", "visibility": "restricted",
              "url": "javascript:alert(1)"}
    r = post_multipart(staff["officer"], f"/agencies/agency-a/requirements/{req.id}/evidence", fields,
                       [("file", "roster.pdf", PDF + b"mass")])
    assert r.status_code == 303, r.get_data(as_text=True)[-500:]
    d = diff(before, snapshot(db))
    _only(d, evidence=1, audit_event=1, notification=1)  # the monitor's daily digest (issue 15)
    ev = db.session.execute(sa.select(Evidence).where(Evidence.title == "Roster")).scalar_one()
    assert ev.requirement_id == req.id and ev.uploaded_by_id == world["users"]["officer"].id
    assert ev.review_state == "submitted" and not ev.superseded and ev.supersedes_id is None
    assert ev.media_type == "application/pdf" and ev.filename == "roster.pdf" and ev.url is None
    assert ev.sha256 != "0" * 64 and ev.size_bytes == len(PDF + b"mass") and ev.id != 424242
    assert db.session.get(Evidence, world["link"].id).superseded is False


def test_monitoring_forms_ignore_extra_fields(db, world, staff):
    monitor = staff["monitor"]
    a, req = world["a"], world["req"]
    scale_before = a.scale_id
    r, d = _post(db, monitor, "/agencies/agency-a/periods", {**hostile(world), "name": "Report 3",
                                                             "start_date": "2026-01-01", "end_date": "2026-06-30"})
    assert r.status_code == 303
    _only(d, monitoring_period=1, audit_event=1)
    period = db.session.execute(sa.select(MonitoringPeriod).where(MonitoringPeriod.name == "Report 3")).scalar_one()
    assert (period.agency_id, period.state, period.filed_at, period.filed_by_id) == (a.id, "open", None, None)
    assert db.session.get(type(a), a.id).scale_id == scale_before

    url = f"/agencies/agency-a/periods/{period.id}/findings/{req.id}"
    r, d = _post(db, monitor, url, {**hostile(world, "level_id"), "level_id": str(world["levels"]["partial"].id),
                                    "narrative": "Half way", "correction_reason": "not a correction"})
    assert r.status_code == 303
    _only(d, finding=1, audit_event=1)
    finding = db.session.execute(sa.select(Finding).where(Finding.period_id == period.id)).scalar_one()
    assert (finding.requirement_id, finding.monitor_id, finding.is_current, finding.supersedes_id,
            finding.correction_reason) == (req.id, world["users"]["monitor"].id, True, None, None)
    assert finding.level_id == world["levels"]["partial"].id and finding.created_at.year != 2000

    r, d = _post(db, monitor, f"/agencies/agency-a/periods/{period.id}/file",
                 {**hostile(world), "filed_on": "2026-01-20", "docket_ref": "Dkt. 9"})
    assert r.status_code == 303
    _only(d, monitoring_period={"state", "filed_on", "docket_ref", "filed_at", "filed_by_id"}, audit_event=1,
          audit_checkpoint=1,
          notification=2, outbox_message=2)  # both officers are told at once (issue 15)
    period = db.session.get(MonitoringPeriod, period.id)
    assert period.filed_by_id == world["users"]["monitor"].id and period.filed_at.year != 2000


def test_review_decision_ignores_extra_fields(db, world, staff):
    r, d = _post(db, staff["monitor"], f"/agencies/agency-a/evidence/{world['file'].id}/review",
                 {**hostile(world), "decision": "accept", "comment": "Fine", "evidence_id": str(world["file_b"].id)})
    assert r.status_code == 303
    _only(d, evidence={"review_state"}, evidence_review=1, audit_event=1)
    review = db.session.execute(sa.select(EvidenceReview)).scalar_one()
    assert (review.evidence_id, review.reviewer_id, review.decision) == (world["file"].id,
                                                                       world["users"]["monitor"].id, "accepted")
    assert db.session.get(Evidence, world["file"].id).review_state == "accepted"
    assert db.session.get(Evidence, world["file_b"].id).review_state == "submitted"


def test_termination_ignores_extra_fields(db, world, staff):
    req2 = world["req2"]
    r, d = _post(db, staff["admin"], f"/agencies/agency-a/requirements/{req2.id}/terminate",
                 {**hostile(world), "terminated_on": "2026-01-15", "reference": "Order 12"})
    assert r.status_code == 303
    _only(d, requirement={"terminated_at", "termination_ref", "row_version", "updated_at"}, audit_event=1)
    assert db.session.get(Requirement, world["req_b"].id).terminated_at is None


def test_import_ignores_extra_fields(db, world, staff):
    rows = io.StringIO()
    csv.writer(rows).writerows([["paragraph", "title", "module"], ["77(a)", "Imported", "cit"]])
    before = snapshot(db)
    r = post_multipart(staff["officer"], "/agencies/agency-a/import", hostile(world),
                       [("file", "p.csv", rows.getvalue().encode())])
    assert r.status_code == 303
    _only(diff(before, snapshot(db)), requirement=1, audit_event=1)
    imported = db.session.execute(sa.select(Requirement).where(Requirement.code == "¶ 77(a)")).scalar_one()
    assert imported.agency_id == world["a"].id and imported.owner_id is None and imported.status == "not_started"


def test_account_forms_ignore_extra_fields(app, db, world, staff):
    officer = staff["officer"]
    me = world["users"]["officer"]
    r, d = _post(db, officer, "/account/tokens", {**hostile(world, "kind"), "kind": "api", "name": "script",
                                                  "current_password": PASSWORD})
    assert r.status_code == 200
    _only(d, api_token=1, audit_event=1, notification=1, outbox_message=1)  # "a new token" mail (issue 15)
    token = db.session.execute(sa.select(ApiToken).order_by(ApiToken.id.desc()).limit(1)).scalar_one()
    assert (token.user_id, token.agency_id, token.revoked_at, token.kind) == (me.id, None, None, "api")
    assert token.token_hash != "0" * 64 and token.prefix != "dt_api_xxxx"

    # A calendar feed names its agency by slug among the user's own; agency_id is not read.
    r, d = _post(db, officer, "/account/tokens", {**hostile(world, "kind"), "kind": "calendar",
                                                  "agency": "agency-b", "current_password": PASSWORD})
    assert d == {} and r.status_code == 303

    r, d = _post(db, officer, "/account", {**hostile(world), "current_password": "correct horse battery staple",
                                           "new_password": "a brand new long passphrase 42"})
    assert r.status_code == 303
    # The password change also revokes the officer's tokens (issue 19).
    _only(d, user_account={"password_hash"}, user_session={"revoked_at"}, api_token={"revoked_at", "revoked_reason"},
          audit_event=3, notification=1,
          outbox_message=1)
    events = db.session.execute(sa.select(AuditEvent.action).order_by(AuditEvent.id.desc())
                                .limit(3)).scalars().all()
    assert sorted(events) == ["token.revoke_all", "user.password_change", "user.sessions_revoked"], events
    user = db.session.get(User, me.id)
    assert (user.is_admin, user.active, user.email, user.totp_secret, user.failed_logins) == (
        False, True, "officer@example.test", None, 0)


def test_sign_in_ignores_extra_fields(app, db, world):
    from tests.conftest import Auth, csrf_from

    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    r = client.post("/login", data={"email": "officer@example.test", "password": "correct horse battery staple",
                                    "csrf_token": token, "is_admin": "1", "user_id": str(world["users"]["admin"].id),
                                    "role": "admin", "session_id": "x" * 64})
    assert r.status_code == 303
    assert client.get("/admin/").status_code == 404
    db.session.commit()
    assert db.session.get(User, world["users"]["officer"].id).is_admin is False
    assert Auth  # the same client is a plain signed-in officer


def test_admin_forms_ignore_extra_fields(db, world, staff):
    admin = staff["admin"]
    a = world["a"]
    r, d = _post(db, admin, "/admin/users", {**hostile(world, "email", "role", "is_admin"),
                                             "email": "new.officer@example.org", "name": "New Officer",
                                             "role": "officer", "agency_id": str(a.id), "is_admin": "1"})
    assert r.status_code == 201, r.get_data(as_text=True)[-500:]  # the one-time password page (issue 19)
    _only(d, user_account=1, membership=1, audit_event=2)
    user = db.session.execute(sa.select(User).where(User.email == "new.officer@example.org")).scalar_one()
    assert (user.is_admin, user.active, user.totp_secret, user.failed_logins, user.locked_at) == (
        False, True, None, 0, None)
    assert user.password_hash.startswith("$argon2id$")

    r, d = _post(db, admin, f"/admin/users/{user.id}/memberships",
                 {**hostile(world, "agency_id", "role"), "agency_id": str(world["b"].id), "role": "committee"})
    assert r.status_code == 303
    _only(d, membership=1, audit_event=1)
    m = db.session.execute(sa.select(Membership).where(Membership.agency_id == world["b"].id,
                                                       Membership.role == "committee")).scalar_one()
    assert m.user_id == user.id

    r, d = _post(db, admin, "/admin/agencies/agency-a", {**hostile(world, "slug", "scale_id", "public_enabled"),
                                                         "name": "Renamed PD", "slug": "agency-a", "state": "OH",
                                                         "scale_id": str(a.scale_id), "source_id": "0"})
    assert r.status_code == 303, r.get_data(as_text=True)[-500:]
    _only(d, agency={"name", "public_enabled"}, audit_event=1)
    agency = db.session.get(type(a), a.id)
    assert agency.name == "Renamed PD" and agency.created_at.year != 2000


# --- property: random extra fields on the status route ----------------------------------------------

ALLOWED = {"status", "note", "row_version", "csrf_token", "submit", "next"}
field_names = st.one_of(
    st.sampled_from(sorted(set(HOSTILE) - ALLOWED)),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF, blacklist_characters="="), min_size=1,
            max_size=20).filter(lambda s: s not in ALLOWED),
)
field_values = st.one_of(st.text(max_size=30).map(lambda s: s.replace("\x00", "")), st.integers(-5, 10**6).map(str),
                         st.sampled_from(["1", "true", "admin", "implemented", "2000-01-01"]))
_statuses = itertools.cycle(["in_progress", "implemented", "not_started"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extras=st.dictionaries(field_names, field_values, max_size=8))
def test_random_extra_fields_on_the_status_route_only_change_the_status(app, db, world, extras):
    if "_officer" not in world:
        world["_officer"] = signed_in(app, "officer@example.test")
    officer = world["_officer"]
    req = world["req"]
    db.session.commit()
    version = db.session.scalar(sa.select(Requirement.row_version).where(Requirement.id == req.id))
    status = next(_statuses)
    r, d = _post(db, officer, f"/agencies/agency-a/requirements/{req.id}/status",
                 {**extras, "status": status, "note": "checked", "row_version": str(version)})
    assert r.status_code == 303, r.status_code
    _only(d, requirement={"status", "row_version", "updated_at"}, status_change=1, audit_event=1)
    row = db.session.get(Requirement, req.id)
    assert row.status == status and row.row_version == version + 1


# --- every write route of the URL map, with the fields only the server may set --------------------------

def _server_only(world):
    """Fields no form has, with values pointing outside what the caller may touch (agency B, another user)."""
    other = world["users"]["officer_b"].id
    return {
        "id": "424242", "created_at": "2000-01-01", "updated_at": "2000-01-01", "filed_at": "2000-01-01",
        "revoked_at": "2000-01-01", "locked_at": "2000-01-01", "terminated_at": "2000-01-01",
        "last_login_at": "2000-01-01", "sha256": "0" * 64, "size_bytes": "1", "media_type": "text/html",
        "filename": "evil.html", "token_hash": "0" * 64, "prefix": "dt_api_xxxx", "password_hash": "x",
        "totp_secret": "JBSWY3DPEHPK3PXP", "totp_pending_secret": "JBSWY3DPEHPK3PXP", "failed_logins": "99",
        "is_admin": "1", "active": "0", "uploaded_by_id": other, "reviewer_id": other, "monitor_id": other,
        "author_id": other, "actor_id": other, "created_by": other, "created_by_id": other, "filed_by_id": other,
        "user_id": other, "review_state": "returned", "requirement_id": world["req_b"].id,
        "period_id": world["period_b"].id, "module_id": "999", "recommendation_id": "999", "state": "bogus",
        "supersedes_id": world["file_b"].id, "evidence_id": world["file_b"].id, "decision_by": other,
        "submitted_at": "2000-01-01", "submitted_by_id": other, "response_due": "2000-01-01",
    }


def _failed_message(db):
    from tracker.models import OutboxMessage

    message = OutboxMessage(to_addr="officer@example.test", category="account", subject="Your account",
                            body_text="Text.", state="failed", attempts=8)
    db.session.add(message)
    db.session.commit()
    return message.id


def _open_round(db, req):
    """Issue 12: make the requirement an annual duty (once) and return its open occurrence's id."""
    from datetime import date

    from tracker.models import Occurrence
    from tracker.services import occurrences

    req = db.session.get(Requirement, req.id)
    if not req.recurring:
        req.cadence_months, req.due_date = 12, req.due_date or date(2026, 1, 1)
        db.session.flush()
        occurrences.start(req, req.due_date)
        db.session.commit()
    return db.session.scalar(sa.select(Occurrence.id).where(Occurrence.requirement_id == req.id,
                                                           Occurrence.state == "open"))


def _legit(world, db):
    """The fields each write route is for (as the admin, who may use every route), by endpoint."""
    a, b, req = world["a"], world["b"], world["req"]

    def version():
        db.session.commit()
        return str(db.session.scalar(sa.select(Requirement.row_version).where(Requirement.id == req.id)))

    rows = io.StringIO()
    # The sweep adds a second instrument (decree.save_instrument) before it imports: name the first one.
    csv.writer(rows).writerows([["paragraph", "title", "module", "instrument"],
                                ["88", "Swept", "cit", a.instruments[0].short_name]])
    upload = [("file", "sweep.pdf", PDF + b"sweep")]
    officer2 = world["users"]["officer2"].id

    def latest(model, *where):
        db.session.commit()
        return db.session.scalar(sa.select(model.id).where(*where).order_by(model.id.desc()).limit(1))

    # URL values, looked up when the route is called (the membership and token exist by then).
    ids = {"slug": lambda: "agency-a", "req_id": lambda: req.id, "evidence_id": lambda: world["link"].id,
           "period_id": lambda: world["open"].id, "user_id": lambda: officer2, "action": lambda: "unlock",
           "membership_id": lambda: latest(Membership, Membership.user_id == officer2, Membership.agency_id == b.id),
           "token_id": lambda: latest(ApiToken, ApiToken.user_id == world["users"]["admin"].id),
           "request_id": lambda: world["doc_request"].id}
    return ids, {
        "admin.agency_new": lambda: {"name": "New PD", "slug": "new-pd", "state": "OH", "scale_id": a.scale_id,
                                     "source_id": "0"},
        "admin.agency_edit": lambda: {"name": "Harbor City PD", "slug": "agency-a", "state": "OH",
                                      "scale_id": a.scale_id, "source_id": "0",
                                      "public_enabled": "y"},  # the world's agency stays public (issue 14)
        "admin.agency_adopt": lambda: {"modules": "cit"},
        "admin.user_create": lambda: {"email": "sweep@example.org", "name": "Sweep", "role": "officer",
                                      "agency_id": a.id},
        "admin.membership_add": lambda: {"agency_id": b.id, "role": "committee"},
        "admin.membership_remove": lambda: {},
        "admin.user_action": lambda: {},
        "auth.account": lambda: {"current_password": "correct horse battery staple",
                                 "new_password": "another long passphrase 77"},
        # After auth.account (its path sorts first) the admin's password is the new one.
        "auth.create_token": lambda: {"kind": "api", "name": "sweep", "current_password": "another long passphrase 77"},
        "auth.rotate_token": lambda: {"current_password": "another long passphrase 77"},
        "auth.revoke_token": lambda: {},
        "auth.mfa_setup": lambda: {"code": "000000"},
        "auth.login": None,        # run by a fresh browser below
        # Issue 15: e-mail settings, follows, the outbox (the unsubscribe link's token is its own credential).
        "notifications.preferences": lambda: {"comment": "daily"},
        "notifications.follow": lambda: {"follow": "1"},
        "notifications.unsubscribe": None,
        "outbox.retry": lambda: {"message_id": _failed_message(db)},
        "auth.second_factor": lambda: {"code": "000000"},
        "auth.logout": None,       # ends the session: run last
        "board.set_status": lambda: {"status": "in_progress", "note": "swept", "row_version": version()},
        "board.set_owner": lambda: {"owner_id": world["users"]["officer2"].id, "row_version": version()},
        "board.set_due_date": lambda: {"due_date": "2027-01-01", "reason": "swept", "row_version": version()},
        "board.set_notes": lambda: {"notes": "swept", "row_version": version()},
        "board.save_row": lambda: {"status": "in_progress", "note": "swept", "owner_id": "0", "due_date": "2027-02-01",
                                   "reason": "swept", "row_version": version()},
        "board.bulk": lambda: {"change": "status", "status": "in_progress", "note": "swept",
                               "ids": f"{req.id}:{version()}", "as_of": "0"},
        "board.add_comment": lambda: {"body": "swept"},
        "evidence.add": lambda: ({"kind": "file", "title": "Swept", "visibility": "restricted"}, upload),
        "evidence.new_version": lambda: ({"kind": "file", "title": "Swept v2", "visibility": "restricted"},
                                         [("file", "sweep2.pdf", PDF + b"sweep2")]),
        "imports.import_paragraphs": lambda: ({}, [("file", "sweep.csv", rows.getvalue().encode())]),
        # Issue 12: the decree's structure, a recurring duty's round, the crosswalk.
        "decree.save_instrument": lambda: {"instrument_id": "", "i-new-short_name": "Swept order",
                                           "i-new-kind": "court_order", "i-new-scale_id": a.scale_id},
        "decree.save_section": lambda: {"section_id": "", "s-new-label": "IX Swept"},
        "decree.save_entity": lambda: {"entity_id": "", "e-new-name": "Swept office"},
        "decree.complete_occurrence": lambda: {"occurrence_id": _open_round(db, req), "completed_on": "2026-01-10"},
        "decree.link": lambda: {"code": world["rec"].code},
        "decree.unlink": lambda: {"recommendation_id": world["rec"].id},
        "monitoring.create_period": lambda: {"name": "Swept period", "start_date": "2027-01-01",
                                             "end_date": "2027-06-30"},
        "monitoring.record_finding": lambda: {"level_id": world["levels"]["partial"].id, "narrative": "swept"},
        "monitoring.share": lambda: {},
        "monitoring.respond": lambda: {"response": "swept"},
        "monitoring.file_report": lambda: {"filed_on": "2026-01-20", "docket_ref": "Dkt. 9"},
        "monitoring.sustainment_order": lambda: {"order_date": "2025-11-01", "docket_ref": "Order 3",
                                                 "codes": "CIT-001"},
        "monitoring.terminate_requirement": lambda: {"terminated_on": "2026-01-15", "reference": "Order 1"},
        "monitoring.terminate_module": lambda: {"module": "cit", "terminated_on": "2026-02-01",
                                                "reference": "Order 2"},
        "reviews.decide": lambda: {"decision": "accept", "comment": "swept"},
        # Issue 13: monitoring plans and document requests.
        "plans.set_scope": lambda: {"requirement_ids": str(req.id)},
        "plans.carry_over": lambda: _earlier_plan(db, world),
        "plans.save_methodology": lambda: {"measures": "swept", "sources": "CAD", "sample": "20 calls",
                                           "level_criteria": "Full: 80%"},
        "requests.create": lambda: {"title": "Swept rosters", "due_date": "2099-06-30",
                                    "requirement_ids": str(req.id), "period_id": world["open"].id,
                                    "submission_id": "d" * 32},
        "requests.ask_extension": lambda: {"requested_due": "2099-03-01", "reason": "swept"},
        "requests.decide_extension": lambda: {"extension_id": latest(DocumentRequestExtension,
                                                                     DocumentRequestExtension.state == "pending"),
                                              "decision": "grant"},
        "requests.answer": lambda: {"evidence_choice": "none", "note": "swept", "submission_id": "e" * 32},
        "requests.finish": lambda: {"action": "close", "note": "swept"},
    }


def _earlier_plan(db, world):
    """An earlier period's plan, for the carry-over to copy."""
    db.session.add(PlanItem(period_id=world["closed"].id, requirement_id=world["req"].id))
    db.session.commit()
    return {}


def _policy_legit(world, db):
    """Issue 16: (URL values, fields by endpoint, order) taking the world's draft policy through its cycle, from
    a second version to review, comments, a public window, moderation, approval, training and supersession."""
    from tracker.models import CommentWindow, PolicyComment, PolicyDocument, TrainingPlan, utcnow

    doc = world["policy"]
    today = utcnow().date()

    def latest(model, *where):
        db.session.commit()
        return db.session.scalar(sa.select(model.id).where(*where).order_by(model.id.desc()).limit(1))

    steps = [
        ("policies.add_version", lambda: ({"note": "swept"}, [("file", "v2.pdf", PDF + b"v2")])),
        ("policies.open_round", lambda: {"comment_due": "", "outside_reviewers": "swept"}),
        ("policies.comment", lambda: {"channel": "round", "anchor": "§ 1", "body": "swept"}),
        ("policies.close_round", lambda: {"outcome": "no_objection"}),
        ("policies.open_window", lambda: {"opens_on": today.isoformat(), "closes_on": "2099-01-01",
                                          "allow_public": "y"}),
        ("public_comments.submit", lambda: {"public_name": "swept", "anchor": "", "body": "swept"}),
        ("policies.moderate", lambda: {"comment_id": latest(PolicyComment, PolicyComment.state == "pending"),
                                       "decision": "published"}),
        ("policies.window_summary", lambda: {"window_id": latest(CommentWindow), "summary": "swept"}),
        ("policies.approve", lambda: {"approval_kind": "no_objection", "approved_on": today.isoformat(),
                                      "approval_ref": "", "effective_on": today.isoformat()}),
        ("policies.create_plan", lambda: {"population": "swept", "population_size": "10", "target_pct": "90"}),
        ("policies.import_training", lambda: ({"plan_id": latest(TrainingPlan)},
                                              [("file", "t.csv", b"date,count\n2026-05-01,4\n")])),
    ]
    legit = {
        "policies.create": lambda: {"title": "Swept", "kind": "policy", "requirement_ids": world["req"].id},
        "policies.edit": lambda: {"title": "Swept title", "kind": "policy", "row_version": latest(
            PolicyDocument, PolicyDocument.id == doc.id) and db.session.get(PolicyDocument, doc.id).row_version},
        "policies.supersede": lambda: {"superseded_by": latest(PolicyDocument, PolicyDocument.id != doc.id)},
        **dict(steps),
    }
    # In the cycle's order, before the routes at 0 (the agency form there turns the public page off, which
    # closes public comment); superseding comes after them (policies.create makes the newer document).
    order = {endpoint: (i + 1) / (len(steps) + 1) - 1 for i, (endpoint, _make) in enumerate(steps)}
    order["policies.supersede"] = 0.5
    return {"doc_id": lambda: doc.id}, legit, order


def _committee_legit(world, db):
    """Issue 14: (URL values, fields by endpoint, order): the world's meeting edited, given a paper and published;
    the member's draft revised, submitted, then answered and published (after the routes at 0)."""
    from tracker.models import CommitteeRecommendation

    draft = world["draft_rec"]

    def version():
        db.session.commit()
        return str(db.session.scalar(sa.select(CommitteeRecommendation.row_version)
                                     .where(CommitteeRecommendation.id == draft.id)))

    legit = {
        "committee.create_meeting": lambda: {"title": "Swept meeting", "starts_at": "2027-01-05T18:00",
                                             "submission_id": "f" * 32},
        "committee.update_meeting": lambda: {"title": "Spring meeting", "starts_at": "2026-04-02T18:00",
                                             "minutes": "swept"},
        "committee.add_document": lambda: ({}, [("file", "minutes.pdf", PDF + b"minutes")]),
        "committee.publish_meeting": lambda: {"agenda_public": "y"},
        "committee.create_recommendation": lambda: {"title": "Swept", "body": "swept", "meeting_id": "0",
                                                    "submission_id": "9a" * 16},
        "committee.update_recommendation": lambda: {"title": "Swept draft", "body": "swept", "meeting_id": "0",
                                                    "row_version": version()},
        "committee.submit_recommendation": lambda: {"row_version": version()},
        "committee.respond": lambda: {"decision": "declined", "reasons": "swept", "row_version": version()},
        "committee.publish_recommendation": lambda: {"public": "y"},
        "committee.settings": lambda: {"response_days": "45", "chair_id": world["users"]["committee"].id},
        "indicators.create": lambda: {"key": "swept", "name": "Swept", "unit": "count", "direction": "down",
                                      "frequency": "month"},
        "indicators.adopt": lambda: {"catalog_key": "crisis-arrest", "frequency": "quarter"},
        "indicators.update": lambda: {"name": "Swept indicator", "unit": "percent", "direction": "up",
                                      "frequency": "quarter", "target_value": "80"},
        "indicators.add_value": lambda: {"period": "2025-Q2", "value": "45"},
        "indicators.publish": lambda: {"public": "y"},
        "indicators.import_values": lambda: ({}, [("file", "values.csv",
                                                   b"indicator,period,value\ncit-on-scene,2025-Q3,50\n")]),
    }
    ids = {"meeting_id": lambda: world["meeting"].id, "rec_id": lambda: draft.id,
           "indicator_id": lambda: world["indicator"].id}
    return ids, legit, {"committee.respond": 0.95, "committee.publish_recommendation": 0.96}


def _hostile_landed(before, after, server_only):
    """Rows the sweep added or changed that carry a server-only value from the request."""
    found = []
    for table, rows in after.items():
        for key, row in rows.items():
            old = before[table].get(key)
            if old == row:
                continue
            for column, value in row.items():
                if column not in server_only or (old is not None and old.get(column) == value) or value is None:
                    continue
                hostile_value = str(server_only[column])
                text = value.isoformat() if hasattr(value, "isoformat") else str(value)
                if isinstance(value, bool):
                    hit = value is (hostile_value in ("1", "y", "true")) and column in ("is_admin", "active")
                else:
                    hit = text == hostile_value or text.startswith("2000-01-01")
                if hit:
                    found.append(f"{table}{list(key)}.{column}={value!r}")
    return found


def test_every_write_route_ignores_server_only_fields(app, db, world):
    """Built from the URL map: a new POST route fails here until it has an entry in _legit()."""
    import re

    from tests.conftest import csrf_from

    ids, legit = _legit(world, db)
    policy_ids, policy_legit, policy_order = _policy_legit(world, db)  # issue 16
    ids.update(policy_ids)
    legit.update(policy_legit)
    committee_ids, committee_legit, committee_order = _committee_legit(world, db)  # issue 14
    ids.update(committee_ids)
    legit.update(committee_legit)
    admin = signed_in(app, "admin@example.test")
    server_only = _server_only(world)
    rules = sorted((r for r in app.url_map.iter_rules() if "POST" in r.methods), key=lambda r: r.rule)
    missing = {r.endpoint for r in rules} - set(legit)
    assert not missing, f"write routes without an entry in _legit(): {missing}"
    # Sharing the draft goes first (the agency answers a shared draft); terminations and filing go last, so the
    # edits before them are still allowed.
    # An extension is asked and decided while the request is still open, before it is answered and closed.
    order = {"monitoring.share": -1, "requests.ask_extension": -1, "requests.decide_extension": -1,
             "monitoring.terminate_module": 3, "monitoring.file_report": 2,
             "monitoring.terminate_requirement": 1}
    order.update(policy_order)
    order.update(committee_order)
    order["auth.revoke_token"] = 1  # after auth.rotate_token: the token rotated is live until then (issue 19)
    rules.sort(key=lambda r: order.get(r.endpoint, 0))
    before = snapshot(db)
    outcomes = {}
    for rule in rules:
        make = legit[rule.endpoint]
        if make is None:
            continue
        url = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: str(ids[m.group(1)]()), rule.rule)
        data = make()
        files = []
        if isinstance(data, tuple):
            data, files = data
        fields = {**{k: str(v) for k, v in server_only.items()}, **{k: str(v) for k, v in data.items()}}
        if files:
            response = post_multipart(admin, url, fields, files)
        else:
            response = admin.post(url, fields)
        outcomes[rule.endpoint] = response.status_code
    # Sign-in and sign-out with the same extras, from their own browsers.
    browser = app.test_client()
    token = csrf_from(browser.get("/login").get_data(as_text=True))
    outcomes["auth.login"] = browser.post("/login", data={**{k: str(v) for k, v in server_only.items()},
                                                          "email": "officer@example.test", "csrf_token": token,
                                                          "password": "correct horse battery staple"}).status_code
    outcomes["auth.logout"] = admin.post("/logout", {k: str(v) for k, v in server_only.items()}).status_code
    after = snapshot(db)
    # Each route did its job (so the extras rode along on a real write, not on a refused request).
    refused = {e: s for e, s in outcomes.items() if s >= 400 and e not in ("auth.mfa_setup", "auth.second_factor")}
    assert not refused, refused
    landed = _hostile_landed(before, after, server_only)
    assert not landed, landed
    # Agency B and its rows are untouched (the only B row a request may name is through its own form).
    assert after["requirement"][(world["req_b"].id,)] == before["requirement"][(world["req_b"].id,)]
    assert after["evidence"][(world["file_b"].id,)] == before["evidence"][(world["file_b"].id,)]
    assert after["monitoring_period"][(world["period_b"].id,)] == before["monitoring_period"][(world["period_b"].id,)]
    admins = [row["email"] for row in after["user_account"].values() if row["is_admin"]]
    assert admins == ["admin@example.test"]
