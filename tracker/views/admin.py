"""Administration: agencies, adoption, users and memberships, audit log."""
import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from tracker.access import require_admin
from tracker.extensions import db
from tracker.forms import apply_errors
from tracker.forms.admin import AdoptForm, AgencyForm, MembershipForm, UserForm
from tracker.forms.auth import EmptyForm
from tracker.models import (
    Agency,
    AuditCheckpoint,
    AuditEvent,
    ComplianceScale,
    Membership,
    Module,
    Requirement,
    Source,
    User,
)
from tracker.services import accounts, agencies, checkpoints, mfa
from tracker.services.errors import ValidationFailed

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@login_required
def _admins_only():
    require_admin()


def _agency_or_404(slug):
    agency = db.session.execute(sa.select(Agency).where(Agency.slug == slug)).scalar_one_or_none()
    if agency is None:
        abort(404)
    return agency


def _agency_choices(form):
    sources = db.session.execute(sa.select(Source).order_by(Source.short_title)).scalars()
    form.source_id.choices = [(0, "— None / not in the catalog —")] + [
        (s.id, f"{s.short_title} ({s.jurisdiction})") for s in sources]
    scales = db.session.execute(sa.select(ComplianceScale).order_by(ComplianceScale.name)).scalars()
    form.scale_id.choices = [(s.id, s.name) for s in scales]


def _agency_values(form):
    return {
        "name": form.name.data, "slug": form.slug.data, "state": form.state.data,
        "source_id": form.source_id.data or None, "effective_date": form.effective_date.data,
        "scale_id": form.scale_id.data, "sustainment_months": form.sustainment_months.data,
        "public_enabled": form.public_enabled.data,
    }


def _agency_form_valid(form, agency=None):
    """Form-level and domain checks together, so every wrong field is named in one answer."""
    if request.method != "POST":
        return False
    ok = form.validate()
    values = _agency_values(form)
    problems = agencies.agency_problems(values, agency)
    for name in list(problems):
        if getattr(form, name).errors:  # keep the form's own message for fields it already refused
            problems.pop(name)
    apply_errors(form, problems)
    return ok and not problems


@bp.get("/")
def index():
    counts = (sa.select(Requirement.agency_id, sa.func.count().label("n"))
              .group_by(Requirement.agency_id).subquery())
    agency_rows = db.session.execute(
        sa.select(Agency, sa.func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.agency_id == Agency.id).order_by(Agency.name)
    ).all()
    return render_template("admin/index.html", agency_rows=agency_rows)


@bp.route("/agencies/new", methods=["GET", "POST"])
def agency_new():
    form = AgencyForm()
    _agency_choices(form)
    if _agency_form_valid(form):
        try:
            agency = agencies.create_agency(_agency_values(form))
            db.session.commit()
            flash(f"Agency {agency.name} created. Now choose the modules it adopts.", "success")
            return redirect(url_for("admin.agency_edit", slug=agency.slug), code=303)
        except ValidationFailed as exc:
            db.session.rollback()
            apply_errors(form, exc.errors)
    status = 422 if request.method == "POST" else 200
    return render_template("admin/agency_form.html", form=form, agency=None), status


@bp.route("/agencies/<slug>", methods=["GET", "POST"])
def agency_edit(slug):
    agency = _agency_or_404(slug)
    form = AgencyForm(obj=agency)
    _agency_choices(form)
    if request.method == "GET":
        form.source_id.data = agency.source_id or 0
    if _agency_form_valid(form, agency):
        try:
            recomputed = agencies.update_agency(agency, _agency_values(form), actor=current_user)
            db.session.commit()
            note = f" {recomputed} due date(s) recomputed from the new effective date." if recomputed else ""
            flash(f"Agency {agency.name} saved.{note}", "success")
            return redirect(url_for("admin.agency_edit", slug=agency.slug), code=303)
        except ValidationFailed as exc:
            db.session.rollback()
            apply_errors(form, exc.errors)
    adopt_form = _adopt_form(agency)
    status = 422 if request.method == "POST" else 200
    return render_template("admin/agency_form.html", form=form, agency=agency, adopt_form=adopt_form,
                           adopted=_adopted_counts(agency)), status


def _adopt_form(agency):
    form = AdoptForm()
    modules = db.session.execute(Module.in_order()).scalars().all()
    form.modules.choices = [(m.key, m.name) for m in modules]
    return form


def _adopted_counts(agency):
    return dict(db.session.execute(
        sa.select(Module.key, sa.func.count(Requirement.id))
        .join(Requirement, Requirement.module_id == Module.id)
        .where(Requirement.agency_id == agency.id).group_by(Module.key)
    ).all())


@bp.post("/agencies/<slug>/adopt")
def agency_adopt(slug):
    agency = _agency_or_404(slug)
    form = _adopt_form(agency)
    if form.validate_on_submit():
        try:
            created = agencies.adopt(agency, form.modules.data)
            db.session.commit()
            flash(f"{len(created)} requirement(s) created for {agency.name}.", "success")
        except ValidationFailed as exc:
            db.session.rollback()
            flash(" ".join(exc.errors.values()), "error")
    else:
        flash("Choose at least one module to adopt.", "error")
    return redirect(url_for("admin.agency_edit", slug=agency.slug), code=303)


@bp.get("/users")
def users():
    rows = db.session.execute(
        sa.select(User).options(sa.orm.selectinload(User.memberships)).order_by(User.email)
    ).scalars().all()
    return render_template("admin/users.html", users=rows, form=_user_form())


def _user_form():
    form = UserForm()
    form.agency_id.choices = [(0, "— None (administrators) —")] + [
        (a.id, a.name) for a in db.session.execute(sa.select(Agency).order_by(Agency.name)).scalars()]
    return form


@bp.post("/users")
def user_create():
    form = _user_form()
    if form.validate_on_submit():
        agency = db.session.get(Agency, form.agency_id.data) if form.agency_id.data else None
        password = accounts.random_password()
        try:
            user = accounts.create_user(form.email.data, password, name=form.name.data or "",
                                        role=form.role.data, agency=agency, actor=current_user, temporary=True)
            db.session.commit()
            # In this answer only: a flash message would put it in the session cookie, which is signed, not
            # encrypted. The user must choose their own password at the first sign-in.
            return render_template("admin/user_created.html", user=user, password=password), 201
        except ValidationFailed as exc:
            db.session.rollback()
            apply_errors(form, exc.errors)
    rows = db.session.execute(sa.select(User).order_by(User.email)).scalars().all()
    return render_template("admin/users.html", users=rows, form=form), 422


def _user_or_404(user_id):
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


def _membership_form():
    form = MembershipForm()
    form.agency_id.choices = [
        (a.id, a.name) for a in db.session.execute(sa.select(Agency).order_by(Agency.name)).scalars()]
    return form


@bp.get("/users/<int:user_id>")
def user_detail(user_id):
    user = _user_or_404(user_id)
    return render_template("admin/user.html", user=user, form=_membership_form(), action_form=EmptyForm(),
                           locked_sources=accounts.locked_sources(user))


@bp.post("/users/<int:user_id>/memberships")
def membership_add(user_id):
    user = _user_or_404(user_id)
    form = _membership_form()
    if form.validate_on_submit():
        agency = db.session.get(Agency, form.agency_id.data)
        accounts.add_membership(user, agency, form.role.data, actor=current_user)
        db.session.commit()
        flash(f"{user.email} is now {form.role.data} in {agency.name}.", "success")
        return redirect(url_for("admin.user_detail", user_id=user.id), code=303)
    return render_template("admin/user.html", user=user, form=form, action_form=EmptyForm(),
                           locked_sources=accounts.locked_sources(user)), 422


@bp.post("/users/<int:user_id>/memberships/<int:membership_id>/remove")
def membership_remove(user_id, membership_id):
    user = _user_or_404(user_id)
    membership = db.session.execute(
        sa.select(Membership).where(Membership.id == membership_id, Membership.user_id == user.id)
    ).scalar_one_or_none()
    if membership is None:
        abort(404)
    if EmptyForm().validate_on_submit():
        name = membership.agency.name
        accounts.remove_membership(membership, actor=current_user)
        db.session.commit()
        flash(f"{user.email} no longer has access to {name}.", "success")
    return redirect(url_for("admin.user_detail", user_id=user.id), code=303)


@bp.post("/users/<int:user_id>/<action>")
def user_action(user_id, action):
    user = _user_or_404(user_id)
    if action not in {"unlock", "disable", "enable", "sign-out", "reset-mfa"}:
        abort(404)
    if not EmptyForm().validate_on_submit():
        abort(400)
    if action == "disable" and user.id == current_user.id:
        flash("You cannot disable your own account.", "error")
        return redirect(url_for("admin.user_detail", user_id=user.id), code=303)
    if action == "unlock":
        accounts.unlock_user(user, actor=current_user)
        message = f"{user.email} unlocked."
    elif action == "disable":
        accounts.set_active(user, False, actor=current_user)
        message = f"{user.email} disabled and signed out everywhere."
    elif action == "enable":
        accounts.set_active(user, True, actor=current_user)
        message = f"{user.email} enabled."
    elif action == "reset-mfa":
        mfa.reset(user, actor=current_user)
        accounts.revoke_all_sessions(user, actor=current_user, reason="second factor reset")
        message = f"Two-step sign-in of {user.email} reset; they set it up again at their next sign-in."
    else:
        count = accounts.revoke_all_sessions(user, actor=current_user, reason="admin sign-out")
        message = f"{count} session(s) of {user.email} ended."
    db.session.commit()
    flash(message, "success")
    return redirect(url_for("admin.user_detail", user_id=user.id), code=303)


@bp.get("/audit")
def audit_log():
    page = request.args.get("page", 1, type=int)
    pagination = db.paginate(sa.select(AuditEvent).order_by(AuditEvent.id.desc()), page=page, per_page=50,
                             error_out=False)
    recent = db.session.execute(sa.select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(10)).scalars()
    return render_template("admin/audit.html", pagination=pagination, checkpoints=recent.all(),
                           public_key=checkpoints.public_key())
