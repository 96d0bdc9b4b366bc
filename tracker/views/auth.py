"""Sign in, sign out, own account."""
import time

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from tracker.access import user_agencies
from tracker.extensions import db, limiter
from tracker.forms.auth import EmptyForm, LoginForm, PasswordChangeForm
from tracker.models import User
from tracker.services import accounts, mfa, tokens
from tracker.services.errors import ValidationFailed
from tracker.urls import safe_next

bp = Blueprint("auth", __name__)


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
            user = accounts.check_password(form.email.data, form.password.data)
        except accounts.LoginRefused as exc:
            db.session.commit()  # keep the failure count and the audit event
            error, status = exc.message, 401
        else:
            next_url = safe_next(request.args.get("next"))
            if user.totp_secret or mfa.required_for(user):
                if not user.totp_secret and not user.totp_pending_secret:
                    mfa.start_enrolment(user)  # in this POST: opening a page must never change data
                db.session.commit()
                session.clear()
                # Only the user id waits here, for at most five minutes; nothing is signed in yet.
                session["mfa"] = {"user_id": user.id, "next": next_url, "started": time.time(), "attempts": 0}
                return redirect(url_for("auth.second_factor"), code=303)
            return _finish_login(user, next_url, mfa_used=False)
    elif request.method == "POST":
        status = 422
    return render_template("auth/login.html", form=form, error=error), status


def _finish_login(user, next_url, mfa_used):
    try:
        user_session = accounts.open_session(user, ip=request.remote_addr, user_agent=request.user_agent.string,
                                             mfa=mfa_used)
    except accounts.LoginRefused as exc:
        db.session.commit()
        session.clear()
        flash(exc.message, "error")
        return redirect(url_for("auth.login"), code=303)
    db.session.commit()
    session.clear()  # a new session at sign-in: nothing carried over from before
    user.session_token = user_session.id
    login_user(user)
    flash(f"Signed in as {user.display_name}.", "success")
    return redirect(next_url or url_for("agencies.home"), code=303)


MFA_WINDOW_SECONDS = 300
MFA_MAX_ATTEMPTS = 5


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def second_factor():
    pending = session.get("mfa")
    if not pending or time.time() - pending.get("started", 0) > MFA_WINDOW_SECONDS:
        session.pop("mfa", None)
        flash("Sign in again: the second step expired or was not started.", "info")
        return redirect(url_for("auth.login"), code=303)
    user = db.session.get(User, pending["user_id"])
    if user is None or not user.active:
        session.clear()
        return redirect(url_for("auth.login"), code=303)
    enrolling = not user.totp_secret
    form = EmptyForm()
    error = None
    if request.method == "POST" and form.validate_on_submit():
        code = request.form.get("code", "")
        ok = mfa.confirm_enrolment(user, code) if enrolling else mfa.verify(user, code)
        if ok:
            return _finish_login(user, pending.get("next"), mfa_used=True)
        accounts.record_factor_failure(user, "wrong or reused code")
        db.session.commit()
        pending["attempts"] = pending.get("attempts", 0) + 1
        if pending["attempts"] >= MFA_MAX_ATTEMPTS or user.locked_at is not None:
            session.clear()
            flash(accounts.LoginRefused.message, "error")
            return redirect(url_for("auth.login"), code=303)
        session["mfa"] = pending
        error = "That code is not right, or was already used. Enter the current 6-digit code from your app."
    secret = qr = uri = None
    if enrolling:
        secret = user.totp_pending_secret
        if not secret:
            session.pop("mfa", None)
            flash("Sign in again to set up two-step sign-in.", "info")
            return redirect(url_for("auth.login"), code=303)
        uri = mfa.provisioning_uri(user, secret)
        qr = mfa.qr_svg(uri)
    status = 401 if error else 200
    return render_template("auth/second_factor.html", enrolling=enrolling, secret=secret, qr=qr, uri=uri,
                           error=error, email=user.email), status


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


@bp.route("/account/mfa", methods=["GET", "POST"])
@login_required
def mfa_setup():
    """Turn on two-step sign-in for one's own account (those whose role requires it enrol at sign-in)."""
    user = current_user
    if user.totp_secret:
        flash("Two-step sign-in is already on. An administrator can reset it if you lose your device.", "info")
        return redirect(url_for("auth.account"), code=303)
    error = None
    if request.method == "POST":
        if not EmptyForm().validate_on_submit():
            abort(400)
        if request.form.get("action") == "start":
            mfa.start_enrolment(user)
            db.session.commit()
            return redirect(url_for("auth.mfa_setup"), code=303)
        if mfa.confirm_enrolment(user, request.form.get("code", "")):
            db.session.commit()
            flash("Two-step sign-in is on. You will be asked for a code at every sign-in.", "success")
            return redirect(url_for("auth.account"), code=303)
        db.session.commit()  # the used time step, if any
        error = "That code is not right, or was already used. Enter the current 6-digit code from your app."
    secret = user.totp_pending_secret
    if not secret:
        # Opening this page changes nothing; the set-up starts with the button (a POST).
        return render_template("auth/mfa_start.html")
    uri = mfa.provisioning_uri(user, secret)
    return render_template("auth/second_factor.html", enrolling=True, secret=secret, qr=mfa.qr_svg(uri), uri=uri,
                           error=error, email=user.email, setup=True), (401 if error else 200)
