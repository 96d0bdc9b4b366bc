"""Document and data requests between the monitor and the agency.

Monitors (and administrators) ask, decide extensions, close and withdraw; officers answer with evidence or a
note and ask for more time. Committee members do not see requests: every page here answers them 403 inside
their agency (404 outside it, as everywhere), and the navigation, dashboard panel, requirement history,
period report and exports leave requests out for them.
"""
from datetime import date

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user, login_required
from sqlalchemy.exc import IntegrityError

from tracker.access import agency_or_404, get_scoped_or_404, memberships, require_role, user_agencies
from tracker.extensions import db
from tracker.forms import field_errors
from tracker.forms.auth import EmptyForm
from tracker.forms.requirements import EvidenceForm
from tracker.models import DocumentRequest, Evidence, utcnow
from tracker.services import document_requests as service
from tracker.services import monitoring, submissions
from tracker.services.errors import ValidationFailed
from tracker.services.exports import csv_stream
from tracker.services.plans import agency_requirements
from tracker.views.exports import download_limit
from tracker.views.repeats import repeat_response

bp = Blueprint("requests", __name__)


def may_see_requests():
    """Whether the current user's role in the agency loaded by agency_or_404 shows requests."""
    return g.get("agency_role") in service.VIEW_ROLES | {"admin"}


def _nav_requests():
    if not current_user.is_authenticated:
        return {}
    if "nav_requests" not in g:
        g.nav_requests = service.nav_counts(current_user._get_current_object(), memberships())
    return g.nav_requests


@bp.app_context_processor
def _request_helpers():
    return {"nav_requests": _nav_requests, "may_see_requests": may_see_requests,
            "requests_summary": service.agency_summary, "REQUEST_STATE_LABELS": service.STATE_LABELS}


def _date(value):
    try:
        return date.fromisoformat((value or "").strip())
    except ValueError:
        return None


def _load(slug, request_id=None, roles=None):
    """Agency (404 outside it), then the request inside it (404), then the role: committee members and roles
    not in `roles` get 403."""
    agency = agency_or_404(slug)
    item = get_scoped_or_404(DocumentRequest, request_id, agency) if request_id is not None else None
    require_role(service.VIEW_ROLES)
    if roles is not None:
        require_role(roles)
    return agency, item


def _list_page(agency=None):
    if agency is not None:
        agency_ids, slugs = [agency.id], ()
        requirements = [(r.id, r.code) for r in agency_requirements(agency)]
    else:
        agency_ids = service.viewer_agency_ids(current_user, memberships())
        slugs = [a.slug for a in user_agencies() if a.id in set(agency_ids)]
        requirements = []
    filters = service.Filters.from_args(request.args, [i for i, _c in requirements], slugs)
    if filters.ignored:
        flash(f"Unknown filter value ignored: {', '.join(filters.ignored)}.", "warning")
    rows = service.list_requests(agency_ids, filters)
    return render_template("requests/list.html", agency=agency, rows=rows, filters=filters, requirements=requirements,
                           agencies=[a for a in user_agencies() if a.slug in set(slugs)],
                           state_filters=service.STATE_FILTERS, due_filters=service.DUE_FILTERS,
                           can_ask=agency is not None and g.agency_role in service.MANAGE_ROLES | {"admin"})


@bp.get("/requests")
@login_required
def mine():
    return _list_page()


@bp.get("/agencies/<slug>/requests")
@login_required
def index(slug):
    agency, _ = _load(slug)
    return _list_page(agency)


def _form_page(agency, status=200, errors=None, values=None):
    periods = [p for p in monitoring.periods(agency) if p.state != "filed"]
    return render_template("requests/new.html", agency=agency, requirements=agency_requirements(agency),
                           periods=periods, errors=errors or {}, values=values or {}), status


@bp.get("/agencies/<slug>/requests/new")
@login_required
def new(slug):
    agency, _ = _load(slug, roles=service.MANAGE_ROLES)
    return _form_page(agency)


@bp.post("/agencies/<slug>/requests")
@login_required
def create(slug):
    agency, _ = _load(slug, roles=service.MANAGE_ROLES)
    if not EmptyForm().validate_on_submit():
        abort(400)
    if repeat := repeat_response(current_user):
        return repeat
    values = {k: request.form.get(k, "") for k in ("title", "details", "due_date", "period_id")}
    values["requirement_ids"] = request.form.getlist("requirement_ids")
    try:
        item = service.create_request(agency, {**values, "due_date": _date(values["due_date"])}, actor=current_user)
        target = url_for("requests.show", slug=slug, request_id=item.id)
        submissions.remember(current_user, target)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        flash("Request not sent: " + " ".join(exc.errors.values()), "error")
        return _form_page(agency, 422, exc.errors, values)
    except IntegrityError:
        db.session.rollback()
        if repeat := repeat_response(current_user):
            return repeat
        raise
    flash(f"Request {item.number} sent to {agency.name}, due {item.due_date.isoformat()}.", "success")
    return redirect(target, code=303)


def _detail_page(agency, item, status=200, errors=None, evidence_form=None):
    role = g.agency_role
    return render_template(
        "requests/show.html", agency=agency, item=item, detail=service.request_detail(item), errors=errors or {},
        can_manage=role in service.MANAGE_ROLES | {"admin"}, can_answer=role in service.ANSWER_ROLES | {"admin"},
        existing=service.answerable_evidence(item), evidence_form=evidence_form or EvidenceForm(formdata=None),
        today=utcnow().date()), status


@bp.get("/agencies/<slug>/requests/<int:request_id>")
@login_required
def show(slug, request_id):
    agency, item = _load(slug, request_id)
    return _detail_page(agency, item)


def _evidence_for_answer(agency, item, form):
    """The evidence an answer links to: a new upload or link (the usual evidence service), an item already
    uploaded for one of the request's requirements, or None for a note only."""
    from tracker.views.evidence import _save

    choice = request.form.get("evidence_choice", "none")
    if choice == "existing":
        evidence = None
        raw = request.form.get("evidence_id", "")
        if raw.isdigit():
            evidence = db.session.get(Evidence, int(raw))
        if evidence is None or evidence.superseded or evidence.requirement_id not in {r.id for r in item.requirements}:
            raise ValidationFailed({"evidence_id": "Choose current evidence of a requirement the request concerns."})
        return evidence
    if choice != "new":
        return None
    req_ids = {r.id: r for r in item.requirements}
    raw = request.form.get("requirement_id", "")
    req = req_ids.get(int(raw)) if raw.isdigit() else (item.requirements[0] if len(req_ids) == 1 else None)
    if req is None:
        raise ValidationFailed({"requirement_id": "Choose the requirement the evidence belongs to."})
    return _save(agency, req, form)


@bp.post("/agencies/<slug>/requests/<int:request_id>/answer")
@login_required
def answer(slug, request_id):
    agency, item = _load(slug, request_id, roles=service.ANSWER_ROLES)
    form = EvidenceForm()
    form.validate_on_submit()
    if "csrf_token" in field_errors(form):
        abort(400)
    if repeat := repeat_response(current_user):
        return repeat
    note = request.form.get("note", "")
    target = url_for("requests.show", slug=slug, request_id=item.id)
    try:
        if errors := service.check_answer(item, {"note": note}):
            raise ValidationFailed(errors)  # before a file is stored
        evidence = _evidence_for_answer(agency, item, form)
        service.answer(item, actor=current_user, note=note, evidence=evidence)
        submissions.remember(current_user, target)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        flash("Answer not saved: " + " ".join(exc.errors.values()), "error")
        item = db.session.get(DocumentRequest, request_id)
        return _detail_page(agency, item, 422, exc.errors, form)
    except IntegrityError:
        db.session.rollback()
        if repeat := repeat_response(current_user):
            return repeat
        raise
    flash(f"Answer to request {item.number} sent to the monitor.", "success")
    return redirect(target, code=303)


def _act(slug, request_id, roles, apply, message):
    """One POST on a request: load, check the role and token, apply, commit once, show the request."""
    agency, item = _load(slug, request_id, roles=roles)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        apply(item)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        flash("Not saved: " + " ".join(exc.errors.values()), "error")
        return _detail_page(agency, db.session.get(DocumentRequest, request_id), 422, exc.errors)
    flash(message(item), "success")
    return redirect(url_for("requests.show", slug=slug, request_id=request_id), code=303)


@bp.post("/agencies/<slug>/requests/<int:request_id>/extension")
@login_required
def ask_extension(slug, request_id):
    return _act(slug, request_id, service.ANSWER_ROLES,
                lambda item: service.ask_extension(item, _date(request.form.get("requested_due")),
                                                   request.form.get("reason"), actor=current_user),
                lambda item: f"Extension of request {item.number} asked; the monitor decides.")


@bp.post("/agencies/<slug>/requests/<int:request_id>/extension/decide")
@login_required
def decide_extension(slug, request_id):
    decision = request.form.get("decision", "")
    return _act(slug, request_id, service.MANAGE_ROLES,
                lambda item: service.decide_extension(item, request.form.get("extension_id"), decision,
                                                      request.form.get("decision_note"), actor=current_user),
                lambda item: (f"Extension granted: request {item.number} is now due {item.due_date.isoformat()}."
                              if decision == "grant" else f"Extension of request {item.number} refused."))


@bp.post("/agencies/<slug>/requests/<int:request_id>/close")
@login_required
def finish(slug, request_id):
    action = request.form.get("action", "")
    return _act(slug, request_id, service.MANAGE_ROLES,
                lambda item: service.finish(item, action, request.form.get("note"), actor=current_user),
                lambda item: f"Request {item.number} {item.state}.")


@bp.get("/agencies/<slug>/requests.csv")
@login_required
@download_limit()
def export_csv(slug):
    agency, _ = _load(slug)
    body = csv_stream(service.export_rows(agency), columns=service.EXPORT_COLUMNS)
    response = Response(stream_with_context(body), mimetype="text/csv")
    name = f"{agency.slug}-requests-{utcnow().date().isoformat()}.csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response

