"""Public pages without sign-in: an agency's aggregate transparency page and its calendar feed."""
import sqlalchemy as sa
from flask import Blueprint, Response, abort, render_template, request

from tracker.extensions import db
from tracker.models import Agency, Membership
from tracker.security import record_activity
from tracker.services import dashboard, exports, tokens

bp = Blueprint("public", __name__)


@bp.get("/public/<slug>")
def transparency(slug):
    agency = db.session.execute(sa.select(Agency).where(Agency.slug == slug)).scalar_one_or_none()
    if agency is None or not agency.public_enabled:
        abort(404)
    per_module, total, shown = dashboard.agency_measures(agency)
    return render_template("public/agency.html", agency=agency, per_module=per_module, total=total, shown=shown,
                           level_classes=dashboard.level_classes(agency), trend=dashboard.trend(agency))


@bp.get("/calendar/<token>.ics")
def calendar(token):
    """A subscribable feed; the secret in the address is the credential, so anything wrong is 404."""
    feed = tokens.resolve(token, "calendar")
    if feed is None or feed.agency_id is None:
        abort(404)
    user = feed.user
    if not user.is_admin and not db.session.execute(
        sa.select(Membership.id).where(Membership.user_id == user.id, Membership.agency_id == feed.agency_id)
    ).first():
        abort(404)
    agency = db.session.get(Agency, feed.agency_id)
    body = exports.calendar(agency, request.url_root)
    record_activity(tokens.use_stamp(feed))
    response = Response(body, mimetype="text/calendar")
    response.headers["Content-Disposition"] = f'inline; filename="{agency.slug}-deadlines.ics"'
    return response
