"""The advisory committee's pages: meetings, and recommendations with the department's written answers.

Who may do what (README, "Advisory committee: meetings and recommendations"):
- every member of the agency (officer, monitor, committee member) and the administrator reads meetings and
  submitted recommendations with their answers; drafts are the committee's own (committee members, admin);
- compliance officers, the committee chair and the administrator create and edit meetings and attach papers;
- committee members draft; a draft is changed and submitted by its author or the chair (or the admin);
- compliance officers write the department's answer (and revise it);
- the administrator publishes meetings' agenda/minutes and recommendations with answers on the public page.
"""
import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_required
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from tracker.access import agency_or_404, get_scoped_or_404, memberships
from tracker.extensions import db
from tracker.forms import apply_errors, field_errors
from tracker.forms.committee import (
    DocumentForm,
    MeetingForm,
    MeetingPublishForm,
    RecommendationForm,
    RecommendationPublishForm,
    ResponseForm,
    SettingsForm,
    VersionForm,
)
from tracker.models import CommitteeRecommendation, Meeting, Module, Requirement
from tracker.services import committee, meetings, submissions
from tracker.services import evidence as evidence_service
from tracker.services.errors import ValidationFailed
from tracker.storage import get_store
from tracker.views.repeats import repeat_response

bp = Blueprint("committee", __name__)


# --- who may do what -------------------------------------------------------------------------------------

def _role():
    return g.get("agency_role")


def is_chair(agency):
    return any(m.agency_id == agency.id and m.role == "committee" and m.is_chair for m in memberships())


def may_edit_meetings(agency):
    return _role() in ("officer", "admin") or is_chair(agency)


def sees_drafts():
    return _role() in ("committee", "admin")


def may_draft():
    return _role() in ("committee", "admin")


def may_edit_draft(agency, rec):
    if rec.state != "draft":
        return False
    if _role() == "admin":
        return True
    return _role() == "committee" and (rec.created_by_id == current_user.id or is_chair(agency))


def may_respond():
    return _role() in ("officer", "admin")


def _forbid_unless(allowed):
    if not allowed:
        abort(403)


@bp.app_template_filter("markdown")
def _markdown(text):
    return meetings.render_markdown(text)


@bp.app_template_filter("meeting_time")
def _meeting_time(value):
    return value.strftime("%a %b %-d, %Y, %H:%M") if value else "—"


@bp.app_context_processor
def _nav():
    def overdue():
        if not current_user.is_authenticated:
            return []
        return committee.overdue_by_agency(current_user, memberships())
    return {"nav_committee_overdue": overdue, "committee_panel": committee.dashboard_panel,
            "upcoming_meetings": meetings.upcoming, "public_meetings": meetings.public_meetings,
            "public_recommendations": committee.public_recommendations}


# --- choices ---------------------------------------------------------------------------------------------

def _requirement_choices(agency):
    return {r.id: f"{r.code} — {r.title}" for r in db.session.execute(
        sa.select(Requirement.id, Requirement.code, Requirement.title)
        .where(Requirement.agency_id == agency.id).order_by(Requirement.sort_key))}


def _rec_form_choices(agency, form):
    form.meeting_id.choices = {0: "Not adopted at a meeting", **{
        m.id: f"{m.title} ({m.starts_at:%b %-d, %Y})" for m in db.session.execute(
            sa.select(Meeting).where(Meeting.agency_id == agency.id).order_by(Meeting.starts_at.desc())).scalars()}}
    form.requirement_ids.choices = _requirement_choices(agency)
    form.module_ids.choices = {m.id: m.name for m in db.session.execute(Module.in_order()).scalars()}
    return form


def _rec_values(form):
    return {"title": form.title.data, "body": form.body.data, "rationale": form.rationale.data,
            "meeting_id": form.meeting_id.data or None, "requirement_ids": form.requirement_ids.data or [],
            "module_ids": form.module_ids.data or []}


def _meeting_values(form):
    return {"title": form.title.data, "starts_at": form.starts_at.data, "location": form.location.data,
            "link": form.link.data, "agenda": form.agenda.data, "minutes": form.minutes.data,
            "guests": form.guests.data, "attendee_ids": form.attendee_ids.data or []}


def _meeting_form(agency, form):
    form.attendee_ids.choices = {u.id: u.display_name for u, _role in meetings.attendee_choices(agency)}
    return form


# --- the committee's page ---------------------------------------------------------------------------------

@bp.get("/agencies/<slug>/committee")
@login_required
def index(slug):
    agency = agency_or_404(slug)
    state = request.args.get("state", "")
    if state not in committee.LIST_FILTERS or (state == "draft" and not sees_drafts()):
        if state:
            flash(f"Unknown filter “{state}” ignored; showing all recommendations.", "warning")
        state = ""
    return _index_page(agency, state)


def _index_page(agency, state="", settings_form=None, status=200):
    recs, answers = committee.recommendations(agency, state, drafts=sees_drafts())
    if settings_form is None and _role() == "admin":
        settings_form = SettingsForm(formdata=None, response_days=agency.committee_response_days)
    if settings_form is not None:
        _settings_choices(agency, settings_form)
    return render_template("committee/index.html", agency=agency, meetings=meetings.meetings(agency),
                           upcoming=meetings.upcoming(agency), recs=recs, answers=answers, state=state,
                           filters={k: v for k, v in committee.LIST_FILTERS.items() if k != "draft" or sees_drafts()},
                           counts=committee.summary(agency), today=committee.today(),
                           may_edit_meetings=may_edit_meetings(agency), may_draft=may_draft(),
                           settings_form=settings_form), status


def _settings_choices(agency, form):
    members = committee.committee_members(agency)
    form.chair_id.choices = {0: "No chair", **{u.id: u.display_name for u, _m in members}}
    if form.chair_id.data is None:
        form.chair_id.data = next((u.id for u, m in members if m.is_chair), 0)
    return form


@bp.post("/agencies/<slug>/committee/settings")
@login_required
def settings(slug):
    """The administrator sets the answer period and the chair."""
    agency = agency_or_404(slug)
    _forbid_unless(_role() == "admin")
    form = _settings_choices(agency, SettingsForm())
    errors = {} if form.validate_on_submit() else field_errors(form)
    if "csrf_token" in errors:
        abort(400)
    try:
        if errors:
            raise ValidationFailed(errors)
        changed = committee.set_settings(agency, form.response_days.data, form.chair_id.data, actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        apply_errors(form, exc.errors)
        flash("Settings not saved: " + " ".join(exc.errors.values()), "error")
        return _index_page(agency_or_404(slug), settings_form=form, status=422)
    flash("Committee settings saved." if changed else "Nothing changed.", "success" if changed else "info")
    return redirect(url_for("committee.index", slug=slug) + "#settings", code=303)


# --- meetings --------------------------------------------------------------------------------------------

def _load_meeting(slug, meeting_id):
    agency = agency_or_404(slug)
    return agency, get_scoped_or_404(Meeting, meeting_id, agency)


def _meeting_edit_page(agency, meeting, form, status=200):
    return render_template("committee/meeting_form.html", agency=agency, meeting=meeting, form=form), status


@bp.get("/agencies/<slug>/committee/meetings/new")
@login_required
def new_meeting(slug):
    agency = agency_or_404(slug)
    _forbid_unless(may_edit_meetings(agency))
    return _meeting_edit_page(agency, None, _meeting_form(agency, MeetingForm(formdata=None)))


@bp.post("/agencies/<slug>/committee/meetings")
@login_required
def create_meeting(slug):
    agency = agency_or_404(slug)
    _forbid_unless(may_edit_meetings(agency))
    if repeat := repeat_response(current_user):
        return repeat
    form = _meeting_form(agency, MeetingForm())
    return _save_meeting(agency, None, form)


@bp.get("/agencies/<slug>/committee/meetings/<int:meeting_id>")
@login_required
def meeting(slug, meeting_id):
    agency, item = _load_meeting(slug, meeting_id)
    return _meeting_page(agency, item)


def _meeting_page(agency, item, status=200, document_form=None, publish_form=None):
    publish_form = publish_form or MeetingPublishForm(formdata=None, agenda_public=item.agenda_public,
                                                      minutes_public=item.minutes_public)
    return render_template(
        "committee/meeting.html", agency=agency, meeting=item, recs=committee.for_meeting(item, drafts=sees_drafts()),
        may_edit=may_edit_meetings(agency), may_draft=may_draft(), is_admin=_role() == "admin",
        document_form=document_form or DocumentForm(formdata=None), publish_form=publish_form), status


@bp.get("/agencies/<slug>/committee/meetings/<int:meeting_id>/edit")
@login_required
def edit_meeting(slug, meeting_id):
    agency, item = _load_meeting(slug, meeting_id)
    _forbid_unless(may_edit_meetings(agency))
    form = MeetingForm(formdata=None, obj=item)
    form.attendee_ids.data = [u.id for u in item.attendees]
    return _meeting_edit_page(agency, item, _meeting_form(agency, form))


@bp.post("/agencies/<slug>/committee/meetings/<int:meeting_id>/edit")
@login_required
def update_meeting(slug, meeting_id):
    agency, item = _load_meeting(slug, meeting_id)
    _forbid_unless(may_edit_meetings(agency))
    return _save_meeting(agency, item, _meeting_form(agency, MeetingForm()))


def _save_meeting(agency, item, form):
    errors = {} if form.validate_on_submit() else field_errors(form)
    if "csrf_token" in errors:
        abort(400)
    try:
        if errors:
            raise ValidationFailed(errors)
        if item is None:
            item = meetings.create_meeting(agency, _meeting_values(form), actor=current_user)
            changed = True
        else:
            changed = meetings.update_meeting(item, _meeting_values(form), actor=current_user)
        target = url_for("committee.meeting", slug=agency.slug, meeting_id=item.id)
        submissions.remember(current_user, target)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        apply_errors(form, exc.errors)
        flash("Meeting not saved: " + " ".join(exc.errors.values()), "error")
        return _meeting_edit_page(agency, item if item is not None and item.id else None, form, 422)
    flash(f"Meeting “{item.title}” saved." if changed else "Nothing changed.", "success" if changed else "info")
    return redirect(target, code=303)


@bp.post("/agencies/<slug>/committee/meetings/<int:meeting_id>/documents")
@login_required
def add_document(slug, meeting_id):
    agency, item = _load_meeting(slug, meeting_id)
    _forbid_unless(may_edit_meetings(agency))
    if repeat := repeat_response(current_user):
        return repeat
    form = DocumentForm()
    if not form.validate_on_submit():
        abort(400)
    target = url_for("committee.meeting", slug=slug, meeting_id=item.id) + "#documents"
    try:
        upload = form.file.data
        if not (upload and upload.filename):
            raise ValidationFailed({"file": "Choose a file to attach."})
        staged = evidence_service.stage_upload(upload, current_app.config["MAX_CONTENT_LENGTH"])
        document = meetings.add_document(item, staged, actor=current_user)
        submissions.remember(current_user, target)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        apply_errors(form, exc.errors)
        flash("Document not attached: " + " ".join(exc.errors.values()), "error")
        return _meeting_page(agency, db.session.get(Meeting, meeting_id), 422, document_form=form)
    flash(f"“{document.filename}” attached.", "success")
    return redirect(target, code=303)


@bp.get("/agencies/<slug>/committee/meetings/<int:meeting_id>/documents/<int:file_id>")
@login_required
def document(slug, meeting_id, file_id):
    _agency, item = _load_meeting(slug, meeting_id)
    doc = meetings.meeting_document(item, file_id)
    store = get_store()
    if doc is None or not store.exists(doc.sha256):
        abort(404)
    # Streamed and hashed on the way out, as evidence downloads are (tracker/views/evidence.py).
    response = send_file(store.open(doc.sha256), mimetype=doc.media_type, as_attachment=True,
                         download_name=doc.filename, max_age=0, etag=False)
    response.content_length = doc.size_bytes
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/agencies/<slug>/committee/meetings/<int:meeting_id>/publish")
@login_required
def publish_meeting(slug, meeting_id):
    agency, item = _load_meeting(slug, meeting_id)
    _forbid_unless(_role() == "admin")
    form = MeetingPublishForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        changed = meetings.set_public(item, agency, form.agenda_public.data, form.minutes_public.data,
                                      actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        apply_errors(form, exc.errors)
        flash("Not published: " + " ".join(exc.errors.values()), "error")
        return _meeting_page(agency, db.session.get(Meeting, meeting_id), 422, publish_form=form)
    flash("Public page updated." if changed else "Nothing changed.", "success" if changed else "info")
    return redirect(url_for("committee.meeting", slug=slug, meeting_id=item.id), code=303)


# --- recommendations -------------------------------------------------------------------------------------

def _load_rec(slug, rec_id):
    agency = agency_or_404(slug)
    rec = get_scoped_or_404(CommitteeRecommendation, rec_id, agency)
    if rec.state == "draft" and not sees_drafts():
        abort(404)
    return agency, rec


@bp.get("/agencies/<slug>/committee/recommendations/new")
@login_required
def new_recommendation(slug):
    agency = agency_or_404(slug)
    _forbid_unless(may_draft())
    form = _rec_form_choices(agency, RecommendationForm(formdata=None))
    form.meeting_id.data = request.args.get("meeting", 0, type=int)
    return render_template("committee/recommendation_new.html", agency=agency, form=form)


@bp.post("/agencies/<slug>/committee/recommendations")
@login_required
def create_recommendation(slug):
    agency = agency_or_404(slug)
    _forbid_unless(may_draft())
    if repeat := repeat_response(current_user):
        return repeat
    form = _rec_form_choices(agency, RecommendationForm())
    errors = {} if form.validate_on_submit() else field_errors(form)
    if "csrf_token" in errors:
        abort(400)
    try:
        if errors:
            raise ValidationFailed(errors)
        rec = committee.create(agency, _rec_values(form), actor=current_user)
        target = url_for("committee.recommendation", slug=slug, rec_id=rec.id)
        submissions.remember(current_user, target)
        db.session.commit()
    except (ValidationFailed, IntegrityError) as exc:
        db.session.rollback()
        problems = exc.errors if isinstance(exc, ValidationFailed) else {
            "title": "Another draft took the same number at the same moment; save again."}
        apply_errors(form, problems)
        flash("Draft not saved: " + " ".join(problems.values()), "error")
        return render_template("committee/recommendation_new.html", agency=agency, form=form), 422
    flash(f"Draft recommendation {rec.number} saved. Submit it when the committee has adopted it.", "success")
    return redirect(target, code=303)


@bp.get("/agencies/<slug>/committee/recommendations/<int:rec_id>")
@login_required
def recommendation(slug, rec_id):
    agency, rec = _load_rec(slug, rec_id)
    return _rec_page(agency, rec)


def _rec_page(agency, rec, status=200, forms=None, conflict=False):
    forms = forms or {}
    edit_form = forms.get("edit")
    if edit_form is None and may_edit_draft(agency, rec):
        edit_form = RecommendationForm(formdata=None, obj=rec)
        edit_form.meeting_id.data = rec.meeting_id or 0
        edit_form.requirement_ids.data = [r.id for r in rec.requirements]
        edit_form.module_ids.data = [m.id for m in rec.modules]
    if edit_form is not None:
        _rec_form_choices(agency, edit_form)
        edit_form.row_version.data = rec.row_version
    response_form = forms.get("response")
    if response_form is None and may_respond() and rec.state in ("submitted", "responded"):
        response_form = ResponseForm(formdata=None)
    if response_form is not None:
        response_form.requirement_ids.choices = _requirement_choices(agency)
        response_form.row_version.data = rec.row_version
    history = committee.responses(rec) if rec.state == "responded" else []
    return render_template(
        "committee/recommendation.html", agency=agency, rec=rec, history=history,
        current=history[-1] if history else None, overdue=committee.is_overdue(rec), conflict=conflict,
        edit_form=edit_form, response_form=response_form,
        submit_form=VersionForm(formdata=None, row_version=rec.row_version) if may_edit_draft(agency, rec) else None,
        publish_form=(forms.get("publish") or RecommendationPublishForm(formdata=None, public=rec.public))
        if _role() == "admin" and rec.state != "draft" else None,
    ), status


def _rec_action(slug, rec_id, form_cls, key, allowed, apply, message):
    """One write on a recommendation: 303 on success, 422 with the errors, 409 when someone saved first."""
    agency, rec = _load_rec(slug, rec_id)
    _forbid_unless(allowed(agency, rec))
    form = form_cls()
    if key == "edit":
        _rec_form_choices(agency, form)
    elif key == "response":
        form.requirement_ids.choices = _requirement_choices(agency)
    errors = {} if form.validate_on_submit() else field_errors(form)
    if "csrf_token" in errors:
        abort(400)
    try:
        if errors:
            raise ValidationFailed(errors)
        changed = apply(agency, rec, form)
        db.session.commit()
    except (committee.Conflict, StaleDataError):
        db.session.rollback()
        rec = db.session.get(CommitteeRecommendation, rec_id)
        flash("Someone else changed this recommendation first. The current version is shown; your input is "
              "kept in the form — send it again to apply it.", "warning")
        return _rec_page(agency, rec, 409, forms={key: form}, conflict=True)
    except ValidationFailed as exc:
        db.session.rollback()
        rec = db.session.get(CommitteeRecommendation, rec_id)
        apply_errors(form, exc.errors)
        flash("Not saved: " + " ".join(exc.errors.values()), "error")
        return _rec_page(agency, rec, 422, forms={key: form})
    if changed is not False:
        flash(message(rec), "success")
    return redirect(url_for("committee.recommendation", slug=slug, rec_id=rec.id), code=303)


@bp.post("/agencies/<slug>/committee/recommendations/<int:rec_id>")
@login_required
def update_recommendation(slug, rec_id):
    return _rec_action(slug, rec_id, RecommendationForm, "edit", may_edit_draft,
                       lambda agency, rec, f: committee.update(rec, _rec_values(f), f.row_version.data,
                                                               actor=current_user),
                       lambda rec: f"Draft recommendation {rec.number} saved.")


@bp.post("/agencies/<slug>/committee/recommendations/<int:rec_id>/submit")
@login_required
def submit_recommendation(slug, rec_id):
    return _rec_action(slug, rec_id, VersionForm, "submit", may_edit_draft,
                       lambda agency, rec, f: committee.submit(rec, f.row_version.data, actor=current_user),
                       lambda rec: f"Recommendation {rec.number} submitted; the department's written answer is "
                                   f"due by {rec.response_due:%b %-d, %Y}.")


@bp.post("/agencies/<slug>/committee/recommendations/<int:rec_id>/response")
@login_required
def respond(slug, rec_id):
    return _rec_action(slug, rec_id, ResponseForm, "response", lambda agency, rec: may_respond(),
                       lambda agency, rec, f: committee.respond(rec, {
                           "decision": f.decision.data, "reasons": f.reasons.data, "steps": f.steps.data,
                           "requirement_ids": f.requirement_ids.data or []}, f.row_version.data, actor=current_user),
                       lambda rec: f"The department's answer to recommendation {rec.number} is saved.")


@bp.post("/agencies/<slug>/committee/recommendations/<int:rec_id>/publish")
@login_required
def publish_recommendation(slug, rec_id):
    return _rec_action(slug, rec_id, RecommendationPublishForm, "publish", lambda agency, rec: _role() == "admin",
                       lambda agency, rec, f: committee.set_public(rec, agency, f.public.data, actor=current_user),
                       lambda rec: "Published on the public page." if rec.public else "Removed from the public page.")
