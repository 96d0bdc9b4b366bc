"""Agency dashboard, cross-agency roll-up, exports and the printable period report."""
import sqlalchemy as sa
from flask import Blueprint, Response, abort, flash, render_template, request, send_file, stream_with_context
from flask_login import current_user, login_required
from markupsafe import Markup

from tracker import cache
from tracker.access import (
    agency_ids_with_role,
    agency_or_404,
    get_scoped_or_404,
    sees_restricted_evidence,
    user_agencies,
)
from tracker.extensions import db, limiter
from tracker.models import Agency, Module, MonitoringPeriod, Requirement
from tracker.services import dashboard, exports, monitoring

bp = Blueprint("dashboard", __name__)


def _export_limit():
    return "10 per minute"


def _user_key():
    return f"user:{current_user.id}" if current_user.is_authenticated else request.remote_addr


@bp.get("/agencies/<slug>/dashboard")
@login_required
def agency(slug):
    agency = agency_or_404(slug)
    body_only = bool(request.headers.get("HX-Request") and request.headers.get("HX-Target") == "dashboard-body"
                     and not request.headers.get("HX-Boosted"))
    requested = request.args.get("module", "")

    def render():
        modules = db.session.execute(Module.in_order()).scalars().all()
        module_key = requested if requested in {m.key for m in modules} else ""
        template = "dashboard/_body.html" if body_only else "dashboard/_content.html"
        return render_template(template, **_dashboard_context(agency, modules, module_key)), module_key

    html, module_key = cache.value("dashboard", (agency.id, body_only, requested), render)
    if requested and not module_key:
        flash(f"Unknown module “{requested}” ignored; showing all modules.", "warning")
    if body_only:
        return html
    return render_template("dashboard/agency.html", agency=agency, content=Markup(html))  # noqa: S704 - from Jinja


def _dashboard_context(agency, modules, module_key):
    per_module, total, shown = dashboard.agency_measures(agency, module_key or None)
    return {
        "agency": agency, "modules": modules, "module_key": module_key, "per_module": per_module, "total": total,
        "shown": shown,
        "level_classes": dashboard.level_classes(agency), "trend": dashboard.trend(agency, module_key or None),
        "activity": dashboard.recent_activity(agency),
        "upcoming": dashboard.upcoming(agency, module_key=module_key or None),
        "periods": monitoring.periods(agency), "windows": dashboard.WINDOWS,
    }


@bp.get("/rollup")
@login_required
def rollup():
    scope = None if current_user.is_admin else agency_ids_with_role("monitor")
    if scope == []:
        abort(404)
    sort = request.args.get("sort", "name")
    if sort not in dashboard.SORTS:
        flash(f"Unknown sort “{sort}” ignored.", "warning")
        sort = "name"
    descending = request.args.get("dir") == "desc"

    def render():
        if scope is None:
            agencies = user_agencies()
        else:
            agencies = db.session.execute(sa.select(Agency).where(Agency.id.in_(scope))).scalars().all()
        return render_template("dashboard/_rollup_table.html", rows=dashboard.rollup(agencies, sort, descending),
                               sort=sort, descending=descending)

    table = cache.html("rollup", (tuple(scope or ()), sort, descending), render)
    return render_template("dashboard/rollup.html", table=table)


def _matrix_name(agency, ext):
    return f"{agency.slug}-requirements-{dashboard.utcnow().date().isoformat()}.{ext}"


@bp.get("/agencies/<slug>/export.csv")
@login_required
@limiter.limit(_export_limit, key_func=_user_key)
def export_csv(slug):
    agency = agency_or_404(slug)
    body = cache.streamed("export-csv", agency.id, lambda: exports.csv_stream(exports.matrix_rows(agency)))
    response = Response(stream_with_context(body), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{_matrix_name(agency, "csv")}"'
    return response


@bp.get("/agencies/<slug>/export.xlsx")
@login_required
@limiter.limit(_export_limit, key_func=_user_key)
def export_xlsx(slug):
    agency = agency_or_404(slug)
    out = exports.xlsx_file(exports.matrix_rows(agency), agency.name)
    return send_file(out, as_attachment=True, download_name=_matrix_name(agency, "xlsx"),
                     mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


@bp.get("/agencies/<slug>/periods/<int:period_id>/report")
@login_required
def period_report(slug, period_id):
    agency = agency_or_404(slug)
    period = get_scoped_or_404(MonitoringPeriod, period_id, agency)
    before, deltas = monitoring.deltas(period)
    current = {f.requirement_id: f for f in monitoring.current_findings([period.id])}
    requirements = db.session.execute(
        sa.select(Requirement).where(Requirement.agency_id == agency.id)
        .options(sa.orm.joinedload(Requirement.module)).order_by(Requirement.code)).scalars().all()
    modules = db.session.execute(Module.in_order()).scalars().all()
    shareable_only = not sees_restricted_evidence()
    evidence = exports.period_evidence(agency, period, shareable_only=shareable_only)
    return render_template("dashboard/period_report.html", agency=agency, period=period, before=before,
                           deltas=deltas, current=current, requirements=requirements, modules=modules,
                           evidence=evidence, shareable_only=shareable_only, generated=dashboard.utcnow())


@bp.get("/agencies/<slug>/periods/<int:period_id>/evidence-package.zip")
@login_required
@limiter.limit(_export_limit, key_func=_user_key)
def evidence_package(slug, period_id):
    agency = agency_or_404(slug)
    period = get_scoped_or_404(MonitoringPeriod, period_id, agency)
    out, _count = exports.evidence_package(agency, period)
    name = f"{agency.slug}-{period.start_date.isoformat()}-shareable-evidence.zip"
    response = send_file(out, as_attachment=True, download_name=name, mimetype="application/zip")
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response
