"""Monitoring periods, the findings grid, closing a period, deltas, partial terminations."""
from datetime import date

import sqlalchemy as sa
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from tracker.access import agency_or_404, get_scoped_or_404, require_role
from tracker.extensions import db
from tracker.forms.auth import EmptyForm
from tracker.htmx import wants_fragment
from tracker.models import Module, MonitoringPeriod, Requirement
from tracker.services import monitoring, plans
from tracker.services.errors import ValidationFailed

bp = Blueprint("monitoring", __name__)

RATE_ROLES = {"monitor"}


def _date(value):
    try:
        return date.fromisoformat((value or "").strip())
    except ValueError:
        return None


@bp.get("/agencies/<slug>/periods")
@login_required
def periods(slug):
    agency = agency_or_404(slug)
    return _periods_page(agency)


def _periods_page(agency, status=200, errors=None, values=None):
    modules = db.session.execute(Module.in_order()).scalars().all()
    return render_template("monitoring/periods.html", agency=agency, periods=monitoring.periods(agency),
                           errors=errors or {}, values=values or {}, form=EmptyForm(), modules=modules,
                           can_rate=g.agency_role in RATE_ROLES | {"admin"}), status


@bp.post("/agencies/<slug>/periods")
@login_required
def create_period(slug):
    agency = agency_or_404(slug)
    require_role(RATE_ROLES)
    if not EmptyForm().validate_on_submit():
        abort(400)
    values = {k: request.form.get(k, "") for k in ("name", "start_date", "end_date")}
    try:
        period = monitoring.create_period(agency, values["name"], _date(values["start_date"]),
                                          _date(values["end_date"]), actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        return _periods_page(agency, 422, exc.errors, values)
    flash(f"Monitoring period “{period.name}” opened.", "success")
    return redirect(url_for("monitoring.period", slug=slug, period_id=period.id), code=303)


def _grid_context(agency, period):
    requirements = db.session.execute(
        sa.select(Requirement).where(Requirement.agency_id == agency.id)
        .options(sa.orm.joinedload(Requirement.module)).order_by(Requirement.code)
    ).scalars().all()
    levels = monitoring.scale_levels(agency)
    top = monitoring.top_rank(levels)
    current = {f.requirement_id: f for f in monitoring.current_findings([period.id])}
    before = monitoring.previous_period(period)
    previous = {f.requirement_id: f for f in monitoring.current_findings([before.id])} if before else {}
    latest = monitoring.latest_findings(agency)
    flags = {r.id: monitoring.disagreement(r, latest.get(r.id), top) for r in requirements}
    modules = db.session.execute(Module.in_order()).scalars().all()
    return {"agency": agency, "period": period, "requirements": requirements, "levels": levels, "current": current,
            "before": before, "previous": previous, "flags": flags, "modules": modules,
            "can_rate": g.agency_role in RATE_ROLES | {"admin"}, "form": EmptyForm(), "errors": {}, "submitted": {}}


@bp.get("/agencies/<slug>/periods/<int:period_id>")
@login_required
def period(slug, period_id):
    agency = agency_or_404(slug)
    period = get_scoped_or_404(MonitoringPeriod, period_id, agency)
    context = _grid_context(agency, period)
    # Issue 13 plans: narrow the grid to the plan's paragraphs (?scope=in|out) and one module (?module=key).
    context["grid_rows"], context["grid_filter"] = plans.filter_grid(period, context["requirements"], request.args)
    if period.state == "filed":
        context["delta_before"], context["deltas"] = monitoring.deltas(period)
    return render_template("monitoring/period.html", **context)


@bp.post("/agencies/<slug>/periods/<int:period_id>/findings/<int:req_id>")
@login_required
def record_finding(slug, period_id, req_id):
    agency = agency_or_404(slug)
    period = get_scoped_or_404(MonitoringPeriod, period_id, agency)
    req = get_scoped_or_404(Requirement, req_id, agency)
    require_role(RATE_ROLES)
    if not EmptyForm().validate_on_submit():
        abort(400)
    submitted = {k: request.form.get(k, "") for k in ("level_id", "narrative", "correction_reason")}
    try:
        monitoring.record_finding(req, period, submitted["level_id"], submitted["narrative"], actor=current_user,
                                  correction_reason=submitted["correction_reason"])
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        flash("Finding not saved: " + " ".join(exc.errors.values()), "error")
        if wants_fragment():
            return _row(agency, period, req, status=422, errors=exc.errors, submitted=submitted)
        context = _grid_context(agency, period)
        context.update(errors={req.id: exc.errors}, submitted={req.id: submitted})
        return render_template("monitoring/period.html", **context), 422
    flash(f"{req.code}: finding recorded for {period.name}.", "success")
    if wants_fragment():
        return _row(agency, period, req)
    return redirect(url_for("monitoring.period", slug=slug, period_id=period.id) + f"#finding-{req.id}", code=303)


def _row(agency, period, req, status=200, errors=None, submitted=None):
    context = _grid_context(agency, period)
    context.update(r=req, errors={req.id: errors or {}}, submitted={req.id: submitted or {}})
    return render_template("monitoring/_finding_row.html", **context), status


@bp.post("/agencies/<slug>/periods/<int:period_id>/close")
@login_required
def close(slug, period_id):
    agency = agency_or_404(slug)
    period = get_scoped_or_404(MonitoringPeriod, period_id, agency)
    require_role(RATE_ROLES)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        monitoring.close_period(period, actor=current_user)
        db.session.commit()
        flash(f"{period.name} is closed; its findings are frozen.", "success")
    except ValidationFailed as exc:
        db.session.rollback()
        flash(" ".join(exc.errors.values()), "error")
    return redirect(url_for("monitoring.period", slug=slug, period_id=period_id), code=303)


@bp.post("/agencies/<slug>/requirements/<int:req_id>/terminate")
@login_required
def terminate_requirement(slug, req_id):
    agency = agency_or_404(slug)
    req = get_scoped_or_404(Requirement, req_id, agency)
    require_role(set())  # administrators only
    return _terminate(agency, [req], url_for("board.requirement", slug=slug, req_id=req.id))


@bp.post("/agencies/<slug>/terminations")
@login_required
def terminate_module(slug):
    agency = agency_or_404(slug)
    require_role(set())  # administrators only
    module = db.session.execute(
        sa.select(Module).where(Module.key == request.form.get("module", ""))).scalar_one_or_none()
    if module is None:
        flash("Not recorded: choose the module the court released.", "error")
        return redirect(url_for("monitoring.periods", slug=slug), code=303)
    reqs = db.session.execute(sa.select(Requirement).where(
        Requirement.agency_id == agency.id, Requirement.module_id == module.id)).scalars().all()
    return _terminate(agency, reqs, url_for("monitoring.periods", slug=slug))


def _terminate(agency, requirements, back):
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        done = monitoring.terminate(requirements, _date(request.form.get("terminated_on")),
                                    request.form.get("reference"), actor=current_user)
        db.session.commit()
        flash(f"{len(done)} requirement(s) recorded as terminated by the court.", "success")
    except ValidationFailed as exc:
        db.session.rollback()
        flash("Not recorded: " + " ".join(exc.errors.values()), "error")
    return redirect(back, code=303)
