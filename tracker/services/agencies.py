"""Create agencies, adopt catalog modules as requirements, derive due dates."""
import calendar
import re
from datetime import date, timedelta

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import (
    CADENCE_MONTHS,
    INSTRUMENT_KINDS,
    Agency,
    ComplianceScale,
    DeadlineChange,
    Instrument,
    Module,
    Recommendation,
    Requirement,
    Source,
)
from tracker.services import audit
from tracker.services.errors import ValidationFailed

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
US_STATES = frozenset(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY "
    "NC ND OH OK OR PA PR RI SC SD TN TX UT VT VA WA WV WI WY GU VI AS MP".split()
)
AGENCY_COLUMNS = ("name", "slug", "state", "public_enabled")
# The agency form also sets the terms of its primary instrument.
PRIMARY_TERMS = ("source_id", "effective_date", "scale_id", "sustainment_months")
AGENCY_FIELDS = AGENCY_COLUMNS + PRIMARY_TERMS


def add_months(start, months):
    """start + months, the day kept where the month has it; beyond the calendar's ends, its last or first day
    (a year-9999 date stored before dates were bounded must not make a page answer 500)."""
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    if year > date.max.year:
        return date.max
    if year < date.min.year:
        return date.min
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def derive_due_date(effective_date, offset):
    """Effective date + a relative deadline (`offset` is a requirement or recommendation with deadline_amount and
    deadline_unit); None when either is unknown."""
    if effective_date is None or offset is None or offset.deadline_amount is None:
        return None
    if offset.deadline_unit == "months":
        return add_months(effective_date, offset.deadline_amount)
    return effective_date + timedelta(days=offset.deadline_amount)


def agency_problems(values, agency=None):
    """Domain checks on agency values; returns {field: message} (empty when fine)."""
    try:
        _validate(values, agency)
    except ValidationFailed as exc:
        return exc.errors
    return {}


def _validate(values, agency=None):
    errors = {}
    name = (values.get("name") or "").strip()
    if not name:
        errors["name"] = "Enter the agency's name."
    slug = (values.get("slug") or "").strip().lower()
    if not SLUG_RE.match(slug):
        errors["slug"] = "Use 1-64 lowercase letters, digits and hyphens (e.g. metro-city-pd)."
    else:
        clash = db.session.execute(sa.select(Agency.id).where(Agency.slug == slug)).scalar_one_or_none()
        if clash is not None and (agency is None or clash != agency.id):
            errors["slug"] = f"The slug '{slug}' is already used by another agency."
    state = (values.get("state") or "").strip().upper()
    if state not in US_STATES:
        errors["state"] = "Enter a two-letter U.S. state or territory code (e.g. OH)."
    source_id = values.get("source_id")
    if source_id is not None and db.session.get(Source, source_id) is None:
        errors["source_id"] = "Choose a governing source from the list."
    scale_id = values.get("scale_id")
    if scale_id is None or db.session.get(ComplianceScale, scale_id) is None:
        errors["scale_id"] = "Choose a compliance scale from the list."
    effective = values.get("effective_date")
    if effective is not None and not isinstance(effective, date):
        errors["effective_date"] = "Enter the effective date as YYYY-MM-DD."
    months = values.get("sustainment_months")
    if months is not None and not (isinstance(months, int) and 0 < months <= 240):
        errors["sustainment_months"] = "Enter a number of months between 1 and 240, or leave it empty."
    if errors:
        raise ValidationFailed(errors)
    return {
        "name": name, "slug": slug, "state": state, "source_id": source_id, "effective_date": effective,
        "scale_id": scale_id, "sustainment_months": months,
        "public_enabled": bool(values.get("public_enabled", agency.public_enabled if agency else False)),
    }


def create_agency(values, *, actor=None):
    """A new agency and its primary instrument (the decree the form describes)."""
    clean = _validate(values)
    agency = Agency(**{k: clean[k] for k in AGENCY_COLUMNS})
    db.session.add(agency)
    db.session.flush()
    source = db.session.get(Source, clean["source_id"]) if clean["source_id"] else None
    instrument = Instrument(
        agency_id=agency.id, position=0, short_name=(source.short_title if source else "Decree")[:100],
        title=source.title if source else f"{agency.name} decree",
        kind=source.kind if source and source.kind in INSTRUMENT_KINDS else "consent_decree",
        court=(source.court or "") if source else "", **{k: clean[k] for k in PRIMARY_TERMS})
    db.session.add(instrument)
    db.session.flush()
    db.session.refresh(agency, ["instruments"])
    audit.record("agency.create", agency, after=audit.snapshot(agency, AGENCY_FIELDS), actor=actor)
    return agency


def update_agency(agency, values, *, actor=None):
    """Edit an agency and its primary instrument's terms. A moved effective date moves every derived due date."""
    clean = _validate(values, agency)
    before = audit.snapshot(agency, AGENCY_FIELDS)
    instrument = agency.primary_instrument
    moved = clean["effective_date"] != instrument.effective_date
    for name in AGENCY_COLUMNS:
        setattr(agency, name, clean[name])
    for name in PRIMARY_TERMS:
        setattr(instrument, name, clean[name])
    recomputed = 0
    if moved:
        recomputed = recompute_due_dates(instrument, actor=actor)
    db.session.flush()
    audit.record("agency.update", agency, before=before,
                 after={**audit.snapshot(agency, AGENCY_FIELDS), "due_dates_recomputed": recomputed}, actor=actor)
    return recomputed


def recompute_due_dates(instrument, *, actor=None):
    """Move every derived due date of the instrument's requirements with its effective date. Each move is a
    deadline change (shown on the requirement's timeline) with its own audit event; dates set by hand stay."""
    from tracker.services import occurrences

    requirements = db.session.execute(
        sa.select(Requirement).where(Requirement.instrument_id == instrument.id,
                                     Requirement.due_date_derived.is_(True))
    ).scalars().all()
    effective = instrument.effective_date
    reason = f"Effective date moved to {effective.isoformat() if effective else 'none'}"
    changed = 0
    opened = occurrences.open_by_requirement([r.id for r in requirements if r.recurring])
    for req in requirements:
        new = derive_due_date(effective, req)
        occurrence = opened.get(req.id)
        if occurrence is not None and occurrence.sequence > 1:
            continue  # a recurring duty under way: its next due date follows the rounds completed
        if new == req.due_date:
            continue
        old = req.due_date
        if req.recurring and new is not None:
            # Moves the first occurrence, or opens it when there was no date to open it at.
            occurrences.move_first(req, new, occurrence)
        elif req.recurring:
            occurrences.stop(req, occurrence)  # no effective date any more: nothing is due
        req.due_date = new
        db.session.add(DeadlineChange(requirement_id=req.id, old_date=old, new_date=new, reason=reason,
                                      actor_id=actor.id if actor is not None else None))
        db.session.flush()
        audit.record("requirement.due_date", req, before={"due_date": old}, after={"due_date": new, "reason": reason},
                     actor=actor)
        changed += 1
    return changed


def citation_text(recommendation):
    parts = []
    for c in recommendation.citations:
        parts.append(f"{c.source.short_title} {c.paragraphs}")
    return "; ".join(parts)[:300]


def _catalog_cadence(req, rec, instrument):
    """The catalog's cadence in the same model as imported recurring duties: first due at the typical deadline, or
    one interval after the effective date. True when the requirement recurs and has a first due date."""
    months = CADENCE_MONTHS.get(rec.cadence) if rec.cadence else None
    if months is None:
        return False
    req.cadence_months, req.cadence_text = months, (rec.cadence_note or rec.cadence)[:300]
    if req.deadline_amount is None:
        req.deadline_amount, req.deadline_unit = months, "months"
        req.due_date = derive_due_date(instrument.effective_date, req)
    return req.due_date is not None


def adopt(agency, module_keys=None, *, actor=None):
    """Create requirements for the agency from active recommendations of the given modules (all if None).

    Already adopted recommendations are left alone, so adopting twice adds nothing.
    """
    query = sa.select(Recommendation).join(Module).where(Recommendation.retired_at.is_(None)).options(
        sa.orm.selectinload(Recommendation.citations)
    )
    if module_keys is not None:
        unknown = set(module_keys) - set(db.session.execute(sa.select(Module.key)).scalars())
        if unknown:
            raise ValidationFailed({"modules": f"Unknown module(s): {', '.join(sorted(unknown))}."})
        query = query.where(Module.key.in_(module_keys))
    taken = set(db.session.execute(
        sa.select(Requirement.recommendation_id).where(Requirement.agency_id == agency.id)
    ).scalars())
    created = []
    instrument = agency.primary_instrument
    new_recurring = []
    for rec in db.session.execute(query.order_by(Recommendation.code)).scalars():
        if rec.id in taken:
            continue
        req = Requirement(
            agency_id=agency.id, instrument_id=instrument.id, recommendation_id=rec.id, module_id=rec.module_id,
            code=rec.code, title=rec.title, summary=rec.summary, citation_text=citation_text(rec),
            deadline_amount=rec.deadline_amount, deadline_unit=rec.deadline_unit,
            deadline_text=rec.typical_deadline or "",
            due_date=derive_due_date(instrument.effective_date, rec), due_date_derived=True,
        )
        if _catalog_cadence(req, rec, instrument):
            new_recurring.append(req)
        db.session.add(req)
        created.append(rec.code)
    db.session.flush()
    from tracker.services import occurrences

    for req in new_recurring:
        occurrences.start(req, req.due_date)
    db.session.flush()
    audit.record("agency.adopt", agency, actor=actor,
                 after={"modules": sorted(module_keys) if module_keys is not None else "all", "created": created})
    return created
