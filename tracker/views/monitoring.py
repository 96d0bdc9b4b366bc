"""Monitoring periods (open -> draft shared -> filed), the findings grid, the agency's responses to draft findings,
deltas, sustainment orders and partial terminations. Who sees which findings: services/monitoring.py."""
from datetime import date

import sqlalchemy as sa
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from tracker.access import agency_or_404, get_scoped_or_404, require_role
from tracker.extensions import db
from tracker.forms.auth import EmptyForm
from tracker.htmx import wants_fragment
from tracker.models import ASSESSMENT_STATUSES, ComplianceScale, Instrument, Module, MonitoringPeriod, Requirement
from tracker.services import monitoring, plans, sustainment
from tracker.services.errors import ValidationFailed

bp = Blueprint("monitoring", __name__)

RATE_ROLES = {"monitor"}
RESPOND_ROLES = {"officer"}


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


def _periods_page(agency, status=200, errors=None, values=None, order_errors=None, order_values=None):
    modules = db.session.execute(Module.in_order()).scalars().all()
    return render_template("monitoring/periods.html", agency=agency, periods=monitoring.periods(agency),
                           errors=errors or {}, values=values or {}, form=EmptyForm(), modules=modules,
                           orders=sustainment.orders(agency), order_errors=order_errors or {},
                           order_values=order_values or {},
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


def _requirements(agency):
    return db.session.execute(
        sa.select(Requirement).where(Requirement.agency_id == agency.id)
        .options(sa.orm.joinedload(Requirement.module),
                 sa.orm.joinedload(Requirement.instrument).joinedload(Instrument.scale)
                 .selectinload(ComplianceScale.levels))
        .order_by(Requirement.code)
    ).scalars().all()


def _grid_context(agency, period):
    role = g.agency_role
    visible = monitoring.findings_visible(period, role)
    requirements = _requirements(agency)
    top = monitoring.top_rank(monitoring.scale_levels(agency))
    current = {f.requirement_id: f for f in monitoring.current_findings([period.id])} if visible else {}
    latest = monitoring.latest_findings(agency)
    clocks, dips = sustainment.clocks(agency)
    return {"agency": agency, "period": period, "requirements": requirements, "current": current,
            "parts": monitoring.parts_of([f.id for f in current.values()]), "visible": visible,
            "previous": monitoring.latest_findings(agency, before=period.end_date),
            "before": monitoring.previous_period(period),
            "flags": {r.id: monitoring.disagreement(r, latest.get(r.id), top) for r in requirements},
            "clocks": clocks, "dips": dips, "responses": monitoring.responses(period) if visible else {},
            "modules": db.session.execute(Module.in_order()).scalars().all(),
            "can_rate": role in RATE_ROLES | {"admin"},
            "can_respond": role in RESPOND_ROLES and period.state == "shared",
            "current_role": role, "last_filed": monitoring.last_filed_period(agency) if not visible else None,
            "statuses": ASSESSMENT_STATUSES, "form": EmptyForm(), "errors": {}, "submitted": {}}


@bp.get("/agencies/<slug>/periods/<int:period_id>")
@login_required
def period(slug, period_id):
    agency = agency_or_404(slug)
    period = get_scoped_or_404(MonitoringPeriod, period_id, agency)
    return render_template("monitoring/period.html", **_page_context(agency, period))


def _page_context(agency, period):
    context = _grid_context(agency, period)
    # Issue 13 plans: narrow the grid to the plan's paragraphs (?scope=in|out) and one module (?module=key).
    context["grid_rows"], context["grid_filter"] = plans.filter_grid(period, context["requirements"], request.args)
    context["delta_before"], context["deltas"] = monitoring.deltas(period) if context["visible"] else (None, [])
    context["headline"] = monitoring.delta_headline(context["deltas"])
    return context


def _submitted():
    names = ["level_id", "narrative", "correction_reason"]
    names += [k for k in request.form if k.startswith(("status-", "measured-"))]
    return {k: request.form.get(k, "") for k in names}


@bp.post("/agencies/<slug>/periods/<int:period_id>/findings/<int:req_id>")
@login_required
def record_finding(slug, period_id, req_id):
    agency = agency_or_404(slug)
    period = get_scoped_or_404(MonitoringPeriod, period_id, agency)
    req = get_scoped_or_404(Requirement, req_id, agency)
    require_role(RATE_ROLES)
    if not EmptyForm().validate_on_submit():
        abort(400)
    submitted = _submitted()
    try:
        monitoring.record_finding(req, period, submitted["level_id"], submitted["narrative"], actor=current_user,
                                  correction_reason=submitted["correction_reason"], form=submitted)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        return _refused(agency, period, req, "Finding not saved: ", exc.errors, submitted)
    flash(f"{req.code}: finding {'corrected' if period.state == 'filed' else 'recorded'} for {period.name}.",
          "success")
    if wants_fragment():
        return _row(agency, period, req)
    return redirect(url_for("monitoring.period", slug=slug, period_id=period.id) + f"#finding-{req.id}", code=303)


def _refused(agency, period, req, prefix, errors, submitted):
    flash(prefix + " ".join(errors.values()), "error")
    if wants_fragment():
        return _row(agency, period, req, status=422, errors=errors, submitted=submitted)
    context = _page_context(agency, period)
    context.update(errors={req.id: errors}, submitted={req.id: submitted})
    return render_template("monitoring/period.html", **context), 422


def _row(agency, period, req, status=200, errors=None, submitted=None):
    context = _grid_context(agency, period)
    req = next(r for r in context["requirements"] if r.id == req.id)
    context.update(r=req, errors={req.id: errors or {}}, submitted={req.id: submitted or {}}, oob_count=True)
    return render_template("monitoring/_finding_row.html", **context), status


@bp.post("/agencies/<slug>/periods/<int:period_id>/responses/<int:req_id>")
@login_required
def respond(slug, period_id, req_id):
    agency = agency_or_404(slug)
    period = get_scoped_or_404(MonitoringPeriod, period_id, agency)
    req = get_scoped_or_404(Requirement, req_id, agency)
    require_role(RESPOND_ROLES)
    if not EmptyForm().validate_on_submit():
        abort(400)
    submitted = {"response": request.form.get("response", "")}
    try:
        monitoring.respond(period, req, submitted["response"], actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        return _refused(agency, period, req, "Response not saved: ", exc.errors, submitted)
    flash(f"{req.code}: the agency's response to the draft finding is saved.", "success")
    if wants_fragment():
        return _row(agency, period, req)
    return redirect(url_for("monitoring.period", slug=slug, period_id=period.id) + f"#finding-{req.id}", code=303)


@bp.post("/agencies/<slug>/periods/<int:period_id>/share")
@login_required
def share(slug, period_id):
    agency = agency_or_404(slug)
    period = get_scoped_or_404(MonitoringPeriod, period_id, agency)
    require_role(RATE_ROLES)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        monitoring.share_period(period, actor=current_user)
        db.session.commit()
        flash(f"The draft of {period.name} is shared with the parties: the agency's officers now see its findings, "
              "marked draft, and may answer each. The committee sees them once the report is filed.", "success")
    except ValidationFailed as exc:
        db.session.rollback()
        flash(" ".join(exc.errors.values()), "error")
    return redirect(url_for("monitoring.period", slug=slug, period_id=period_id), code=303)


@bp.post("/agencies/<slug>/periods/<int:period_id>/file")
@login_required
def file_report(slug, period_id):
    agency = agency_or_404(slug)
    period = get_scoped_or_404(MonitoringPeriod, period_id, agency)
    require_role(RATE_ROLES)
    if not EmptyForm().validate_on_submit():
        abort(400)
    values = {k: request.form.get(k, "") for k in ("filed_on", "docket_ref")}
    try:
        monitoring.file_period(period, _date(values["filed_on"]), values["docket_ref"], actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        flash("Not filed: " + " ".join(exc.errors.values()), "error")
        context = _page_context(agency, period)
        context.update(file_errors=exc.errors, file_values=values)
        return render_template("monitoring/period.html", **context), 422
    flash(f"{period.name} is filed ({period.docket_ref}, {period.filed_on.isoformat()}): its findings are now "
          "visible to the committee and count on every page. Corrections need a reason.", "success")
    return redirect(url_for("monitoring.period", slug=slug, period_id=period_id), code=303)


@bp.post("/agencies/<slug>/sustainment-orders")
@login_required
def sustainment_order(slug):
    agency = agency_or_404(slug)
    require_role(set())  # administrators only
    if not EmptyForm().validate_on_submit():
        abort(400)
    values = {k: request.form.get(k, "") for k in ("order_date", "docket_ref", "codes", "note")}
    values["modules"] = request.form.getlist("modules")
    try:
        order = sustainment.record_order(agency, _date(values["order_date"]), values["docket_ref"], values["codes"],
                                         values["modules"], values["note"], actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        return _periods_page(agency, 422, order_errors=exc.errors, order_values=values)
    flash(f"Court order {order.docket_ref} recorded: the sustainment clock of the requirements it covers starts on "
          f"{order.order_date.isoformat()}.", "success")
    return redirect(url_for("monitoring.periods", slug=slug) + "#sustainment-orders", code=303)


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
