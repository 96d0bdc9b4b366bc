"""Monitoring periods, findings on the agency's own compliance scale, deltas between periods,
disagreement flags, the sustainment clock and partial terminations."""
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import ComplianceLevel, Finding, Module, MonitoringPeriod, Requirement, utcnow
from tracker.services import audit
from tracker.services.agencies import add_months
from tracker.services.errors import ValidationFailed

FILED = "filed"
# Who sees a period's findings in each state: the monitoring team (and admins) always; the agency's officers
# once the draft is shared (marked draft, with a written response per finding); everyone once it is filed.
DRAFT_READERS = {"monitor", "admin"}


def filed_period_ids():
    """Ids of filed periods, as a subquery (never correlated with an enclosing query's periods)."""
    return sa.select(MonitoringPeriod.id).where(MonitoringPeriod.state == FILED).correlate(None)


def counted(finding=Finding):
    """THE rule every consumer outside the monitoring team uses (dashboards, roll-up, public page, API,
    exports, board flags, requirement page, deltas, sustainment): a current finding of a FILED period.
    Findings of open or shared periods are confidential drafts and change none of those."""
    return sa.and_(finding.is_current.is_(True), finding.period_id.in_(filed_period_ids()))


def last_filed_period(agency):
    """The agency's most recently ending filed period, or None: what the committee's pages speak of."""
    return db.session.execute(
        sa.select(MonitoringPeriod).where(MonitoringPeriod.agency_id == agency.id, MonitoringPeriod.state == FILED)
        .order_by(MonitoringPeriod.end_date.desc(), MonitoringPeriod.id.desc()).limit(1)
    ).scalar_one_or_none()


def findings_visible(period, role):
    """May a user with `role` in the period's agency read its findings? Drafts stay with the monitoring team
    until shared (then officers read them too) and reach the committee only when filed."""
    if period.state == FILED or role in DRAFT_READERS:
        return True
    return period.state == "shared" and role == "officer"


def periods(agency):
    return db.session.execute(
        sa.select(MonitoringPeriod).where(MonitoringPeriod.agency_id == agency.id)
        .order_by(MonitoringPeriod.end_date.desc(), MonitoringPeriod.id.desc())
    ).scalars().all()


def create_period(agency, name, start, end, *, actor):
    errors = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = "Name the period, e.g. “Report 9: Jan–Jun 2026”."
    elif len(name) > 200:
        errors["name"] = "The name must be at most 200 characters."
    elif db.session.execute(sa.select(MonitoringPeriod.id).where(
            MonitoringPeriod.agency_id == agency.id, MonitoringPeriod.name == name)).first():
        errors["name"] = f"This agency already has a period named “{name}”."
    if not isinstance(start, date):
        errors["start_date"] = "Enter the first day of the period as YYYY-MM-DD."
    if not isinstance(end, date):
        errors["end_date"] = "Enter the last day of the period as YYYY-MM-DD."
    if isinstance(start, date) and isinstance(end, date) and end < start:
        errors["end_date"] = "The period must end on or after its first day."
    if errors:
        raise ValidationFailed(errors)
    period = MonitoringPeriod(agency_id=agency.id, name=name, start_date=start, end_date=end, state="open")
    db.session.add(period)
    db.session.flush()
    audit.record("period.create", period, actor=actor, after={"name": name, "start": start, "end": end})
    return period


def close_period(period, *, actor):
    if period.state == "filed":
        raise ValidationFailed({"period": "This period is already closed."})
    period.state = "filed"
    period.filed_on = utcnow().date()
    period.filed_at = utcnow()
    period.filed_by_id = actor.id
    db.session.flush()
    audit.record("period.close", period, actor=actor, before={"state": "open"}, after={"state": "filed"})


def scale_levels(agency):
    return db.session.execute(
        sa.select(ComplianceLevel).where(ComplianceLevel.scale_id == agency.scale_id).order_by(ComplianceLevel.position)
    ).scalars().all()


def current_findings(period_ids, requirement_ids=None):
    query = (sa.select(Finding).where(Finding.period_id.in_(period_ids), Finding.is_current.is_(True))
             .options(sa.orm.joinedload(Finding.monitor)))
    if requirement_ids is not None:
        query = query.where(Finding.requirement_id.in_(requirement_ids))
    return db.session.execute(query).scalars().all()


def record_finding(requirement, period, level_id, narrative, *, actor, correction_reason=None):
    """Rate a requirement for a period. Re-rating while open replaces the current finding (kept as
    history); once the period is closed only a correction with a reason may replace it."""
    errors = {}
    if period.agency_id != requirement.agency_id:
        raise ValidationFailed({"period": "The period belongs to another agency."})
    try:
        level_id = int(level_id)
    except (TypeError, ValueError):
        level_id = None
    level = db.session.get(ComplianceLevel, level_id) if level_id else None
    scale = requirement.instrument.scale
    if level is None or level.scale_id != scale.id:
        errors["level_id"] = f"Choose a level of this requirement's scale ({scale.name})."
    narrative = (narrative or "").strip()
    if len(narrative) > 20000:
        errors["narrative"] = "The narrative must be at most 20,000 characters."
    correction_reason = (correction_reason or "").strip()
    if len(correction_reason) > 2000:
        errors["correction_reason"] = "The reason must be at most 2,000 characters."
    if requirement.terminated_at is not None and period.start_date > requirement.terminated_at:
        errors["requirement"] = (f"{requirement.code} was terminated by the court on "
                                 f"{requirement.terminated_at.isoformat()}, before this period began; "
                                 "it is no longer rated.")
    if period.state == "filed" and not correction_reason:
        errors["period"] = (f"{period.name} is closed and its findings are frozen. Record a correction "
                            "with a reason instead.")
    if errors:
        raise ValidationFailed(errors)
    # Serialise ratings of one requirement (PostgreSQL row lock; SQLite's writes are already serial),
    # so two monitors saving at once cannot both leave a "current" finding.
    db.session.execute(sa.select(Requirement.id).where(Requirement.id == requirement.id).with_for_update())
    previous = db.session.execute(
        sa.select(Finding).where(Finding.requirement_id == requirement.id, Finding.period_id == period.id,
                                 Finding.is_current.is_(True))
    ).scalar_one_or_none()
    if previous is not None:
        if (previous.level_id == level.id and previous.narrative == narrative and period.state == "open"):
            return previous
        previous.is_current = False
    finding = Finding(requirement_id=requirement.id, period_id=period.id, level_id=level.id, narrative=narrative,
                      monitor_id=actor.id, supersedes_id=previous.id if previous else None,
                      correction_reason=correction_reason if period.state == "filed" else None)
    db.session.add(finding)
    db.session.flush()
    audit.record("finding.correct" if period.state == "filed" else "finding.record", finding,
                 agency_id=requirement.agency_id, actor=actor,
                 before={"level": previous.level.key} if previous else None,
                 after={"requirement": requirement.code, "period": period.name, "level": level.key,
                        "narrative": narrative, "correction_reason": correction_reason or None})
    return finding


def previous_period(period):
    return db.session.execute(
        sa.select(MonitoringPeriod).where(MonitoringPeriod.agency_id == period.agency_id,
                                          MonitoringPeriod.end_date < period.end_date)
        .order_by(MonitoringPeriod.end_date.desc()).limit(1)
    ).scalar_one_or_none()


@dataclass
class ModuleDelta:
    module: Module
    upgrades: list = field(default_factory=list)      # (requirement, old level, new level)
    downgrades: list = field(default_factory=list)
    newly_rated: list = field(default_factory=list)


def deltas(period):
    """Upgrades and downgrades against the previous period, per module. Only rating levels are
    compared; 'not yet assessed' and 'evaluation deferred' are neither."""
    before = previous_period(period)
    if before is None:
        return None, []
    now = {f.requirement_id: f for f in current_findings([period.id])}
    then = {f.requirement_id: f for f in current_findings([before.id])}
    requirements = {r.id: r for r in db.session.execute(
        sa.select(Requirement).where(Requirement.id.in_(set(now) | set(then)))).scalars()}
    modules = {m.id: m for m in db.session.execute(Module.in_order()).scalars()}
    result = {m_id: ModuleDelta(module=m) for m_id, m in modules.items()}
    for req_id, new in now.items():
        req = requirements[req_id]
        old = then.get(req_id)
        entry = result[req.module_id]
        if new.level.kind != "rating":
            continue
        if old is None or old.level.kind != "rating":
            entry.newly_rated.append((req, old.level if old else None, new.level))
        elif new.level.rank > old.level.rank:
            entry.upgrades.append((req, old.level, new.level))
        elif new.level.rank < old.level.rank:
            entry.downgrades.append((req, old.level, new.level))
    for entry in result.values():
        for items in (entry.upgrades, entry.downgrades, entry.newly_rated):
            items.sort(key=lambda item: item[0].code)
    return before, [d for d in result.values() if d.upgrades or d.downgrades or d.newly_rated]


def latest_findings(agency):
    """{requirement_id: Finding} — each requirement's current finding in its most recent FILED rated period."""
    rows = db.session.execute(
        sa.select(Finding, MonitoringPeriod.end_date)
        .join(MonitoringPeriod, MonitoringPeriod.id == Finding.period_id)
        .where(MonitoringPeriod.agency_id == agency.id, counted())
        .options(sa.orm.contains_eager(Finding.period))
        .order_by(MonitoringPeriod.end_date, Finding.id)
    ).all()
    latest = {}
    for finding, _end in rows:
        latest[finding.requirement_id] = finding
    return latest


def top_rank(levels):
    ranks = [lvl.rank for lvl in levels if lvl.kind == "rating"]
    return max(ranks) if ranks else None


def disagreement(requirement, finding, top):
    """A sentence when the agency's own status and the monitor's latest rating disagree, else None."""
    if finding is None or finding.level.kind != "rating" or requirement.status == "not_applicable":
        return None
    at_top = finding.level.rank == top
    if requirement.status == "implemented" and not at_top:
        return f"Agency reports Implemented; the monitor rates it {finding.level.label}."
    if requirement.status != "implemented" and at_top:
        return f"The monitor rates it {finding.level.label}; the agency reports {requirement.status_label}."
    return None


def sustainment(agency, top):
    """{requirement_id: (since, eligible_on)}: `since` is the end of the first period of the current
    unbroken run of top-level findings; `eligible_on` adds the agency's sustainment period."""
    rows = db.session.execute(
        sa.select(Finding.requirement_id, MonitoringPeriod.end_date, ComplianceLevel.kind, ComplianceLevel.rank)
        .join(MonitoringPeriod, MonitoringPeriod.id == Finding.period_id)
        .join(ComplianceLevel, ComplianceLevel.id == Finding.level_id)
        .where(MonitoringPeriod.agency_id == agency.id, Finding.is_current.is_(True))
        .order_by(Finding.requirement_id, MonitoringPeriod.end_date)
    ).all()
    clock = {}
    for req_id, end_date, kind, rank in rows:
        if kind == "rating" and rank == top:
            clock.setdefault(req_id, end_date)
        elif kind == "rating":
            clock.pop(req_id, None)  # the run is broken by any lower rating
    months = agency.sustainment_months
    return {req_id: (since, add_months(since, months) if months else None) for req_id, since in clock.items()}


def terminate(requirements, terminated_on, reference, *, actor):
    """Record that the court released requirements (partial termination). They leave the active
    counts; their history stays."""
    errors = {}
    if not isinstance(terminated_on, date):
        errors["terminated_on"] = "Enter the date of the court's order as YYYY-MM-DD."
    reference = (reference or "").strip()
    if not reference:
        errors["reference"] = "Cite the order, e.g. “Order of Mar 3, 2026 (Dkt. 512)”."
    elif len(reference) > 300:
        errors["reference"] = "The reference must be at most 300 characters."
    if not requirements:
        errors["requirements"] = "Nothing to terminate."
    if errors:
        raise ValidationFailed(errors)
    done = []
    for req in requirements:
        if req.terminated_at is not None:
            continue
        req.terminated_at = terminated_on
        req.termination_ref = reference
        done.append(req)
    db.session.flush()
    for req in done:
        audit.record("requirement.terminate", req, actor=actor, after={"date": terminated_on, "reference": reference})
    return done


def requirement_findings(requirement):
    """Every finding on a requirement (corrections and replaced ones included), newest period first."""
    return db.session.execute(
        sa.select(Finding, MonitoringPeriod).join(MonitoringPeriod, MonitoringPeriod.id == Finding.period_id)
        .where(Finding.requirement_id == requirement.id)
        .options(sa.orm.joinedload(Finding.monitor))
        .order_by(MonitoringPeriod.end_date.desc(), Finding.created_at.desc(), Finding.id.desc())
    ).all()


def requirement_monitoring(agency, requirement):
    """Findings history, sustainment clock and disagreement flag for the requirement page."""
    top = top_rank(scale_levels(agency))
    history = requirement_findings(requirement)
    latest = next((f for f, _p in history if f.is_current), None)
    return {"findings": history, "clock": sustainment(agency, top).get(requirement.id),
            "flag": disagreement(requirement, latest, top), "top_label": next(
                (lvl.label for lvl in scale_levels(agency) if lvl.kind == "rating" and lvl.rank == top), None)}
