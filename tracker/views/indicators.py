"""Outcome indicators (issue 14 §3): the agency's numbers with targets, per month or quarter.

Every member of the agency and the administrator reads them; compliance officers and the administrator
define or adopt indicators, set targets, type values and import files; only the administrator marks an
indicator public (while the agency's public page is on).
"""
import sqlalchemy as sa
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from tracker.access import agency_or_404, get_scoped_or_404
from tracker.extensions import db
from tracker.forms import apply_errors, field_errors
from tracker.forms.indicators import AdoptForm, ImportForm, IndicatorForm, PublishForm, ValueForm
from tracker.models import CatalogIndicator, Indicator, Requirement
from tracker.services import indicator_import, indicators
from tracker.services.errors import ValidationFailed
from tracker.services.imports import ImportFailed

bp = Blueprint("indicators", __name__)
EDIT_ROLES = {"officer", "admin"}


def may_edit():
    return g.get("agency_role") in EDIT_ROLES


def _edit_or_403():
    if not may_edit():
        abort(403)


def _checked(form):
    errors = {} if form.validate_on_submit() else field_errors(form)
    if "csrf_token" in errors:
        abort(400)
    return errors


@bp.app_context_processor
def _helpers():
    return {"indicator_summaries": indicators.summaries, "indicator_chart": indicators.chart,
            "requirement_indicators": indicators.for_requirement}


def _requirement_choices(agency):
    return {r.id: f"{r.code} — {r.title}" for r in db.session.execute(
        sa.select(Requirement.id, Requirement.code, Requirement.title)
        .where(Requirement.agency_id == agency.id).order_by(Requirement.sort_key))}


def _values(form):
    return {name: getattr(form, name).data for name in
            ("key", "name", "definition", "numerator", "denominator", "unit", "direction", "frequency",
             "target_value", "target_date")}


# --- the list -----------------------------------------------------------------------------------------

@bp.get("/agencies/<slug>/indicators")
@login_required
def index(slug):
    return _index_page(agency_or_404(slug))


def _index_page(agency, status=200, new_form=None, adopt_form=None):
    suggestions = indicators.suggestions(agency) if may_edit() else []
    if may_edit():
        new_form = new_form or IndicatorForm(formdata=None)
        adopt_form = adopt_form or AdoptForm(formdata=None)
        adopt_form.catalog_key.choices = {s.key: s.name for s in suggestions}
    return render_template("indicators/index.html", agency=agency, summaries=indicators.summaries(agency),
                           suggestions=suggestions, new_form=new_form, adopt_form=adopt_form,
                           may_edit=may_edit()), status


@bp.post("/agencies/<slug>/indicators")
@login_required
def create(slug):
    agency = agency_or_404(slug)
    _edit_or_403()
    form = IndicatorForm()
    errors = _checked(form)
    try:
        if errors:
            raise ValidationFailed(errors)
        indicator = indicators.create_indicator(agency, _values(form), actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        apply_errors(form, exc.errors)
        flash("Indicator not saved: " + " ".join(exc.errors.values()), "error")
        return _index_page(agency, 422, new_form=form)
    flash(f"Indicator “{indicator.name}” added. Enter or import its values.", "success")
    return redirect(url_for("indicators.show", slug=slug, indicator_id=indicator.id), code=303)


@bp.post("/agencies/<slug>/indicators/adopt")
@login_required
def adopt(slug):
    agency = agency_or_404(slug)
    _edit_or_403()
    form = AdoptForm()
    form.catalog_key.choices = {s.key: s.name for s in indicators.suggestions(agency)}
    errors = _checked(form)
    try:
        if errors:
            raise ValidationFailed(errors)
        indicator = indicators.adopt(agency, form.catalog_key.data, frequency=form.frequency.data,
                                     actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        apply_errors(form, exc.errors)
        flash("Not adopted: " + " ".join(exc.errors.values()), "error")
        return _index_page(agency, 422, adopt_form=form)
    flash(f"Indicator “{indicator.name}” adopted. Set its target and enter or import its values.", "success")
    return redirect(url_for("indicators.show", slug=slug, indicator_id=indicator.id), code=303)


# --- one indicator ------------------------------------------------------------------------------------

def _load(slug, indicator_id):
    agency = agency_or_404(slug)
    return agency, get_scoped_or_404(Indicator, indicator_id, agency)


@bp.get("/agencies/<slug>/indicators/<int:indicator_id>")
@login_required
def show(slug, indicator_id):
    agency, indicator = _load(slug, indicator_id)
    return _page(agency, indicator)


def _page(agency, indicator, status=200, forms=None):
    forms = forms or {}
    summary = indicators.summary(indicator)
    edit_form = value_form = None
    if may_edit():
        edit_form = forms.get("edit")
        if edit_form is None:
            edit_form = IndicatorForm(formdata=None, obj=indicator)
            edit_form.target_value.data = indicators.plain(indicator.target_value)
            edit_form.requirement_ids.data = [r.id for r in indicator.requirements]
        edit_form.requirement_ids.choices = _requirement_choices(agency)
        value_form = forms.get("value") or ValueForm(formdata=None)
    publish_form = None
    if g.get("agency_role") == "admin":
        publish_form = forms.get("publish") or PublishForm(formdata=None, public=indicator.public)
    adopted = db.session.get(CatalogIndicator, indicator.catalog_indicator_id) \
        if indicator.catalog_indicator_id else None
    return render_template(
        "indicators/indicator.html", agency=agency, indicator=indicator, summary=summary,
        chart=indicators.chart(summary), values=indicators.values_table(indicator),
        pivot=indicators.breakdown_pivot(summary), fmt=indicators.format_value, plain=indicators.plain,
        period_name=indicators.period_name, example_period=indicators.example_period(indicator.frequency),
        edit_form=edit_form, value_form=value_form, publish_form=publish_form, adopted=adopted), status


def _write(slug, indicator_id, form_cls, key, apply, message, admin_only=False):
    """One write on an indicator: 303 back to its page, or the page again with the errors (422)."""
    agency, indicator = _load(slug, indicator_id)
    if admin_only and g.get("agency_role") != "admin":
        abort(403)
    _edit_or_403()
    form = form_cls()
    if key == "edit":
        form.requirement_ids.choices = _requirement_choices(agency)
    errors = _checked(form)
    try:
        if errors:
            raise ValidationFailed(errors)
        changed = apply(agency, indicator, form)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        apply_errors(form, exc.errors)
        flash("Not saved: " + " ".join(exc.errors.values()), "error")
        return _page(agency, db.session.get(Indicator, indicator_id), 422, forms={key: form})
    flash(message(changed) if changed else "Nothing changed.", "success" if changed else "info")
    return redirect(url_for("indicators.show", slug=slug, indicator_id=indicator_id), code=303)


@bp.post("/agencies/<slug>/indicators/<int:indicator_id>")
@login_required
def update(slug, indicator_id):
    def apply(agency, indicator, form):
        values = {**_values(form), "key": indicator.key}
        return indicators.update_indicator(indicator, values, form.requirement_ids.data or [], actor=current_user)
    return _write(slug, indicator_id, IndicatorForm, "edit", apply, lambda changed: "Indicator saved.")


@bp.post("/agencies/<slug>/indicators/<int:indicator_id>/values")
@login_required
def add_value(slug, indicator_id):
    def apply(agency, indicator, form):
        return indicators.enter_value(indicator, {name: getattr(form, name).data for name in (
            "period", "breakdown", "value", "numerator_value", "denominator_value", "note")}, actor=current_user)
    return _write(slug, indicator_id, ValueForm, "value", apply,
                  lambda changed: f"Value {'added' if changed == 'added' else 'updated'}.")


@bp.post("/agencies/<slug>/indicators/<int:indicator_id>/publish")
@login_required
def publish(slug, indicator_id):
    def apply(agency, indicator, form):
        return indicators.set_public(indicator, agency, bool(form.public.data), actor=current_user)
    return _write(slug, indicator_id, PublishForm, "publish", apply,
                  lambda changed: "Public page updated.", admin_only=True)


# --- import -------------------------------------------------------------------------------------------

@bp.route("/agencies/<slug>/indicators/import", methods=["GET", "POST"])
@login_required
def import_values(slug):
    agency = agency_or_404(slug)
    _edit_or_403()
    form = ImportForm()
    problems, filename = [], None
    if request.method == "POST":
        _checked(form)
        upload = form.file.data
        if not upload or not upload.filename:
            problems = ["Choose a CSV or XLSX file."]
        else:
            filename = upload.filename
            try:
                data = upload.stream.read(indicator_import.MAX_BYTES + 1)
                counts = indicator_import.import_values(agency, filename, data, actor=current_user)
                db.session.commit()
                flash(f"Imported {filename}: {counts['added']} values added, {counts['updated']} updated, "
                      f"{counts['unchanged']} unchanged.", "success")
                return redirect(url_for("indicators.index", slug=slug), code=303)
            except ImportFailed as exc:
                db.session.rollback()
                problems = exc.problems
    return render_template("indicators/import.html", agency=agency, form=form, problems=problems,
                           filename=filename, columns=indicator_import.COLUMNS,
                           keys=[i.key for i in indicators.agency_indicators(agency)]), 422 if problems else 200
