"""The structure of an agency's decree: instruments, sections, responsible entities, and the crosswalk from its
own paragraphs to the catalog. Every change is audited; nothing here commits."""
import functools
from datetime import date

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import (
    INSTRUMENT_KINDS,
    ComplianceScale,
    DecreeSection,
    Instrument,
    Recommendation,
    Requirement,
    RequirementLink,
    ResponsibleEntity,
)
from tracker.services import audit
from tracker.services.errors import ValidationFailed
from tracker.services.paragraphs import sort_key

INSTRUMENT_FIELDS = ("short_name", "title", "kind", "court", "case_number", "approved_date", "effective_date",
                     "scale_id", "sustainment_months")


def instruments(agency):
    return db.session.execute(sa.select(Instrument).where(Instrument.agency_id == agency.id)
                              .order_by(Instrument.position, Instrument.id)).scalars().all()


def sections(agency):
    return db.session.execute(_statement("sections"), {"agency": agency.id}).scalars().all()


def entities(agency):
    return db.session.execute(_statement("entities"), {"agency": agency.id}).scalars().all()


@functools.cache
def _statement(name):
    """The board and the dashboard read these on every render: built once, run with parameters."""
    if name == "sections":
        return (sa.select(DecreeSection).where(DecreeSection.agency_id == sa.bindparam("agency"))
                .order_by(DecreeSection.sort_key, DecreeSection.id))
    return (sa.select(ResponsibleEntity).where(ResponsibleEntity.agency_id == sa.bindparam("agency"))
            .order_by(ResponsibleEntity.name))


def usage(agency, column):
    """{section/entity/instrument id: number of requirements} for one of the requirement's columns."""
    return dict(db.session.execute(sa.select(column, sa.func.count()).where(Requirement.agency_id == agency.id,
                                                                            column.is_not(None)).group_by(column)).all())


def _clean_instrument(agency, values, instrument=None):
    errors, clean = {}, {}
    clean["short_name"] = " ".join((values.get("short_name") or "").split())[:100]
    if not clean["short_name"]:
        errors["short_name"] = "Enter a short name, e.g. 'Consent decree' or 'MOA 2023'."
    else:
        clash = db.session.execute(sa.select(Instrument.id).where(
            Instrument.agency_id == agency.id, sa.func.lower(Instrument.short_name) == clean["short_name"].lower())
        ).scalar_one_or_none()
        if clash is not None and (instrument is None or clash != instrument.id):
            errors["short_name"] = f"The agency already has an instrument called '{clean['short_name']}'."
    clean["title"] = (values.get("title") or "").strip()[:500]
    clean["kind"] = values.get("kind") or "consent_decree"
    if clean["kind"] not in INSTRUMENT_KINDS:
        errors["kind"] = f"Choose one of: {', '.join(INSTRUMENT_KINDS.values())}."
    clean["court"] = (values.get("court") or "").strip()[:300]
    clean["case_number"] = (values.get("case_number") or "").strip()[:100]
    for name in ("approved_date", "effective_date"):
        value = values.get(name)
        if value is not None and not isinstance(value, date):
            errors[name] = "Enter the date as YYYY-MM-DD."
        clean[name] = value
    clean["scale_id"] = values.get("scale_id")
    if clean["scale_id"] is None or db.session.get(ComplianceScale, clean["scale_id"]) is None:
        errors["scale_id"] = "Choose a compliance scale from the list."
    months = values.get("sustainment_months")
    if months is not None and not (isinstance(months, int) and 0 < months <= 240):
        errors["sustainment_months"] = "Enter a number of months between 1 and 240, or leave it empty."
    clean["sustainment_months"] = months
    if errors:
        raise ValidationFailed(errors)
    return clean


def add_instrument(agency, values, *, actor):
    clean = _clean_instrument(agency, values)
    position = db.session.execute(sa.select(sa.func.coalesce(sa.func.max(Instrument.position), -1))
                                  .where(Instrument.agency_id == agency.id)).scalar_one() + 1
    instrument = Instrument(agency_id=agency.id, position=position, **clean)
    db.session.add(instrument)
    db.session.flush()
    audit.record("instrument.create", instrument, actor=actor, after=audit.snapshot(instrument, INSTRUMENT_FIELDS))
    return instrument


def update_instrument(instrument, values, *, actor):
    """Edit an instrument; a moved effective date moves its requirements' derived due dates. Returns the number
    of due dates moved, or None when nothing changed."""
    from tracker.services.agencies import recompute_due_dates

    clean = _clean_instrument(instrument.agency, values, instrument)
    before = audit.snapshot(instrument, INSTRUMENT_FIELDS)
    if all(before[k] == clean[k] for k in INSTRUMENT_FIELDS):
        return None
    moved = clean["effective_date"] != instrument.effective_date
    for name, value in clean.items():
        setattr(instrument, name, value)
    recomputed = recompute_due_dates(instrument, actor=actor) if moved else 0
    db.session.flush()
    audit.record("instrument.update", instrument, actor=actor, before=before,
                 after={**audit.snapshot(instrument, INSTRUMENT_FIELDS), "due_dates_recomputed": recomputed})
    return recomputed


def _label(value, field, what, max_len):
    text = " ".join((value or "").split())
    if not text:
        raise ValidationFailed({field: f"Enter the {what}."})
    if len(text) > max_len:
        raise ValidationFailed({field: f"The {what} must be at most {max_len} characters."})
    return text


def ensure_section(agency, label, known):
    """The agency's section with this label (case-insensitive), created when new. `known`: {lower label: row}."""
    row = known.get(label.lower())
    if row is None:
        row = DecreeSection(agency_id=agency.id, label=label, sort_key=sort_key(label))
        db.session.add(row)
        known[label.lower()] = row
    return row


def ensure_entity(agency, name, known):
    row = known.get(name.lower())
    if row is None:
        row = ResponsibleEntity(agency_id=agency.id, name=name)
        db.session.add(row)
        known[name.lower()] = row
    return row


def _clash(model, column, agency, value, own_id=None):
    found = db.session.execute(sa.select(model.id).where(model.agency_id == agency.id,
                                                         sa.func.lower(column) == value.lower())).scalar_one_or_none()
    return found is not None and found != own_id


def save_section(agency, label, *, actor, section=None):
    """Add a section, or rename one. Returns the row, or None when nothing changed."""
    label = _label(label, "label", "section heading", 300)
    if section is not None and section.label == label:
        return None
    if _clash(DecreeSection, DecreeSection.label, agency, label, section.id if section else None):
        raise ValidationFailed({"label": f"The agency already has a section '{label}'."})
    before = {"label": section.label} if section is not None else None
    if section is None:
        section = DecreeSection(agency_id=agency.id, label=label)
        db.session.add(section)
    section.label, section.sort_key = label, sort_key(label)
    db.session.flush()
    audit.record("section.update" if before else "section.create", section, actor=actor, before=before,
                 after={"label": label})
    return section


def save_entity(agency, name, *, actor, entity=None):
    name = _label(name, "name", "entity's name", 200)
    if entity is not None and entity.name == name:
        return None
    if _clash(ResponsibleEntity, ResponsibleEntity.name, agency, name, entity.id if entity else None):
        raise ValidationFailed({"name": f"The agency already has an entity '{name}'."})
    before = {"name": entity.name} if entity is not None else None
    if entity is None:
        entity = ResponsibleEntity(agency_id=agency.id, name=name)
        db.session.add(entity)
    entity.name = name
    db.session.flush()
    audit.record("entity.update" if before else "entity.create", entity, actor=actor, before=before,
                 after={"name": name})
    return entity


# The crosswalk --------------------------------------------------------------------------------------------------

def split_codes(text):
    """'CIT-001; cit-002, DATA-003' -> ['CIT-001', 'CIT-002', 'DATA-003'] (upper case, in order, no repeats)."""
    codes = []
    for part in (text or "").replace(";", ",").split(","):
        code = part.strip().upper()
        if code and code not in codes:
            codes.append(code)
    return codes


def recommendations_by_code(codes):
    if not codes:
        return {}
    return {r.code: r for r in db.session.execute(
        sa.select(Recommendation).where(Recommendation.code.in_(codes))).scalars()}


def links(requirement_ids):
    """{requirement_id: [Recommendation, …]} in code order, one query."""
    if not requirement_ids:
        return {}
    found = {}
    for link in db.session.execute(
        sa.select(RequirementLink).join(Recommendation, Recommendation.id == RequirementLink.recommendation_id)
        .where(RequirementLink.requirement_id.in_(requirement_ids)).order_by(Recommendation.code)
    ).scalars():
        found.setdefault(link.requirement_id, []).append(link.recommendation)
    return found


def link(requirement, code, *, actor):
    codes = split_codes(code)
    if len(codes) != 1:
        raise ValidationFailed({"code": "Enter one catalog recommendation id, like CIT-004."})
    rec = recommendations_by_code(codes).get(codes[0])
    if rec is None:
        raise ValidationFailed({"code": f"There is no catalog recommendation '{codes[0]}'."})
    if db.session.get(RequirementLink, (requirement.id, rec.id)) is not None:
        return None
    row = RequirementLink(requirement_id=requirement.id, recommendation_id=rec.id, created_by_id=actor.id)
    db.session.add(row)
    db.session.flush()
    audit.record("requirement.link", requirement, actor=actor, after={"recommendation": rec.code})
    return row


def unlink(requirement, recommendation_id, *, actor):
    row = db.session.get(RequirementLink, (requirement.id, recommendation_id))
    if row is None:
        return False
    code = row.recommendation.code
    db.session.delete(row)
    db.session.flush()
    audit.record("requirement.unlink", requirement, actor=actor, before={"recommendation": code})
    return True


def implementing(recommendation, agency_ids):
    """The paragraphs of the given agencies linked to a recommendation: [(agency, requirement)], one query."""
    from tracker.models import Agency

    if not agency_ids:
        return []
    return db.session.execute(
        sa.select(Agency, Requirement).join(Requirement, Requirement.agency_id == Agency.id)
        .join(RequirementLink, RequirementLink.requirement_id == Requirement.id)
        .where(RequirementLink.recommendation_id == recommendation.id, Agency.id.in_(agency_ids))
        .order_by(Agency.name, Requirement.sort_key)).all()
