"""Friendly error pages; never a traceback."""
import logging
import secrets

import sqlalchemy.exc as sa_exc
from flask import Response, current_app, jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import SecurityError

from tracker.extensions import db

log = logging.getLogger("tracker.errors")

MESSAGES = {
    400: ("Bad request", "The request could not be understood."),
    403: ("Not allowed", "Your role does not allow this action."),
    404: ("Page not found", "There is nothing at this address, or you do not have access to it."),
    405: ("Method not allowed", "This address does not accept that kind of request."),
    413: ("File too large", "The upload is larger than the allowed size."),
    429: ("Too many requests", "Too many attempts in a short time. Wait a minute and try again."),
    503: ("Busy", "The tracker is busy with other changes. Nothing was saved; try again in a few seconds."),
    500: ("Something went wrong", "The error has been logged. Nothing was saved from this request."),
}


def _render(code, message=None, request_id=None):
    title, default = MESSAGES.get(code, ("Error", "The request failed."))
    if request.path.startswith("/api/"):
        return jsonify({"error": title, "message": message or default}), code
    template = "errors/_error.html" if request.headers.get("HX-Request") else "errors/error.html"
    return render_template(template, code=code, title=title, message=message or default,
                           request_id=request_id), code


# SQLite "database is locked/busy" after its busy timeout; PostgreSQL lock_timeout (55P03), too many
# connections (53300), serialization or deadlock (40001, 40P01). Each means "try again", not "broken".
BUSY_SQLSTATES = {"55P03", "53300", "40001", "40P01"}
RETRY_AFTER_SECONDS = 2


def is_busy(exc):
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection free in time
        return True
    if not isinstance(exc, sa_exc.OperationalError | sa_exc.DBAPIError):
        return False
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in BUSY_SQLSTATES:
        return True
    text = str(orig).lower()
    return "database is locked" in text or "database is busy" in text


def _busy_response():
    db.session.rollback()
    log.warning("busy: %s %s answered 503", request.method, request.path)
    title, message = MESSAGES[503]
    fragment = bool(request.headers.get("HX-Request"))
    if request.path.startswith("/api/"):
        response = make_response(jsonify({"error": title, "message": message}), 503)
    else:
        # Not render_template: its context processors load the user and the nav counts from the busy database.
        html = current_app.jinja_env.get_template("errors/busy.html").render(
            title=title, message=message, fragment=fragment)
        response = make_response(html, 503)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if fragment:
        # The form the user typed in stays where it is; the message goes to the status region.
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
    return response


def register(app):
    @app.errorhandler(SecurityError)
    def untrusted_host(e):
        # No URL adapter exists for an untrusted Host, so no template with url_for can render.
        if request.path.startswith("/api/"):
            return jsonify({"error": "bad request", "message": "This host name is not served here."}), 400
        return Response("Bad request: this host name is not served here.\n", status=400, mimetype="text/plain")

    for code in (400, 403, 404, 429):
        app.register_error_handler(code, lambda e, code=code: _render(code))

    @app.errorhandler(405)
    def method_not_allowed(e):
        # RFC 9110: a 405 names the methods the address accepts (the API fuzzing found it missing; issue 19).
        body, status = _render(405)
        return body, status, {"Allow": ", ".join(sorted(e.valid_methods or []))}

    @app.errorhandler(413)
    def too_large(e):
        limit = app.config.get("MAX_CONTENT_LENGTH") or 0
        size = f"{limit / 1048576:.0f} MB" if limit >= 1048576 else f"{limit // 1024} KB"
        return _render(413, f"The upload is larger than the {size} limit. Nothing was saved; "
                            "split the file or ask an administrator about the limit.")

    @app.errorhandler(CSRFError)
    def csrf_error(e):
        return _render(400, "The form expired or was not sent from this site. Reload the page and try again.")

    @app.errorhandler(sa_exc.SQLAlchemyError)
    def database_error(e):
        if is_busy(e):
            return _busy_response()
        raise e  # anything else is a bug: the 500 page (and, under tests, the traceback)

    @app.errorhandler(500)
    def server_error(e):
        db.session.rollback()
        request_id = secrets.token_hex(6)
        log.exception("unhandled error, request id %s", request_id, exc_info=getattr(e, "original_exception", e))
        return _render(500, request_id=request_id)
