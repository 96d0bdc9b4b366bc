"""Edits to a requirement: status, owner, due date, notes, comments.

Every edit names the row_version it was made against. If someone saved first, `Conflict` carries
the current values so the view can show them beside the user's own input; nothing is overwritten.
"""
import sqlalchemy as sa
from sqlalchemy.orm.exc import StaleDataError

from tracker.extensions import db
from tracker.models import STATUSES, Comment, DeadlineChange, Membership, StatusChange, User, utcnow
from tracker.services import audit
from tracker.services.errors import ValidationFailed

MAX_NOTE = 4000


class Conflict(Exception):
    """The requirement changed since the form was rendered.

    The caller rolls back; `requirement` then reloads with the values saved first.
    """

    def __init__(self, requirement, now_version=None):
        self.requirement = requirement
        now = f" (now version {now_version})" if now_version is not None else ""
        # The identity, not `requirement.id`: after a failed flush, loading an attribute would fail.
        super().__init__(f"requirement {sa.inspect(requirement).identity[0]} changed{now}")


def _check_version(requirement, row_version):
    try:
        expected = int(row_version)
    except (TypeError, ValueError):
        raise ValidationFailed({"row_version": "The form is missing its version; reload the page."}) from None
    if expected != requirement.row_version:
        raise Conflict(requirement, requirement.row_version)


def _flush(requirement):
    try:
        db.session.flush()
    except StaleDataError:
        # Another transaction committed between our read and our write (ORM version check).
        raise Conflict(requirement) from None


def _text(value, field, label, required=False, max_len=MAX_NOTE):
    value = (value or "").strip()
    if required and not value:
        raise ValidationFailed({field: f"{label} is required."})
    if len(value) > max_len:
        raise ValidationFailed({field: f"{label} must be at most {max_len} characters."})
    return value


def set_status(requirement, status, note, row_version, *, actor):
    if status not in STATUSES:
        raise ValidationFailed({"status": f"Choose one of: {', '.join(STATUSES.values())}."})
    note = _text(note, "note", "A justification" if status == "not_applicable" else "The note",
                 required=status == "not_applicable")
    _check_version(requirement, row_version)
    if status == requirement.status and not note:
        return None
    old = requirement.status
    requirement.status = status
    # Always touch the row, even when only a note is added: the version must move so that forms
    # rendered before this save are stale.
    requirement.updated_at = utcnow()
    change = StatusChange(requirement_id=requirement.id, old_status=old, new_status=status, note=note,
                          actor_id=actor.id)
    db.session.add(change)
    _flush(requirement)
    audit.record("requirement.status", requirement, before={"status": old},
                 after={"status": status, "note": note}, actor=actor)
    return change


def agency_members(agency_id):
    """People who can own a requirement: the agency's officers and (read-only) others of its staff."""
    return db.session.execute(
        sa.select(User).join(Membership, Membership.user_id == User.id)
        .where(Membership.agency_id == agency_id, Membership.role == "officer", User.active.is_(True))
        .order_by(User.name, User.email)
    ).scalars().all()


def set_owner(requirement, owner_id, row_version, *, actor):
    owner = None
    if owner_id not in (None, "", 0, "0"):
        try:
            owner_id = int(owner_id)
        except (TypeError, ValueError):
            raise ValidationFailed({"owner_id": "Choose an owner from the list."}) from None
        owner = next((u for u in agency_members(requirement.agency_id) if u.id == owner_id), None)
        if owner is None:
            raise ValidationFailed({"owner_id": "The owner must be a compliance officer of this agency."})
    _check_version(requirement, row_version)
    old = requirement.owner.email if requirement.owner else None
    if (owner.id if owner else None) == requirement.owner_id:
        return False
    requirement.owner_id = owner.id if owner else None
    requirement.owner = owner
    _flush(requirement)
    audit.record("requirement.owner", requirement, before={"owner": old},
                 after={"owner": owner.email if owner else None}, actor=actor)
    return True


def set_due_date(requirement, new_date, reason, row_version, *, actor):
    """Set or move the due date. Moving a date already set needs a reason and is kept as history."""
    _check_version(requirement, row_version)  # first: a reason is judged against the date the user saw
    reason = _text(reason, "reason", "A reason", required=requirement.due_date is not None
                   and new_date != requirement.due_date, max_len=1000)
    if new_date == requirement.due_date:
        return None
    old = requirement.due_date
    requirement.due_date = new_date
    requirement.due_date_derived = False
    change = DeadlineChange(requirement_id=requirement.id, old_date=old, new_date=new_date,
                            reason=reason or "Due date set", actor_id=actor.id)
    db.session.add(change)
    _flush(requirement)
    audit.record("requirement.due_date", requirement, before={"due_date": old},
                 after={"due_date": new_date, "reason": reason}, actor=actor)
    return change


def set_notes(requirement, notes, row_version, *, actor):
    notes = _text(notes, "notes", "Notes", max_len=20000)
    _check_version(requirement, row_version)
    if notes == requirement.notes:
        return False
    old = requirement.notes
    requirement.notes = notes
    _flush(requirement)
    audit.record("requirement.notes", requirement, before={"notes": old}, after={"notes": notes}, actor=actor)
    return True


def add_comment(requirement, body, *, actor):
    body = _text(body, "body", "The comment", required=True)
    comment = Comment(requirement_id=requirement.id, author_id=actor.id, body=body)
    db.session.add(comment)
    db.session.flush()
    audit.record("comment.create", comment, agency_id=requirement.agency_id, after={"body": body}, actor=actor)
    return comment
