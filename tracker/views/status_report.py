"""The agency's status report draft for a reporting period: a printable page, an editable DOCX and a PDF.

It is the department's own document, so its officers (and administrators) draft it; it lists restricted
evidence by title and SHA-256 in its appendix."""
from datetime import date

from flask import Blueprint, Response, flash, render_template, request
from flask_login import login_required

from tracker.access import agency_or_404
from tracker.models import utcnow
from tracker.services import status_report
from tracker.services.errors import ValidationFailed
from tracker.views.exports import download_limit

bp = Blueprint("status_report", __name__)

DRAFTERS = {"officer"}
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def _date(name):
    value = request.args.get(name, "").strip()
    if not value:
        return None, False
    try:
        return date.fromisoformat(value), False
    except ValueError:
        return None, True


def _report(agency):
    """(report, errors): the chosen dates (start, end) or the default period; bad dates fall back to it."""
    (start, bad_start), (end, bad_end) = _date("start"), _date("end")
    today = utcnow().date()
    errors = {}
    if bad_start:
        errors["start"] = "Enter the first day as YYYY-MM-DD."
    if bad_end:
        errors["end"] = "Enter the last day as YYYY-MM-DD."
    try:
        if errors:
            raise ValidationFailed(errors)
        start, end, name = status_report.resolve_range(agency, start, end, today)
    except ValidationFailed as exc:
        errors = exc.errors
        start, end, name = status_report.default_range(agency, today)
    return status_report.build(agency, start, end, name), errors


@bp.get("/agencies/<slug>/status-report")
@login_required
def page(slug):
    agency = agency_or_404(slug, roles=DRAFTERS)
    report, errors = _report(agency)
    if errors:
        flash("Dates not used: " + " ".join(errors.values()) + " Showing the last monitoring period.", "warning")
    return render_template("reports/status_report.html", agency=agency, report=report, errors=errors,
                           values={"start": request.args.get("start", ""), "end": request.args.get("end", "")},
                           query={"start": report.start.isoformat(), "end": report.end.isoformat()})


def _download(body, mimetype, agency, report, ext):
    response = Response(body, mimetype=mimetype)
    name = f"{agency.slug}-status-report-{report.start.isoformat()}-{report.end.isoformat()}.{ext}"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/agencies/<slug>/status-report.docx")
@login_required
@download_limit()
def docx(slug):
    agency = agency_or_404(slug, roles=DRAFTERS)
    report, _errors = _report(agency)
    return _download(status_report.to_docx(report), DOCX, agency, report, "docx")


@bp.get("/agencies/<slug>/status-report.pdf")
@login_required
@download_limit()
def pdf(slug):
    agency = agency_or_404(slug, roles=DRAFTERS)
    report, _errors = _report(agency)
    return _download(status_report.to_pdf(report), "application/pdf", agency, report, "pdf")
