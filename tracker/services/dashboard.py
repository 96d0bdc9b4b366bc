"""Measures for the agency dashboard, the cross-agency roll-up and the public page.

Definitions (also printed on the pages that show them):
- active requirement: adopted or imported, not terminated by the court;
- at top level: the requirement's latest finding is the highest rating of the agency's scale;
- percent at top level = active requirements at top level / all active requirements (requirements
  without a finding, "not yet assessed" or "evaluation deferred" stay in the denominator and are
  never counted as non-compliance);
- overdue: due date before today and status Not started or In progress;
- due in N days: open requirements due today or within the next N days.
"""
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import (
    STATUSES,
    Agency,
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

OPEN = ("not_started", "in_progress")
WINDOWS = (30, 60, 90)


@dataclass
class Measures:
    total: int = 0
    by_status: dict = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    by_level: dict = field(default_factory=dict)       # level label -> count; "No finding" for none
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


def _requirement_rows(agency_ids, module_id=None):
    query = sa.select(Requirement.id, Requirement.agency_id, Requirement.module_id, Requirement.status,
                      Requirement.due_date, Requirement.terminated_at).where(Requirement.agency_id.in_(agency_ids))
    if module_id is not None:
        query = query.where(Requirement.module_id == module_id)
    return db.session.execute(query).all()


def _latest_levels(agency_ids):
    """{requirement_id: ComplianceLevel} from the latest rated period of each requirement (one query)."""
    rows = db.session.execute(
        sa.select(Finding.requirement_id, ComplianceLevel)
        .join(MonitoringPeriod, MonitoringPeriod.id == Finding.period_id)
        .join(ComplianceLevel, ComplianceLevel.id == Finding.level_id)
        .where(MonitoringPeriod.agency_id.in_(agency_ids), Finding.is_current.is_(True))
        .order_by(MonitoringPeriod.end_date, Finding.id)
    ).all()
    return {req_id: level for req_id, level in rows}


def _top_ranks(agency_ids):
    rows = db.session.execute(
        sa.select(Agency.id, sa.func.max(ComplianceLevel.rank))
        .join(ComplianceLevel, ComplianceLevel.scale_id == Agency.scale_id)
        .where(Agency.id.in_(agency_ids), ComplianceLevel.kind == "rating").group_by(Agency.id)
    ).all()
    return dict(rows)


def _evidence_counts(agency_ids):
    rows = db.session.execute(
        sa.select(Requirement.id, Evidence.review_state, sa.func.count())
        .join(Requirement, Requirement.id == Evidence.requirement_id)
        .where(Requirement.agency_id.in_(agency_ids), Evidence.superseded.is_(False),
               Evidence.review_state.in_(("submitted", "returned")))
        .group_by(Requirement.id, Evidence.review_state)
    ).all()
    counts = {}
    for req_id, state, n in rows:
        counts.setdefault(req_id, {})[state] = n
    return counts


def _accumulate(measures, row, level, top, evidence, today):
    if row.terminated_at is not None:
        measures.terminated += 1
        return
    measures.total += 1
    measures.by_status[row.status] += 1
    label = level.label if level is not None else "No finding yet"
    measures.by_level[label] = measures.by_level.get(label, 0) + 1
    if level is not None and level.kind == "rating" and level.rank == top:
        measures.at_top += 1
    if row.status in OPEN and row.due_date is not None:
        days = (row.due_date - today).days
        if days < 0:
            measures.overdue += 1
        for window in WINDOWS:
            if 0 <= days <= window:
                measures.due_within[window] += 1
    ev = evidence.get(row.id, {})
    measures.evidence_submitted += ev.get("submitted", 0)
    measures.evidence_returned += ev.get("returned", 0)


def agency_measures(agency, module_key=None):
    """({module_id: Measures}, total Measures, modules) for one agency, optionally one module."""
    modules = db.session.execute(sa.select(Module).order_by(Module.position)).scalars().all()
    module = next((m for m in modules if m.key == module_key), None) if module_key else None
    rows = _requirement_rows([agency.id], module.id if module else None)
    levels = _latest_levels([agency.id])
    top = _top_ranks([agency.id]).get(agency.id)
    evidence = _evidence_counts([agency.id])
    today = utcnow().date()
    per_module, total = {}, Measures()
    for row in rows:
        level = levels.get(row.id)
        _accumulate(per_module.setdefault(row.module_id, Measures()), row, level, top, evidence, today)
        _accumulate(total, row, level, top, evidence, today)
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
    classes["No finding yet"] = "none"
    return classes


def trend(agency, module_key=None):
    """Per monitoring period (oldest first): findings by level and the share of active requirements at top."""
    periods = db.session.execute(
        sa.select(MonitoringPeriod).where(MonitoringPeriod.agency_id == agency.id).order_by(MonitoringPeriod.end_date)
    ).scalars().all()
    if not periods:
        return []
    query = (sa.select(Finding.period_id, ComplianceLevel.label, ComplianceLevel.kind, ComplianceLevel.rank,
                       sa.func.count())
             .join(ComplianceLevel, ComplianceLevel.id == Finding.level_id)
             .join(Requirement, Requirement.id == Finding.requirement_id)
             .where(Finding.period_id.in_([p.id for p in periods]), Finding.is_current.is_(True),
                    Requirement.terminated_at.is_(None))
             .group_by(Finding.period_id, ComplianceLevel.label, ComplianceLevel.kind, ComplianceLevel.rank))
    active = sa.select(sa.func.count()).select_from(Requirement).where(
        Requirement.agency_id == agency.id, Requirement.terminated_at.is_(None))
    if module_key:
        module_filter = Requirement.module_id == sa.select(Module.id).where(Module.key == module_key).scalar_subquery()
        query = query.where(module_filter)
        active = active.where(module_filter)
    total = db.session.execute(active).scalar() or 0
    top = _top_ranks([agency.id]).get(agency.id)
    by_period = {p.id: {"period": p, "levels": {}, "at_top": 0, "rated": 0} for p in periods}
    for period_id, label, kind, rank, n in db.session.execute(query).all():
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
        sa.select(AuditEvent).where(AuditEvent.agency_id == agency.id, AuditEvent.outcome == "success")
        .order_by(AuditEvent.id.desc()).limit(limit)
    ).scalars().all()


def upcoming(agency, days=90, limit=15, module_key=None):
    """Open requirements overdue or due within `days`, soonest first (one module if given)."""
    today = utcnow().date()
    query = (sa.select(Requirement).where(Requirement.agency_id == agency.id, Requirement.status.in_(OPEN),
                                          Requirement.terminated_at.is_(None), Requirement.due_date.is_not(None),
                                          Requirement.due_date <= today + timedelta(days=days))
             .order_by(Requirement.due_date).limit(limit))
    if module_key:
        query = query.where(Requirement.module_id == sa.select(Module.id).where(Module.key == module_key)
                            .scalar_subquery())
    return db.session.execute(query).scalars().all()


SORTS = {
    "name": lambda r: r["agency"].name.lower(),
    "requirements": lambda r: r["measures"].total,
    "implemented": lambda r: r["measures"].pct_implemented,
    "top": lambda r: r["measures"].pct_top,
    "overdue": lambda r: r["measures"].overdue,
    "waiting": lambda r: r["measures"].evidence_submitted,
}


def _top_counts(agency_ids):
    """{agency_id: active requirements whose latest finding is the top rating} in one SQL query."""
    ranked = (sa.select(Finding.requirement_id, Finding.level_id,
                        sa.func.row_number().over(partition_by=Finding.requirement_id,
                                                  order_by=(MonitoringPeriod.end_date.desc(), Finding.id.desc()))
                        .label("rn"))
              .join(MonitoringPeriod, MonitoringPeriod.id == Finding.period_id)
              .where(MonitoringPeriod.agency_id.in_(agency_ids), Finding.is_current.is_(True))
              .subquery())
    top_rank = (sa.select(sa.func.max(ComplianceLevel.rank)).where(
        ComplianceLevel.scale_id == Agency.scale_id, ComplianceLevel.kind == "rating").correlate(Agency)
        .scalar_subquery())
    rows = db.session.execute(
        sa.select(Requirement.agency_id, sa.func.count())
        .join(ranked, ranked.c.requirement_id == Requirement.id)
        .join(ComplianceLevel, ComplianceLevel.id == ranked.c.level_id)
        .join(Agency, Agency.id == Requirement.agency_id)
        .where(ranked.c.rn == 1, Requirement.terminated_at.is_(None), ComplianceLevel.kind == "rating",
               ComplianceLevel.rank == top_rank)
        .group_by(Requirement.agency_id)
    ).all()
    return dict(rows)


def rollup(agencies, sort="name", descending=False):
    """One row per agency with the same measures, aggregated in SQL: five queries for any number of agencies."""
    ids = [a.id for a in agencies]
    if not ids:
        return []
    today = utcnow().date()
    measures = {a.id: Measures() for a in agencies}
    active = Requirement.terminated_at.is_(None)
    for agency_id, status, terminated, n in db.session.execute(
        sa.select(Requirement.agency_id, Requirement.status, Requirement.terminated_at.is_not(None), sa.func.count())
        .where(Requirement.agency_id.in_(ids))
        .group_by(Requirement.agency_id, Requirement.status, Requirement.terminated_at.is_not(None))
    ).all():
        if terminated:
            measures[agency_id].terminated += n
        else:
            measures[agency_id].total += n
            measures[agency_id].by_status[status] += n
    is_open = sa.and_(active, Requirement.status.in_(OPEN))
    windows = [sa.func.sum(sa.case((sa.and_(is_open, Requirement.due_date >= today,
                                            Requirement.due_date <= today + timedelta(days=w)), 1), else_=0))
               for w in WINDOWS]
    for agency_id, overdue, *due in db.session.execute(
        sa.select(Requirement.agency_id, sa.func.sum(sa.case((sa.and_(is_open, Requirement.due_date < today), 1),
                                                             else_=0)), *windows)
        .where(Requirement.agency_id.in_(ids)).group_by(Requirement.agency_id)
    ).all():
        measures[agency_id].overdue = int(overdue or 0)
        measures[agency_id].due_within = {w: int(n or 0) for w, n in zip(WINDOWS, due, strict=True)}
    for agency_id, state, n in db.session.execute(
        sa.select(Requirement.agency_id, Evidence.review_state, sa.func.count())
        .join(Requirement, Requirement.id == Evidence.requirement_id)
        .where(Requirement.agency_id.in_(ids), active, Evidence.superseded.is_(False),
               Evidence.review_state.in_(("submitted", "returned")))
        .group_by(Requirement.agency_id, Evidence.review_state)
    ).all():
        if state == "submitted":
            measures[agency_id].evidence_submitted = n
        else:
            measures[agency_id].evidence_returned = n
    for agency_id, n in _top_counts(ids).items():
        measures[agency_id].at_top = n
    result = [{"agency": a, "measures": measures[a.id]} for a in agencies]
    result.sort(key=SORTS.get(sort, SORTS["name"]), reverse=descending)
    return result
