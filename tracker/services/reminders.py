"""Deadline reminders, computed once a day by `flask --app wsgi mail reminders` (or the mail worker).

A requirement still open (or a recurring duty's open occurrence) gets a reminder 30, 7 and 1 days
before its due date and one when the date has passed; an open document request 7 and 1 days before and
when overdue. A reminder missed on its day is sent on a later run while it still applies (a 30-day one
until 8 days are left; "passed" for 30 days). Each notification carries a dedupe key (requirement, due
date, threshold, recipient): running again, the same day or later, writes nothing twice; a moved due
date starts its own reminders.
"""
from collections import defaultdict
from datetime import timedelta

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import Agency, DocumentRequest, Membership, Requirement
from tracker.services import notifications as notes

# (threshold, fewest days left, most days left) -- "passed" covers the 30 days after the date.
REQUIREMENT_WINDOWS = (("30", 8, 30), ("7", 2, 7), ("1", 0, 1), ("passed", -30, -1))
REQUEST_WINDOWS = (("7", 2, 7), ("1", 0, 1), ("passed", -30, -1))


def threshold(days_left, windows):
    return next((name for name, low, high in windows if low <= days_left <= high), None)


def _when(days_left, due):
    if days_left < 0:
        return f"was due {due:%Y-%m-%d}"
    if days_left == 0:
        return f"is due today ({due:%Y-%m-%d})"
    if days_left == 1:
        return f"is due tomorrow ({due:%Y-%m-%d})"
    return f"is due in {days_left} days ({due:%Y-%m-%d})"


def _officers(agency_ids):
    result = defaultdict(set)
    if agency_ids:
        for agency_id, user_id in db.session.execute(sa.select(Membership.agency_id, Membership.user_id).where(
                Membership.agency_id.in_(list(agency_ids)), Membership.role == "officer")):
            result[agency_id].add(user_id)
    return result


def _send(category, key_prefix, recipients, agency, subject, lines, link):
    keys = {user_id: f"{key_prefix}:{user_id}" for user_id in recipients}
    done = notes.existing_keys(keys.values())
    todo = {u for u, key in keys.items() if key not in done}
    if not todo:
        return []
    return notes.notify(category, todo, agency=agency, subject=subject, lines=lines, link=link,
                        dedupe=keys.__getitem__)


def requirement_reminders(today):
    rows = db.session.execute(
        sa.select(Requirement, Agency).join(Agency, Agency.id == Requirement.agency_id).where(
            Requirement.due_date.between(today - timedelta(days=30), today + timedelta(days=30)),
            # is_open: a recurring duty's next occurrence binds whatever the status (its due date is the
            # open occurrence's), so an implemented duty still gets its reminders.
            Requirement.is_open, Requirement.terminated_at.is_(None))
        .order_by(Requirement.agency_id, Requirement.due_date, Requirement.id)).all()
    officers = _officers({agency.id for _r, agency in rows})
    following = notes.followers([r.id for r, _a in rows])
    written = []
    for req, agency in rows:
        days_left = (req.due_date - today).days
        name = threshold(days_left, REQUIREMENT_WINDOWS)
        if name is None:
            continue
        owners = {req.owner_id} if req.owner_id else officers[agency.id]
        verb = "passed" if name == "passed" else "approaching"
        written += _send("deadline", f"deadline:{req.id}:{req.due_date}:{name}", owners | following[req.id], agency,
                         f"{req.code}: deadline {verb}",
                         [f"{req.code}: {req.title} {_when(days_left, req.due_date)}.",
                          f"Status: {req.status_label}."],
                         notes.path_for("board.requirement", slug=agency.slug, req_id=req.id))
    return written


def request_reminders(today):
    rows = db.session.execute(
        sa.select(DocumentRequest, Agency).join(Agency, Agency.id == DocumentRequest.agency_id).where(
            DocumentRequest.state == "open",
            DocumentRequest.due_date.between(today - timedelta(days=30), today + timedelta(days=7)))
        .order_by(DocumentRequest.agency_id, DocumentRequest.due_date)).all()
    officers = _officers({agency.id for _r, agency in rows})
    written = []
    for item, agency in rows:
        days_left = (item.due_date - today).days
        name = threshold(days_left, REQUEST_WINDOWS)
        if name is None:
            continue
        state = "overdue" if name == "passed" else "due soon"
        written += _send("document_request", f"request:{item.id}:{item.due_date}:{name}", officers[agency.id],
                         agency, f"Request {item.number} {state}",
                         [f"Request {item.number}, “{item.title}”, {_when(days_left, item.due_date)}."],
                         notes.path_for("requests.show", slug=agency.slug, request_id=item.id))
    return written


def run(today):
    """All reminders due on `today`; returns the notifications written."""
    return requirement_reminders(today) + request_reminders(today)
