"""Create agencies, adopt catalog modules as requirements, derive due dates."""
import calendar
import re
from datetime import date, timedelta

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import Agency, ComplianceScale, DeadlineChange, Module, Recommendation, Requirement, Source
from tracker.services import audit
from tracker.services.errors import ValidationFailed

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
US_STATES = frozenset(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY "
    "NC ND OH OK OR PA PR RI SC SD TN TX UT VT VA WA WV WI WY GU VI AS MP".split()
)
AGENCY_FIELDS = ("name", "slug", "state", "source_id", "effective_date", "scale_id", "sustainment_months",
                 "public_enabled")


def add_months(start, months):
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def derive_due_date(effective_date, recommendation):
    """Effective date + the recommendation's typical deadline; None when either is unknown."""
    if effective_date is None or recommendation is None or recommendation.deadline_amount is None:
        return None
    if recommendation.deadline_unit == "months":
        return add_months(effective_date, recommendation.deadline_amount)
    return effective_date + timedelta(days=recommendation.deadline_amount)


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
    clean = _validate(values)
    agency = Agency(**clean)
    db.session.add(agency)
    db.session.flush()
    audit.record("agency.create", agency, after=audit.snapshot(agency, AGENCY_FIELDS), actor=actor)
    return agency


def update_agency(agency, values, *, actor=None):
    """Edit an agency. A moved effective date moves every derived due date with it."""
    clean = _validate(values, agency)
    before = audit.snapshot(agency, AGENCY_FIELDS)
    moved = clean["effective_date"] != agency.effective_date
    for name, value in clean.items():
        setattr(agency, name, value)
    recomputed = 0
    if moved:
        recomputed = recompute_due_dates(agency, actor=actor)
    db.session.flush()
    audit.record("agency.update", agency, before=before,
                 after={**audit.snapshot(agency, AGENCY_FIELDS), "due_dates_recomputed": recomputed}, actor=actor)
    return recomputed


def recompute_due_dates(agency, *, actor=None):
    """Move every derived due date with the effective date. Each move is a deadline change (shown on the
    requirement's timeline) with its own audit event; dates set by hand stay where they are."""
    requirements = db.session.execute(
        sa.select(Requirement).where(Requirement.agency_id == agency.id, Requirement.due_date_derived.is_(True))
        .options(sa.orm.joinedload(Requirement.recommendation))
    ).scalars().all()
    reason = f"Effective date moved to {agency.effective_date.isoformat() if agency.effective_date else 'none'}"
    changed = 0
    for req in requirements:
        new = derive_due_date(agency.effective_date, req.recommendation)
        if new == req.due_date:
            continue
        old, req.due_date = req.due_date, new
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
    for rec in db.session.execute(query.order_by(Recommendation.code)).scalars():
        if rec.id in taken:
            continue
        req = Requirement(
            agency_id=agency.id, recommendation_id=rec.id, module_id=rec.module_id, code=rec.code,
            title=rec.title, summary=rec.summary, citation_text=citation_text(rec),
            due_date=derive_due_date(agency.effective_date, rec), due_date_derived=True,
        )
        db.session.add(req)
        created.append(rec.code)
    db.session.flush()
    audit.record("agency.adopt", agency, actor=actor,
                 after={"modules": sorted(module_keys) if module_keys is not None else "all", "created": created})
    return created
