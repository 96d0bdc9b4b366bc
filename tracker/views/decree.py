"""The decree's structure page (instruments, sections, responsible entities), recurring duties' occurrences and the
crosswalk from a paragraph to the catalog. One transaction per action; every change is audited by the services.

Instruments are court documents: administrators add and edit them. Officers name sections and entities, complete
occurrences and link paragraphs to the catalog. Each form says which row it edits in an unprefixed hidden field
(`instrument_id`, `section_id`, `entity_id`, `occurrence_id`, `recommendation_id`); a row of another agency is 404.
"""
import sqlalchemy as sa
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from tracker.access import agency_or_404, get_scoped_or_404, require_role
from tracker.extensions import db
from tracker.forms import apply_errors
from tracker.forms.decree import EntityForm, InstrumentForm, LinkForm, OccurrenceForm, SectionForm
from tracker.models import ComplianceScale, DecreeSection, Instrument, Occurrence, Requirement, ResponsibleEntity
from tracker.services import decree, occurrences
from tracker.services.deadlines import cadence_label
from tracker.services.errors import ValidationFailed

bp = Blueprint("decree", __name__)

EDIT_ROLES = {"officer"}


def _id(name):
    value = request.form.get(name, "")
    if not value:
        return None
    if not value.isdigit():
        abort(404)
    return int(value)


def _scale_choices(form, choices=None):
    form.scale_id.choices = choices if choices is not None else {s.id: s.name for s in db.session.execute(
        sa.select(ComplianceScale).order_by(ComplianceScale.name)).scalars()}
    return form.scale_id.choices


def _forms(agency, instruments, sections, entities, posted=None):
    """A form per row plus an empty one to add; `posted` (key, form) replaces the one that was sent."""
    forms = {}
    for inst in instruments:
        forms[f"i{inst.id}"] = InstrumentForm(formdata=None, obj=inst, prefix=f"i{inst.id}")
    forms["i-new"] = InstrumentForm(formdata=None, prefix="i-new", scale_id=agency.scale.id if agency.scale else None)
    for s in sections:
        forms[f"s{s.id}"] = SectionForm(formdata=None, obj=s, prefix=f"s{s.id}")
    forms["s-new"] = SectionForm(formdata=None, prefix="s-new")
    for e in entities:
        forms[f"e{e.id}"] = EntityForm(formdata=None, obj=e, prefix=f"e{e.id}")
    forms["e-new"] = EntityForm(formdata=None, prefix="e-new")
    if posted is not None:
        forms[posted[0]] = posted[1]
    choices = None
    for key, form in forms.items():
        if key.startswith("i"):
            choices = _scale_choices(form, choices)  # one query for every instrument's form
    return forms


@bp.get("/agencies/<slug>/decree")
@login_required
def structure(slug, status=200, posted=None):
    agency = agency_or_404(slug)
    instruments, sections, entities = decree.instruments(agency), decree.sections(agency), decree.entities(agency)
    return render_template(
        "decree/structure.html", agency=agency, instruments=instruments, sections=sections, entities=entities,
        forms=_forms(agency, instruments, sections, entities, posted),
        counts={"instrument": decree.usage(agency, Requirement.instrument_id),
                "section": decree.usage(agency, Requirement.section_id),
                "entity": decree.usage(agency, Requirement.entity_id)},
        may_edit_instruments=current_user.is_admin, may_edit=g.agency_role in EDIT_ROLES | {"admin"},
    ), status


def _done(slug, anchor, message):
    db.session.commit()
    if message:
        flash(message, "success")
    return redirect(url_for("decree.structure", slug=slug) + anchor, code=303)


@bp.post("/agencies/<slug>/decree/instruments")
@login_required
def save_instrument(slug):
    agency = agency_or_404(slug, roles={"admin"})
    instrument_id = _id("instrument_id")
    instrument = get_scoped_or_404(Instrument, instrument_id, agency) if instrument_id else None
    key = f"i{instrument.id}" if instrument else "i-new"
    form = InstrumentForm(prefix=key)
    _scale_choices(form)
    if form.validate_on_submit():
        try:
            if instrument is None:
                instrument = decree.add_instrument(agency, form.values(), actor=current_user)
                return _done(slug, f"#instrument-{instrument.id}", f"Instrument {instrument.short_name} added.")
            moved = decree.update_instrument(instrument, form.values(), actor=current_user)
            note = f" {moved} due date(s) recomputed from the new effective date." if moved else ""
            return _done(slug, f"#instrument-{instrument.id}",
                         None if moved is None else f"Instrument {instrument.short_name} saved.{note}")
        except ValidationFailed as exc:
            db.session.rollback()
            apply_errors(form, exc.errors)
    elif "csrf_token" in form.errors:
        abort(400)
    return structure(slug, status=422, posted=(key, form))


def _save_named(slug, model, field, prefix, save, what):
    agency = agency_or_404(slug, roles=EDIT_ROLES)
    row_id = _id(f"{model.__tablename__.split('_')[-1]}_id")
    row = get_scoped_or_404(model, row_id, agency) if row_id else None
    key = f"{prefix}{row.id}" if row else f"{prefix}-new"
    form = (SectionForm if model is DecreeSection else EntityForm)(prefix=key)
    if form.validate_on_submit():
        try:
            saved = save(agency, form[field].data, actor=current_user, **{what: row})
            message = None if saved is None else f"{what.capitalize()} ‘{getattr(saved, field)}’ saved."
            return _done(slug, f"#{what}-{(saved or row).id}", message)
        except ValidationFailed as exc:
            db.session.rollback()
            apply_errors(form, exc.errors)
    elif "csrf_token" in form.errors:
        abort(400)
    return structure(slug, status=422, posted=(key, form))


@bp.post("/agencies/<slug>/decree/sections")
@login_required
def save_section(slug):
    return _save_named(slug, DecreeSection, "label", "s", decree.save_section, "section")


@bp.post("/agencies/<slug>/decree/entities")
@login_required
def save_entity(slug):
    return _save_named(slug, ResponsibleEntity, "name", "e", decree.save_entity, "entity")


# On the requirement page ---------------------------------------------------------------------------------------

def _requirement(slug, req_id):
    """Agency, then the requirement inside it (404 outside scope), then the role (403), like the board."""
    agency = agency_or_404(slug)
    requirement = get_scoped_or_404(Requirement, req_id, agency)
    require_role(EDIT_ROLES)
    return agency, requirement


def _back(slug, req, anchor):
    return redirect(url_for("board.requirement", slug=slug, req_id=req.id) + anchor, code=303)


def _refused(slug, req, anchor, errors):
    db.session.rollback()
    flash("Not saved: " + " ".join(errors.values()), "error")
    return _back(slug, req, anchor)


@bp.post("/agencies/<slug>/requirements/<int:req_id>/occurrences")
@login_required
def complete_occurrence(slug, req_id):
    agency, req = _requirement(slug, req_id)
    occurrence_id = _id("occurrence_id")
    if occurrence_id is None:
        abort(404)
    get_scoped_or_404(Occurrence, occurrence_id, agency)
    form = OccurrenceForm()
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            abort(400)
        return _refused(slug, req, "#occurrences", {k: " ".join(v) for k, v in form.errors.items()})
    try:
        done, following = occurrences.complete(req, occurrence_id, form.completed_on.data, form.note.data,
                                               actor=current_user)
    except ValidationFailed as exc:
        return _refused(slug, req, "#occurrences", exc.errors)
    db.session.commit()
    flash(f"{req.code}: {done.label} completed; {following.label} is due {following.due_date.isoformat()}.",
          "success")
    return _back(slug, req, "#occurrences")


@bp.post("/agencies/<slug>/requirements/<int:req_id>/links")
@login_required
def link(slug, req_id):
    _agency, req = _requirement(slug, req_id)
    form = LinkForm()
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            abort(400)
        return _refused(slug, req, "#crosswalk", {"code": "Enter a catalog recommendation id, like CIT-004."})
    try:
        row = decree.link(req, form.code.data, actor=current_user)
    except ValidationFailed as exc:
        return _refused(slug, req, "#crosswalk", exc.errors)
    db.session.commit()
    if row is not None:
        flash(f"{req.code} now implements {row.recommendation.code}.", "success")
    return _back(slug, req, "#crosswalk")


@bp.post("/agencies/<slug>/requirements/<int:req_id>/links/remove")
@login_required
def unlink(slug, req_id):
    _agency, req = _requirement(slug, req_id)
    recommendation_id = _id("recommendation_id")  # the token was checked by CSRFProtect, like every POST
    if recommendation_id is None:
        abort(404)
    if decree.unlink(req, recommendation_id, actor=current_user):
        db.session.commit()
        flash(f"{req.code}: link removed.", "success")
    return _back(slug, req, "#crosswalk")


@bp.app_template_global()
def requirement_structure(req):
    """For the requirement page: the open occurrence and the history of a recurring duty, the catalog links."""
    return {"history": occurrences.history(req) if req.recurring else [],
            "links": decree.links([req.id]).get(req.id, []),
            "occurrence_form": OccurrenceForm(formdata=None), "link_form": LinkForm(formdata=None)}


@bp.app_template_filter("cadence")
def cadence(months):
    """12 -> 'annually', 18 -> 'every 18 months'."""
    return cadence_label(months)
