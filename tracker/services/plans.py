"""Monitoring plans: which paragraphs a period assesses, and per paragraph the monitor's methodology.

A methodology belongs to the requirement and is versioned: an edit adds a version, and the newest
version is the one later periods use (it carries over). A period's plan item names the version in force
for that period; plan items of periods still open follow a new version, those of periods already shared
or filed keep the version they were assessed against.
"""
from dataclasses import dataclass, field

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import Methodology, Module, MonitoringPeriod, PlanItem, Requirement
from tracker.services import audit
from tracker.services.errors import ValidationFailed

FIELDS = {
    "measures": "What is measured",
    "sources": "Data and documents",
    "sample": "Sample",
    "level_criteria": "What each level requires",
}
MAX_TEXT = 20000
SCOPE_FILTERS = {"in": "In this period's plan", "out": "Not in the plan"}


def latest_methodologies(requirement_ids):
    """{requirement_id: newest Methodology} for the given requirements, in one query."""
    if not requirement_ids:
        return {}
    newest = (sa.select(Methodology.requirement_id, sa.func.max(Methodology.version).label("version"))
              .where(Methodology.requirement_id.in_(requirement_ids))
              .group_by(Methodology.requirement_id).subquery())
    rows = db.session.execute(
        sa.select(Methodology).join(newest, sa.and_(newest.c.requirement_id == Methodology.requirement_id,
                                                    newest.c.version == Methodology.version))
        .options(sa.orm.joinedload(Methodology.author))
    ).scalars().all()
    return {m.requirement_id: m for m in rows}


def versions(requirement):
    """Every version of a requirement's methodology, newest first."""
    return db.session.execute(
        sa.select(Methodology).where(Methodology.requirement_id == requirement.id)
        .options(sa.orm.joinedload(Methodology.author)).order_by(Methodology.version.desc())
    ).scalars().all()


def _clean(values):
    errors, clean = {}, {}
    for name, label in FIELDS.items():
        text = (values.get(name) or "").strip()
        if len(text) > MAX_TEXT:
            errors[name] = f"{label} must be at most {MAX_TEXT:,} characters."
        clean[name] = text
    if not errors and not any(clean.values()):
        errors["measures"] = "Describe at least what is measured."
    return errors, clean


def save_methodology(requirement, values, *, actor):
    """Add a version when something changed (returns it), else return None. Plan items of open periods
    that include the requirement move to the new version."""
    errors, clean = _clean(values)
    if errors:
        raise ValidationFailed(errors)
    # One writer per requirement at a time, so two saves cannot claim the same version number.
    db.session.execute(sa.select(Requirement.id).where(Requirement.id == requirement.id).with_for_update())
    current = latest_methodologies([requirement.id]).get(requirement.id)
    if current is not None and all(getattr(current, name) == clean[name] for name in FIELDS):
        return None
    method = Methodology(requirement_id=requirement.id, version=(current.version + 1) if current else 1,
                         author_id=actor.id, **clean)
    db.session.add(method)
    db.session.flush()
    open_items = db.session.execute(
        sa.select(PlanItem).join(MonitoringPeriod, MonitoringPeriod.id == PlanItem.period_id)
        .where(PlanItem.requirement_id == requirement.id, MonitoringPeriod.state == "open")
    ).scalars().all()
    for item in open_items:
        item.methodology_id = method.id
    db.session.flush()
    audit.record("methodology.save", method, agency_id=requirement.agency_id, actor=actor,
                 before={"version": current.version} if current else None,
                 after={"requirement": requirement.code, "version": method.version, **clean,
                        "open_plans_updated": len(open_items)})
    return method


def plan_items(period):
    """{requirement_id: PlanItem} of a period, methodology versions loaded (one query)."""
    rows = db.session.execute(
        sa.select(PlanItem).where(PlanItem.period_id == period.id)
        .options(sa.orm.joinedload(PlanItem.methodology))
    ).scalars().all()
    return {item.requirement_id: item for item in rows}


def agency_requirements(agency):
    return db.session.execute(
        sa.select(Requirement).where(Requirement.agency_id == agency.id)
        .options(sa.orm.joinedload(Requirement.module)).order_by(Requirement.sort_key, Requirement.code)
    ).scalars().all()


def _check_editable(period):
    if period.state == "filed":
        raise ValidationFailed({"period": f"{period.name} is filed; its plan is part of the record and no "
                                          "longer changes."})


def set_scope(period, requirement_ids, *, actor):
    """Make the plan's scope exactly these requirements. Returns (added codes, removed codes)."""
    _check_editable(period)
    agency_reqs = {r.id: r for r in agency_requirements(period.agency)}
    chosen, unknown = set(), []
    for raw in requirement_ids:
        try:
            req_id = int(raw)
        except (TypeError, ValueError):
            req_id = None
        if req_id not in agency_reqs:
            unknown.append(str(raw)[:40])
        else:
            chosen.add(req_id)
    if unknown:
        raise ValidationFailed({"requirements": "Not requirements of this agency: " + ", ".join(unknown) + "."})
    items = plan_items(period)
    latest = latest_methodologies(list(chosen - set(items)))
    added = sorted(chosen - set(items))
    removed = sorted(set(items) - chosen)
    for req_id in added:
        method = latest.get(req_id)
        db.session.add(PlanItem(period_id=period.id, requirement_id=req_id, added_by_id=actor.id,
                                methodology_id=method.id if method else None))
    for req_id in removed:
        db.session.delete(items[req_id])
    if not added and not removed:
        return [], []
    db.session.flush()
    added_codes = [agency_reqs[i].code for i in added]
    removed_codes = [agency_reqs[i].code for i in removed]
    audit.record("plan.scope", period, actor=actor, before={"in_scope": len(items)},
                 after={"in_scope": len(chosen), "added": added_codes, "removed": removed_codes})
    return added_codes, removed_codes


def previous_plan_period(period):
    """The latest earlier period of the agency that has a plan, or None."""
    return db.session.execute(
        sa.select(MonitoringPeriod).where(
            MonitoringPeriod.agency_id == period.agency_id, MonitoringPeriod.end_date < period.end_date,
            sa.exists().where(PlanItem.period_id == MonitoringPeriod.id))
        .order_by(MonitoringPeriod.end_date.desc()).limit(1)
    ).scalar_one_or_none()


def carry_over(period, *, actor):
    """Add the previous planned period's paragraphs to this plan, each with its newest methodology.
    Returns (source period, codes added)."""
    _check_editable(period)
    source = previous_plan_period(period)
    if source is None:
        raise ValidationFailed({"period": "No earlier period has a plan to carry over."})
    wanted = set(plan_items(source)) - set(plan_items(period))
    latest = latest_methodologies(list(wanted))
    for req_id in sorted(wanted):
        method = latest.get(req_id)
        db.session.add(PlanItem(period_id=period.id, requirement_id=req_id, added_by_id=actor.id,
                                methodology_id=method.id if method else None))
    db.session.flush()
    codes = sorted(db.session.execute(sa.select(Requirement.code).where(Requirement.id.in_(wanted))).scalars())
    audit.record("plan.carry_over", period, actor=actor, after={"from": source.name, "added": codes})
    return source, codes


@dataclass
class PlanRow:
    requirement: Requirement
    item: PlanItem | None
    methodology: Methodology | None   # the version in force for the period, else the newest one


def plan_rows(period, in_scope_only=False):
    """Every requirement of the agency (or only those in scope) with its plan item and methodology:
    three queries whatever the size."""
    requirements = agency_requirements(period.agency)
    items = plan_items(period)
    latest = latest_methodologies([r.id for r in requirements if r.id not in items or
                                   items[r.id].methodology_id is None])
    rows = []
    for r in requirements:
        item = items.get(r.id)
        if in_scope_only and item is None:
            continue
        method = item.methodology if item is not None and item.methodology is not None else latest.get(r.id)
        rows.append(PlanRow(r, item, method))
    return rows


def requirement_plan(requirement):
    """The requirement page's panel: the newest methodology and the periods whose plan includes it."""
    method = latest_methodologies([requirement.id]).get(requirement.id)
    periods = db.session.execute(
        sa.select(MonitoringPeriod).join(PlanItem, PlanItem.period_id == MonitoringPeriod.id)
        .where(PlanItem.requirement_id == requirement.id).order_by(MonitoringPeriod.end_date.desc())
    ).scalars().all()
    return {"methodology": method, "periods": periods}


@dataclass
class GridFilter:
    scope: str = ""
    module: str = ""
    ignored: list = field(default_factory=list)
    in_scope: set = field(default_factory=set)
    planned: bool = False

    @property
    def active(self):
        return bool(self.scope or self.module)


def filter_grid(period, requirements, args):
    """Narrow the findings grid to in-scope (or out-of-scope) paragraphs and to one module.
    Unknown values are dropped with a notice, never an error. Two queries."""
    modules = {m.key: m.id for m in db.session.execute(Module.in_order()).scalars()}
    in_scope = set(db.session.execute(sa.select(PlanItem.requirement_id).where(
        PlanItem.period_id == period.id)).scalars())
    f = GridFilter(in_scope=in_scope, planned=bool(in_scope))
    scope = (args.get("scope") or "").strip()
    module = (args.get("module") or "").strip()
    if scope and scope not in SCOPE_FILTERS:
        f.ignored.append("scope")
        scope = ""
    if module and module not in modules:
        f.ignored.append("module")
        module = ""
    f.scope, f.module = scope, module
    rows = requirements
    if scope == "in":
        rows = [r for r in rows if r.id in in_scope]
    elif scope == "out":
        rows = [r for r in rows if r.id not in in_scope]
    if module:
        rows = [r for r in rows if r.module_id == modules[module]]
    return rows, f
