"""Measures for the agency dashboard, the cross-agency roll-up and the public page.

Definitions (also printed on the pages that show them):
- active requirement: adopted or imported, not terminated by the court;
- at top level: the requirement's latest finding is the highest rating of the agency's scale;
- percent at top level = active requirements at top level / all active requirements (requirements
  without a finding, "not yet assessed" or "evaluation deferred" stay in the denominator and are
  never counted as non-compliance);
- overdue: due date before today and status Not started or In progress;
- due in N days: open requirements due today or within the next N days.

Every measure is aggregated in SQL by measures_by, grouped by module for one agency's dashboard and
by agency for the roll-up, so both pages count the same way.
"""
import functools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import (
    STATUSES,
    AuditEvent,
    ComplianceLevel,
    Evidence,
    Finding,
    Module,
    MonitoringPeriod,
    Requirement,
    utcnow,
)
from tracker.services import monitoring

WINDOWS = (30, 60, 90)
NO_FINDING = "No finding yet"


@dataclass
class Measures:
    total: int = 0
    by_status: dict = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    by_level: dict = field(default_factory=dict)       # level label -> count; NO_FINDING for none
    at_top: int = 0
    overdue: int = 0
    due_within: dict = field(default_factory=lambda: dict.fromkeys(WINDOWS, 0))
    evidence_submitted: int = 0
    evidence_returned: int = 0
    terminated: int = 0

    @property
    def pct_top(self):
        return round(100 * self.at_top / self.total) if self.total else 0

    @property
    def pct_implemented(self):
        return round(100 * self.by_status["implemented"] / self.total) if self.total else 0

    def status_segments(self):
        """[(label, count, css class)] for a stacked bar by agency status."""
        return [(label, self.by_status[key], key.replace("_", "-")) for key, label in STATUSES.items()]

    def level_segments(self, level_classes):
        return [(label, self.by_level.get(label, 0), cls) for label, cls in level_classes.items()]

    def add(self, other):
        """Fold another group's counts into this one (modules into the agency total)."""
        for name in ("total", "at_top", "overdue", "evidence_submitted", "evidence_returned", "terminated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.by_status, other.by_status), (self.by_level, other.by_level),
                             (self.due_within, other.due_within)):
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n
        return self


def _count_if(condition):
    return sa.func.sum(sa.case((condition, 1), else_=0))


# The three statements are built once per shape and reused with parameters: building them took half the time
# of running them (2.7 of 5.3 ms a dashboard), and a statement object reused keeps its SQLAlchemy cache key.
FILTERS = {
    "agency": lambda: Requirement.agency_id == sa.bindparam("agency"),
    "agencies": lambda: Requirement.agency_id.in_(sa.bindparam("agencies", expanding=True)),
    "entity": lambda: Requirement.entity_id == sa.bindparam("entity"),
    "module": lambda: Requirement.module_id == sa.bindparam("module"),
}
KEYS = {"module": Requirement.module_id, "agency": Requirement.agency_id}


@functools.cache
def _statements(key_name, filters):
    key = KEYS[key_name]
    scope = sa.and_(*(FILTERS[name]() for name in filters))
    active_scope = sa.and_(scope, Requirement.terminated_at.is_(None))
    return _status_and_due_statement(key, scope), _evidence_statement(key, active_scope), \
        _latest_levels_statement(key, active_scope)


def _status_and_due_statement(key, scope):
    """Statuses, terminated, overdue and due-window counts: one grouped query."""
    terminated = Requirement.terminated_at.is_not(None)
    today = sa.bindparam("today")
    windows = [_count_if(sa.and_(Requirement.is_open, Requirement.due_date >= today,
                                 Requirement.due_date <= sa.bindparam(f"until_{w}"))) for w in WINDOWS]
    return (sa.select(key, Requirement.status, terminated, sa.func.count(),
                      _count_if(sa.and_(Requirement.is_open, Requirement.due_date < today)), *windows)
            .where(scope).group_by(key, Requirement.status, terminated))


def _status_and_due(measures, rows):
    for value, status, is_terminated, n, overdue, *due in rows:
        m = measures[value]
        if is_terminated:
            m.terminated += n
            continue
        m.total += n
        m.by_status[status] += n
        m.overdue += int(overdue or 0)
        for window, count in zip(WINDOWS, due, strict=True):
            m.due_within[window] += int(count or 0)


def _evidence_statement(key, active_scope):
    """Current evidence waiting for review or returned, of active requirements: one query."""
    return (sa.select(key, Evidence.review_state, sa.func.count())
            .join(Requirement, Requirement.id == Evidence.requirement_id)
            .where(active_scope, Evidence.superseded.is_(False), Evidence.review_state.in_(("submitted", "returned")))
            .group_by(key, Evidence.review_state))


def _evidence(measures, rows):
    for value, state, n in rows:
        if state == "submitted":
            measures[value].evidence_submitted += n
        else:
            measures[value].evidence_returned += n


def _latest_levels_statement(key, active_scope):
    """Active requirements by the level of their latest finding (the current finding of the latest
    period, by period end date), and how many of those are the top rating of the agency's scale: one query."""
    ranked = (sa.select(key.label("key"), Requirement.agency_id, Finding.level_id,
                        sa.func.row_number().over(partition_by=Finding.requirement_id,
                                                  order_by=(MonitoringPeriod.end_date.desc(), Finding.id.desc()))
                        .label("rn"))
              .join(Requirement, Requirement.id == Finding.requirement_id)
              # Redundant (a period and its findings' requirements share the agency), but it lets the
              # planner start from the agency's few periods instead of scanning every finding.
              .join(MonitoringPeriod, sa.and_(MonitoringPeriod.id == Finding.period_id,
                                               MonitoringPeriod.agency_id == Requirement.agency_id))
              # Filed periods only: drafts never count.
              .where(active_scope, monitoring.counted(period=MonitoringPeriod))
              .subquery())
    tops = (sa.select(ComplianceLevel.scale_id, sa.func.max(ComplianceLevel.rank).label("rank"))
            .where(ComplianceLevel.kind == "rating").group_by(ComplianceLevel.scale_id).subquery())
    return (sa.select(ranked.c.key, ComplianceLevel.label, sa.func.count(),
                      _count_if(sa.and_(ComplianceLevel.kind == "rating", ComplianceLevel.rank == tops.c.rank)))
            .join(ComplianceLevel, ComplianceLevel.id == ranked.c.level_id)
            # "Top" is judged within the level's own scale (each instrument has its scale).
            .outerjoin(tops, tops.c.scale_id == ComplianceLevel.scale_id)
            .where(ranked.c.rn == 1)
            .group_by(ranked.c.key, ComplianceLevel.label))


def _latest_levels(measures, rows):
    for value, label, n, at_top in rows:
        m = measures[value]
        m.by_level[label] = m.by_level.get(label, 0) + n
        m.at_top += int(at_top or 0)


def measures_by(key_name, **filters):
    """{value of the `key_name` column ("module" or "agency"): Measures} of the requirements matching `filters`
    (agency=id, agencies=[ids], entity=id, module=id; None values ignored), aggregated in SQL: three queries
    whatever the number of requirements, modules or agencies."""
    filters = {name: value for name, value in filters.items() if value is not None}
    status_and_due, evidence, latest_levels = _statements(key_name, tuple(sorted(filters)))
    today = utcnow().date()
    params = {**filters, "today": today, **{f"until_{w}": today + timedelta(days=w) for w in WINDOWS}}
    measures = defaultdict(Measures)
    _status_and_due(measures, db.session.execute(status_and_due, params).all())
    _evidence(measures, db.session.execute(evidence, params).all())
    _latest_levels(measures, db.session.execute(latest_levels, params).all())
    for m in measures.values():
        unrated = m.total - sum(m.by_level.values())
        if unrated:
            m.by_level[NO_FINDING] = unrated
    return measures


def agency_measures(agency, module_key=None, entity_id=None, modules=None):
    """({module_id: Measures}, total Measures, modules shown) for one agency, optionally one module and one
    responsible entity (issue 12). `modules`: the modules in order, when the caller has them already."""
    if modules is None:
        modules = db.session.execute(Module.in_order()).scalars().all()
    module = next((m for m in modules if m.key == module_key), None) if module_key else None
    per_module = dict(measures_by("module", agency=agency.id, entity=entity_id,
                                  module=module.id if module is not None else None))
    total = Measures()
    for m in per_module.values():
        total.add(m)
    shown = [m for m in modules if m.id in per_module]
    return per_module, total, shown


def level_classes(agency):
    """{level label: css class} in scale order, plus "No finding yet". Colours darken with the rank;
    "not yet assessed" and "evaluation deferred" get neutral patterns, never the non-compliance colour."""
    levels = monitoring.scale_levels(agency)
    top = monitoring.top_rank(levels)
    classes = {}
    for lvl in levels:
        if lvl.kind != "rating":
            classes[lvl.label] = lvl.kind
        elif lvl.rank == top:
            classes[lvl.label] = "top"
        else:
            classes[lvl.label] = f"rank-{min(lvl.rank, 3)}"
    classes[NO_FINDING] = "none"
    return classes


@functools.cache
def _trend_statements(by_module, by_entity):
    """The trend's two statements, built once per shape (see _statements)."""
    query = (sa.select(Finding.period_id, ComplianceLevel.label, ComplianceLevel.kind, ComplianceLevel.rank,
                       sa.func.count())
             .join(ComplianceLevel, ComplianceLevel.id == Finding.level_id)
             .join(Requirement, Requirement.id == Finding.requirement_id)
             .where(Finding.period_id.in_(sa.bindparam("periods", expanding=True)), monitoring.counted(),
                    Requirement.terminated_at.is_(None))
             .group_by(Finding.period_id, ComplianceLevel.label, ComplianceLevel.kind, ComplianceLevel.rank))
    active = sa.select(sa.func.count()).select_from(Requirement).where(
        Requirement.agency_id == sa.bindparam("agency"), Requirement.terminated_at.is_(None))
    if by_module:
        module_filter = Requirement.module_id == sa.select(Module.id).where(
            Module.key == sa.bindparam("module_key")).scalar_subquery()
        query, active = query.where(module_filter), active.where(module_filter)
    if by_entity:
        query = query.where(Requirement.entity_id == sa.bindparam("entity"))
        active = active.where(Requirement.entity_id == sa.bindparam("entity"))
    return query, active


def trend(agency, module_key=None, entity_id=None, active=None, periods=None):
    """Per monitoring period (oldest first): findings by level and the share of active requirements at top.
    `active`: the number of active requirements in scope, and `periods`: the agency's periods (any order), when
    the caller has them already (the dashboard does: its measures' total and its period list)."""
    if periods is None:
        periods = db.session.execute(
            sa.select(MonitoringPeriod).where(MonitoringPeriod.agency_id == agency.id,
                                              MonitoringPeriod.state == monitoring.FILED)
        ).scalars().all()
    periods = sorted((p for p in periods if p.state == monitoring.FILED), key=lambda p: (p.end_date, p.id))
    if not periods:
        return []
    query, active_statement = _trend_statements(bool(module_key), entity_id is not None)
    params = {"periods": [p.id for p in periods], "agency": agency.id, "module_key": module_key, "entity": entity_id}
    total = active if active is not None else db.session.execute(active_statement, params).scalar() or 0
    top = monitoring.top_rank(monitoring.scale_levels(agency))
    by_period = {p.id: {"period": p, "levels": {}, "at_top": 0, "rated": 0} for p in periods}
    for period_id, label, kind, rank, n in db.session.execute(query, params).all():
        entry = by_period[period_id]
        entry["levels"][label] = entry["levels"].get(label, 0) + n
        entry["rated"] += n
        if kind == "rating" and rank == top:
            entry["at_top"] += n
    result = []
    for p in periods:
        entry = by_period[p.id]
        entry["pct_top"] = round(100 * entry["at_top"] / total) if total else 0
        entry["point"] = (p.name.split(":")[0], entry["pct_top"])
        result.append(entry)
    return result


def recent_activity(agency, limit=10):
    return db.session.execute(
        sa.select(AuditEvent).where(AuditEvent.agency_id == agency.id, AuditEvent.outcome == "success",
                                    # Draft findings and the answers to them stay with the parties until filed.
                                    AuditEvent.action.not_in(monitoring.DRAFT_ACTIONS))
        .order_by(AuditEvent.id.desc()).limit(limit)
    ).scalars().all()


@functools.cache
def _upcoming_statement(by_module, by_entity, limit):
    """upcoming_with_total()'s statement, built once per shape (see _statements). The window count gives the number of
    matching requirements beside the first `limit` of them, in the same query."""
    where = [Requirement.agency_id == sa.bindparam("agency"), Requirement.is_open, Requirement.terminated_at.is_(None),
             Requirement.due_date.is_not(None), Requirement.due_date <= sa.bindparam("until")]
    if by_module:
        where.append(Requirement.module_id == sa.select(Module.id).where(
            Module.key == sa.bindparam("module_key")).scalar_subquery())
    if by_entity:
        where.append(Requirement.entity_id == sa.bindparam("entity"))
    return (sa.select(Requirement, sa.func.count().over()).where(*where)
            .order_by(Requirement.due_date, Requirement.id).limit(limit))


def upcoming_with_total(agency, days=90, limit=15, module_key=None, entity_id=None):
    """([requirement], how many in all): open requirements overdue or due within `days`, soonest first (one module,
    one entity if given), at most `limit` of them, and the number without the limit (issue 14: the table says how
    many more). One query."""
    rows = db.session.execute(_upcoming_statement(bool(module_key), entity_id is not None, limit), {
        "agency": agency.id, "until": utcnow().date() + timedelta(days=days), "module_key": module_key,
        "entity": entity_id}).all()
    return [r for r, _n in rows], (rows[0][1] if rows else 0)


SORTS = {
    "name": lambda r: r["agency"].name.lower(),
    "requirements": lambda r: r["measures"].total,
    "implemented": lambda r: r["measures"].pct_implemented,
    "top": lambda r: r["measures"].pct_top,
    "overdue": lambda r: r["measures"].overdue,
    "waiting": lambda r: r["measures"].evidence_submitted,
}


def rollup(agencies, sort="name", descending=False):
    """One row per agency with the same measures as the dashboard: three queries for any number of agencies."""
    if not agencies:
        return []
    measures = measures_by("agency", agencies=[a.id for a in agencies])
    result = [{"agency": a, "measures": measures[a.id]} for a in agencies]
    result.sort(key=SORTS.get(sort, SORTS["name"]), reverse=descending)
    return result
