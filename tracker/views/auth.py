"""Sign in, sign out, own account: request and response only; the sign-in steps are services/signin.py."""

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from tracker.access import user_agencies
from tracker.extensions import db, limiter
from tracker.forms.auth import EmptyForm, LoginForm, PasswordChangeForm
from tracker.models import utcnow
from tracker.services import accounts, mfa, notifications, signin, tokens
from tracker.services.errors import ValidationFailed
from tracker.urls import safe_next

bp = Blueprint("auth", __name__)
MUST_CHANGE = "Choose your own password before you go on: the one you were given was for the first sign-in only."
# Pages a user who must first choose a password may still open.
FIRST_SIGN_IN_ENDPOINTS = {"auth.account", "auth.logout", "auth.login", "static"}


def _login_limit():
    return current_app.config["LOGIN_RATE_LIMIT"]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("agencies.home"))
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form, error=None), (422 if request.method == "POST" else 200)
    next_url = safe_next(request.args.get("next"))
    outcome = signin.password_step(form.email.data, form.password.data, next_url=next_url,
                                   ip=request.remote_addr, user_agent=request.user_agent.string)
    db.session.commit()  # the new session, the started enrolment or the counted failure, with its audit event
    if outcome.pending is not None:
        session.clear()
        session["mfa"] = outcome.pending.to_cookie()
        return redirect(url_for("auth.second_factor"), code=303)
    if outcome.session is None and not outcome.restart:
        return render_template("auth/login.html", form=form, error=outcome.error), 401
    return _signed_in_or_restart(outcome, next_url)


def _signed_in_or_restart(outcome, next_url):
    session.clear()  # a new session at sign-in: nothing carried over from before
    if outcome.session is None:
        flash(outcome.error, "error")
        return redirect(url_for("auth.login"), code=303)
    outcome.user.session_token = outcome.session.id
    login_user(outcome.user)
    flash(f"Signed in as {outcome.user.display_name}.", "success")
    if getattr(outcome.session, "notice", None):
        flash(outcome.session.notice, "warning")
    if outcome.user.must_change_password:
        flash(MUST_CHANGE, "info")
        return redirect(url_for("auth.account"), code=303)
    return redirect(next_url or url_for("agencies.home"), code=303)


def _restart(message):
    session.pop("mfa", None)
    if message:
        flash(message, "info")
    return redirect(url_for("auth.login"), code=303)


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def second_factor():
    pending = signin.Pending.from_cookie(session.get("mfa"))
    try:
        user = signin.pending_user(pending)
    except signin.Restart as exc:
        return _restart(exc.args[0] if exc.args else None)
    error = None
    if request.method == "POST" and EmptyForm().validate_on_submit():
        outcome = signin.code_step(pending, request.form.get("code", ""), ip=request.remote_addr,
                                   user_agent=request.user_agent.string)
        db.session.commit()  # the session, or the wrong code counted towards the lockout, with its audit event
        if outcome.session is not None or outcome.restart:
            return _signed_in_or_restart(outcome, pending.next)
        session["mfa"] = outcome.pending.to_cookie()
        error = outcome.error
    enrolling = not user.totp_secret
    shown = signin.enrolment(user) if enrolling else dict.fromkeys(("secret", "uri", "qr"))
    return render_template("auth/second_factor.html", enrolling=enrolling, error=error, email=user.email,
                           **shown), (401 if error else 200)


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


@bp.before_app_request
def _password_change_first():
    """A temporary password (an administrator's new account or reset) only leads to choosing one's own."""
    if request.endpoint in FIRST_SIGN_IN_ENDPOINTS or request.blueprint == "api":
        return None
    if not current_user.is_authenticated or not current_user.must_change_password:
        return None
    target = url_for("auth.account")
    if request.headers.get("HX-Request"):
        return "", 204, {"HX-Redirect": target}
    flash(MUST_CHANGE, "info")
    return redirect(target, code=303)


def _signed_out_by_lock():
    """Too many wrong current passwords from this address: the guesser's session ends (the holder signs in
    elsewhere, or once an administrator releases the address)."""
    accounts.end_session(g.user_session, reason="locked: wrong current password")
    db.session.commit()
    logout_user()
    session.clear()
    flash(accounts.LoginRefused.message, "error")
    return redirect(url_for("auth.login"), code=303)


def _account_page(form, errors, status=200):
    return render_template("auth/account.html", form=form, errors=errors, tokens=tokens.for_user(current_user),
                           agencies=user_agencies(), action_form=EmptyForm(), now=utcnow(),
                           token_days=(tokens.DEFAULT_DAYS, tokens.MAX_DAYS),
                           locked_sources=accounts.locked_sources(current_user),
                           notification_rows=notifications.preference_rows(current_user),
                           followed=notifications.followed(current_user)), status


@bp.route("/account", methods=["GET", "POST"])
@login_required
@limiter.limit(_login_limit, methods=["POST"])
def account():
    form = PasswordChangeForm()
    errors = {}
    if form.validate_on_submit():
        try:
            accounts.change_password(current_user, form.current_password.data, form.new_password.data,
                                     code=request.form.get("code"))
            # Every other browser signed in as this user is signed out, and every token ends; this one stays.
            others = accounts.revoke_all_sessions(current_user, reason="password change", keep=g.user_session)
            db.session.commit()
            flash(f"Password changed. {others} other session(s) were signed out; your API tokens and calendar "
                  "feeds were revoked (create new ones below).", "success")
            return redirect(url_for("auth.account"), code=303)
        except accounts.ReauthLocked:
            return _signed_out_by_lock()
        except ValidationFailed as exc:
            db.session.commit()  # a wrong current password is counted towards the lockout, with its audit event
            errors = exc.errors
    return _account_page(form, errors, 422 if errors else 200)


def _confirmed():
    """The current password (and code) sent with a token form; None when right, else the answer to give."""
    try:
        accounts.confirm_identity(current_user, request.form.get("current_password", ""), request.form.get("code"))
    except accounts.ReauthLocked:
        return _signed_out_by_lock()
    except ValidationFailed as exc:
        db.session.commit()  # the counted failure and its audit event
        flash("Not done: " + " ".join(exc.errors.values()), "error")
        return redirect(url_for("auth.account") + "#tokens", code=303)
    return None


@bp.post("/account/tokens")
@login_required
@limiter.limit(_login_limit)
def create_token():
    if not EmptyForm().validate_on_submit():
        abort(400)
    refused = _confirmed()
    if refused is not None:
        return refused
    kind = request.form.get("kind", "")
    agency = None
    if kind == "calendar":
        slug = request.form.get("agency", "")
        agency = next((a for a in user_agencies() if a.slug == slug), None)
    try:
        token, secret = tokens.create(current_user, kind, request.form.get("name", ""), agency,
                                      request.form.get("days"))
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        flash("Not created: " + " ".join(exc.errors.values()), "error")
        return redirect(url_for("auth.account") + "#tokens", code=303)
    return _token_shown(token, secret)


def _token_shown(token, secret):
    feed_url = url_for("public.calendar", token=secret, _external=True) if token.kind == "calendar" else None
    # Shown once, in this answer only: it is not stored and never put in a cookie or a redirect.
    return render_template("auth/token_created.html", token=token, secret=secret, feed_url=feed_url)


@bp.post("/account/tokens/<int:token_id>/rotate")
@login_required
@limiter.limit(_login_limit)
def rotate_token(token_id):
    if not EmptyForm().validate_on_submit():
        abort(400)
    token = next((t for t in tokens.for_user(current_user) if t.id == token_id), None)
    if token is None:
        abort(404)
    refused = _confirmed()
    if refused is not None:
        return refused
    try:
        new, secret = tokens.rotate(token, actor=current_user)
        db.session.commit()
    except ValidationFailed as exc:
        db.session.rollback()
        flash(" ".join(exc.errors.values()), "error")
        return redirect(url_for("auth.account") + "#tokens", code=303)
    return _token_shown(new, secret)


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
        error = signin.WRONG_CODE  # a wrong code changes nothing, so there is nothing to commit
    if not user.totp_pending_secret:
        # Opening this page changes nothing; the set-up starts with the button (a POST).
        return render_template("auth/mfa_start.html")
    return render_template("auth/second_factor.html", enrolling=True, error=error, email=user.email, setup=True,
                           **signin.enrolment(user)), (401 if error else 200)
