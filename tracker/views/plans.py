"""Monitoring plans (a period's paragraphs in scope) and each paragraph's versioned methodology.

Every member of the agency reads plans and methodologies (they say how the monitor will assess, not what
was found); monitors and administrators write them.
"""
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from tracker.access import agency_or_404, get_scoped_or_404, require_role
from tracker.extensions import db
from tracker.forms.auth import EmptyForm
from tracker.models import Module, MonitoringPeriod, Requirement
from tracker.services import monitoring, plans
from tracker.services.errors import ValidationFailed

bp = Blueprint("plans", __name__)

PLAN_ROLES = {"monitor"}


def _can_plan():
    return g.get("agency_role") in PLAN_ROLES | {"admin"}


@bp.app_context_processor
def _plan_helpers():
    return {"requirement_plan": plans.requirement_plan, "PLAN_SCOPE_FILTERS": plans.SCOPE_FILTERS}


def _plan_page(agency, period, status=200, errors=None):
    can_plan = _can_plan() and period.state != "filed"
    rows = plans.plan_rows(period, in_scope_only=not can_plan)
    modules = db.session.execute(Module.in_order()).scalars().all()
    return render_template("plans/plan.html", agency=agency, period=period, rows=rows, modules=modules,
                           in_scope=sum(1 for r in rows if r.item is not None), can_plan=can_plan,
                           previous=plans.previous_plan_period(period) if can_plan else None,
                           errors=errors or {}, form=EmptyForm()), status


@bp.get("/agencies/<slug>/periods/<int:period_id>/plan")
@login_required
def plan(slug, period_id):
    agency = agency_or_404(slug)
    period = get_scoped_or_404(MonitoringPeriod, period_id, agency)
    return _plan_page(agency, period)


@bp.post("/agencies/<slug>/periods/<int:period_id>/plan")
@login_required
def set_scope(slug, period_id):
    agency = agency_or_404(slug)
    period = get_scoped_or_404(MonitoringPeriod, period_id, agency)
    require_role(PLAN_ROLES)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        added, removed = plans.set_scope(period, request.form.getlist("requirement_ids"), actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        flash("Plan not saved: " + " ".join(exc.errors.values()), "error")
        return _plan_page(agency, period, 422, exc.errors)
    flash(f"Plan of {period.name} saved: {len(added)} paragraph(s) added, {len(removed)} removed.", "success")
    return redirect(url_for("plans.plan", slug=slug, period_id=period.id), code=303)


@bp.post("/agencies/<slug>/periods/<int:period_id>/plan/carry-over")
@login_required
def carry_over(slug, period_id):
    agency = agency_or_404(slug)
    period = get_scoped_or_404(MonitoringPeriod, period_id, agency)
    require_role(PLAN_ROLES)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        source, codes = plans.carry_over(period, actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        flash("Nothing carried over: " + " ".join(exc.errors.values()), "error")
        return redirect(url_for("plans.plan", slug=slug, period_id=period.id), code=303)
    flash(f"{len(codes)} paragraph(s) carried over from {source.name}, each with its current methodology.",
          "success")
    return redirect(url_for("plans.plan", slug=slug, period_id=period.id), code=303)


def _methodology_page(agency, req, status=200, errors=None, values=None):
    history = plans.versions(req)
    current = history[0] if history else None
    if values is None:
        values = {name: getattr(current, name) if current else "" for name in plans.FIELDS}
        if not values["level_criteria"]:
            values["level_criteria"] = "\n".join(f"{lvl.label}: " for lvl in monitoring.scale_levels(agency)
                                                 if lvl.kind == "rating")
    return render_template("plans/methodology.html", agency=agency, req=req, history=history, current=current,
                           fields=plans.FIELDS, values=values, errors=errors or {}, can_plan=_can_plan(),
                           periods=plans.requirement_plan(req)["periods"], form=EmptyForm()), status


@bp.get("/agencies/<slug>/requirements/<int:req_id>/methodology")
@login_required
def methodology(slug, req_id):
    agency = agency_or_404(slug)
    req = get_scoped_or_404(Requirement, req_id, agency)
    return _methodology_page(agency, req)


@bp.post("/agencies/<slug>/requirements/<int:req_id>/methodology")
@login_required
def save_methodology(slug, req_id):
    agency = agency_or_404(slug)
    req = get_scoped_or_404(Requirement, req_id, agency)
    require_role(PLAN_ROLES)
    if not EmptyForm().validate_on_submit():
        abort(400)
    values = {name: request.form.get(name, "") for name in plans.FIELDS}
    try:
        method = plans.save_methodology(req, values, actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        flash("Methodology not saved: " + " ".join(exc.errors.values()), "error")
        return _methodology_page(agency, req, 422, exc.errors, values)
    if method is None:
        flash("Nothing changed; the methodology keeps its version.", "info")
    else:
        flash(f"{req.code}: methodology version {method.version} saved.", "success")
    return redirect(url_for("plans.methodology", slug=slug, req_id=req.id), code=303)
