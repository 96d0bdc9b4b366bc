"""Edits to a requirement: status, owner, due date, notes, comments.

Every edit names the row_version it was made against. If someone saved first, `Conflict` carries
the current values so the view can show them beside the user's own input; nothing is overwritten.
"""
import functools

import sqlalchemy as sa
from sqlalchemy.orm.exc import StaleDataError

from tracker.extensions import db
from tracker.models import (
    STATUSES,
    AuditEvent,
    Comment,
    DeadlineChange,
    Membership,
    Requirement,
    StatusChange,
    User,
    utcnow,
)
from tracker.services import audit, notifications
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
    if status != old:
        notifications.status_changed(requirement, old, actor=actor)
    return change


def agency_members(agency_id):
    """People who can own a requirement: the agency's officers and (read-only) others of its staff."""
    return db.session.execute(_members_statement(), {"agency": agency_id}).scalars().all()


@functools.cache
def _members_statement():
    """The board asks on every render (its owner filter and edit rows): built once, run with parameters."""
    return (sa.select(User).join(Membership, Membership.user_id == User.id)
            .where(Membership.agency_id == sa.bindparam("agency"), Membership.role == "officer",
                   User.active.is_(True))
            .order_by(User.name, User.email))


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
    notifications.owner_assigned(requirement, owner, actor=actor)
    return True


def set_due_date(requirement, new_date, reason, row_version, *, actor):
    """Set or move the due date. Moving a date already set needs a reason and is kept as history."""
    _check_version(requirement, row_version)  # first: a reason is judged against the date the user saw
    reason = _text(reason, "reason", "A reason", required=requirement.due_date is not None
                   and new_date != requirement.due_date, max_len=1000)
    if new_date == requirement.due_date:
        return None
    if requirement.recurring:  # a recurring duty: the open occurrence moves with it (issue 12)
        from tracker.services import occurrences

        if new_date is None:
            raise ValidationFailed({"due_date": "A recurring duty always has a next due date; enter one."})
        occurrences.reschedule(requirement, new_date)
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
    notifications.comment_added(comment, requirement, actor=actor)
    return comment


def _owner_or_error(requirement_agency_id, owner_id, errors):
    """The chosen owner (None for nobody), or an error in `errors`."""
    if owner_id in (None, "", 0, "0"):
        return None
    try:
        owner_id = int(owner_id)
    except (TypeError, ValueError):
        errors["owner_id"] = "Choose an owner from the list."
        return None
    owner = next((u for u in agency_members(requirement_agency_id) if u.id == owner_id), None)
    if owner is None:
        errors["owner_id"] = "The owner must be a compliance officer of this agency."
    return owner


def save_row(requirement, *, status, note, owner_id, due_date, reason, row_version, actor):
    """The board row's one Save: status (with a note), owner and due date (with a reason when it moves).
    Every field is checked before anything changes; each change keeps its own history and audit event.
    Returns the names of the fields that changed."""
    errors = {}
    if status not in STATUSES:
        errors["status"] = f"Choose one of: {', '.join(STATUSES.values())}."
    note = (note or "").strip()
    if status == "not_applicable" and status != requirement.status and not note:
        errors["note"] = "A justification is required for Not applicable."
    elif len(note) > MAX_NOTE:
        errors["note"] = f"The note must be at most {MAX_NOTE} characters."
    owner = _owner_or_error(requirement.agency_id, owner_id, errors)
    reason = (reason or "").strip()
    if due_date != requirement.due_date and requirement.due_date is not None and not reason:
        errors["reason"] = "A reason is required to move a due date."
    elif len(reason) > 1000:
        errors["reason"] = "The reason must be at most 1000 characters."
    if errors:
        raise ValidationFailed(errors)
    _check_version(requirement, row_version)
    changed = []
    if status != requirement.status or note:
        set_status(requirement, status, note, requirement.row_version, actor=actor)
        changed.append("status")
    if (owner.id if owner else None) != requirement.owner_id:
        set_owner(requirement, owner.id if owner else 0, requirement.row_version, actor=actor)
        changed.append("owner")
    if due_date != requirement.due_date:
        set_due_date(requirement, due_date, reason, requirement.row_version, actor=actor)
        changed.append("due date")
    return changed


BULK_ACTIONS = {"owner": "owner", "status": "status", "due": "due date"}


def _bulk_value(agency_id, action, value, text, targets, errors):
    """The checked value of a bulk change, or errors naming the field."""
    if action == "owner":
        owner = _owner_or_error(agency_id, value, errors)
        return owner.id if owner else 0
    if action == "status":
        if value not in STATUSES:
            errors["status"] = f"Choose one of: {', '.join(STATUSES.values())}."
        elif value == "not_applicable" and not text:
            errors["note"] = "A justification is required for Not applicable."
        return value
    moving = [r for r in targets if r.due_date is not None and r.due_date != value]
    if moving and not text:
        errors["reason"] = (f"A reason is required: {len(moving)} of the selected requirements already "
                            f"have a due date.")
    return value


def bulk_update(agency_id, versions, action, value, text, *, actor, changed_since=None):
    """Set one field for many requirements of one agency in one transaction.

    `versions`: {requirement_id: row_version the user saw, or None when it was selected through the filter
    (then any audited change after the `changed_since` audit event id counts as a change)}. Requirements
    changed meanwhile are left unchanged and returned as conflicts; each one applied gets its own history
    and audit event. Returns (applied, conflicts) as lists of requirements."""
    errors = {}
    if action not in BULK_ACTIONS:
        raise ValidationFailed({"action": "Choose what to change: owner, status or due date."})
    if not versions:
        raise ValidationFailed({"ids": "Select at least one requirement."})
    text = (text or "").strip()
    if len(text) > 1000:
        errors["reason" if action == "due" else "note"] = "At most 1000 characters."
    targets = db.session.execute(
        sa.select(Requirement).where(Requirement.agency_id == agency_id, Requirement.id.in_(list(versions)))
        .options(sa.orm.lazyload(Requirement.module)).order_by(Requirement.sort_key, Requirement.id)
        .with_for_update(of=Requirement)
    ).scalars().all()
    value = _bulk_value(agency_id, action, value, text, targets, errors)
    if errors:
        raise ValidationFailed(errors)
    touched = set()
    if any(v is None for v in versions.values()):
        touched = {int(i) for i in db.session.execute(
            sa.select(AuditEvent.object_id).where(AuditEvent.id > (changed_since or 0),
                                                  AuditEvent.object_type == "requirement",
                                                  AuditEvent.agency_id == agency_id)
        ).scalars() if i.isdigit()}
    applied, conflicts = [], []
    with notifications.batched():  # one e-mail per person for the whole change, not one per requirement
        for req in targets:
            seen = versions[req.id]
            if (seen is not None and seen != req.row_version) or (seen is None and req.id in touched):
                conflicts.append(req)
                continue
            if action == "owner":
                done = set_owner(req, value, req.row_version, actor=actor)
            elif action == "status":
                done = set_status(req, value, text, req.row_version, actor=actor)
            else:
                done = set_due_date(req, value, text, req.row_version, actor=actor)
            if done:
                applied.append(req)
    return applied, conflicts
