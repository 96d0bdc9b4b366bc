"""Read API (JSON) under /api/v1: the catalog (public) and agency data (signed-in users or API tokens).

Scoping is the same as the pages: anything outside the caller's agencies is 404.
"""
import sqlalchemy as sa
from flask import Blueprint, abort, g, jsonify, request, url_for
from flask_login import current_user

from tracker.access import agency_or_404, user_agencies
from tracker.api_spec import openapi_document
from tracker.extensions import csrf, db
from tracker.models import Citation, Finding, Module, MonitoringPeriod, Recommendation, Requirement, User
from tracker.security import record_activity
from tracker.services import decree, monitoring, tokens
from tracker.services.deadlines import cadence_label

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # GET only; no state change is reachable here
MAX_PER_PAGE = 100
MAX_PAGE = 1_000_000


@bp.before_request
def _token_auth():
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, secret = header.partition(" ")
    token = tokens.resolve(secret.strip(), "api") if scheme.lower() == "bearer" else None
    if token is None:
        abort(404)
    record_activity(tokens.use_stamp(token))
    g._login_user = token.user  # Flask-Login reads the request's user from here; no session is created
    g.api_token = token
    return None


def _require_user():
    if not current_user.is_authenticated:
        response = jsonify({"error": "authentication required",
                            "message": "Sign in, or send an API token as 'Authorization: Bearer <token>'."})
        response.status_code = 401
        abort(response)


def _page_args():
    try:
        page = max(int(request.args.get("page", 1)), 1)
        per_page = min(max(int(request.args.get("per_page", 50)), 1), MAX_PER_PAGE)
        if page > MAX_PAGE:
            raise ValueError
    except ValueError:
        response = jsonify({"error": "bad request",
                            "message": f"page must be a whole number from 1 to {MAX_PAGE}, per_page from 1 to "
                                       f"{MAX_PER_PAGE}."})
        response.status_code = 400
        abort(response)
    return page, per_page


def _paginate(query, serialise, endpoint, **values):
    page, per_page = _page_args()
    total = db.session.execute(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())).scalar()
    rows = db.session.execute(query.limit(per_page).offset((page - 1) * per_page)).scalars().all()
    pages = max((total + per_page - 1) // per_page, 1)
    return jsonify({
        "items": serialise(rows), "page": page, "per_page": per_page, "total": total, "pages": pages,
        "next": url_for(endpoint, page=page + 1, per_page=per_page, **values) if page < pages else None,
    })


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())


@bp.get("/catalog")
def catalog():
    modules = db.session.execute(Module.in_order()).scalars().all()
    recs = db.session.execute(
        sa.select(Recommendation).where(Recommendation.retired_at.is_(None))
        .options(sa.orm.selectinload(Recommendation.citations)).order_by(Recommendation.code)
    ).scalars().all()
    by_module = {}
    for rec in recs:
        by_module.setdefault(rec.module_id, []).append({
            "id": rec.code, "title": rec.title, "summary": rec.summary, "typical_deadline": rec.typical_deadline,
            "cadence": rec.cadence, "evidence_examples": rec.evidence_examples,
            "citations": [_citation(c) for c in rec.citations],
        })
    return jsonify({"modules": [
        {"key": m.key, "name": m.name, "description": m.description, "recommendations": by_module.get(m.id, [])}
        for m in modules
    ]})


def _citation(c):
    return {"source": c.source.key, "source_title": c.source.title, "paragraphs": c.paragraphs, "basis": c.basis,
            "note": c.note}


@bp.get("/agencies")
def agencies():
    _require_user()
    roles = {m.agency_id: m.role for m in current_user.memberships}
    return jsonify({"items": [
        {"slug": a.slug, "name": a.name, "state": a.state,
         "effective_date": a.effective_date.isoformat() if a.effective_date else None,
         "compliance_scale": a.scale.key, "role": "admin" if current_user.is_admin else roles.get(a.id),
         "requirements_url": url_for("api.requirements", slug=a.slug),
         "findings_url": url_for("api.findings", slug=a.slug)}
        for a in user_agencies()
    ]})


@bp.get("/agencies/<slug>/requirements")
def requirements(slug):
    _require_user()
    agency = agency_or_404(slug)
    modules = dict(db.session.execute(sa.select(Module.id, Module.key)).all())

    def serialise(rows):
        rec_ids = {r.recommendation_id for r in rows if r.recommendation_id}
        citations = {}
        if rec_ids:
            for c in db.session.execute(sa.select(Citation).where(Citation.recommendation_id.in_(rec_ids))
                                        .order_by(Citation.position)).scalars():
                citations.setdefault(c.recommendation_id, []).append(_citation(c))
        links = decree.links([r.id for r in rows])
        owner_ids = {r.owner_id for r in rows if r.owner_id}
        owners = {u.id: u for u in db.session.execute(sa.select(User).where(User.id.in_(owner_ids))).scalars()} \
            if owner_ids else {}
        return [{
            "id": r.id, "code": r.code, "title": r.title, "module": modules.get(r.module_id), "status": r.status,
            "owner": ({"name": owners[r.owner_id].name, "email": owners[r.owner_id].email}
                      if r.owner_id in owners else None),
            "due_date": r.due_date.isoformat() if r.due_date else None,
            "terminated_on": r.terminated_at.isoformat() if r.terminated_at else None,
            "citation": r.citation_text,
            "citations": citations.get(r.recommendation_id, []),
            "row_version": r.row_version,
            **_decree_fields(r, links),
        } for r in rows]

    query = (sa.select(Requirement).where(Requirement.agency_id == agency.id)
             .options(*(sa.orm.selectinload(rel) for rel in (Requirement.instrument, Requirement.section,
                                                             Requirement.entity)))
             .order_by(Requirement.sort_key, Requirement.id))
    return _paginate(query, serialise, "api.requirements", slug=slug)


def _decree_fields(r, links):
    """Issue 12: text, instrument, section, entity, the deadline as written, the cadence, the catalog links."""
    return {
        "text": r.summary, "instrument": r.instrument.short_name,
        "section": r.section.label if r.section else None, "entity": r.entity.name if r.entity else None,
        "deadline_text": r.deadline_text,
        "recurring": {"cadence_months": r.cadence_months, "cadence": cadence_label(r.cadence_months),
                      "cadence_text": r.cadence_text,
                      "next_due_date": r.due_date.isoformat() if r.due_date else None} if r.recurring else None,
        "implements": [rec.code for rec in links.get(r.id, [])],
    }


@bp.get("/agencies/<slug>/findings")
def findings(slug):
    _require_user()
    agency = agency_or_404(slug)
    query = (sa.select(Finding).join(MonitoringPeriod, MonitoringPeriod.id == Finding.period_id)
             # Filed periods only.
             .where(MonitoringPeriod.agency_id == agency.id, monitoring.counted(period=MonitoringPeriod))
             .options(sa.orm.contains_eager(Finding.period), sa.orm.joinedload(Finding.requirement))
             .order_by(MonitoringPeriod.end_date, Finding.requirement_id))

    def serialise(rows):
        return [{
            "requirement": f.requirement.code, "period": f.period.name,
            "period_start": f.period.start_date.isoformat(), "period_end": f.period.end_date.isoformat(),
            "period_state": f.period.state, "level": f.level.key, "level_label": f.level.label,
            "level_kind": f.level.kind, "narrative": f.narrative, "recorded_at": f.created_at.isoformat() + "Z",
            "correction_reason": f.correction_reason,
        } for f in rows]

    return _paginate(query, serialise, "api.findings", slug=slug)


@bp.get("/agencies/<slug>/indicators")
def indicators(slug):
    """Issue 14: the agency's indicators, each with its target and overall values by period (two queries)."""
    from tracker.services import indicators as indicator_service

    _require_user()
    return jsonify({"items": indicator_service.api_rows(agency_or_404(slug))})
