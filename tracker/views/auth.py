"""Sign in, sign out, own account."""
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from tracker.access import user_agencies
from tracker.extensions import db, limiter
from tracker.forms.auth import EmptyForm, LoginForm, PasswordChangeForm
from tracker.services import accounts, tokens
from tracker.services.errors import ValidationFailed

bp = Blueprint("auth", __name__)


def _safe_next(target):
    """Only same-site relative paths; never another host (open redirect)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


def _login_limit():
    return current_app.config["LOGIN_RATE_LIMIT"]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("agencies.home"))
    form = LoginForm()
    error = None
    status = 200
    if form.validate_on_submit():
        try:
            user_session = accounts.authenticate(form.email.data, form.password.data, ip=request.remote_addr,
                                                 user_agent=request.user_agent.string)
        except accounts.LoginRefused as exc:
            db.session.commit()  # keep the failure count and the audit event
            error, status = exc.message, 401
        else:
            db.session.commit()
            next_url = _safe_next(request.args.get("next"))
            session.clear()  # a new session at sign-in: nothing carried over from before
            user = user_session.user
            user.session_token = user_session.id
            login_user(user)
            flash(f"Signed in as {user.display_name}.", "success")
            return redirect(next_url or url_for("agencies.home"), code=303)
    elif request.method == "POST":
        status = 422
    return render_template("auth/login.html", form=form, error=error), status


@bp.post("/logout")
@login_required
def logout():
    form = EmptyForm()
    if form.validate_on_submit():
        user_session = g.get("user_session")
        if user_session is not None:
            accounts.end_session(user_session)
            db.session.commit()
        logout_user()
        session.clear()
        flash("You have been signed out.", "success")
    return redirect(url_for("auth.login"), code=303)


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account():
    form = PasswordChangeForm()
    errors = {}
    if form.validate_on_submit():
        try:
            accounts.change_password(current_user, form.current_password.data, form.new_password.data)
            # Every other browser signed in as this user is signed out; this one stays.
            others = accounts.revoke_all_sessions(current_user, reason="password change", keep=g.user_session)
            db.session.commit()
            flash(f"Password changed. {others} other session(s) were signed out.", "success")
            return redirect(url_for("auth.account"), code=303)
        except ValidationFailed as exc:
            db.session.rollback()
            errors = exc.errors
    return render_template("auth/account.html", form=form, errors=errors, tokens=tokens.for_user(current_user),
                           agencies=user_agencies(), action_form=EmptyForm()), (422 if errors else 200)


@bp.post("/account/tokens")
@login_required
def create_token():
    if not EmptyForm().validate_on_submit():
        abort(400)
    kind = request.form.get("kind", "")
    agency = None
    if kind == "calendar":
        slug = request.form.get("agency", "")
        agency = next((a for a in user_agencies() if a.slug == slug), None)
    try:
        token, secret = tokens.create(current_user, kind, request.form.get("name", ""), agency)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        flash("Not created: " + " ".join(exc.errors.values()), "error")
        return redirect(url_for("auth.account") + "#tokens", code=303)
    feed_url = url_for("public.calendar", token=secret, _external=True) if kind == "calendar" else None
    # Shown once, in this answer only: it is not stored and never put in a cookie or a redirect.
    return render_template("auth/token_created.html", token=token, secret=secret, feed_url=feed_url)


@bp.post("/account/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id):
    if not EmptyForm().validate_on_submit():
        abort(400)
    token = next((t for t in tokens.for_user(current_user) if t.id == token_id), None)
    if token is None:
        abort(404)
    tokens.revoke(token, actor=current_user)
    db.session.commit()
    flash(f"{'Calendar feed' if token.kind == 'calendar' else 'API token'} {token.prefix}… revoked.", "success")
    return redirect(url_for("auth.account") + "#tokens", code=303)
