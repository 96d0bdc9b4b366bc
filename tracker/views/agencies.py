"""Home page and the agency overview (requirements by module)."""
import sqlalchemy as sa
from flask import Blueprint, render_template
from flask_login import current_user

from tracker.access import user_agencies
from tracker.extensions import db
from tracker.models import Requirement

bp = Blueprint("agencies", __name__)


@bp.get("/")
def home():
    if not current_user.is_authenticated:
        return render_template("home.html", agencies=[], counts={})
    agencies = user_agencies()
    counts = {}
    if agencies:
        rows = db.session.execute(
            sa.select(Requirement.agency_id, Requirement.status, sa.func.count())
            .where(Requirement.agency_id.in_([a.id for a in agencies]))
            .group_by(Requirement.agency_id, Requirement.status)
        ).all()
        for agency_id, status, n in rows:
            counts.setdefault(agency_id, {})[status] = n
    return render_template("home.html", agencies=agencies, counts=counts)


@bp.get("/healthz")
def healthz():
    """Liveness for load balancers and the benchmark's ceiling: no database, no template."""
    return "ok\n", 200, {"Content-Type": "text/plain; charset=utf-8"}
