"""Document and data requests: the monitor asks, the agency answers with evidence or a note, asks for more
time; the monitor grants or refuses extensions, closes or withdraws requests.

States stored: open, answered, withdrawn, closed. "Overdue" is derived: an open request whose due date has
passed (today is judged at read time, so it never goes stale). Requests are between the monitor and the
agency: committee members do not see them (VIEW_ROLES).
"""
import functools
from dataclasses import dataclass, field
from datetime import date, timedelta

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import (
    Agency,
    DocumentRequest,
    DocumentRequestAnswer,
    DocumentRequestExtension,
    Evidence,
    MonitoringPeriod,
    Requirement,
    User,
    utcnow,
)
from tracker.models.document_requests import document_request_requirement
from tracker.services import audit, notifications
from tracker.services.errors import ValidationFailed

# Who sees requests at all (admins too); who asks, closes and decides; who answers.
VIEW_ROLES = {"officer", "monitor"}
MANAGE_ROLES = {"monitor"}
ANSWER_ROLES = {"officer"}

STATE_LABELS = {"open": "Open", "overdue": "Overdue", "answered": "Answered", "withdrawn": "Withdrawn",
                "closed": "Closed"}
STATE_FILTERS = {"outstanding": "Open or overdue", **STATE_LABELS}
DUE_FILTERS = {"past": "Due date passed", "7": "Due in the next 7 days", "30": "Due in the next 30 days"}
MAX_TITLE, MAX_TEXT, MAX_REASON = 300, 20000, 2000


def today():
    return utcnow().date()


def effective_state(request, on=None):
    """The state users see: an open request past its due date is overdue."""
    if request.state == "open" and request.due_date < (on or today()):
        return "overdue"
    return request.state


def _text(errors, values, name, label, *, required=False, limit=MAX_TEXT):
    text = (values.get(name) or "").strip()
    if required and not text:
        errors[name] = f"{label} is required."
    elif len(text) > limit:
        errors[name] = f"{label} must be at most {limit:,} characters."
    return text


def _requirements(agency, raw_ids, errors):
    ids, unknown = set(), []
    for raw in raw_ids or []:
        try:
            ids.add(int(raw))
        except (TypeError, ValueError):
            unknown.append(str(raw)[:40])
    found = db.session.execute(sa.select(Requirement).where(
        Requirement.agency_id == agency.id, Requirement.id.in_(ids))).scalars().all() if ids else []
    unknown += [str(i) for i in sorted(ids - {r.id for r in found})]
    if unknown:
        errors["requirement_ids"] = "Not requirements of this agency: " + ", ".join(unknown) + "."
    elif not found:
        errors["requirement_ids"] = "Choose at least one requirement the request concerns."
    return found


def _period(agency, raw, errors):
    if raw in (None, "", "0"):
        return None
    try:
        period = db.session.get(MonitoringPeriod, int(raw))
    except (TypeError, ValueError):
        period = None
    if period is None or period.agency_id != agency.id:
        errors["period_id"] = "Choose one of this agency's monitoring periods."
        return None
    if period.state == "filed":
        errors["period_id"] = f"{period.name} is filed; choose a period still open."
    return period


def create_request(agency, values, *, actor, allow_past_due=False):
    """values: title, details, due_date (a date), requirement_ids (list), period_id (optional).
    allow_past_due: record a request made earlier (on paper, or the demo's overdue one)."""
    errors = {}
    title = _text(errors, values, "title", "What is asked", required=True, limit=MAX_TITLE)
    details = _text(errors, values, "details", "The details")
    due = values.get("due_date")
    if not isinstance(due, date):
        errors["due_date"] = "Enter the due date as YYYY-MM-DD."
    elif due < today() and not allow_past_due:
        errors["due_date"] = "The due date must be today or later."
    requirements = _requirements(agency, values.get("requirement_ids"), errors)
    period = _period(agency, values.get("period_id"), errors)
    if errors:
        raise ValidationFailed(errors)
    # Numbers are per agency ("Request 14"): one writer per agency at a time picks the next one.
    db.session.execute(sa.select(Agency.id).where(Agency.id == agency.id).with_for_update())
    number = (db.session.execute(sa.select(sa.func.max(DocumentRequest.number))
                                 .where(DocumentRequest.agency_id == agency.id)).scalar() or 0) + 1
    request = DocumentRequest(agency_id=agency.id, period_id=period.id if period else None, number=number,
                              title=title, details=details, due_date=due, original_due_date=due, state="open",
                              created_by_id=actor.id, requirements=requirements)
    db.session.add(request)
    db.session.flush()
    audit.record("request.create", request, actor=actor,
                 after={"number": number, "title": title, "due_date": due, "period": period.name if period else None,
                        "requirements": [r.code for r in requirements]})
    notifications.request_opened(request, actor=actor)
    return request


def _set_state(request, from_states, to_state, **values):
    """Change the state only if it is still one of from_states (of two users acting at once, one wins)."""
    changed = db.session.execute(
        sa.update(DocumentRequest).where(DocumentRequest.id == request.id, DocumentRequest.state.in_(from_states))
        .values(state=to_state, **values).execution_options(synchronize_session=False)
    ).rowcount
    if changed != 1:
        raise ValidationFailed({"state": "Someone changed this request a moment ago; reload to see it."})
    request.state = to_state
    for name, value in values.items():
        setattr(request, name, value)


def answerable_evidence(request):
    """Current evidence of the request's requirements, for answering with an item already uploaded."""
    ids = [r.id for r in request.requirements]
    if not ids:
        return []
    return db.session.execute(
        sa.select(Evidence).where(Evidence.requirement_id.in_(ids), Evidence.superseded.is_(False))
        .order_by(Evidence.created_at.desc(), Evidence.id.desc())
    ).scalars().all()


def check_answer(request, values):
    """Errors an answer would be refused for, before a file is stored: {field: message}."""
    errors = {}
    if request.state not in ("open", "answered"):
        errors["state"] = f"Request {request.number} is {request.state}; it takes no more answers."
    _text(errors, values, "note", "The note")
    return errors


def answer(request, *, actor, note="", evidence=None):
    """Record what the agency produced: evidence of one of the request's requirements, a note, or both."""
    errors = check_answer(request, {"note": note})
    note = (note or "").strip()
    if evidence is None and not note:
        errors["note"] = "Attach evidence or write a note."
    if evidence is not None and evidence.requirement_id not in {r.id for r in request.requirements}:
        errors["evidence_id"] = "The evidence must belong to one of the requirements the request concerns."
    if errors:
        raise ValidationFailed(errors)
    first = request.state == "open"
    if first:
        _set_state(request, ("open",), "answered", answered_at=utcnow())
    item = DocumentRequestAnswer(request_id=request.id, evidence_id=evidence.id if evidence else None, note=note,
                                 author_id=actor.id)
    db.session.add(item)
    db.session.flush()
    audit.record("request.answer", item, agency_id=request.agency_id, actor=actor,
                 before={"state": "open"} if first else None,
                 after={"request": request.number, "state": "answered", "note": note,
                        "evidence": evidence.id if evidence else None,
                        "late": request.due_date < today()})
    return item


def pending_extension(request):
    return db.session.execute(sa.select(DocumentRequestExtension).where(
        DocumentRequestExtension.request_id == request.id, DocumentRequestExtension.state == "pending")
    ).scalar_one_or_none()


def ask_extension(request, requested_due, reason, *, actor):
    errors = {}
    reason = _text(errors, {"reason": reason}, "reason", "A reason", required=True, limit=MAX_REASON)
    if request.state != "open":
        errors["state"] = f"Request {request.number} is {request.state}; only an open request can be extended."
    if not isinstance(requested_due, date):
        errors["requested_due"] = "Enter the date you ask for as YYYY-MM-DD."
    elif requested_due <= request.due_date:
        errors["requested_due"] = f"Ask for a date after the current due date ({request.due_date.isoformat()})."
    if pending_extension(request) is not None:
        errors["state"] = "An extension is already waiting for the monitor's decision."
    if errors:
        raise ValidationFailed(errors)
    ext = DocumentRequestExtension(request_id=request.id, requested_due=requested_due, reason=reason,
                                   requested_by_id=actor.id)
    db.session.add(ext)
    db.session.flush()
    audit.record("request.extension_ask", ext, agency_id=request.agency_id, actor=actor,
                 after={"request": request.number, "due_date": request.due_date, "requested_due": requested_due,
                        "reason": reason})
    return ext


def decide_extension(request, extension_id, decision, note, *, actor):
    """Grant (the due date moves to the date asked for) or refuse (a note says why) the pending extension."""
    errors = {}
    note = _text(errors, {"decision_note": note}, "decision_note", "A reason for refusing",
                 required=decision == "refuse", limit=MAX_REASON)
    ext = pending_extension(request)
    if ext is None or str(ext.id) != str(extension_id):
        errors["decision"] = "That extension request was already decided; reload to see it."
    if decision not in ("grant", "refuse"):
        errors["decision"] = "Choose grant or refuse."
    if errors:
        raise ValidationFailed(errors)
    changed = db.session.execute(
        sa.update(DocumentRequestExtension).where(DocumentRequestExtension.id == ext.id,
                                                  DocumentRequestExtension.state == "pending")
        .values(state="granted" if decision == "grant" else "refused", decided_by_id=actor.id, decided_at=utcnow(),
                decision_note=note).execution_options(synchronize_session=False)).rowcount
    if changed != 1:
        raise ValidationFailed({"decision": "That extension request was already decided; reload to see it."})
    db.session.refresh(ext)
    old_due = request.due_date
    if decision == "grant":
        request.due_date = ext.requested_due
    db.session.flush()
    audit.record(f"request.extension_{decision}", ext, agency_id=request.agency_id, actor=actor,
                 before={"due_date": old_due}, after={"request": request.number, "due_date": request.due_date,
                                                      "note": note})
    return ext


def finish(request, action, note, *, actor):
    """The monitor closes (satisfied, or no longer pursued) or withdraws a request."""
    errors = {}
    note = _text(errors, {"note": note}, "note", "The note", limit=MAX_REASON)
    to_state = {"close": "closed", "withdraw": "withdrawn"}.get(action)
    if to_state is None:
        errors["action"] = "Choose close or withdraw."
    elif request.state not in ("open", "answered"):
        errors["state"] = f"Request {request.number} is already {request.state}."
    if errors:
        raise ValidationFailed(errors)
    before = effective_state(request)
    _set_state(request, ("open", "answered"), to_state, closed_at=utcnow(), closed_by_id=actor.id, close_note=note)
    db.session.flush()
    audit.record(f"request.{action}", request, actor=actor, before={"state": before},
                 after={"state": to_state, "note": note})
    return request


# --- reads --------------------------------------------------------------------------------------------

@dataclass
class Filters:
    state: str = ""
    due: str = ""
    requirement: str = ""
    agency: str = ""
    ignored: list = field(default_factory=list)

    @classmethod
    def from_args(cls, args, requirement_ids=(), agency_slugs=()):
        f = cls()
        for name, allowed in (("state", STATE_FILTERS), ("due", DUE_FILTERS),
                              ("requirement", {str(i) for i in requirement_ids}), ("agency", set(agency_slugs))):
            value = (args.get(name) or "").strip()[:80]
            if value and value not in allowed:
                f.ignored.append(name)
                value = ""
            setattr(f, name, value)
        return f

    def as_args(self):
        return {k: v for k, v in (("state", self.state), ("due", self.due), ("requirement", self.requirement),
                                  ("agency", self.agency)) if v}


def _state_clause(state, on):
    if state == "outstanding":
        return DocumentRequest.state == "open"
    if state == "overdue":
        return sa.and_(DocumentRequest.state == "open", DocumentRequest.due_date < on)
    if state == "open":
        return sa.and_(DocumentRequest.state == "open", DocumentRequest.due_date >= on)
    return DocumentRequest.state == state


def _due_clause(due, on):
    if due == "past":
        return DocumentRequest.due_date < on
    return sa.and_(DocumentRequest.due_date >= on, DocumentRequest.due_date <= on + timedelta(days=int(due)))


@dataclass
class Row:
    request: DocumentRequest
    agency: Agency
    state: str
    answers: int
    pending: DocumentRequestExtension | None


def list_requests(agency_ids, filters, limit=500):
    """Matching requests of the given agencies, outstanding first and soonest due first: four queries
    whatever the number of rows (requests with agencies, their requirements, answer counts, pending
    extensions)."""
    on = today()
    if not agency_ids:
        return []
    order = sa.case((DocumentRequest.state == "open", 0), (DocumentRequest.state == "answered", 1), else_=2)
    query = (sa.select(DocumentRequest, Agency).join(Agency, Agency.id == DocumentRequest.agency_id)
             .where(DocumentRequest.agency_id.in_(agency_ids))
             .options(sa.orm.selectinload(DocumentRequest.requirements))
             .order_by(order, DocumentRequest.due_date, DocumentRequest.id).limit(limit))
    if filters.state:
        query = query.where(_state_clause(filters.state, on))
    if filters.due:
        query = query.where(_due_clause(filters.due, on))
    if filters.agency:
        query = query.where(Agency.slug == filters.agency)
    if filters.requirement:
        query = query.where(DocumentRequest.id.in_(
            sa.select(document_request_requirement.c.request_id)
            .where(document_request_requirement.c.requirement_id == int(filters.requirement))))
    rows = db.session.execute(query).all()
    ids = [r.id for r, _a in rows]
    answers, pending = _answer_counts(ids), _pending_by_request(ids)
    return [Row(r, a, effective_state(r, on), answers.get(r.id, 0), pending.get(r.id)) for r, a in rows]


def _answer_counts(ids):
    if not ids:
        return {}
    return dict(db.session.execute(
        sa.select(DocumentRequestAnswer.request_id, sa.func.count())
        .where(DocumentRequestAnswer.request_id.in_(ids)).group_by(DocumentRequestAnswer.request_id)).all())


def _pending_by_request(ids):
    if not ids:
        return {}
    return {e.request_id: e for e in db.session.execute(sa.select(DocumentRequestExtension).where(
        DocumentRequestExtension.request_id.in_(ids), DocumentRequestExtension.state == "pending")).scalars()}


def request_detail(request):
    """Answers (with evidence and authors) and extensions of one request, oldest first."""
    answers = db.session.execute(
        sa.select(DocumentRequestAnswer).where(DocumentRequestAnswer.request_id == request.id)
        .options(sa.orm.joinedload(DocumentRequestAnswer.evidence), sa.orm.joinedload(DocumentRequestAnswer.author))
        .order_by(DocumentRequestAnswer.created_at, DocumentRequestAnswer.id)).scalars().all()
    extensions = db.session.execute(
        sa.select(DocumentRequestExtension).where(DocumentRequestExtension.request_id == request.id)
        .options(sa.orm.joinedload(DocumentRequestExtension.requested_by))
        .order_by(DocumentRequestExtension.created_at, DocumentRequestExtension.id)).scalars().all()
    people = _people({e.decided_by_id for e in extensions} | {request.closed_by_id})
    return {"answers": answers, "extensions": extensions, "people": people,
            "pending": next((e for e in extensions if e.state == "pending"), None),
            "state": effective_state(request)}


def _people(ids):
    ids = {i for i in ids if i}
    if not ids:
        return {}
    return {u.id: u for u in db.session.execute(sa.select(User).where(User.id.in_(ids))).scalars()}


def viewer_agency_ids(user, memberships):
    """Agencies whose requests the user sees: where they are an officer or monitor; every agency for an admin."""
    if user.is_admin:
        return list(db.session.execute(sa.select(Agency.id)).scalars())
    return sorted({m.agency_id for m in memberships if m.role in VIEW_ROLES})


def nav_counts(user, memberships):
    """{'requests': n, 'overdue': n} for the navigation, in one aggregate query: for an officer the
    agency's open requests (overdue among them); for a monitor (or admin) requests waiting on them,
    answered ones to close and open ones with an extension to decide."""
    officer_ids = [m.agency_id for m in memberships if m.role == "officer"]
    monitor_ids = [m.agency_id for m in memberships if m.role == "monitor"]
    if not (officer_ids or monitor_ids or user.is_admin):
        return {"requests": 0, "overdue": 0}
    statement = _nav_counts_statement(bool(user.is_admin))
    total, late = db.session.execute(statement, {"officer_ids": officer_ids, "monitor_ids": monitor_ids,
                                                 "on": today()}).one()
    return {"requests": int(total), "overdue": int(late)}


@functools.cache
def _nav_counts_statement(for_admin):
    """Built once per shape and run with parameters: the navigation asks on every page it renders."""
    officer_ids, monitor_ids = (sa.bindparam(name, expanding=True) for name in ("officer_ids", "monitor_ids"))
    for_monitor = DocumentRequest.agency_id.in_(monitor_ids) if not for_admin else sa.true()
    open_ = sa.and_(DocumentRequest.agency_id.in_(officer_ids), DocumentRequest.state == "open")
    extension_waiting = sa.exists().where(DocumentRequestExtension.request_id == DocumentRequest.id,
                                          DocumentRequestExtension.state == "pending")
    waiting = sa.and_(for_monitor, sa.or_(DocumentRequest.state == "answered",
                                          sa.and_(DocumentRequest.state == "open", extension_waiting)))
    count = sa.func.coalesce(sa.func.sum(sa.case((sa.or_(open_, waiting), 1), else_=0)), 0)
    overdue = sa.func.coalesce(sa.func.sum(sa.case(
        (sa.and_(open_, DocumentRequest.due_date < sa.bindparam("on")), 1), else_=0)), 0)
    query = sa.select(count, overdue).where(DocumentRequest.state.in_(("open", "answered")))
    if not for_admin:
        query = query.where(sa.or_(DocumentRequest.agency_id.in_(officer_ids),
                                   DocumentRequest.agency_id.in_(monitor_ids)))
    return query


def agency_summary(agency, limit=5):
    """The dashboard panel: counts by state and the outstanding requests due soonest (two queries; one when none
    is open)."""
    on = today()
    counts = dict.fromkeys(STATE_LABELS, 0)
    rows = db.session.execute(_summary_statement(), {"agency": agency.id, "on": on}).all()
    for state, past, n in rows:
        if state == "open":
            counts["overdue"] += int(past or 0)
            n -= int(past or 0)
        counts[state] += n
    soonest = [] if not (counts["open"] or counts["overdue"]) else db.session.execute(
        sa.select(DocumentRequest).where(DocumentRequest.agency_id == agency.id, DocumentRequest.state == "open")
        .order_by(DocumentRequest.due_date, DocumentRequest.id).limit(limit)).scalars().all()
    return {"counts": counts, "soonest": [(r, effective_state(r, on)) for r in soonest]}


@functools.cache
def _summary_statement():
    """The dashboard panel's counts, built once and run with parameters."""
    past_due = sa.func.sum(sa.case((DocumentRequest.due_date < sa.bindparam("on"), 1), else_=0))
    return (sa.select(DocumentRequest.state, past_due, sa.func.count())
            .where(DocumentRequest.agency_id == sa.bindparam("agency")).group_by(DocumentRequest.state))


def timeline(requirement):
    """Entries for the requirement page's history: requests concerning it, their answers, extensions and
    closing (four queries)."""
    requests = db.session.execute(
        sa.select(DocumentRequest).join(document_request_requirement,
                                        document_request_requirement.c.request_id == DocumentRequest.id)
        .where(document_request_requirement.c.requirement_id == requirement.id)
        .options(sa.orm.joinedload(DocumentRequest.created_by))).scalars().all()
    by_id = {r.id: r for r in requests}
    if not by_id:
        return []
    answers = db.session.execute(
        sa.select(DocumentRequestAnswer).where(DocumentRequestAnswer.request_id.in_(by_id))
        .options(sa.orm.joinedload(DocumentRequestAnswer.author), sa.orm.joinedload(DocumentRequestAnswer.evidence))
    ).scalars().all()
    extensions = db.session.execute(
        sa.select(DocumentRequestExtension).where(DocumentRequestExtension.request_id.in_(by_id))
        .options(sa.orm.joinedload(DocumentRequestExtension.requested_by))).scalars().all()
    people = _people({e.decided_by_id for e in extensions} | {r.closed_by_id for r in requests})
    entries = [("request", r.created_at, r.created_by, r) for r in requests]
    entries += [("request_answer", a.created_at, a.author, (a, by_id[a.request_id])) for a in answers]
    for e in extensions:
        entries.append(("request_extension", e.created_at, e.requested_by, (e, by_id[e.request_id])))
        if e.decided_at:
            entries.append(("request_decision", e.decided_at, people.get(e.decided_by_id), (e, by_id[e.request_id])))
    entries += [("request_closed", r.closed_at, people.get(r.closed_by_id), r) for r in requests if r.closed_at]
    return entries


def is_late(request, on=None):
    """Produced after its (possibly extended) due date, or not produced and the due date has passed
    (by the day it was closed, for a closed one)."""
    if request.state == "withdrawn":
        return False
    if request.answered_at is not None:
        return request.answered_at.date() > request.due_date
    end = request.closed_at.date() if request.closed_at else (on or today())
    return end > request.due_date


def period_summary(period):
    """The period report's figures: items requested (not withdrawn), produced (answered), late; and the list."""
    on = today()
    requests = db.session.execute(
        sa.select(DocumentRequest).where(DocumentRequest.period_id == period.id)
        .options(sa.orm.selectinload(DocumentRequest.requirements)).order_by(DocumentRequest.number)
    ).scalars().all()
    counted = [r for r in requests if r.state != "withdrawn"]
    return {"requests": [(r, effective_state(r, on), is_late(r, on)) for r in requests],
            "requested": len(counted), "produced": sum(1 for r in counted if r.answered_at is not None),
            "late": sum(1 for r in counted if is_late(r, on))}


EXPORT_COLUMNS = ("Request", "What is asked", "Requirements", "State", "Due date", "First asked due date",
                  "Answered", "Answers", "Late", "Closed", "Closing note")


def export_rows(agency):
    """One list per request of the agency, for the matrix workbook's sheet and the CSV download."""
    on = today()
    for row in list_requests([agency.id], Filters(), limit=None):
        r = row.request
        yield [r.number, r.title, ", ".join(q.code for q in r.requirements), STATE_LABELS[row.state],
               r.due_date.isoformat(), r.original_due_date.isoformat(),
               r.answered_at.date().isoformat() if r.answered_at else "", row.answers,
               "yes" if is_late(r, on) else "no", r.closed_at.date().isoformat() if r.closed_at else "",
               r.close_note]
