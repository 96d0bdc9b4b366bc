"""The public catalog: modules, recommendations, citations (no sign-in needed)."""
import sqlalchemy as sa
from flask import Blueprint, abort, render_template

from tracker.extensions import db
from tracker.models import CatalogIndicator, Citation, Module, Recommendation, Source
from tracker.models.indicators import INDICATOR_UNITS

bp = Blueprint("catalog", __name__, url_prefix="/catalog")


def active_recommendations():
    return (sa.select(Recommendation).where(Recommendation.retired_at.is_(None))
            .options(sa.orm.selectinload(Recommendation.citations)))


@bp.get("/")
def index():
    modules = db.session.execute(Module.in_order()).scalars().all()
    counts = dict(db.session.execute(
        sa.select(Recommendation.module_id, sa.func.count())
        .where(Recommendation.retired_at.is_(None)).group_by(Recommendation.module_id)
    ).all())
    indicator_counts = dict(db.session.execute(
        sa.select(CatalogIndicator.module_id, sa.func.count())
        .where(CatalogIndicator.retired_at.is_(None)).group_by(CatalogIndicator.module_id)
    ).all())
    sources = db.session.execute(
        sa.select(Source).order_by(Source.year.desc().nulls_last(), Source.short_title)
    ).scalars().all()
    return render_template("catalog/index.html", modules=modules, counts=counts, sources=sources,
                           indicator_counts=indicator_counts)


@bp.get("/<key>")
def module(key):
    module = db.session.execute(sa.select(Module).where(Module.key == key)).scalar_one_or_none()
    if module is None:
        abort(404)
    recs = db.session.execute(
        active_recommendations().where(Recommendation.module_id == module.id).order_by(Recommendation.code)
    ).scalars().all()
    # Issue 14: the outcome indicators the catalog suggests for this module, which an agency may adopt.
    indicators = db.session.execute(
        sa.select(CatalogIndicator).where(CatalogIndicator.module_id == module.id,
                                          CatalogIndicator.retired_at.is_(None)).order_by(CatalogIndicator.name)
    ).scalars().all()
    return render_template("catalog/module.html", module=module, recommendations=recs, indicators=indicators,
                           units=INDICATOR_UNITS)


@bp.get("/recommendations/<code>")
def recommendation(code):
    rec = db.session.execute(
        sa.select(Recommendation).where(Recommendation.code == code.upper())
        .options(sa.orm.selectinload(Recommendation.citations).joinedload(Citation.source))
    ).scalar_one_or_none()
    if rec is None:
        abort(404)
    return render_template("catalog/recommendation.html", rec=rec, implementing=_implementing(rec))


def _implementing(rec):
    """Signed-in users see which paragraphs of their own agencies implement it (issue 12's crosswalk)."""
    from flask_login import current_user

    from tracker.access import membership_agency_ids, user_agencies
    from tracker.services import decree

    if not current_user.is_authenticated:
        return []
    ids = [a.id for a in user_agencies()] if current_user.is_admin else membership_agency_ids()
    return decree.implementing(rec, ids)
