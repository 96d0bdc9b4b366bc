"""Public comment on a policy, without sign-in: only while the agency's public page is on and the admin opened
the document's comment window to the public. Each address may send a few comments an hour (the app's limiter);
names, references and comments have length limits; every comment waits for the department's moderation before
anyone sees it; text is shown as text (a link is never made live). CSRF as everywhere (the session cookie)."""
import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from tracker.extensions import db, limiter
from tracker.forms.auth import EmptyForm
from tracker.models import Agency, PolicyComment, PolicyDocument
from tracker.services import policies
from tracker.services.errors import ValidationFailed

bp = Blueprint("public_comments", __name__)


def _limit():
    return current_app.config.get("PUBLIC_COMMENT_RATE_LIMIT", "5 per hour;20 per day")


@bp.app_template_global()
def public_comment_documents(agency):
    """[(document, window)] open for public comment today, for the agency's public page."""
    if not agency.public_enabled:
        return []
    docs = db.session.execute(sa.select(PolicyDocument).where(
        PolicyDocument.agency_id == agency.id, PolicyDocument.state == "in_comment")
        .order_by(PolicyDocument.title)).scalars().all()
    return [(d, w) for d in docs if (w := policies.public_window(d, agency)) is not None]


def _load(slug, doc_id):
    """The agency and document, 404 unless the document is open for public comment today."""
    agency = db.session.execute(sa.select(Agency).where(Agency.slug == slug)).scalar_one_or_none()
    if agency is None or not agency.public_enabled:
        abort(404)
    doc = db.session.execute(sa.select(PolicyDocument).where(
        PolicyDocument.id == doc_id, PolicyDocument.agency_id == agency.id)).scalar_one_or_none()
    window = policies.public_window(doc, agency) if doc is not None else None
    if window is None:
        abort(404)
    return agency, doc, window


def _page(agency, doc, window, status=200, errors=None, values=None):
    published = db.session.execute(sa.select(PolicyComment).where(
        PolicyComment.window_id == window.id, PolicyComment.state == "published").order_by(PolicyComment.id)
    ).scalars().all()
    version = next(v for v in doc.versions if v.id == window.version_id)
    return render_template("policies/public_comment.html", agency=agency, doc=doc, window=window, version=version,
                           published=published, errors=errors or {}, values=values or {}, form=EmptyForm(),
                           limits={"name": policies.MAX_PUBLIC_NAME, "anchor": policies.MAX_ANCHOR,
                                   "body": policies.MAX_BODY}), status


@bp.get("/public/<slug>/policies/<int:doc_id>/comment")
def form(slug, doc_id):
    agency, doc, window = _load(slug, doc_id)
    return _page(agency, doc, window)


@bp.post("/public/<slug>/policies/<int:doc_id>/comment")
@limiter.limit(_limit, methods=["POST"])
def submit(slug, doc_id):
    agency, doc, window = _load(slug, doc_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    values = {k: request.form.get(k, "") for k in ("public_name", "anchor", "body")}
    try:
        policies.add_public_comment(doc, agency, values["public_name"], values["anchor"], values["body"])
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        return _page(agency, doc, window, 422, exc.errors, values)
    flash("Thank you. Your comment was received; the department reviews comments before they are published.",
          "success")
    return redirect(url_for("public_comments.form", slug=slug, doc_id=doc.id), code=303)


@bp.get("/public/<slug>/policies/<int:doc_id>/document")
def document_file(slug, doc_id):
    """The version open for comment, as a download (never rendered as a page of ours)."""
    from tracker.views.policies import send_version_file

    _agency, doc, window = _load(slug, doc_id)
    version = next(v for v in doc.versions if v.id == window.version_id)
    return send_version_file(version.file)
