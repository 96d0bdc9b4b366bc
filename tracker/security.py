"""Response headers, session loading and the login-required gate."""
import sqlalchemy as sa
from flask import current_app, request, session
from flask_htmx.responses import HTMXResponseClientRedirect

from tracker.extensions import db, login_manager

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def refuse_nul_bytes():
    """A NUL byte never belongs in a path, a query or a form field (PostgreSQL text refuses it)."""
    from flask import abort

    if "\x00" in request.path:
        abort(404)  # no address contains one; a secret in the path stays "unknown", as any wrong one
    if any("\x00" in v for values in (request.args, request.form) for v in values.values()):
        abort(400)


def set_security_headers(response):
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["X-Frame-Options"] = "DENY"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    if current_app.config["HSTS"]:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    if not (request.endpoint == "static" and response.status_code < 400):
        # Pages and fragments never land in a shared or back-button cache.
        headers["Cache-Control"] = "no-store"
        headers.add("Vary", "HX-Request")
        headers.add("Vary", "Cookie")
    return response


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def record_activity(statement):
    """Run an activity stamp (a session's last request, a token's last use) outside the data's audit trail.

    These two columns are the only writes a read may cause, and they are not records anyone edits: on a
    read they run in their own short transaction on another connection, so the request's transaction
    writes nothing; on a write they ride along in the request's own transaction (on SQLite it already
    holds the write lock, which a second connection would wait for). Best effort: a busy database only
    delays the stamp to a later request.
    """
    if statement is None:
        return
    if request.method not in READ_METHODS:
        db.session.execute(statement)
        return
    try:
        with db.engine.begin() as connection:
            connection.execute(statement)
    except sa.exc.OperationalError:
        current_app.logger.info("activity stamp skipped: database busy")


@login_manager.user_loader
def load_user(session_id):
    from flask import g

    from tracker.services.accounts import activity_stamp, load_session

    user_session = load_session(session_id)
    if user_session is None:
        session.clear()
        return None
    record_activity(activity_stamp(user_session))
    g.user_session = user_session
    user = user_session.user
    user.session_token = session_id
    return user


@login_manager.unauthorized_handler
def unauthorized():
    from flask import flash, redirect, url_for

    target = url_for("auth.login", next=request.full_path if request.method == "GET" else None)
    if request.headers.get("HX-Request"):
        # An htmx swap would otherwise put the login page inside a fragment.
        return HTMXResponseClientRedirect(target, status=401)
    flash("Please sign in to continue.", "info")
    return redirect(target)
