"""Downloads of an agency's requirement matrix (CSV, XLSX)."""
from flask import Blueprint, Response, g, request, send_file, stream_with_context
from flask_login import current_user, login_required

from tracker import cache
from tracker.access import agency_or_404
from tracker.extensions import limiter
from tracker.models import utcnow
from tracker.services import document_requests, exports, indicators

bp = Blueprint("exports", __name__)


def _user_key():
    return f"user:{current_user.id}" if current_user.is_authenticated else request.remote_addr


def download_limit():
    """Ten a minute per user and route: each of these downloads reads a whole agency."""
    return limiter.limit("10 per minute", key_func=_user_key)


def _matrix_name(agency, ext):
    return f"{agency.slug}-requirements-{utcnow().date().isoformat()}.{ext}"


@bp.get("/agencies/<slug>/export.csv")
@login_required
@download_limit()
def matrix_csv(slug):
    agency = agency_or_404(slug)
    body = cache.streamed("export-csv", agency.id, lambda: exports.csv_stream(exports.matrix_rows(agency)),
                          agencies=agency.id)
    response = Response(stream_with_context(body), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{_matrix_name(agency, "csv")}"'
    return response


@bp.get("/agencies/<slug>/export.xlsx")
@login_required
@download_limit()
def matrix_xlsx(slug):
    agency = agency_or_404(slug)
    extra = []
    if g.agency_role in document_requests.VIEW_ROLES | {"admin"}:  # committee members do not see requests
        extra.append(("Document requests", document_requests.EXPORT_COLUMNS, document_requests.export_rows(agency)))
    extra.append(("Indicator values", indicators.EXPORT_COLUMNS, indicators.export_rows(agency)))  # issue 14
    out = exports.xlsx_file(exports.matrix_rows(agency), agency.name, extra_sheets=extra)
    return send_file(out, as_attachment=True, download_name=_matrix_name(agency, "xlsx"),
                     mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


@bp.get("/agencies/<slug>/indicators.csv")
@login_required
@download_limit()
def indicator_values(slug):
    """Every indicator value of the agency (issue 14), in the columns the indicator import reads back."""
    agency = agency_or_404(slug)
    body = exports.csv_stream(indicators.export_rows(agency), indicators.EXPORT_COLUMNS)
    response = Response(stream_with_context(body), mimetype="text/csv")
    name = f"{agency.slug}-indicators-{utcnow().date().isoformat()}.csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
