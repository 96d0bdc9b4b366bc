"""Read API (JSON)."""
import sqlalchemy as sa
from flask import Blueprint, jsonify

from tracker.extensions import csrf, db
from tracker.models import Module, Recommendation

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # read-only; no state change is reachable here


@bp.get("/catalog")
def catalog():
    modules = db.session.execute(sa.select(Module).order_by(Module.position)).scalars().all()
    recs = db.session.execute(
        sa.select(Recommendation).where(Recommendation.retired_at.is_(None))
        .options(sa.orm.selectinload(Recommendation.citations)).order_by(Recommendation.code)
    ).scalars().all()
    by_module = {}
    for rec in recs:
        by_module.setdefault(rec.module_id, []).append({
            "id": rec.code,
            "title": rec.title,
            "summary": rec.summary,
            "typical_deadline": rec.typical_deadline,
            "cadence": rec.cadence,
            "evidence_examples": rec.evidence_examples,
            "citations": [
                {"source": c.source.key, "source_title": c.source.title, "paragraphs": c.paragraphs,
                 "basis": c.basis, "note": c.note}
                for c in rec.citations
            ],
        })
    return jsonify({
        "modules": [
            {"key": m.key, "name": m.name, "description": m.description,
             "recommendations": by_module.get(m.id, [])}
            for m in modules
        ]
    })
