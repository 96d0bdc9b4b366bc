"""Policies and curricula under review: the list, a document's page and every step of its cycle, and its
training rollout. Load → check access → service → commit once → redirect (or the page again with 422)."""
from datetime import date, timedelta

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_required

from tracker.access import agency_or_404, get_scoped_or_404, require_role
from tracker.extensions import db
from tracker.forms.auth import EmptyForm
from tracker.models import (
    APPROVAL_KINDS,
    COMMENT_RESPONSES,
    DOCUMENT_KINDS,
    DOCUMENT_STATES,
    ROUND_OUTCOMES,
    DocumentFile,
    PolicyDocument,
    PolicyVersion,
    Requirement,
    TrainingPlan,
)
from tracker.services import evidence as evidence_service
from tracker.services import policies, training
from tracker.services.errors import ValidationFailed
from tracker.services.imports import ImportFailed
from tracker.storage import get_store

bp = Blueprint("policies", __name__)

DEPARTMENT = {"officer"}          # drafts, uploads versions, answers comments, moderates, imports training
ROUND_OPENERS = {"officer", "monitor"}
ROUND_DECIDERS = {"monitor"}
COMMENTERS = policies.ROUND_COMMENTERS | policies.WINDOW_COMMENTERS
# Review-round comments pass between the department and the monitoring team; committee members read the
# community window's comments.
ROUND_READERS = {"officer", "monitor", "admin"}
MAX_IMPORT_BYTES = 5 * 1024 * 1024


@bp.app_template_global()
def requirement_policies(requirement):
    """The documents implementing a requirement, for the include on its page."""
    return policies.for_requirement(requirement)


@bp.app_template_global()
def policy_summary(agency):
    """The dashboard's line on policies under review and open comment windows."""
    return policies.dashboard_summary(agency)


def _date(value):
    try:
        return date.fromisoformat((value or "").strip())
    except ValueError:
        return None


def _checked():
    if not EmptyForm().validate_on_submit():
        abort(400)


def _role():
    return g.get("agency_role")


@bp.get("/agencies/<slug>/policies")
@login_required
def index(slug):
    agency = agency_or_404(slug)
    return _index_page(agency)


def _index_page(agency, status=200, errors=None, values=None):
    state = request.args.get("state", "")
    kind = request.args.get("kind", "")
    requirement = request.args.get("requirement", "")
    requirement_id = int(requirement) if requirement.isdigit() else None
    for name, value, allowed in (("state", state, DOCUMENT_STATES), ("kind", kind, DOCUMENT_KINDS)):
        if value and value not in allowed:
            flash(f"Unknown {name} “{value}” ignored; showing all.", "warning")
    rows = policies.list_documents(agency, state=state, kind=kind, requirement_id=requirement_id)
    requirements = db.session.execute(sa.select(Requirement).where(Requirement.agency_id == agency.id)
                                      .order_by(Requirement.sort_key)).scalars().all()
    return render_template("policies/index.html", agency=agency, rows=rows, requirements=requirements,
                           trained=training.latest_by_document(agency),
                           filters={"state": state, "kind": kind, "requirement": requirement_id},
                           can_draft=_role() in DEPARTMENT | {"admin"}, can_report=_role() in {"officer", "admin"},
                           errors=errors or {}, values=values or {},
                           kinds=DOCUMENT_KINDS, states=DOCUMENT_STATES), status


@bp.post("/agencies/<slug>/policies")
@login_required
def create(slug):
    agency = agency_or_404(slug)
    require_role(DEPARTMENT)
    _checked()
    values = {"title": request.form.get("title", ""), "kind": request.form.get("kind", ""),
              "requirement_ids": request.form.getlist("requirement_ids")}
    try:
        doc = policies.create_document(agency, values, actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        flash("Document not created: " + " ".join(exc.errors.values()), "error")
        return _index_page(agency, 422, exc.errors, values)
    flash(f"“{doc.title}” created as a draft. Upload its first version.", "success")
    return redirect(url_for("policies.document", slug=slug, doc_id=doc.id), code=303)


def _load(slug, doc_id, roles=None):
    agency = agency_or_404(slug)
    doc = get_scoped_or_404(PolicyDocument, doc_id, agency)
    if roles is not None:
        require_role(roles)
    return agency, doc


@bp.get("/agencies/<slug>/policies/<int:doc_id>")
@login_required
def document(slug, doc_id):
    agency, doc = _load(slug, doc_id)
    return _document_page(agency, doc)


def _document_page(agency, doc, status=200, errors=None, values=None):
    role = _role()
    detail = policies.document_detail(doc)
    others = db.session.execute(sa.select(PolicyDocument.id, PolicyDocument.title).where(
        PolicyDocument.agency_id == agency.id, PolicyDocument.id != doc.id).order_by(PolicyDocument.title)).all()
    requirements = db.session.execute(sa.select(Requirement).where(Requirement.agency_id == agency.id)
                                      .order_by(Requirement.sort_key)).scalars().all()
    plans = [(plan, points, training.chart(points, plan)) for plan, points in training.plans_for(doc)]
    return render_template(
        "policies/document.html", agency=agency, doc=doc, detail=detail, state=policies.display_state(doc),
        role=role, can=_abilities(role), others=others, requirements=requirements, plans=plans,
        errors=errors or {}, values=values or {}, kinds=DOCUMENT_KINDS, outcomes=ROUND_OUTCOMES,
        responses=COMMENT_RESPONSES, approval_kinds=APPROVAL_KINDS,
        default_due=policies.today() + timedelta(days=agency.review_comment_days),
        public_window=policies.public_window(doc, agency), closed=doc.state in policies.CLOSED_STATES,
    ), status


def _abilities(role):
    admin = role == "admin"
    return {"department": role in DEPARTMENT or admin, "open_round": role in ROUND_OPENERS or admin,
            "decide": role in ROUND_DECIDERS or admin, "comment_round": role in policies.ROUND_COMMENTERS,
            "comment_window": role in policies.WINDOW_COMMENTERS, "approve": admin,
            "read_round": role in ROUND_READERS, "public": admin}


def _refused(agency, doc, form_name, exc, values=None):
    db.session.rollback()
    flash("Not saved: " + " ".join(exc.errors.values()), "error")
    return _document_page(agency, doc, 422, {form_name: exc.errors}, {form_name: values or {}})


def _done(doc, message, anchor=""):
    flash(message, "success")
    return redirect(url_for("policies.document", slug=g.agency_slug, doc_id=doc.id) + anchor, code=303)


@bp.url_value_preprocessor
def _remember_slug(endpoint, values):
    g.agency_slug = (values or {}).get("slug")


@bp.post("/agencies/<slug>/policies/<int:doc_id>/edit")
@login_required
def edit(slug, doc_id):
    agency, doc = _load(slug, doc_id, DEPARTMENT)
    _checked()
    values = {"title": request.form.get("title", ""), "kind": request.form.get("kind", ""),
              "requirement_ids": request.form.getlist("requirement_ids")}
    try:
        policies.update_document(doc, agency, values, request.form.get("row_version"), actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        return _refused(agency, doc, "edit", exc, values)
    return _done(doc, "Document details saved.")


def _answers_from_form(form):
    """{comment id: (response, reason)} from fields answer-<id> and reason-<id>; unanswered ones left out."""
    answers = {}
    for name, value in form.items():
        if name.startswith("answer-") and name[7:].isdigit() and value:
            answers[int(name[7:])] = (value, form.get(f"reason-{name[7:]}", ""))
    return answers


@bp.post("/agencies/<slug>/policies/<int:doc_id>/versions")
@login_required
def add_version(slug, doc_id):
    agency, doc = _load(slug, doc_id, DEPARTMENT)
    _checked()
    upload = request.files.get("file")
    values = {"note": request.form.get("note", "")}
    try:
        if not (upload and upload.filename):
            raise ValidationFailed({"file": "Choose the PDF or Word file of this version."})
        staged = evidence_service.stage_upload(upload, current_app.config["MAX_CONTENT_LENGTH"])
        version = policies.add_version(doc, staged, values["note"], _answers_from_form(request.form),
                                       actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        return _refused(agency, doc, "version", exc, values)
    return _done(doc, f"Version {version.number} uploaded ({version.file.filename}).", "#versions")


@bp.get("/agencies/<slug>/policies/<int:doc_id>/versions/<int:version_id>/file")
@login_required
def download(slug, doc_id, version_id):
    agency, doc = _load(slug, doc_id)
    version = db.session.execute(sa.select(PolicyVersion).where(
        PolicyVersion.id == version_id, PolicyVersion.document_id == doc.id)).scalar_one_or_none()
    if version is None:
        abort(404)
    return send_version_file(version.file)


def send_version_file(file: DocumentFile):
    store = get_store()
    if not store.exists(file.sha256):
        abort(404)
    # Streamed from the store and checked against its hash on the way out, as evidence downloads are.
    response = send_file(store.open(file.sha256), mimetype=file.media_type, as_attachment=True,
                         download_name=file.filename, max_age=0, etag=False)
    response.content_length = file.size_bytes
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Evidence-SHA256"] = file.sha256
    return response


@bp.post("/agencies/<slug>/policies/<int:doc_id>/rounds")
@login_required
def open_round(slug, doc_id):
    agency, doc = _load(slug, doc_id, ROUND_OPENERS)
    _checked()
    values = {k: request.form.get(k, "") for k in ("comment_due", "outside_reviewers")}
    due = _date(values["comment_due"]) if values["comment_due"].strip() else None
    try:
        if values["comment_due"].strip() and due is None:
            raise ValidationFailed({"comment_due": "Enter the comment deadline as YYYY-MM-DD."})
        review = policies.open_review_round(doc, agency, due, values["outside_reviewers"], actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        return _refused(agency, doc, "round", exc, values)
    return _done(doc, f"Review round opened; comments are due {review.comment_due:%b %-d, %Y}.", "#review")


@bp.post("/agencies/<slug>/policies/<int:doc_id>/rounds/close")
@login_required
def close_round(slug, doc_id):
    agency, doc = _load(slug, doc_id, ROUND_DECIDERS)
    _checked()
    try:
        review = policies.close_review_round(doc, request.form.get("outcome", ""), actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        return _refused(agency, doc, "close", exc)
    return _done(doc, f"Review round closed: {ROUND_OUTCOMES[review.outcome]}.", "#review")


@bp.post("/agencies/<slug>/policies/<int:doc_id>/comments")
@login_required
def comment(slug, doc_id):
    agency, doc = _load(slug, doc_id, COMMENTERS)
    _checked()
    values = {k: request.form.get(k, "") for k in ("channel", "anchor", "body")}
    try:
        policies.add_comment(doc, values["channel"], values["anchor"], values["body"], actor=current_user,
                             role=_role())
        db.session.commit()
    except ValidationFailed as exc:
        return _refused(agency, doc, "comment_" + values["channel"] if values["channel"] in ("round", "window")
                        else "comment_round", exc, values)
    return _done(doc, "Comment added.", "#versions")


@bp.post("/agencies/<slug>/policies/<int:doc_id>/moderation")
@login_required
def moderate(slug, doc_id):
    agency, doc = _load(slug, doc_id, DEPARTMENT)
    _checked()
    try:
        decided = policies.moderate(doc, request.form.get("comment_id"), request.form.get("decision", ""),
                                    actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        return _refused(agency, doc, "moderation", exc)
    return _done(doc, "Public comment published." if decided.state == "published" else
                 "Public comment kept unpublished.", "#moderation")


@bp.post("/agencies/<slug>/policies/<int:doc_id>/windows")
@login_required
def open_window(slug, doc_id):
    agency, doc = _load(slug, doc_id, DEPARTMENT)
    _checked()
    values = {k: request.form.get(k, "") for k in ("opens_on", "closes_on", "allow_public")}
    try:
        window = policies.open_window(doc, agency, _date(values["opens_on"]), _date(values["closes_on"]),
                                      values["allow_public"] == "y", actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        return _refused(agency, doc, "window", exc, values)
    public = " Members of the public may comment." if window.allow_public else ""
    return _done(doc, f"Community comment window open {window.opens_on:%b %-d} to {window.closes_on:%b %-d, %Y}."
                 + public, "#community")


@bp.post("/agencies/<slug>/policies/<int:doc_id>/windows/summary")
@login_required
def window_summary(slug, doc_id):
    agency, doc = _load(slug, doc_id, DEPARTMENT)
    _checked()
    values = {k: request.form.get(k, "") for k in ("window_id", "summary")}
    try:
        policies.publish_summary(doc, values["window_id"], values["summary"], actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        return _refused(agency, doc, "summary", exc, values)
    return _done(doc, "Summary of comments and responses published.", "#community")


@bp.post("/agencies/<slug>/policies/<int:doc_id>/approval")
@login_required
def approve(slug, doc_id):
    agency, doc = _load(slug, doc_id, set())  # administrators only
    _checked()
    values = {k: request.form.get(k, "") for k in ("approval_kind", "approved_on", "approval_ref", "effective_on")}
    try:
        policies.record_approval(doc, values["approval_kind"], _date(values["approved_on"]), values["approval_ref"],
                                 _date(values["effective_on"]), actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        return _refused(agency, doc, "approval", exc, values)
    return _done(doc, f"Approval recorded; in effect from {doc.effective_on:%b %-d, %Y}.")


@bp.post("/agencies/<slug>/policies/<int:doc_id>/supersede")
@login_required
def supersede(slug, doc_id):
    agency, doc = _load(slug, doc_id, DEPARTMENT)
    _checked()
    try:
        policies.supersede(doc, agency, request.form.get("superseded_by"), actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        return _refused(agency, doc, "supersede", exc)
    return _done(doc, "Marked as superseded.")


@bp.post("/agencies/<slug>/policies/<int:doc_id>/training")
@login_required
def create_plan(slug, doc_id):
    agency, doc = _load(slug, doc_id, DEPARTMENT)
    _checked()
    values = {k: request.form.get(k, "") for k in ("population", "population_size", "target_date", "target_pct")}
    try:
        target = _date(values["target_date"]) if values["target_date"].strip() else None
        if values["target_date"].strip() and target is None:
            raise ValidationFailed({"target_date": "Enter the target date as YYYY-MM-DD."})
        training.create_plan(doc, {**values, "target_date": target}, actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        return _refused(agency, doc, "plan", exc, values)
    return _done(doc, f"Training of {values['population'].strip()} planned.", "#training")


@bp.post("/agencies/<slug>/policies/<int:doc_id>/training/import")
@login_required
def import_training(slug, doc_id):
    agency, doc = _load(slug, doc_id, DEPARTMENT)
    _checked()
    plan_id = request.form.get("plan_id", "")
    plan = db.session.execute(sa.select(TrainingPlan).where(
        TrainingPlan.document_id == doc.id, TrainingPlan.id == (int(plan_id) if plan_id.isdigit() else 0))
    ).scalar_one_or_none()
    upload = request.files.get("file")
    try:
        if plan is None:
            raise ValidationFailed({"plan_id": "Choose the training plan the file reports on."})
        if not (upload and upload.filename):
            raise ValidationFailed({"file": "Choose a CSV or XLSX file."})
        data = upload.read(MAX_IMPORT_BYTES + 1)
        if len(data) > MAX_IMPORT_BYTES:
            raise ValidationFailed({"file": "The file is larger than 5 MB; split it."})
        kind, rows, changed = training.import_file(plan, agency, upload.filename, data, actor=current_user)
        db.session.commit()
    except ImportFailed as exc:
        return _refused(agency, doc, "import", ValidationFailed({"file": f"{exc.filename}: " + "; ".join(
            exc.problems) + "."}))
    except ValidationFailed as exc:
        return _refused(agency, doc, "import", exc)
    what = "completion counts" if kind == "counts" else "roster rows"
    return _done(doc, f"Imported {rows} {what} for {plan.population}; {changed} changed.", "#training")
