"""Recurring duties, occurrence by occurrence.

A recurring requirement (cadence_months set) has exactly one open occurrence; the requirement's due date is
that occurrence's due date, so the board, dashboard, calendar and exports show the next due date and overdue
applies to it. Completing the open occurrence keeps it (state, date, who, note, its evidence) and opens the
next one a cadence later; the requirement's due date moves with a deadline change on its timeline.
"""
from datetime import date

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import DeadlineChange, Evidence, Occurrence
from tracker.services import audit
from tracker.services.agencies import add_months
from tracker.services.deadlines import cadence_label
from tracker.services.errors import ValidationFailed

MAX_NOTE = 4000


def label_for(due, months):
    """'2026 annual', 'Sep 2026 semiannual', 'Mar 2026 quarterly' …: the round a due date closes."""
    noun = {12: "annual", 6: "semiannual", 3: "quarterly", 1: "monthly"}.get(months) or cadence_label(months)
    return f"{due.year} {noun}" if months and months >= 12 else f"{due.strftime('%b %Y')} {noun}"


def open_occurrence(requirement):
    return db.session.execute(
        sa.select(Occurrence).where(Occurrence.requirement_id == requirement.id, Occurrence.state == "open")
    ).scalar_one_or_none()


def open_ids(requirement_ids):
    """{requirement_id: open occurrence id} in one query."""
    if not requirement_ids:
        return {}
    return dict(db.session.execute(
        sa.select(Occurrence.requirement_id, Occurrence.id)
        .where(Occurrence.requirement_id.in_(requirement_ids), Occurrence.state == "open")).all())


def open_by_requirement(requirement_ids):
    """{requirement_id: open Occurrence} in one query."""
    if not requirement_ids:
        return {}
    return {o.requirement_id: o for o in db.session.execute(
        sa.select(Occurrence).where(Occurrence.requirement_id.in_(requirement_ids), Occurrence.state == "open")
    ).scalars()}


def history(requirement):
    """Every occurrence, newest first, with its evidence count: [(occurrence, evidence count)] (two queries)."""
    rows = db.session.execute(
        sa.select(Occurrence).where(Occurrence.requirement_id == requirement.id)
        .options(sa.orm.joinedload(Occurrence.completed_by)).order_by(Occurrence.sequence.desc())
    ).scalars().all()
    counts = dict(db.session.execute(
        sa.select(Evidence.occurrence_id, sa.func.count())
        .where(Evidence.requirement_id == requirement.id, Evidence.superseded.is_(False),
               Evidence.occurrence_id.is_not(None))
        .group_by(Evidence.occurrence_id)).all())
    return [(o, counts.get(o.id, 0)) for o in rows]


def start(requirement, first_due):
    """Open the first occurrence of a (new or newly) recurring requirement; its due date becomes the requirement's."""
    occurrence = Occurrence(requirement_id=requirement.id, sequence=1, due_date=first_due,
                            label=label_for(first_due, requirement.cadence_months), state="open")
    db.session.add(occurrence)
    requirement.due_date = first_due
    return occurrence


def move_first(requirement, first_due, occurrence=False):
    """A corrected start (re-import, effective date moved): only a first occurrence still open moves.
    `occurrence`: the open one when the caller has loaded it (None: there is none)."""
    if occurrence is False:
        occurrence = open_occurrence(requirement)
    if occurrence is None:
        return start(requirement, first_due)
    if occurrence.sequence == 1:
        occurrence.due_date = first_due
        occurrence.label = label_for(first_due, requirement.cadence_months)
    return occurrence


def reschedule(requirement, new_due):
    """The due date moved by hand (an extension): the open occurrence is due then; it keeps its name."""
    occurrence = open_occurrence(requirement)
    if occurrence is None:
        return start(requirement, new_due)
    occurrence.due_date = new_due
    return occurrence


def stop(requirement, occurrence=False):
    """No longer recurring: the open occurrence goes (its evidence stays on the requirement); history stays."""
    if occurrence is False:
        occurrence = open_occurrence(requirement)
    if occurrence is not None:
        db.session.execute(sa.update(Evidence).where(Evidence.occurrence_id == occurrence.id)
                           .values(occurrence_id=None))
        db.session.delete(occurrence)


def complete(requirement, occurrence_id, completed_on, note, *, actor):
    """Complete the open occurrence and open the next one a cadence later. Returns (completed, next)."""
    occurrence = db.session.get(Occurrence, occurrence_id) if occurrence_id else None
    if occurrence is None or occurrence.requirement_id != requirement.id:
        raise ValidationFailed({"occurrence": "That occurrence is not part of this requirement."})
    if occurrence.state != "open":
        raise ValidationFailed({"occurrence": f"{occurrence.label} was already completed on "
                                              f"{occurrence.completed_on.isoformat()}."})
    if not requirement.recurring:
        raise ValidationFailed({"occurrence": "This requirement is not a recurring duty."})
    if not isinstance(completed_on, date):
        raise ValidationFailed({"completed_on": "Enter the date it was completed, like 2026-03-31."})
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise ValidationFailed({"note": f"The note must be at most {MAX_NOTE} characters."})
    occurrence.state, occurrence.completed_on = "completed", completed_on
    occurrence.completed_by_id, occurrence.note = actor.id, note
    db.session.flush()  # the open-occurrence index allows the next one only once this one is closed
    next_due = add_months(occurrence.due_date, requirement.cadence_months)
    following = Occurrence(requirement_id=requirement.id, sequence=occurrence.sequence + 1, due_date=next_due,
                           label=label_for(next_due, requirement.cadence_months), state="open")
    db.session.add(following)
    old = requirement.due_date
    requirement.due_date = next_due
    reason = f"{occurrence.label} completed {completed_on.isoformat()}; next occurrence due {next_due.isoformat()}"
    db.session.add(DeadlineChange(requirement_id=requirement.id, old_date=old, new_date=next_due, reason=reason,
                                  actor_id=actor.id))
    db.session.flush()
    audit.record("occurrence.complete", occurrence, agency_id=requirement.agency_id, actor=actor,
                 before={"state": "open", "due_date": occurrence.due_date},
                 after={"state": "completed", "completed_on": completed_on, "note": note,
                        "requirement": requirement.code, "next_due_date": next_due, "next": following.label})
    return occurrence, following
