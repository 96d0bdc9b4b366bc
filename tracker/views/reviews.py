"""The monitor's review queue and decisions; the officer's list of returned items."""
import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from markupsafe import Markup

from tracker import cache
from tracker.access import agency_ids_with_role, agency_or_404, get_scoped_or_404, require_role
from tracker.extensions import db
from tracker.forms.auth import EmptyForm
from tracker.models import Agency, Evidence, Module, Requirement
from tracker.services import board as board_service
from tracker.services import reviews
from tracker.services.errors import ValidationFailed

bp = Blueprint("reviews", __name__)

REVIEW_ROLES = {"monitor"}


@bp.get("/reviews")
@login_required
def queue():
    scope = None  # an admin's scope is every agency
    if not current_user.is_admin:
        scope = tuple(agency_ids_with_role("monitor"))
        if not scope:
            abort(404)
    args = tuple(request.args.get(name, "") for name in ("agency", "module", "age", "page"))
    user = current_user._get_current_object()

    def render():
        agency_ids = list(scope) if scope is not None else reviews.monitor_agency_ids(user)
        if not agency_ids:
            return None
        return _queue_page(user, agency_ids)

    # The queue reads the same for everyone with the same agencies, so renderings are shared.
    result = cache.value("review-queue", (scope, args), render, agencies=cache.ALL if scope is None else scope,
                         shared=True)
    if result is None:
        abort(404)
    html, ignored = result
    if ignored:
        flash(f"Unknown filter value ignored: {', '.join(ignored)}.", "warning")
    return render_template("reviews/queue.html", queue=Markup(html))  # noqa: S704 - rendered by Jinja


def _queue_page(user, agency_ids):
    agencies = db.session.execute(
        sa.select(Agency).where(Agency.id.in_(agency_ids)).order_by(Agency.name)).scalars().all()
    modules = db.session.execute(Module.in_order()).scalars().all()
    agency_slug = request.args.get("agency", "")
    module_key = request.args.get("module", "")
    age = request.args.get("age", "")
    ignored = []
    if agency_slug and agency_slug not in {a.slug for a in agencies}:
        ignored.append("agency")
        agency_slug = ""
    if module_key and module_key not in {m.key for m in modules}:
        ignored.append("module")
        module_key = ""
    if age and age not in reviews.AGE_FILTERS:
        ignored.append("age")
        age = ""
    page = request.args.get("page", 1, type=int) or 1
    filters = {"agency": agency_slug, "module": module_key, "age": age}
    rows, total, counts = reviews.queue(user, agency_slug, module_key, age, page, agency_ids=agency_ids)
    pages = max((total + reviews.PAGE_SIZE - 1) // reviews.PAGE_SIZE, 1)
    html = render_template("reviews/_queue.html", rows=rows, counts=counts, agencies=agencies, modules=modules,
                           filters=filters, age_filters=reviews.AGE_FILTERS, page=page, pages=pages, total=total,
                           page_args={k: v for k, v in filters.items() if v})
    return html, tuple(ignored)


@bp.get("/returned")
@login_required
def returned():
    rows = db.session.execute(reviews.returned_for(current_user)).all()
    last_reviews = board_service.latest_reviews([e.id for e, _r, _a in rows])
    return render_template("reviews/returned.html", rows=rows, last_reviews=last_reviews)


def _load(slug, evidence_id):
    agency = agency_or_404(slug)
    evidence = get_scoped_or_404(Evidence, evidence_id, agency)
    require_role(REVIEW_ROLES)
    return agency, evidence


@bp.get("/agencies/<slug>/evidence/<int:evidence_id>/review")
@login_required
def review(slug, evidence_id):
    agency, evidence = _load(slug, evidence_id)
    return _page(agency, evidence)


def _page(agency, evidence, status=200, errors=None, comment=""):
    req = db.session.get(Requirement, evidence.requirement_id)
    detail = board_service.requirement_detail(req)
    versions = board_service.version_chain(evidence, detail["evidence"])
    return render_template("reviews/review.html", agency=agency, evidence=evidence, req=req, detail=detail,
                           versions=versions, errors=errors or {}, comment=comment, form=EmptyForm()), status


@bp.post("/agencies/<slug>/evidence/<int:evidence_id>/review")
@login_required
def decide(slug, evidence_id):
    agency, evidence = _load(slug, evidence_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    decision = request.form.get("decision")
    comment = request.form.get("comment", "")
    try:
        if decision == "accept":
            reviews.accept(evidence, comment, actor=current_user)
        elif decision == "return":
            reviews.return_(evidence, comment, actor=current_user)
        else:
            raise ValidationFailed({"decision": "Choose Accept or Return."})
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        flash("Not saved: " + " ".join(exc.errors.values()), "error")
        return _page(agency, db.session.get(Evidence, evidence_id), status=422, errors=exc.errors, comment=comment)
    verb = "accepted" if decision == "accept" else "returned to the agency"
    flash(f"“{evidence.title}” {verb}.", "success")
    return redirect(url_for("reviews.queue"), code=303)
