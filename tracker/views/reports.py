"""A monitoring period's printable report and its package of shareable evidence (zip)."""
import sqlalchemy as sa
from flask import Blueprint, g, render_template, send_file
from flask_login import login_required

from tracker import anchoring
from tracker.access import agency_or_404, get_scoped_or_404, sees_restricted_evidence
from tracker.extensions import db
from tracker.models import Module, MonitoringPeriod, Requirement, utcnow
from tracker.services import checkpoints, document_requests, exports, monitoring, plans
from tracker.views.exports import download_limit

bp = Blueprint("reports", __name__)


@bp.get("/agencies/<slug>/periods/<int:period_id>/report")
@login_required
def period_report(slug, period_id):
    agency = agency_or_404(slug)
    period = get_scoped_or_404(MonitoringPeriod, period_id, agency)
    # Issue 13: a period's findings only for those who may read them (drafts: monitoring team; shared: officers).
    visible = monitoring.findings_visible(period, g.agency_role)
    before, deltas = monitoring.deltas(period) if visible else (None, [])
    current = {f.requirement_id: f for f in monitoring.current_findings([period.id])} if visible else {}
    requirements = db.session.execute(
        sa.select(Requirement).where(Requirement.agency_id == agency.id)
        .options(sa.orm.joinedload(Requirement.module)).order_by(Requirement.code)).scalars().all()
    modules = db.session.execute(Module.in_order()).scalars().all()
    shareable_only = not sees_restricted_evidence()
    evidence = exports.period_evidence(agency, period, shareable_only=shareable_only)
    # Issue 13: the plan for everyone; document requests only for the agency, its monitors and admins.
    plan_rows = plans.plan_rows(period, in_scope_only=True)
    request_summary = (document_requests.period_summary(period)
                       if g.agency_role in document_requests.VIEW_ROLES | {"admin"} else None)
    return render_template("reports/period_report.html", agency=agency, period=period, before=before,
                           plan_rows=plan_rows, request_summary=request_summary,
                           deltas=deltas, current=current, visible=visible,
                           headline=monitoring.delta_headline(deltas), requirements=requirements, modules=modules,
                           evidence=evidence, shareable_only=shareable_only, generated=utcnow(),
                           checkpoint=anchoring.current("report"))


@bp.get("/agencies/<slug>/periods/<int:period_id>/evidence-package.zip")
@login_required
@download_limit()
def evidence_package(slug, period_id):
    agency = agency_or_404(slug)
    period = get_scoped_or_404(MonitoringPeriod, period_id, agency)
    checkpoint = anchoring.current("evidence_package")
    out, _count = exports.evidence_package(agency, period, checkpoints.document(checkpoint) if checkpoint else None)
    name = f"{agency.slug}-{period.start_date.isoformat()}-shareable-evidence.zip"
    response = send_file(out, as_attachment=True, download_name=name, mimetype="application/zip")
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response
