"""The cross-agency roll-up: one row of measures per agency, for admins and monitors."""
from collections import namedtuple

import sqlalchemy as sa
from flask import Blueprint, abort, flash, get_template_attribute, render_template, request
from flask_login import current_user, login_required

from tracker import cache
from tracker.access import agency_ids_with_role
from tracker.extensions import db
from tracker.models import Agency
from tracker.services import dashboard

bp = Blueprint("rollup", __name__)
AgencyRow = namedtuple("AgencyRow", "id name slug")


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

    def table():
        agency_ids = db.session.execute(sa.select(Agency.id)).scalars().all() if scope is None else scope
        rows = cache.per_agency("rollup-row", agency_ids, _rows)
        ordered = sorted(rows.values(), key=dashboard.SORTS[sort], reverse=descending)
        return render_template("rollup/_table.html", rows=ordered, sort=sort, descending=descending)

    # The whole table once per version of its agencies; when one agency changed, it is assembled again from the
    # other agencies' cached rows and one new row.
    html = cache.html("rollup-table", (tuple(scope or ()), sort, descending), table,
                      agencies=cache.ALL if scope is None else scope)
    return render_template("rollup/rollup.html", table=html)


def _rows(agency_ids):
    """{agency id: {"agency", "measures", "html"}}: three queries for any number of agencies."""
    agencies = db.session.execute(sa.select(Agency).where(Agency.id.in_(agency_ids))).scalars().all()
    row = get_template_attribute("rollup/_table.html", "row")
    result = {}
    for entry in dashboard.rollup(agencies):
        agency, measures = entry["agency"], entry["measures"]
        # Plain values only: the entry outlives this request's session.
        plain = AgencyRow(agency.id, agency.name, agency.slug)
        result[agency.id] = {"agency": plain, "measures": measures, "html": row(plain, measures)}
    return result
