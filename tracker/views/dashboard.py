"""An agency's dashboard: its measures by module, the trend across monitoring periods, what is due."""
from flask import Blueprint, flash, g, render_template, request
from flask_login import login_required
from markupsafe import Markup

from tracker import cache
from tracker.access import agency_or_404
from tracker.extensions import db
from tracker.models import Module
from tracker.services import activity, committee, dashboard, decree, monitoring, plain_summary

bp = Blueprint("dashboard", __name__)


@bp.get("/agencies/<slug>/dashboard")
@login_required
def agency(slug):
    agency = agency_or_404(slug)
    body_only = bool(request.headers.get("HX-Request") and request.headers.get("HX-Target") == "dashboard-body"
                     and not request.headers.get("HX-Boosted"))
    requested = request.args.get("module", "")
    requested_entity = request.args.get("entity", "")  # issue 12: one responsible entity

    def render():
        modules = db.session.execute(Module.in_order()).scalars().all()
        module_key = requested if requested in {m.key for m in modules} else ""
        entities = decree.entities(agency)
        entity_id = next((e.id for e in entities if str(e.id) == requested_entity), None)
        template = "dashboard/_body.html" if body_only else "dashboard/_content.html"
        names = {m.key: m.name for m in modules}
        context = _dashboard_context(agency, modules, module_key, entity_id, names.get(module_key, ""))
        html = render_template(template, entities=entities, entity_id=entity_id, **context)
        if not body_only:
            # Inside the cached fragment: officers, monitors and admins (the "staff" audience) see requests.
            html += render_template("dashboard/_requests.html", agency=agency)
        return html, module_key, names.get(module_key, ""), entity_id

    # The recent activity depends on what the role may see (issue 14): staff, or committee members.
    audience = "staff" if g.agency_role in activity.STAFF_ROLES else "committee"
    html, module_key, module_name, entity_id = cache.value(
        "dashboard", (agency.id, body_only, requested, requested_entity, audience), render, agencies=agency.id,
        shared=True)
    if requested and not module_key:
        flash(f"Unknown module “{requested}” ignored; showing all modules.", "warning")
    if requested_entity and entity_id is None:
        flash("Unknown responsible entity ignored; showing all of them.", "warning")
    if body_only:
        # The module's figures, and a sentence for the permanent status region outside the swapped body.
        return html + render_template("dashboard/_status.html", module_name=module_name)
    return render_template("dashboard/agency.html", agency=agency, content=Markup(html))  # noqa: S704 - from Jinja


def _dashboard_context(agency, modules, module_key, entity_id=None, module_name=""):
    per_module, total, shown = dashboard.agency_measures(agency, module_key or None, entity_id, modules)
    level_classes = dashboard.level_classes(agency)
    periods = monitoring.periods(agency)
    trend = dashboard.trend(agency, module_key or None, entity_id, active=total.total, periods=periods)
    upcoming, upcoming_total = dashboard.upcoming_with_total(agency, module_key=module_key or None,
                                                             entity_id=entity_id)
    return {
        "agency": agency, "modules": modules, "module_key": module_key, "per_module": per_module, "total": total,
        "shown": shown, "level_classes": level_classes, "trend": trend,
        # Issue 14 §4: the paragraph in plain language, activity as sentences, how many more deadlines.
        "summary": plain_summary.summary(total, trend, list(level_classes), committee.summary(agency), module_name),
        "activity": activity.recent(agency, g.agency_role, module_key or None, entity_id),
        "upcoming": upcoming, "upcoming_total": upcoming_total, "periods": periods, "windows": dashboard.WINDOWS,
    }
