"""Home page and the agency overview (requirements by module)."""
import sqlalchemy as sa
from flask import Blueprint, render_template
from flask_login import current_user, login_required

from tracker.access import agency_or_404, user_agencies
from tracker.extensions import db
from tracker.models import Module, Requirement

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


@bp.get("/agencies/<slug>")
@login_required
def overview(slug):
    agency = agency_or_404(slug)
    requirements = db.session.execute(
        sa.select(Requirement).where(Requirement.agency_id == agency.id)
        .options(sa.orm.joinedload(Requirement.owner))
        .order_by(Requirement.code)
    ).scalars().all()
    modules = db.session.execute(sa.select(Module).order_by(Module.position)).scalars().all()
    by_module = {m.id: [] for m in modules}
    for req in requirements:
        by_module.setdefault(req.module_id, []).append(req)
    return render_template("agencies/overview.html", agency=agency, modules=modules, by_module=by_module,
                           total=len(requirements))
