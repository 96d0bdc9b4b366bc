"""The advisory committee's written recommendations and the agency's written responses.

A committee member drafts (text, rationale, the requirements and modules concerned, the meeting where it
was adopted) and submits; submission sets the response due date (submitted + the agency's
committee_response_days). A compliance officer answers: accepted, accepted in part, under consideration or
declined, with reasons and, when accepted in whole or part, the implementation steps and the requirements
they touch. A later answer replaces the current one; earlier ones stay as history. Each edit names the
row_version it was made against; a stale one raises Conflict and changes nothing.
"""
import functools
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm.exc import StaleDataError

from tracker import cache
from tracker.extensions import db
from tracker.models import (
    RESPONSE_DECISIONS,
    Agency,
    CommitteeRecommendation,
    CommitteeResponse,
    Meeting,
    Membership,
    Module,
    Requirement,
    User,
    utcnow,
)
from tracker.models.committee import committee_recommendation_requirement, committee_response_requirement
from tracker.services import audit, notifications
from tracker.services.errors import ValidationFailed

MAX_TEXT = 20_000
STEPS_REQUIRED = {"accepted", "accepted_in_part"}
# What the list filter offers; "overdue" is submitted and past its due date, "answered" has a response.
LIST_FILTERS = {"": "All", "draft": "Drafts", "submitted": "Awaiting an answer", "overdue": "Overdue",
                "responded": "Answered"}


class Conflict(Exception):
    """The recommendation changed since the form was rendered; the caller rolls back and shows the current one."""

    def __init__(self, recommendation):
        self.recommendation = recommendation
        super().__init__(f"committee recommendation {sa.inspect(recommendation).identity[0]} changed")


def today():
    return utcnow().date()


def is_overdue(rec, on=None):
    return rec.state == "submitted" and rec.response_due is not None and rec.response_due < (on or today())


# --- reading ----------------------------------------------------------------------------------------------

def _with_details(query):
    return query.options(sa.orm.selectinload(CommitteeRecommendation.requirements),
                         sa.orm.selectinload(CommitteeRecommendation.modules),
                         sa.orm.joinedload(CommitteeRecommendation.meeting),
                         sa.orm.joinedload(CommitteeRecommendation.created_by))


def recommendations(agency, state="", *, drafts=False):
    """The agency's recommendations, newest number first. Drafts are the committee's own: listed only when
    `drafts` (committee members and the administrator). A fixed number of queries whatever the count."""
    query = sa.select(CommitteeRecommendation).where(CommitteeRecommendation.agency_id == agency.id)
    if not drafts:
        query = query.where(CommitteeRecommendation.state != "draft")
    if state == "overdue":
        query = query.where(CommitteeRecommendation.state == "submitted",
                            CommitteeRecommendation.response_due < today())
    elif state in ("draft", "submitted", "responded"):
        query = query.where(CommitteeRecommendation.state == state)
    rows = db.session.execute(_with_details(query).order_by(CommitteeRecommendation.number.desc())).scalars().all()
    return rows, current_responses([r.id for r in rows])


def current_responses(rec_ids):
    """{recommendation id: its current response} in one query."""
    if not rec_ids:
        return {}
    return {r.recommendation_id: r for r in db.session.execute(
        sa.select(CommitteeResponse).where(CommitteeResponse.recommendation_id.in_(rec_ids),
                                           CommitteeResponse.is_current.is_(True))
        .options(sa.orm.selectinload(CommitteeResponse.requirements), sa.orm.joinedload(CommitteeResponse.author))
    ).unique().scalars()}


def responses(rec):
    """Every response to one recommendation, oldest first (the current one last)."""
    return db.session.execute(
        sa.select(CommitteeResponse).where(CommitteeResponse.recommendation_id == rec.id)
        .options(sa.orm.selectinload(CommitteeResponse.requirements), sa.orm.joinedload(CommitteeResponse.author))
        .order_by(CommitteeResponse.created_at, CommitteeResponse.id)
    ).unique().scalars().all()


def for_meeting(meeting, *, drafts=False):
    query = sa.select(CommitteeRecommendation).where(CommitteeRecommendation.meeting_id == meeting.id)
    if not drafts:
        query = query.where(CommitteeRecommendation.state != "draft")
    return db.session.execute(query.order_by(CommitteeRecommendation.number)).scalars().all()


def summary(agency):
    """Counts for the dashboard: submitted (not drafts), answered, awaiting, overdue. One query a request."""
    return cache.per_request(("committee-summary", agency.id), lambda: _summary(agency))


def _summary(agency):
    row = db.session.execute(_summary_statement(), {"agency": agency.id, "on": today()}).one()
    total, answered, awaiting, overdue = (int(v) for v in row)
    return {"total": total, "answered": answered, "awaiting": awaiting, "overdue": overdue}


@functools.cache
def _summary_statement():
    """Built once and run with parameters (the dashboard and the committee page ask on every render)."""
    waiting = CommitteeRecommendation.state == "submitted"

    def count_if(condition):
        return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

    return (sa.select(sa.func.count(), count_if(CommitteeRecommendation.state == "responded"), count_if(waiting),
                      count_if(sa.and_(waiting, CommitteeRecommendation.response_due < sa.bindparam("on"))))
            .where(CommitteeRecommendation.agency_id == sa.bindparam("agency"),
                   CommitteeRecommendation.state.in_(("submitted", "responded"))))


def dashboard_panel(agency, limit=5):
    """The dashboard's committee panel: the counts, the recommendations awaiting an answer (overdue first,
    then by due date) and the latest answered ones. Three queries at most: a list the counts show empty is not
    looked up."""
    counts = summary(agency)
    awaiting = [] if not counts["awaiting"] else db.session.execute(
        sa.select(CommitteeRecommendation).where(CommitteeRecommendation.agency_id == agency.id,
                                                 CommitteeRecommendation.state == "submitted")
        .order_by(CommitteeRecommendation.response_due, CommitteeRecommendation.number).limit(limit)
    ).scalars().all()
    answered = [] if not counts["answered"] else db.session.execute(
        sa.select(CommitteeRecommendation, CommitteeResponse.decision)
        .join(CommitteeResponse, sa.and_(CommitteeResponse.recommendation_id == CommitteeRecommendation.id,
                                         CommitteeResponse.is_current.is_(True)))
        .where(CommitteeRecommendation.agency_id == agency.id, CommitteeRecommendation.state == "responded")
        .order_by(CommitteeResponse.created_at.desc(), CommitteeRecommendation.id.desc()).limit(limit)
    ).all()
    return {"counts": counts, "awaiting": awaiting, "today": today(),
            "answered": [(rec, RESPONSE_DECISIONS.get(decision, decision)) for rec, decision in answered]}


def public_recommendations(agency):
    """Recommendations the administrator published, with their current responses."""
    rows = db.session.execute(
        _with_details(sa.select(CommitteeRecommendation).where(
            CommitteeRecommendation.agency_id == agency.id, CommitteeRecommendation.public.is_(True),
            CommitteeRecommendation.state.in_(("submitted", "responded"))))
        .order_by(CommitteeRecommendation.number)
    ).scalars().all()
    return rows, current_responses([r.id for r in rows])


def overdue_by_agency(user, memberships):
    """[(slug, overdue count)] for the navigation, in one aggregate query: recommendations past their
    response date in the agencies where the user is an officer or committee member (every agency for an
    administrator), agencies with any first, by name."""
    ids = [m.agency_id for m in memberships if m.role in ("officer", "committee")]
    if not (ids or user.is_admin):
        return []
    rows = db.session.execute(_overdue_statement(bool(user.is_admin)), {"ids": ids, "on": today()})
    return [(slug, int(n)) for slug, n in rows]


@functools.cache
def _overdue_statement(every_agency):
    """The navigation asks on every page it renders: built once per shape, run with parameters."""
    query = (sa.select(Agency.slug, sa.func.count())
             .join(CommitteeRecommendation, CommitteeRecommendation.agency_id == Agency.id)
             .where(CommitteeRecommendation.state == "submitted",
                    CommitteeRecommendation.response_due < sa.bindparam("on"))
             .group_by(Agency.slug, Agency.name).order_by(Agency.name))
    if not every_agency:
        query = query.where(Agency.id.in_(sa.bindparam("ids", expanding=True)))
    return query


def requirement_timeline(requirement):
    """Timeline entries for a requirement page: ("committee", when, who, (what, recommendation)) for the
    drafting, submission and each response of every recommendation that names the requirement or whose
    response links it. Drafts are left out (they are the committee's own). At most three queries."""
    links = committee_response_requirement.c
    named = sa.select(committee_recommendation_requirement.c.recommendation_id).where(
        committee_recommendation_requirement.c.requirement_id == requirement.id)
    linked = (sa.select(CommitteeResponse.recommendation_id)
              .join(committee_response_requirement, links.response_id == CommitteeResponse.id)
              .where(links.requirement_id == requirement.id))
    recs = db.session.execute(
        sa.select(CommitteeRecommendation).where(
            CommitteeRecommendation.agency_id == requirement.agency_id, CommitteeRecommendation.state != "draft",
            sa.or_(CommitteeRecommendation.id.in_(named), CommitteeRecommendation.id.in_(linked)))
        .options(sa.orm.joinedload(CommitteeRecommendation.created_by))
    ).unique().scalars().all()
    if not recs:
        return []
    by_id = {r.id: r for r in recs}
    submitters = {u.id: u for u in db.session.execute(
        sa.select(User).where(User.id.in_({r.submitted_by_id for r in recs}))).scalars()}
    entries = []
    for rec in recs:
        entries.append(("committee", rec.created_at, rec.created_by, ("drafted", rec)))
        entries.append(("committee", rec.submitted_at, submitters.get(rec.submitted_by_id), ("submitted", rec)))
    seen = set()
    for resp in db.session.execute(
            sa.select(CommitteeResponse).where(CommitteeResponse.recommendation_id.in_(by_id))
            .options(sa.orm.joinedload(CommitteeResponse.author))
            .order_by(CommitteeResponse.created_at, CommitteeResponse.id)).scalars():
        what = "revised the answer to" if resp.recommendation_id in seen else "answered"
        seen.add(resp.recommendation_id)
        entries.append(("committee", resp.created_at, resp.author,
                        (f"{what} ({resp.decision_label})", by_id[resp.recommendation_id])))
    return entries


# --- writing ----------------------------------------------------------------------------------------------

def _text(values, errors, name, label, max_len, required=False):
    value = (values.get(name) or "").strip()
    if required and not value:
        errors[name] = f"{label} is required."
    elif len(value) > max_len:
        errors[name] = f"{label} must be at most {max_len} characters."
    return value


def _ids(values, name):
    try:
        return {int(i) for i in values.get(name) or []}
    except (TypeError, ValueError):
        return None


def _requirements(agency, values, errors, name="requirement_ids"):
    ids = _ids(values, name)
    if ids is None:
        errors[name] = "Choose requirements from the list."
        return []
    if not ids:
        return []
    found = db.session.execute(sa.select(Requirement).where(Requirement.agency_id == agency.id,
                                                            Requirement.id.in_(ids))).scalars().all()
    if len(found) != len(ids):
        errors[name] = "Choose requirements of this agency from the list."
    return found


def _clean(agency, values):
    errors = {}
    clean = {"title": _text(values, errors, "title", "The title", 300, required=True),
             "body": _text(values, errors, "body", "The recommendation", MAX_TEXT, required=True),
             "rationale": _text(values, errors, "rationale", "The rationale", MAX_TEXT)}
    meeting_id = values.get("meeting_id") or None
    if meeting_id:
        try:
            meeting = db.session.get(Meeting, int(meeting_id))
        except (TypeError, ValueError):
            meeting = None
        if meeting is None or meeting.agency_id != agency.id:
            errors["meeting_id"] = "Choose a meeting of this agency's committee."
        meeting_id = meeting.id if meeting else None
    clean["meeting_id"] = meeting_id
    requirements = _requirements(agency, values, errors)
    module_ids = _ids(values, "module_ids")
    modules = db.session.execute(sa.select(Module).where(Module.id.in_(module_ids))).scalars().all() \
        if module_ids else []
    if module_ids is None or (module_ids and len(modules) != len(module_ids)):
        errors["module_ids"] = "Choose modules from the list."
    if errors:
        raise ValidationFailed(errors)
    return clean, requirements, modules


def _snapshot(rec):
    return {**audit.snapshot(rec, ("title", "body", "rationale", "meeting_id", "state")),
            "requirements": sorted(r.code for r in rec.requirements), "modules": sorted(m.key for m in rec.modules)}


def _check_version(rec, row_version):
    try:
        expected = int(row_version)
    except (TypeError, ValueError):
        raise ValidationFailed({"row_version": "The form is missing its version; reload the page."}) from None
    if expected != rec.row_version:
        raise Conflict(rec)


def _flush(rec):
    try:
        db.session.flush()
    except StaleDataError:
        raise Conflict(rec) from None


def create(agency, values, *, actor):
    """A new draft, numbered after the agency's last recommendation."""
    clean, requirements, modules = _clean(agency, values)
    number = (db.session.execute(sa.select(sa.func.max(CommitteeRecommendation.number))
                                 .where(CommitteeRecommendation.agency_id == agency.id)).scalar() or 0) + 1
    rec = CommitteeRecommendation(agency_id=agency.id, number=number, created_by_id=actor.id, state="draft", **clean)
    rec.requirements, rec.modules = requirements, modules
    db.session.add(rec)
    db.session.flush()
    audit.record("committee_recommendation.create", rec, after={"number": number, **_snapshot(rec)}, actor=actor)
    return rec


def update(rec, values, row_version, *, actor):
    """Revise a draft. False when nothing changed."""
    if rec.state != "draft":
        raise ValidationFailed({"state": "Only a draft can be changed; this one has been submitted."})
    agency = db.session.get(Agency, rec.agency_id)
    clean, requirements, modules = _clean(agency, values)
    _check_version(rec, row_version)
    before = _snapshot(rec)
    for name, value in clean.items():
        setattr(rec, name, value)
    rec.requirements, rec.modules = requirements, modules
    after = _snapshot(rec)
    if after == before:
        return False
    rec.updated_at = utcnow()  # moves the version even when only the links changed
    _flush(rec)
    changed = {k for k in after if after[k] != before[k]}
    audit.record("committee_recommendation.update", rec, before={k: before[k] for k in changed},
                 after={k: after[k] for k in changed}, actor=actor)
    return True


def submit(rec, row_version, *, actor):
    """Send a draft to the agency; its written answer is due committee_response_days later."""
    _check_version(rec, row_version)
    if rec.state != "draft":
        raise ValidationFailed({"state": "This recommendation has already been submitted."})
    agency = db.session.get(Agency, rec.agency_id)
    rec.state = "submitted"
    rec.submitted_at = utcnow()
    rec.submitted_by_id = actor.id
    rec.response_due = rec.submitted_at.date() + timedelta(days=agency.committee_response_days)
    _flush(rec)
    audit.record("committee_recommendation.submit", rec, before={"state": "draft"},
                 after={"state": "submitted", "response_due": rec.response_due}, actor=actor)
    notifications.recommendation_submitted(rec, actor=actor)
    return rec


def respond(rec, values, row_version, *, actor):
    """The agency's written answer (or a revised one, which replaces the current answer)."""
    if rec.state not in ("submitted", "responded"):
        raise ValidationFailed({"decision": "Only a submitted recommendation can be answered."})
    errors = {}
    decision = values.get("decision") or ""
    if decision not in RESPONSE_DECISIONS:
        errors["decision"] = f"Choose one of: {', '.join(RESPONSE_DECISIONS.values())}."
    reasons = _text(values, errors, "reasons", "The reasons", MAX_TEXT, required=True)
    steps = _text(values, errors, "steps", "The implementation steps", MAX_TEXT,
                  required=decision in STEPS_REQUIRED)
    agency = db.session.get(Agency, rec.agency_id)
    requirements = _requirements(agency, values, errors)
    if errors:
        raise ValidationFailed(errors)
    _check_version(rec, row_version)
    previous = db.session.execute(sa.select(CommitteeResponse).where(
        CommitteeResponse.recommendation_id == rec.id, CommitteeResponse.is_current.is_(True))).scalar_one_or_none()
    if previous is not None:
        previous.is_current = False
    response = CommitteeResponse(recommendation_id=rec.id, decision=decision, reasons=reasons, steps=steps,
                                 author_id=actor.id, is_current=True)
    response.requirements = requirements
    db.session.add(response)
    rec.state = "responded"
    rec.updated_at = utcnow()  # a revised answer moves the version too
    _flush(rec)
    audit.record("committee_recommendation.respond", rec, actor=actor,
                 before={"decision": previous.decision} if previous else {"state": "submitted"},
                 after={"decision": decision, "reasons": reasons, "steps": steps, "response_id": response.id,
                        "requirements": sorted(r.code for r in requirements), "revised": previous is not None})
    notifications.response_posted(rec, actor=actor)
    return response


def set_public(rec, agency, public, *, actor):
    """The administrator publishes (or withdraws from) the public page a submitted recommendation and its answer."""
    public = bool(public)
    if public and not agency.public_enabled:
        raise ValidationFailed({"public": "The agency's public page is off; turn it on before publishing on it."})
    if public and rec.state == "draft":
        raise ValidationFailed({"public": "A draft cannot be published; the committee has not submitted it."})
    if rec.public == public:
        return False
    rec.public = public
    _flush(rec)
    audit.record("committee_recommendation.publish", rec, before={"public": not public}, after={"public": public},
                 actor=actor)
    return True


# --- the agency's committee settings (the administrator) --------------------------------------------------

MAX_RESPONSE_DAYS = 365


def committee_members(agency):
    """[(user, membership)] of the agency's committee members, by name (one query)."""
    return db.session.execute(
        sa.select(User, Membership).join(Membership, Membership.user_id == User.id)
        .where(Membership.agency_id == agency.id, Membership.role == "committee").order_by(User.name, User.email)
    ).all()


def set_settings(agency, response_days, chair_id, *, actor):
    """The answer period (1-365 days; recommendations already submitted keep their due date) and the chair
    (one committee member, or none). False when nothing changed."""
    errors = {}
    try:
        days = int(response_days)
    except (TypeError, ValueError):
        days = None
    if days is None or not 1 <= days <= MAX_RESPONSE_DAYS:
        errors["response_days"] = f"Enter a number of days between 1 and {MAX_RESPONSE_DAYS}."
    members = committee_members(agency)
    chair = None
    if chair_id:
        chair = next((m for u, m in members if str(u.id) == str(chair_id)), None)
        if chair is None:
            errors["chair_id"] = "Choose the chair among this agency's committee members."
    if errors:
        raise ValidationFailed(errors)
    old_chair = next((u.email for u, m in members if m.is_chair), None)
    before = {"committee_response_days": agency.committee_response_days, "chair": old_chair}
    for _user, membership in members:
        membership.is_chair = membership is chair
    agency.committee_response_days = days
    after = {"committee_response_days": days,
             "chair": next((u.email for u, m in members if m is chair), None)}
    if after == before:
        return False
    db.session.flush()
    audit.record("committee.settings", agency, before=before, after=after, actor=actor)
    return True
