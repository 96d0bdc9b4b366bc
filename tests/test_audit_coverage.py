"""Every write is audited by construction (issue 11 item 4; SECURITY-PLAN T28). The URL map is walked.

Writes: every rule accepting POST, PUT, PATCH or DELETE needs an entry in CASES, or
test_every_write_route_has_a_case fails, so a new route cannot go unexamined. Each case sends, as a role
allowed to, a request that succeeds, and asserts:
- a table other than audit_event changed, and audit_event grew;
- every database transaction committed during the request that wrote any row also inserted an
  audit_event row (the event commits with the change, never separately);
- with a failure injected at the commit, after the services have run, nothing is written at all:
  data and event roll back together.
Reads: every GET rule, with the arguments the pages use, as every kind of caller, commits no
transaction that writes anything but one of the ACTIVITY_STAMPS, each in a transaction of its own.
"""
import ast
import io
import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
import time_machine
from flask import has_request_context

from tests.conftest import Auth, csrf_from
from tests.factories import PASSWORD
from tests.security.conftest import (
    PDF,
    changed_tables,
    signed_in,
    table_digests,
    world,  # noqa: F401 - the security suite's populated world, as a fixture here
)
from tests.security.test_no_state_change_on_get import _callers, _urls
from tracker.models import (
    ApiToken,
    FormSubmission,
    Instrument,
    Membership,
    MonitoringPeriod,
    Occurrence,
    Requirement,
    RequirementLink,
    User,
    utcnow,
)
from tracker.services import submissions

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# The only writes a GET may cause, and why (README, "Security decisions"): neither is a record anyone edits,
# and each runs in its own short transaction, never in the request's.
ACTIVITY_STAMPS = {
    ("user_session", "last_seen_at"): "the idle timeout counts from it; written at most once a minute",
    ("api_token", "last_used_at"): "the account page shows it to spot forgotten tokens; at most once an hour",
}
STAMP_COLUMNS = set(ACTIVITY_STAMPS)
_WRITE = re.compile(r'^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)"?', re.IGNORECASE)
_SET = re.compile(r"^\s*UPDATE\s+\"?(\w+)\"?\s+SET\s+(.*?)\s+WHERE\s", re.IGNORECASE | re.DOTALL)


def _checkpoint(statement):
    """True for the INSERT of a signed audit checkpoint: audit data itself, made in a transaction of its own
    by a report or evidence package (a read) and hourly after writes (issue 19)."""
    return bool(re.match(r'^\s*INSERT\s+INTO\s+"?audit_checkpoint"?', statement, re.IGNORECASE))


def _stamp(statement):
    """True for an UPDATE that sets nothing but an activity stamp."""
    match = _SET.match(statement)
    if not match:
        return False
    columns = {name for name in re.findall(r"(\w+)\s*=", match.group(2))}
    return bool(columns) and {(match.group(1), c) for c in columns} <= STAMP_COLUMNS


class Transactions:
    """The writing statements of each database transaction committed while active, seen at the engine,
    so a transaction on any connection (the request's session or another) is counted."""

    def __init__(self, engine):
        self.engine = engine
        self.committed = []
        self._open = {}

    def __enter__(self):
        for name, listener in self._listeners():
            sa.event.listen(self.engine, name, listener)
        return self

    def __exit__(self, *exc):
        for name, listener in self._listeners():
            sa.event.remove(self.engine, name, listener)

    def _listeners(self):
        return (("after_cursor_execute", self._statement), ("commit", self._commit), ("rollback", self._rollback))

    @staticmethod
    def _key(conn):
        return id(conn.connection.dbapi_connection)

    def _statement(self, conn, cursor, statement, parameters, context, executemany):
        match = _WRITE.match(statement)
        if match:
            self._open.setdefault(self._key(conn), []).append((match.group(1).lower(), statement))

    def _commit(self, conn):
        writes = self._open.pop(self._key(conn), [])
        if writes:
            self.committed.append(writes)

    def _rollback(self, conn):
        self._open.pop(self._key(conn), None)

    def unaudited(self):
        """Committed transactions that changed data without inserting an audit event."""
        return [sorted({t for t, s in writes if not _stamp(s)}) for writes in self.committed
                if any(not (_stamp(s) or _checkpoint(s)) for _t, s in writes)
                and not any(t == "audit_event" for t, _s in writes)]


# --- the cases: one or more successful requests per write route ------------------------------------------

def _one(db, query):
    return db.session.execute(query).scalar_one()


def _token_id(db, w):
    return _one(db, sa.select(ApiToken.id).where(ApiToken.user_id == w["users"]["officer"].id,
                                                 ApiToken.kind == "api"))


def _version(db, w):
    db.session.refresh(w["req"])
    return str(w["req"].row_version)


def _agency_form(w, **changes):
    a = w["a"]
    return {"name": a.name, "slug": a.slug, "state": a.state, "source_id": "0", "effective_date": "2025-01-01",
            "scale_id": str(a.scale_id), "sustainment_months": "", **changes}


def _pending_code(db, email):
    secret = _one(db, sa.select(User.totp_pending_secret).where(User.email == email))
    return pyotp.TOTP(secret).now()


def _password_step(auth, email, password=PASSWORD):
    token = csrf_from(auth.client.get("/login").get_data(as_text=True))
    response = auth.client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    auth.token = csrf_from(auth.client.get("/login/code").get_data(as_text=True))
    return response


def _set(db, model, ident, **values):
    db.session.execute(sa.update(model).where(model.id == ident).values(**values))
    db.session.commit()


@dataclass
class Case:
    """A successful request: who sends it (None: not signed in), where, with what; `prepare` sets the
    scene beforehand, outside the measurement. Builders take (db, world) and run again for each sending."""

    role: str | None
    url: object
    data: object = lambda db, w: {}
    expect: int = 303
    prepare: object = None
    multipart: bool = False


def _mfa_monitor(app, db, w, auth):
    _set(db, User, w["users"]["monitor"].id, totp_secret=pyotp.random_base32())
    _password_step(auth, "monitor@example.test")


def _mfa_enrolling_admin(app, db, w, auth):
    app.config["MFA_REQUIRED_ROLES"] = ["admin"]
    _password_step(auth, "admin@example.test")


def _officer2_signed_in(app, db, w, auth):
    signed_in(app, "officer2@example.test")


def _old_form_id(app, db, w, auth):
    db.session.add(FormSubmission(user_id=w["users"]["officer"].id, id="f" * 32, result_url="/old",
                                  created_at=utcnow() - submissions.KEEP - timedelta(hours=1)))
    db.session.commit()


def _derived_due_dates(app, db, w, auth):
    w["rec"].deadline_amount, w["rec"].deadline_unit = 180, "days"
    w["req"].due_date, w["req"].due_date_derived = None, True
    db.session.commit()


def _recurring(db, w):
    """Issue 12: the world's requirement becomes an annual duty with its first occurrence open."""
    from tracker.services import occurrences

    req = db.session.get(Requirement, w["req"].id)
    req.cadence_months, req.due_date = 12, req.due_date or date(2026, 1, 1)
    db.session.flush()
    occurrences.start(req, req.due_date)
    db.session.commit()


def _linked(db, w):
    db.session.add(RequirementLink(requirement_id=w["req"].id, recommendation_id=w["rec"].id))
    db.session.commit()


def _req_url(suffix):
    return lambda db, w: f"/agencies/agency-a/requirements/{w['req'].id}/{suffix}"


def _user_action(action):
    return lambda db, w: f"/admin/users/{w['users']['officer2'].id}/{action}"


def _evidence(**values):
    def build(db, w):
        data = {"kind": "file", "title": "Roster", "description": "", "visibility": "restricted",
                "submission_id": "a" * 32, **values}
        if data["kind"] == "file":
            data["file"] = (io.BytesIO(PDF + b"% roster"), "roster.pdf")
        return data
    return build


# --- issue 13: monitoring plans and document requests ---------------------------------------------------

def _plan_url(suffix=""):
    return lambda db, w: f"/agencies/agency-a/periods/{w['open'].id}/plan{suffix}"


def _request_url(suffix):
    return lambda db, w: f"/agencies/agency-a/requests/{w['doc_request'].id}/{suffix}"


def _earlier_plan(app, db, w, auth):
    from tracker.models import PlanItem

    db.session.add(PlanItem(period_id=w["closed"].id, requirement_id=w["req2"].id))
    db.session.commit()


def _per_level_scale(app, db, w, auth):
    """Agency A's scale assessed per level: partial and full become the ladder."""
    from tracker.models import ComplianceLevel, ComplianceScale

    _set(db, ComplianceScale, w["a"].scale_id, assessment="per_level")
    db.session.execute(sa.update(ComplianceLevel).where(ComplianceLevel.id.in_(
        [w["levels"]["partial"].id, w["levels"]["full"].id])).values(ladder=True))
    db.session.commit()


def _pending_extension(app, db, w, auth):
    from tracker.models import DocumentRequestExtension

    db.session.add(DocumentRequestExtension(request_id=w["doc_request"].id, requested_due=date(2099, 3, 1),
                                            reason="Records unit move", requested_by_id=w["users"]["officer"].id))
    db.session.commit()


def _pending_id(db, w):
    from tracker.models import DocumentRequestExtension

    return str(_one(db, sa.select(DocumentRequestExtension.id).where(DocumentRequestExtension.state == "pending")))


PLAN_AND_REQUEST_CASES = {
    "plans.set_scope": {"scope": Case("monitor", _plan_url(), data=lambda db, w: {
        "requirement_ids": [str(w["req"].id), str(w["req2"].id)]})},
    "plans.carry_over": {"carry": Case("monitor", _plan_url("/carry-over"), prepare=_earlier_plan)},
    "plans.save_methodology": {"v1": Case("monitor", _req_url("methodology"), data=lambda db, w: {
        "measures": "Calls answered by CIT officers", "sources": "CAD", "sample": "200 calls",
        "level_criteria": "Full: 80%"})},
    "requests.create": {"ask": Case("monitor", lambda db, w: "/agencies/agency-a/requests", data=lambda db, w: {
        "title": "Training rosters", "due_date": (utcnow().date() + timedelta(days=30)).isoformat(),
        "requirement_ids": [str(w["req"].id)], "period_id": str(w["open"].id), "submission_id": "c" * 32})},
    "requests.answer": {
        "file": Case("officer", _request_url("answer"), multipart=True, data=lambda db, w: {
            **_evidence()(db, w), "evidence_choice": "new", "requirement_id": str(w["req"].id)}),
        "note": Case("officer", _request_url("answer"), multipart=True, data=lambda db, w: {
            "evidence_choice": "none", "note": "In the shared folder."}),
    },
    "requests.ask_extension": {"ask": Case("officer", _request_url("extension"), data=lambda db, w: {
        "requested_due": "2099-03-01", "reason": "Records unit move"})},
    "requests.decide_extension": {
        "grant": Case("monitor", _request_url("extension/decide"), prepare=_pending_extension,
                      data=lambda db, w: {"extension_id": _pending_id(db, w), "decision": "grant"}),
        "refuse": Case("monitor", _request_url("extension/decide"), prepare=_pending_extension,
                       data=lambda db, w: {"extension_id": _pending_id(db, w), "decision": "refuse",
                                           "decision_note": "No."}),
    },
    "requests.finish": {
        "close": Case("monitor", _request_url("close"), data=lambda db, w: {"action": "close", "note": "Done."}),
        "withdraw": Case("monitor", _request_url("close"), data=lambda db, w: {"action": "withdraw"}),
    },
}


# --- issue 16: policies, their review and training, the public comment form ---------------------------------

def _doc_url(key, suffix=""):
    return lambda db, w: f"/agencies/agency-a/policies/{w[key].id}{suffix}"


def _policy_step(step):
    """A `prepare` that moves the world's draft policy on with the services (before the measurement)."""
    def prepare(app, db, w, auth):
        from tracker.services import policies, training

        doc, users, today = w["policy"], w["users"], utcnow().date()
        if step in ("round", "approved", "plan"):
            policies.open_review_round(doc, w["a"], None, "", actor=users["officer"])
        if step in ("approved", "plan"):
            policies.close_review_round(doc, "no_objection", actor=users["monitor"])
            policies.record_approval(doc, "no_objection", today, "", today, actor=users["admin"])
            policies.create_document(w["a"], {"title": "GO 4.12 (2027)", "kind": "policy"}, actor=users["officer"])
        if step == "plan":
            training.create_plan(doc, {"population": "All sworn members", "population_size": "1200",
                                       "target_date": None}, actor=users["officer"])
        if step == "public comment":
            policies.add_public_comment(w["public_policy"], w["a"], "Pat", "p. 1", "Add a youth section.")
        db.session.commit()
    return prepare


def _latest_id(name):
    """The newest id of a model of tracker.models, named (so this block imports nothing at the top)."""
    import tracker.models

    model = getattr(tracker.models, name)
    return lambda db: str(_one(db, sa.select(sa.func.max(model.id))))


def _row_version(db, doc):
    from tracker.models import PolicyDocument

    return str(_one(db, sa.select(PolicyDocument.row_version).where(PolicyDocument.id == doc.id)))


def _training_file(name, text):
    return lambda db, w: {"plan_id": _latest_id("TrainingPlan")(db), "file": (io.BytesIO(text.encode()), name)}


POLICY_CASES = {
    "policies.create": {"draft": Case("officer", lambda db, w: "/agencies/agency-a/policies", data=lambda db, w: {
        "title": "General Order 4.13", "kind": "general_order", "requirement_ids": [str(w["req"].id)]})},
    "policies.edit": {"details": Case("officer", _doc_url("policy", "/edit"), data=lambda db, w: {
        "title": "General Order 4.12 (revised)", "kind": "policy", "requirement_ids": [str(w["req2"].id)],
        "row_version": _row_version(db, w["policy"])})},
    "policies.add_version": {"pdf": Case("officer", _doc_url("policy", "/versions"), multipart=True,
                                         data=lambda db, w: {"file": (io.BytesIO(PDF + b"%v2"), "go-v2.pdf"),
                                                             "note": "Section 4 rewritten."})},
    "policies.open_round": {
        "officer": Case("officer", _doc_url("policy", "/rounds"), data=lambda db, w: {"comment_due": ""}),
        "monitor": Case("monitor", _doc_url("policy", "/rounds"), data=lambda db, w: {
            "comment_due": (utcnow().date() + timedelta(days=20)).isoformat(), "outside_reviewers": "DOJ attorney"}),
    },
    "policies.close_round": {"outcome": Case("monitor", _doc_url("policy", "/rounds/close"),
                                             prepare=_policy_step("round"),
                                             data=lambda db, w: {"outcome": "comments_to_address"})},
    "policies.comment": {
        "round": Case("monitor", _doc_url("policy", "/comments"), prepare=_policy_step("round"),
                      data=lambda db, w: {"channel": "round", "anchor": "§ 4.2", "body": "Say who dispatches."}),
        "window": Case("committee", _doc_url("public_policy", "/comments"),
                       data=lambda db, w: {"channel": "window", "anchor": "", "body": "Involve peer specialists."}),
    },
    "policies.moderate": {"publish": Case("officer", _doc_url("public_policy", "/moderation"),
                                          prepare=_policy_step("public comment"), data=lambda db, w: {
                                              "comment_id": _latest_id("PolicyComment")(db), "decision": "published"})},
    "policies.open_window": {
        "committee": Case("officer", _doc_url("policy", "/windows"), data=lambda db, w: {
            "opens_on": utcnow().date().isoformat(), "closes_on": (utcnow().date() + timedelta(days=21)).isoformat()}),
        "public": Case("admin", _doc_url("policy", "/windows"), data=lambda db, w: {
            "opens_on": utcnow().date().isoformat(), "closes_on": (utcnow().date() + timedelta(days=21)).isoformat(),
            "allow_public": "y"}),
    },
    "policies.window_summary": {"summary": Case("officer", _doc_url("public_policy", "/windows/summary"),
                                                data=lambda db, w: {"window_id": _latest_id("CommentWindow")(db),
                                                                    "summary": "No comment asked for changes."})},
    "policies.approve": {"court order": Case("admin", _doc_url("policy", "/approval"), data=lambda db, w: {
        "approval_kind": "court_order", "approved_on": "2026-03-03", "approval_ref": "Order (Dkt. 512)",
        "effective_on": "2026-04-01"})},
    "policies.supersede": {"newer": Case("officer", _doc_url("policy", "/supersede"), prepare=_policy_step("approved"),
                                         data=lambda db, w: {"superseded_by": _latest_id("PolicyDocument")(db)})},
    "policies.create_plan": {"sworn": Case("officer", _doc_url("policy", "/training"),
                                           prepare=_policy_step("approved"), data=lambda db, w: {
                                               "population": "All sworn members", "population_size": "1,200",
                                               "target_date": "2027-01-31", "target_pct": "95"})},
    "policies.import_training": {
        "counts": Case("officer", _doc_url("policy", "/training/import"), prepare=_policy_step("plan"),
                       multipart=True, data=_training_file("counts.csv", "date,count\n2026-05-01,480\n")),
        "roster": Case("officer", _doc_url("policy", "/training/import"), prepare=_policy_step("plan"),
                       multipart=True, data=_training_file("roster.csv", "person_id,completion_date\nE1,2026-05-01\n")),
    },
    "public_comments.submit": {"public": Case(None, lambda db, w: f"/public/agency-a/policies/{w['public_policy'].id}"
                                                                  "/comment", data=lambda db, w: {
        "public_name": "Pat Public", "anchor": "p. 2", "body": "Please add a section on youth."})},
}

# --- issue 14: the advisory committee's meetings and recommendations ----------------------------------------

def _meeting_url(suffix=""):
    return lambda db, w: f"/agencies/agency-a/committee/meetings/{w['meeting'].id}{suffix}"


def _crec_url(key, suffix=""):
    return lambda db, w: f"/agencies/agency-a/committee/recommendations/{w[key].id}{suffix}"


def _crec_version(db, w, key):
    from tracker.models import CommitteeRecommendation

    return str(_one(db, sa.select(CommitteeRecommendation.row_version)
                    .where(CommitteeRecommendation.id == w[key].id)))


def _indicator_url(suffix=""):
    return lambda db, w: f"/agencies/agency-a/indicators/{w['indicator'].id}{suffix}"


def _meeting_form(w, **values):
    return {"title": "Spring meeting", "starts_at": "2026-04-02T18:00", "location": "City Hall, room 2",
            "attendee_ids": [str(w["users"]["committee"].id)], **values}


COMMITTEE_CASES = {
    "committee.create_meeting": {"schedule": Case(
        "officer", lambda db, w: "/agencies/agency-a/committee/meetings",
        data=lambda db, w: _meeting_form(w, title="Summer meeting", submission_id="d" * 32))},
    "committee.update_meeting": {"minutes": Case(
        "officer", _meeting_url("/edit"), data=lambda db, w: _meeting_form(w, minutes="Rosters reviewed."))},
    "committee.add_document": {"paper": Case(
        "officer", _meeting_url("/documents"), multipart=True,
        data=lambda db, w: {"file": (io.BytesIO(PDF + b"% minutes"), "minutes.pdf"), "submission_id": "e" * 32})},
    "committee.publish_meeting": {"agenda": Case("admin", _meeting_url("/publish"),
                                                 data=lambda db, w: {"agenda_public": "y"})},
    "committee.create_recommendation": {"draft": Case(
        "committee", lambda db, w: "/agencies/agency-a/committee/recommendations", data=lambda db, w: {
            "title": "Debrief every crisis call", "body": "A supervisor debriefs within a week.",
            "meeting_id": str(w["meeting"].id), "requirement_ids": [str(w["req"].id)], "submission_id": "f" * 32})},
    "committee.update_recommendation": {"revise": Case(
        "committee", _crec_url("draft_rec"), data=lambda db, w: {
            "title": "Publish rosters monthly", "body": "Monthly, on the website.", "meeting_id": "0",
            "row_version": _crec_version(db, w, "draft_rec")})},
    "committee.submit_recommendation": {"submit": Case(
        "committee", _crec_url("draft_rec", "/submit"),
        data=lambda db, w: {"row_version": _crec_version(db, w, "draft_rec")})},
    "committee.respond": {"accepted": Case(
        "officer", _crec_url("committee_rec", "/response"), data=lambda db, w: {
            "decision": "accepted", "reasons": "Night calls doubled.", "steps": "Hire two call-takers by June.",
            "requirement_ids": [str(w["req"].id)], "row_version": _crec_version(db, w, "committee_rec")})},
    "committee.publish_recommendation": {"publish": Case(
        "admin", _crec_url("committee_rec", "/publish"), data=lambda db, w: {"public": "y"})},
    "committee.settings": {"30 days": Case("admin", lambda db, w: "/agencies/agency-a/committee/settings",
                                           data=lambda db, w: {"response_days": "30", "chair_id": "0"})},
    # Indicators.
    "indicators.create": {"own": Case("officer", lambda db, w: "/agencies/agency-a/indicators", data=lambda db, w: {
        "key": "median-wait", "name": "Median wait for a crisis team", "unit": "minutes", "direction": "down",
        "frequency": "month", "target_value": "15"})},
    "indicators.adopt": {"suggested": Case(
        "officer", lambda db, w: "/agencies/agency-a/indicators/adopt",
        data=lambda db, w: {"catalog_key": "crisis-arrest", "frequency": "quarter"})},
    "indicators.update": {"target": Case("officer", _indicator_url(), data=lambda db, w: {
        "name": "CIT officer on scene", "unit": "percent", "direction": "up", "frequency": "quarter",
        "target_value": "80", "requirement_ids": [str(w["req"].id)]})},
    "indicators.add_value": {"typed": Case("officer", _indicator_url("/values"), data=lambda db, w: {
        "period": "2025-Q2", "numerator_value": "90", "denominator_value": "200"})},
    "indicators.publish": {"public": Case("admin", _indicator_url("/publish"), data=lambda db, w: {"public": "y"})},
    "indicators.import_values": {"csv": Case(
        "officer", lambda db, w: "/agencies/agency-a/indicators/import", multipart=True, data=lambda db, w: {
            "file": (io.BytesIO(b"indicator,period,value\ncit-on-scene,2025-Q2,45\ncit-on-scene,2025-Q3,50\n"),
                     "values.csv")})},
}

# --- issue 15: e-mail preferences, follows, unsubscribe, the outbox ---------------------------------------

def _failed_message(app, db, w, auth):
    from tracker.models import OutboxMessage

    db.session.add(OutboxMessage(to_addr="officer@example.test", category="account", subject="Your account",
                                 body_text="Text.", state="failed", attempts=8, last_error="Gave up"))
    db.session.commit()


def _failed_message_id(db, w):
    from tracker.models import OutboxMessage

    return str(_one(db, sa.select(OutboxMessage.id).where(OutboxMessage.state == "failed")))


def _unsubscribe_url(db, w):
    from tracker.services.notifications import unsubscribe_token

    return f"/unsubscribe/{unsubscribe_token(w['users']['officer'].id, ['comment'])}"


NOTIFICATION_CASES = {
    "notifications.preferences": {"daily comments": Case("officer", lambda db, w: "/account/notifications",
                                                         data=lambda db, w: {"comment": "immediate"})},
    "notifications.follow": {"follow": Case("monitor", _req_url("follow"), data=lambda db, w: {"follow": "1"})},
    "notifications.unsubscribe": {"one click": Case(None, _unsubscribe_url,
                                                    data=lambda db, w: {"List-Unsubscribe": "One-Click"})},
    "outbox.retry": {"failed": Case("admin", lambda db, w: "/admin/outbox/retry", prepare=_failed_message,
                                    data=lambda db, w: {"message_id": _failed_message_id(db, w)})},
}

CASES = {
    **NOTIFICATION_CASES,
    "auth.login": {
        "password": Case(None, lambda db, w: "/login",
                         data=lambda db, w: {"email": "officer@example.test", "password": PASSWORD}),
        "wrong password counted": Case(None, lambda db, w: "/login", expect=401,
                                       data=lambda db, w: {"email": "officer@example.test", "password": "x" * 14}),
        "second factor enrolment starts": Case(
            None, lambda db, w: "/login", prepare=lambda app, db, w, a: app.config.update(
                MFA_REQUIRED_ROLES=["admin"]),
            data=lambda db, w: {"email": "admin@example.test", "password": PASSWORD}),
    },
    "auth.second_factor": {
        "code": Case(None, lambda db, w: "/login/code", prepare=_mfa_monitor,
                     data=lambda db, w: {"code": pyotp.TOTP(_one(db, sa.select(User.totp_secret).where(
                         User.email == "monitor@example.test"))).now()}),
        "enrolment confirmed": Case(None, lambda db, w: "/login/code", prepare=_mfa_enrolling_admin,
                                    data=lambda db, w: {"code": _pending_code(db, "admin@example.test")}),
        "wrong code counted": Case(None, lambda db, w: "/login/code", expect=401,
                                   prepare=_mfa_monitor, data=lambda db, w: {"code": "000000"}),
    },
    "auth.logout": {"sign out": Case("officer", lambda db, w: "/logout")},
    "auth.account": {"password change": Case("officer", lambda db, w: "/account", data=lambda db, w: {
        "current_password": PASSWORD, "new_password": "a brand new passphrase 42"})},
    "auth.mfa_setup": {
        "start": Case("officer", lambda db, w: "/account/mfa", data=lambda db, w: {"action": "start"}),
        "confirm": Case("officer", lambda db, w: "/account/mfa",
                        prepare=lambda app, db, w, auth: auth.post("/account/mfa", {"action": "start"}),
                        data=lambda db, w: {"code": _pending_code(db, "officer@example.test")}),
    },
    "auth.create_token": {
        "api": Case("officer", lambda db, w: "/account/tokens", expect=200,
                    data=lambda db, w: {"kind": "api", "name": "nightly export", "current_password": PASSWORD}),
        "calendar": Case("officer", lambda db, w: "/account/tokens", expect=200,
                         data=lambda db, w: {"kind": "calendar", "agency": "agency-a", "current_password": PASSWORD}),
    },
    "auth.revoke_token": {"api": Case("officer", lambda db, w: f"/account/tokens/{_token_id(db, w)}/revoke")},
    "auth.rotate_token": {"api": Case("officer", lambda db, w: f"/account/tokens/{_token_id(db, w)}/rotate", expect=200,
                                      data=lambda db, w: {"current_password": PASSWORD})},
    "admin.agency_new": {"create": Case("admin", lambda db, w: "/admin/agencies/new", data=lambda db, w: _agency_form(
        w, name="New Town PD", slug="new-town"))},
    "admin.agency_edit": {
        "rename": Case("admin", lambda db, w: "/admin/agencies/agency-a",
                       data=lambda db, w: _agency_form(w, name="Harbour City PD")),
        "effective date moved": Case("admin", lambda db, w: "/admin/agencies/agency-a", prepare=_derived_due_dates,
                                     data=lambda db, w: _agency_form(w, effective_date="2025-07-01")),
    },
    "admin.agency_adopt": {"adopt": Case("admin", lambda db, w: "/admin/agencies/agency-b/adopt",
                                         data=lambda db, w: {"modules": ["cit"]})},
    "admin.user_create": {"officer": Case("admin", lambda db, w: "/admin/users", expect=201, data=lambda db, w: {
        "email": "new.person@example.org", "name": "New Person", "role": "officer", "agency_id": str(w["a"].id)})},
    "admin.user_action": {
        "unlock": Case("admin", _user_action("unlock"), prepare=lambda app, db, w, a: _set(
            db, User, w["users"]["officer2"].id, locked_at=utcnow(), failed_logins=5)),
        "disable": Case("admin", _user_action("disable")),
        "enable": Case("admin", _user_action("enable"), prepare=lambda app, db, w, a: _set(
            db, User, w["users"]["officer2"].id, active=False)),
        "sign-out": Case("admin", _user_action("sign-out"), prepare=_officer2_signed_in),
        "reset-mfa": Case("admin", _user_action("reset-mfa"), prepare=lambda app, db, w, a: _set(
            db, User, w["users"]["officer2"].id, totp_secret=pyotp.random_base32())),
    },
    "admin.membership_add": {"committee": Case(
        "admin", lambda db, w: f"/admin/users/{w['users']['officer_b'].id}/memberships",
        data=lambda db, w: {"agency_id": str(w["a"].id), "role": "committee"})},
    "admin.membership_remove": {"officer2": Case("admin", lambda db, w: "/admin/users/{}/memberships/{}/remove".format(
        w["users"]["officer2"].id, _one(db, sa.select(Membership.id).where(
            Membership.user_id == w["users"]["officer2"].id))))},
    "reviews.decide": {
        "accept": Case("monitor", lambda db, w: f"/agencies/agency-a/evidence/{w['file'].id}/review",
                       data=lambda db, w: {"decision": "accept", "comment": ""}),
        "return": Case("monitor", lambda db, w: f"/agencies/agency-a/evidence/{w['file'].id}/review",
                       data=lambda db, w: {"decision": "return", "comment": "The roster is missing."}),
    },
    "evidence.add": {
        "file": Case("officer", _req_url("evidence"), data=_evidence(), multipart=True),
        "link": Case("officer", _req_url("evidence"), multipart=True,
                     data=_evidence(kind="link", url="https://example.org/roster")),
    },
    "evidence.new_version": {"file": Case(
        "officer", lambda db, w: f"/agencies/agency-a/evidence/{w['file'].id}/versions",
        data=_evidence(title="Policy 4.2, revised"), multipart=True)},
    "imports.import_paragraphs": {"csv": Case(
        "officer", lambda db, w: "/agencies/agency-a/import", multipart=True, data=lambda db, w: {
            "file": (io.BytesIO(b"paragraph,title,module\n131(d),Crisis line,cit\n"), "decree.csv")})},
    # Issue 12: the decree's structure, recurring duties' occurrences, the crosswalk.
    "decree.save_instrument": {"add": Case("admin", lambda db, w: "/agencies/agency-a/decree/instruments",
                                           data=lambda db, w: {
                                               "instrument_id": "", "i-new-short_name": "Settlement 2026",
                                               "i-new-kind": "settlement_agreement", "i-new-scale_id": str(_one(
                                                   db, sa.select(Instrument.scale_id).where(
                                                       Instrument.agency_id == w["a"].id).limit(1)))})},
    "decree.save_section": {"add": Case("officer", lambda db, w: "/agencies/agency-a/decree/sections",
                                        data=lambda db, w: {"section_id": "", "s-new-label": "III.C Crisis"})},
    "decree.save_entity": {"add": Case("officer", lambda db, w: "/agencies/agency-a/decree/entities",
                                       data=lambda db, w: {"entity_id": "", "e-new-name": "Police Department"})},
    "decree.complete_occurrence": {"complete": Case(
        "officer", _req_url("occurrences"), prepare=lambda app, db, w, a: _recurring(db, w),
        data=lambda db, w: {"completed_on": "2026-01-10", "occurrence_id": str(_one(db, sa.select(Occurrence.id).where(
            Occurrence.requirement_id == w["req"].id, Occurrence.state == "open")))})},
    "decree.link": {"link": Case("officer", _req_url("links"), data=lambda db, w: {"code": w["rec"].code})},
    "decree.unlink": {"unlink": Case(
        "officer", _req_url("links/remove"), prepare=lambda app, db, w, a: _linked(db, w),
        data=lambda db, w: {"recommendation_id": str(w["rec"].id)})},
    "monitoring.create_period": {"open": Case(
        "monitor", lambda db, w: "/agencies/agency-a/periods", data=lambda db, w: {
            "name": "Report 3", "start_date": "2026-01-01", "end_date": "2026-06-30"})},
    "monitoring.share": {"share": Case("monitor", lambda db, w: f"/agencies/agency-a/periods/{w['open'].id}/share")},
    "monitoring.file_report": {"file": Case(
        "monitor", lambda db, w: f"/agencies/agency-a/periods/{w['open'].id}/file",
        data=lambda db, w: {"filed_on": "2026-01-20", "docket_ref": "Dkt. 1123"})},
    "monitoring.respond": {"answer": Case(
        "officer", lambda db, w: f"/agencies/agency-a/periods/{w['open'].id}/responses/{w['req'].id}",
        prepare=lambda app, db, w, a: _set(db, MonitoringPeriod, w["open"].id, state="shared"),
        data=lambda db, w: {"response": "The roster shows full staffing since May."})},
    "monitoring.sustainment_order": {"order": Case(
        "admin", lambda db, w: "/agencies/agency-a/sustainment-orders",
        data=lambda db, w: {"order_date": "2025-11-01", "docket_ref": "Order (Dkt. 600)", "codes": "CIT-001"})},
    "monitoring.record_finding": {
        "rate": Case("monitor", lambda db, w: f"/agencies/agency-a/periods/{w['open'].id}/findings/{w['req2'].id}",
                     data=lambda db, w: {"level_id": str(w["levels"]["partial"].id), "narrative": "Half way."}),
        "correct": Case("monitor", lambda db, w: f"/agencies/agency-a/periods/{w['closed'].id}/findings/{w['req'].id}",
                        data=lambda db, w: {"level_id": str(w["levels"]["full"].id),
                                            "correction_reason": "Transcription error"}),
        "per level": Case("monitor", lambda db, w: f"/agencies/agency-a/periods/{w['open'].id}/findings/{w['req2'].id}",
                          prepare=_per_level_scale, data=lambda db, w: {
                              f"status-{w['levels']['partial'].id}": "in_compliance",
                              f"status-{w['levels']['full'].id}": "under_assessment"}),
    },
    "monitoring.terminate_requirement": {"one": Case("admin", _req_url("terminate"), data=lambda db, w: {
        "terminated_on": "2026-01-15", "reference": "Order of Jan 15, 2026 (Dkt. 512)"})},
    "monitoring.terminate_module": {"cit": Case("admin", lambda db, w: "/agencies/agency-a/terminations",
                                                data=lambda db, w: {"module": "cit", "terminated_on": "2026-01-15",
                                                                    "reference": "Order (Dkt. 513)"})},
    "board.add_comment": {
        "comment": Case("officer", _req_url("comments"), data=lambda db, w: {"body": "Roster attached."}),
        "old form ids swept": Case("officer", _req_url("comments"), prepare=_old_form_id,
                                   data=lambda db, w: {"body": "Roster attached.", "submission_id": "b" * 32}),
    },
    "board.set_status": {"in progress": Case("officer", _req_url("status"), data=lambda db, w: {
        "status": "in_progress", "note": "Started.", "row_version": _version(db, w)})},
    "board.set_owner": {"officer2": Case("officer", _req_url("owner"), data=lambda db, w: {
        "owner_id": str(w["users"]["officer2"].id), "row_version": _version(db, w)})},
    "board.set_due_date": {"moved": Case("officer", _req_url("due-date"), data=lambda db, w: {
        "due_date": "2027-01-01", "reason": "Court order of Dec 1", "row_version": _version(db, w)})},
    "board.set_notes": {"notes": Case("officer", _req_url("notes"), data=lambda db, w: {
        "notes": "Met with dispatch.", "row_version": _version(db, w)})},
    "board.save_row": {"status and owner": Case("officer", _req_url("row"), data=lambda db, w: {
        "status": "in_progress", "note": "Started.", "owner_id": str(w["users"]["officer2"].id),
        "due_date": "2027-03-01", "reason": "Court order of Dec 1", "row_version": _version(db, w)})},
    "board.bulk": {"status": Case("officer", lambda db, w: "/agencies/agency-a/requirements/bulk", data=lambda db, w: {
        "change": "status", "status": "in_progress", "note": "Kick-off for all", "as_of": "0",
        "ids": f"{w['req'].id}:{_version(db, w)}"})},
    **PLAN_AND_REQUEST_CASES,
    **POLICY_CASES,
    **COMMITTEE_CASES,
}
CASE_IDS = [(endpoint, name) for endpoint, cases in CASES.items() for name in cases]


SERVICES = Path(__file__).resolve().parents[1] / "tracker" / "services"
# backup.py only reads: it ends its read snapshots so a long copy holds no lock (a CLI command).
MAY_END_READS = {"backup.py"}


def test_services_never_commit_roll_back_flash_or_redirect():
    """The transaction belongs to the view (or CLI command), which commits once: so a service's rows
    and its audit event always commit, or roll back, together."""
    offences = []
    for path in sorted(SERVICES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in {"commit", "rollback"}:
                if not (node.attr == "rollback" and path.name in MAY_END_READS):
                    offences.append(f"{path.name}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module == "flask":
                offences += [f"{path.name}:{node.lineno} imports {a.name}" for a in node.names
                             if a.name in {"flash", "redirect", "abort"}]
    assert offences == []


def test_every_write_route_has_a_case(app):
    writing = {rule.endpoint for rule in app.url_map.iter_rules() if rule.methods & WRITE_METHODS}
    missing = writing - set(CASES)
    assert not missing, f"routes that write with no case in CASES (add one that succeeds): {sorted(missing)}"
    assert set(CASES) - writing == set(), "CASES names endpoints that no longer exist"


class InjectedFailure(Exception):
    """Raised at the request's commit, after the services have flushed their rows and events."""


def _fail_at_commit(session):
    if has_request_context():  # the test's own commits (before each request) go through
        raise InjectedFailure


def _caller(app, db, w, case):
    auth = signed_in(app, f"{case.role}@example.test") if case.role else Auth(app.test_client())
    if case.role is None:
        auth.token = csrf_from(auth.client.get("/login").get_data(as_text=True))
    if case.prepare:
        case.prepare(app, db, w, auth)
    return auth


def _send(auth, db, w, case):
    kwargs = {"content_type": "multipart/form-data"} if case.multipart else {}
    return auth.post(case.url(db, w), case.data(db, w), **kwargs)


@pytest.mark.parametrize(("endpoint", "name"), CASE_IDS, ids=[f"{e}:{n}" for e, n in CASE_IDS])
def test_a_write_commits_with_its_audit_event(app, db, world, endpoint, name):  # noqa: F811 - fixture
    case = CASES[endpoint][name]
    auth = _caller(app, db, world, case)
    before = table_digests(db, exclude=STAMP_COLUMNS)

    sa.event.listen(db.session, "before_commit", _fail_at_commit)
    try:
        with pytest.raises(InjectedFailure):
            _send(auth, db, world, case)
    finally:
        sa.event.remove(db.session, "before_commit", _fail_at_commit)
    assert changed_tables(before, table_digests(db, exclude=STAMP_COLUMNS)) == [], "a failed commit left rows"

    with Transactions(db.engine) as transactions:
        response = _send(auth, db, world, case)
    assert response.status_code == case.expect, response.get_data(as_text=True)[:2000]
    changed = changed_tables(before, table_digests(db, exclude=STAMP_COLUMNS))
    assert "audit_event" in changed and len(changed) > 1, f"changed: {changed}"
    assert transactions.unaudited() == [], "committed without an audit event"


def test_get_requests_write_nothing_but_activity_stamps(app, db, world):  # noqa: F811 - fixture
    urls = _urls(app, world)
    callers = _callers(app, world)
    before = table_digests(db, exclude=STAMP_COLUMNS)
    # Five minutes on: every session's stamp is due again, so the crawl exercises writing it.
    with time_machine.travel(utcnow() + timedelta(minutes=5)), Transactions(db.engine) as transactions:
        for role, client in callers.items():
            headers = {"Authorization": f"Bearer {world['api_secret']}"} if role == "api-token" else {}
            for _endpoint, url in urls:
                client.get(url, headers=headers).close()
    assert set(changed_tables(before, table_digests(db, exclude=STAMP_COLUMNS))) <= {"audit_checkpoint"}
    stamped = set()
    for writes in transactions.committed:
        assert len(writes) == 1 and (_stamp(writes[0][1]) or _checkpoint(writes[0][1])), \
            f"a GET committed more than one stamp: {writes}"
        stamped.add(writes[0][0])
    assert stamped - {"audit_checkpoint"} == {"user_session", "api_token"}
