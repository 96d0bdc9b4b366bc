"""Recent activity as sentences a community member can read (issue 14 §4):
"Priya Castellanos marked DIV-001 In progress".

Built from the audit trail, but only from the actions listed here, each written as a sentence with the
requirement's code and people's names — never an e-mail address or a database id (someone without a name
is "Someone"). What a role may not see stays out: committee members get no document requests and no
restricted evidence; nobody gets draft findings or the committee's drafts. With a module (or responsible
entity) filter only the activity on that module's requirements is listed.

A fixed number of queries: the events (with the requirement each concerns, worked out in SQL), the
requirements' codes, the people, and one query per kind of other object on the page.
"""
import functools
from datetime import date

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import (
    STATUSES,
    AuditEvent,
    Comment,
    CommitteeRecommendation,
    Evidence,
    Finding,
    Indicator,
    Meeting,
    Module,
    MonitoringPeriod,
    Occurrence,
    PolicyDocument,
    Requirement,
    User,
)

# Actions every member of the agency may read about.
SHARED_ACTIONS = (
    "requirement.status", "requirement.owner", "requirement.due_date", "requirement.notes",
    "requirement.terminate", "comment.create", "evidence.create", "evidence.version", "evidence.accept",
    "evidence.return", "finding.correct", "occurrence.complete", "period.file", "committee_recommendation.submit",
    "committee_recommendation.respond", "meeting.create", "indicator.value", "indicator.import", "policy.approve",
)
# The monitor's document requests: the department and the monitoring team only.
STAFF_ACTIONS = ("request.create", "request.answer")
STAFF_ROLES = {"officer", "monitor", "admin"}
# Objects named by a lookup: model, the columns the sentence uses.
NAMED = {"monitoring_period": MonitoringPeriod, "committee_recommendation": CommitteeRecommendation,
         "meeting": Meeting, "indicator": Indicator, "policy_document": PolicyDocument}


def _requirement_of_event():
    """The requirement an event concerns, in SQL (NULL when none). Each cast sits in its own CASE branch, so
    it only ever reads ids of the object type that branch names (all numeric)."""
    object_id = sa.cast(AuditEvent.object_id, sa.Integer)

    def owner_of(model):
        return sa.select(model.requirement_id).where(model.id == object_id).scalar_subquery()

    return sa.case(
        (AuditEvent.object_type == "requirement", object_id),
        (AuditEvent.object_type == "comment", owner_of(Comment)),
        (AuditEvent.object_type == "evidence", owner_of(Evidence)),
        (AuditEvent.object_type == "finding", owner_of(Finding)),
        (AuditEvent.object_type == "occurrence", owner_of(Occurrence)),
    )


def _events(agency, role, module_id, entity_id, limit):
    statement = _events_statement(role in STAFF_ROLES, module_id is not None, entity_id is not None)
    return db.session.execute(statement, {"agency": agency.id, "module": module_id, "entity": entity_id,
                                          "limit": limit}).all()


@functools.cache
def _events_statement(staff, by_module, by_entity):
    """The events query, built once per shape and run with parameters (building it, with its CASE of
    subqueries, took 0.37 ms a dashboard)."""
    actions = SHARED_ACTIONS + (STAFF_ACTIONS if staff else ())
    agency_id = sa.bindparam("agency")
    query = (sa.select(AuditEvent, _requirement_of_event().label("requirement_id"))
             .where(AuditEvent.agency_id == agency_id, AuditEvent.outcome == "success",
                    AuditEvent.action.in_(actions))
             .order_by(AuditEvent.id.desc()).limit(sa.bindparam("limit")))
    if not staff:  # committee members: shareable evidence only
        restricted = sa.select(Evidence.id).where(Evidence.visibility == "restricted",
                                                  Evidence.id == sa.cast(AuditEvent.object_id, sa.Integer))
        query = query.where(sa.not_(sa.and_(AuditEvent.object_type == "evidence", restricted.exists())))
    if by_module or by_entity:
        scope = sa.select(Requirement.id).where(Requirement.agency_id == agency_id)
        if by_module:
            scope = scope.where(Requirement.module_id == sa.bindparam("module"))
        if by_entity:
            scope = scope.where(Requirement.entity_id == sa.bindparam("entity"))
        query = query.where(_requirement_of_event().in_(scope))
    return query


def _lookups(rows):
    """(codes by requirement id, people by id and by e-mail, {object type: {id: object}})."""
    req_ids = {rid for _e, rid in rows if rid is not None}
    codes = dict(db.session.execute(sa.select(Requirement.id, Requirement.code)
                                    .where(Requirement.id.in_(req_ids))).all()) if req_ids else {}
    actor_ids = {e.actor_id for e, _r in rows if e.actor_id}
    emails = {(e.after or {}).get("owner") for e, _r in rows if e.action == "requirement.owner"} - {None}
    people = db.session.execute(sa.select(User).where(sa.or_(User.id.in_(actor_ids), User.email.in_(emails)))
                                ).scalars().all() if actor_ids or emails else []
    named = {}
    for object_type, model in NAMED.items():
        ids = {int(e.object_id) for e, _r in rows if e.object_type == object_type and e.object_id.isdigit()}
        if ids:
            named[object_type] = {o.id: o for o in db.session.execute(
                sa.select(model).where(model.id.in_(ids))).scalars()}
    return codes, {u.id: u for u in people}, {u.email: u for u in people}, named


def _name(user):
    if user is None:
        return "The tracker"
    return user.name or "Someone"


def _day(value):
    try:
        return date.fromisoformat(str(value)).strftime("%b %-d, %Y")
    except ValueError:
        return "a new date"


def _sentence(event, code, who, named, by_email):
    """The event in words, or None when it cannot be said without an address or an id."""
    after = event.after or {}
    obj = named.get(event.object_type, {}).get(int(event.object_id)) if event.object_id.isdigit() else None
    action = event.action
    if code is not None:
        owner = by_email.get(after.get("owner"))
        return {
            "requirement.status": f"{who} marked {code} {STATUSES.get(after.get('status'), 'changed')}",
            "requirement.owner": f"{who} assigned {code} to {_name(owner)}" if owner else
            f"{who} removed the owner of {code}",
            "requirement.due_date": f"{who} moved the due date of {code} to {_day(after.get('due_date'))}",
            "requirement.notes": f"{who} updated the notes on {code}",
            "requirement.terminate": f"{who} recorded that the court terminated {code}",
            "comment.create": f"{who} commented on {code}",
            "evidence.create": f"{who} added evidence to {code}",
            "evidence.version": f"{who} added a new version of evidence for {code}",
            "evidence.accept": f"{who} accepted evidence for {code}",
            "evidence.return": f"{who} returned evidence for {code} to the department",
            "finding.correct": f"{who} corrected the monitor's finding for {code}",
            "occurrence.complete": f"{who} completed a round of {code}",
        }.get(action)
    if action == "request.create":
        return f"{who} asked for documents: request {after.get('number')}, “{after.get('title', '')}”"
    if action == "request.answer":
        return f"{who} answered document request {after.get('request')}"
    if action == "indicator.import":
        return f"{who} imported indicator values ({after.get('added', 0)} added, {after.get('updated', 0)} updated)"
    if obj is None:
        return None
    return {
        "period.file": lambda: f"{who} filed the monitoring report “{obj.name}”",
        "committee_recommendation.submit": lambda: f"{who} submitted committee recommendation {obj.number}: "
                                                   f"{obj.title}",
        "committee_recommendation.respond": lambda: f"{who} answered committee recommendation {obj.number}",
        "meeting.create": lambda: f"{who} scheduled the committee meeting “{obj.title}”",
        "indicator.value": lambda: f"{who} entered a value for the indicator “{obj.name}”",
        "policy.approve": lambda: f"{who} recorded the approval of “{obj.title}”",
    }.get(action, lambda: None)()


def recent(agency, role, module_key=None, entity_id=None, limit=10):
    """[(when, sentence, requirement id or None)], newest first, as `role` may see them."""
    module_id = db.session.execute(sa.select(Module.id).where(Module.key == module_key)).scalar() \
        if module_key else None
    if module_key and module_id is None:
        return []
    rows = _events(agency, role, module_id, entity_id, limit)
    codes, people, by_email, named = _lookups(rows)
    result = []
    for event, req_id in rows:
        who = (people[event.actor_id].name or "Someone") if event.actor_id in people else \
            ("Someone" if event.actor_id else "The tracker")
        sentence = _sentence(event, codes.get(req_id), who, named, by_email)
        if sentence:
            result.append((event.created_at, sentence + ".", req_id))
    return result
