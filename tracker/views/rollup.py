"""The cross-agency roll-up: one row of measures per agency, for admins and monitors."""
import sqlalchemy as sa
from flask import Blueprint, abort, flash, render_template, request
from flask_login import current_user, login_required

from tracker import cache
from tracker.access import agency_ids_with_role, user_agencies
from tracker.extensions import db
from tracker.models import Agency
from tracker.services import dashboard

bp = Blueprint("rollup", __name__)


@bp.get("/rollup")
@login_required
def index():
    scope = None if current_user.is_admin else agency_ids_with_role("monitor")
    if scope == []:
        abort(404)
    sort = request.args.get("sort", "name")
    if sort not in dashboard.SORTS:
        flash(f"Unknown sort “{sort}” ignored.", "warning")
        sort = "name"
    descending = request.args.get("dir") == "desc"

    def render():
        if scope is None:
            agencies = user_agencies()
        else:
            agencies = db.session.execute(sa.select(Agency).where(Agency.id.in_(scope))).scalars().all()
        return render_template("rollup/_table.html", rows=dashboard.rollup(agencies, sort, descending),
                               sort=sort, descending=descending)

    table = cache.html("rollup", (tuple(scope or ()), sort, descending), render,
                       agencies=cache.ALL if scope is None else scope)
    return render_template("rollup/rollup.html", table=table)
