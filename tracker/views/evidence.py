"""Evidence: add a file or a link, upload a new version, download through an access check."""
from flask import Blueprint, abort, current_app, flash, redirect, send_file, url_for
from flask_login import current_user, login_required
from sqlalchemy.exc import IntegrityError

from tracker.access import agency_or_404, get_scoped_or_404, may_download, require_role
from tracker.extensions import db
from tracker.forms import apply_errors, field_errors
from tracker.forms.requirements import EvidenceForm
from tracker.models import Evidence, Requirement
from tracker.services import evidence as evidence_service
from tracker.services import submissions
from tracker.services.errors import ValidationFailed
from tracker.storage import get_store
from tracker.views.board import EDIT_ROLES, _requirement_page
from tracker.views.repeats import repeat_response

bp = Blueprint("evidence", __name__)


def _values(form):
    return {"title": form.title.data, "description": form.description.data, "period_start": form.period_start.data,
            "period_end": form.period_end.data, "visibility": form.visibility.data}


def _save(agency, req, form, supersedes=None):
    """Validate everything, stream the file into the store, then write the row and audit in one transaction."""
    errors = field_errors(form)
    errors.update(evidence_service.validate_metadata(_values(form)))
    kind = form.kind.data
    upload = form.file.data
    if kind == "file" and not (upload and upload.filename):
        errors["file"] = "Choose a file to upload."
    if kind == "link":
        _, problem = evidence_service.check_link(form.url.data)
        if problem:
            errors["url"] = problem
    if errors:
        raise ValidationFailed(errors)
    if kind == "file":
        staged = evidence_service.stage_upload(upload, current_app.config["MAX_CONTENT_LENGTH"])
        return evidence_service.add_file(req, staged, _values(form), actor=current_user, supersedes=supersedes)
    return evidence_service.add_link(req, form.url.data, _values(form), actor=current_user, supersedes=supersedes)


def _handle(agency, req, supersedes=None):
    form = EvidenceForm()
    form.validate_on_submit()
    # The confirmation is shown beside the evidence list and takes focus there, not 2,000 px up the page.
    target = url_for("board.requirement", slug=agency.slug, req_id=req.id) + "#evidence-added"
    try:
        evidence = _save(agency, req, form, supersedes)
        submissions.remember(current_user, target)
        db.session.commit()
    except IntegrityError:
        # A repeat that raced its first sending: point it at the winner's result.
        db.session.rollback()
        if repeat := repeat_response(current_user):
            return repeat
        raise
    except ValidationFailed as exc:
        db.session.rollback()
        apply_errors(form, exc.errors)
        flash("Evidence not added: " + " ".join(exc.errors.values()), "error")
        return _requirement_page(agency, req, status=422, forms={"evidence": form})
    what = "New version" if supersedes else "Evidence"
    flash(f"{what} “{evidence.title}” added and submitted for review.", "evidence")
    return redirect(target, code=303)


@bp.post("/agencies/<slug>/requirements/<int:req_id>/evidence")
@login_required
def add(slug, req_id):
    agency = agency_or_404(slug)
    req = get_scoped_or_404(Requirement, req_id, agency)
    require_role(EDIT_ROLES)
    if repeat := repeat_response(current_user):
        return repeat
    return _handle(agency, req)


@bp.post("/agencies/<slug>/evidence/<int:evidence_id>/versions")
@login_required
def new_version(slug, evidence_id):
    agency = agency_or_404(slug)
    old = get_scoped_or_404(Evidence, evidence_id, agency)
    require_role(EDIT_ROLES)
    if repeat := repeat_response(current_user):
        return repeat  # before the check below: the first sending is what superseded `old`
    if old.superseded:
        flash("That item already has a newer version; add the new version to the latest one.", "error")
        return redirect(url_for("board.requirement", slug=slug, req_id=old.requirement_id) + "#evidence", code=303)
    req = db.session.get(Requirement, old.requirement_id)
    return _handle(agency, req, supersedes=old)


@bp.get("/agencies/<slug>/evidence/<int:evidence_id>/download")
@login_required
def download(slug, evidence_id):
    agency = agency_or_404(slug)
    evidence = get_scoped_or_404(Evidence, evidence_id, agency)
    if evidence.kind != "file":
        abort(404)
    if not may_download(evidence):
        abort(403)
    store = get_store()
    if not store.exists(evidence.sha256):
        abort(404)
    # Streamed from the store and hashed on the way out: a file altered in storage ends the transfer short
    # of its Content-Length (and is logged) instead of being delivered as the evidence.
    response = send_file(store.open(evidence.sha256), mimetype=evidence.media_type, as_attachment=True,
                         download_name=evidence.filename or f"evidence-{evidence.id}", max_age=0, etag=False)
    if evidence.size_bytes is not None:
        response.content_length = evidence.size_bytes
    # A file from a user never runs as a page of ours, even if a browser ignores the attachment hint.
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Evidence-SHA256"] = evidence.sha256
    return response

