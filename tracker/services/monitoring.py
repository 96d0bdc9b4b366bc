"""Monitoring periods (open -> draft shared with the parties -> filed), findings on the requirement's
instrument scale (single, per-level or percentage), the agency's responses to draft findings, deltas against
the previous filed rating, disagreement flags and partial terminations. The sustainment clock is in
tracker/services/sustainment.py.

Who sees what (issue 13): the monitoring team and admins see every period's findings; the agency's officers
see a period's findings once its draft is shared (marked draft; they may answer each); everyone else, and every
count, page, export and API outside the findings grid, sees findings of FILED periods only, through counted()."""
import functools
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa

from tracker import cache
from tracker.extensions import db
from tracker.models import (
    ComplianceLevel,
    Finding,
    FindingAssessment,
    FindingResponse,
    Module,
    MonitoringPeriod,
    Requirement,
    utcnow,
)
from tracker.services import assessments, audit, notifications
from tracker.services.errors import ValidationFailed

FILED = "filed"
# Who sees a period's findings in each state: the monitoring team (and admins) always; the agency's officers
# once the draft is shared (marked draft, with a written response per finding); everyone once it is filed.
DRAFT_READERS = {"monitor", "admin"}
# Audit actions about draft findings: the committee's activity feed leaves them out.
DRAFT_ACTIONS = ("finding.record", "finding.respond", "period.share")
MAX_NARRATIVE = 20000


def filed_period_ids():
    """Ids of filed periods, as a subquery (never correlated with an enclosing query's periods)."""
    return sa.select(MonitoringPeriod.id).where(MonitoringPeriod.state == FILED).correlate(None)


def counted(finding=Finding, period=None):
    """THE rule every consumer outside the monitoring team uses (dashboards, roll-up, public page, API,
    exports, board flags, requirement page, deltas, sustainment): a current finding of a FILED period.
    Findings of open or shared periods are confidential drafts and change none of those.

    `period`: the finding's period, when the query joins it already. The rule then reads the joined row's state:
    the same rule, but PostgreSQL no longer scans every agency's filed periods for each finding (a board page's
    row query took 5.6 ms, 3.5 of them in that scan)."""
    if period is not None:
        return sa.and_(finding.is_current.is_(True), period.state == FILED)
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
    """The agency's monitoring periods, newest first."""
    return db.session.execute(_periods_statement(), {"agency": agency.id}).scalars().all()


@functools.cache
def _periods_statement():
    return (sa.select(MonitoringPeriod).where(MonitoringPeriod.agency_id == sa.bindparam("agency"))
            .order_by(MonitoringPeriod.end_date.desc(), MonitoringPeriod.id.desc()))


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


def share_period(period, *, actor):
    """Open -> draft shared with the parties: the agency's officers now see the findings (marked draft)."""
    if period.state != "open":
        raise ValidationFailed({"period": f"{period.name} is {period.state_label.lower()}; only an open period's "
                                          "draft can be shared."})
    period.state = "shared"
    period.shared_at = utcnow()
    period.shared_by_id = actor.id
    db.session.flush()
    audit.record("period.share", period, actor=actor, before={"state": "open"}, after={"state": "shared"})
    notifications.period_shared(period, actor=actor)


def file_period(period, filed_on, docket_ref, *, actor):
    """The report is filed with the court: its findings become visible to the committee and count everywhere."""
    errors = {}
    if period.state == FILED:
        raise ValidationFailed({"period": f"{period.name} was already filed on {period.filed_on.isoformat()}."
                                if period.filed_on else f"{period.name} is already filed."})
    today = utcnow().date()
    if not isinstance(filed_on, date):
        errors["filed_on"] = "Enter the date the report was filed with the court as YYYY-MM-DD."
    elif filed_on > today:
        errors["filed_on"] = f"The filing date cannot be later than today ({today.isoformat()})."
    elif filed_on < period.start_date:
        errors["filed_on"] = f"The filing date cannot be before the period began ({period.start_date.isoformat()})."
    docket_ref = (docket_ref or "").strip()
    if not docket_ref:
        errors["docket_ref"] = "Cite the filing, e.g. “Dkt. 1123”."
    elif len(docket_ref) > 300:
        errors["docket_ref"] = "The docket reference must be at most 300 characters."
    if errors:
        raise ValidationFailed(errors)
    before = period.state
    period.state, period.filed_on, period.docket_ref = FILED, filed_on, docket_ref
    period.filed_at, period.filed_by_id = utcnow(), actor.id
    db.session.flush()
    audit.record("period.file", period, actor=actor, before={"state": before},
                 after={"state": FILED, "filed_on": filed_on, "docket_ref": docket_ref})
    notifications.period_filed(period, actor=actor)


def scale_levels(agency):
    scale_id = agency.scale_id
    return cache.per_request(("scale-levels", scale_id), lambda: db.session.execute(
        _levels_statement(), {"scale": scale_id}).scalars().all())


@functools.cache
def _levels_statement():
    return (sa.select(ComplianceLevel).where(ComplianceLevel.scale_id == sa.bindparam("scale"))
            .order_by(ComplianceLevel.position))


def current_findings(period_ids, requirement_ids=None):
    query = (sa.select(Finding).where(Finding.period_id.in_(period_ids), Finding.is_current.is_(True))
             .options(sa.orm.joinedload(Finding.monitor)))
    if requirement_ids is not None:
        query = query.where(Finding.requirement_id.in_(requirement_ids))
    return db.session.execute(query).scalars().all()


def parts_of(finding_ids):
    """{finding_id: [assessments.Part]} in ladder order, one query."""
    parts = {}
    if not finding_ids:
        return parts
    for row in db.session.execute(
        sa.select(FindingAssessment).where(FindingAssessment.finding_id.in_(list(finding_ids)))
    ).scalars():
        parts.setdefault(row.finding_id, []).append(assessments.Part(row.level, row.status, row.measured))
    for items in parts.values():
        items.sort(key=lambda p: (p.level.rank, p.level.position))
    return parts


def _chosen_level(scale, level_id, errors):
    try:
        level_id = int(level_id)
    except (TypeError, ValueError):
        level_id = None
    level = db.session.get(ComplianceLevel, level_id) if level_id else None
    if level is None or level.scale_id != scale.id:
        errors["level_id"] = f"Choose a level of this requirement's scale ({scale.name})."
        return None
    return level


def _assess(scale, level_id, form, errors):
    """(overall level, parts) for the scale's kind of assessment."""
    if scale.assessment == "single":
        return _chosen_level(scale, level_id, errors), []
    parts = assessments.parse_parts(scale, form or {}, errors)
    if errors:
        return None, parts
    level = assessments.overall(scale, parts)
    if level is None:
        errors["level_id"] = f"{scale.name} has no level for this assessment; ask an administrator to check the scale."
    return level, parts


def _check_finding(requirement, period, narrative, correction_reason, errors):
    narrative = (narrative or "").strip()
    if len(narrative) > MAX_NARRATIVE:
        errors["narrative"] = "The narrative must be at most 20,000 characters."
    correction_reason = (correction_reason or "").strip()
    if len(correction_reason) > 2000:
        errors["correction_reason"] = "The reason must be at most 2,000 characters."
    if requirement.terminated_at is not None and period.start_date > requirement.terminated_at:
        errors["requirement"] = (f"{requirement.code} was terminated by the court on "
                                 f"{requirement.terminated_at.isoformat()}, before this period began; "
                                 "it is no longer rated.")
    if period.state == FILED and not correction_reason:
        errors["period"] = (f"{period.name} is filed and its findings are frozen. Record a correction "
                            "with a reason instead.")
    return narrative, correction_reason


def _same(previous, level, narrative, parts):
    old = sorted((p.level.id, p.status, p.measured) for p in parts_of([previous.id]).get(previous.id, []))
    new = sorted((p.level.id, p.status, p.measured) for p in parts)
    return previous.level_id == level.id and previous.narrative == narrative and old == new


def record_finding(requirement, period, level_id, narrative, *, actor, correction_reason=None, form=None):
    """Rate a requirement for a period on its instrument's scale (`form` carries per-level statuses or measured
    percentages). Re-rating an open or shared period replaces the current finding (kept as history); once the
    period is filed only a correction with a reason may replace an existing finding; none is ever added."""
    if period.agency_id != requirement.agency_id:
        raise ValidationFailed({"period": "The period belongs to another agency."})
    errors = {}
    scale = requirement.instrument.scale
    level, parts = _assess(scale, level_id, form, errors)
    narrative, correction_reason = _check_finding(requirement, period, narrative, correction_reason, errors)
    if errors:
        raise ValidationFailed(errors)
    # Serialise ratings of one requirement (PostgreSQL row lock; SQLite's writes are already serial),
    # so two monitors saving at once cannot both leave a "current" finding.
    db.session.execute(sa.select(Requirement.id).where(Requirement.id == requirement.id).with_for_update())
    previous = db.session.execute(
        sa.select(Finding).where(Finding.requirement_id == requirement.id, Finding.period_id == period.id,
                                 Finding.is_current.is_(True))
    ).scalar_one_or_none()
    filed = period.state == FILED
    if filed and previous is None:
        raise ValidationFailed({"period": f"{period.name} is filed and has no finding on {requirement.code}; a "
                                          "correction replaces an existing finding and never adds a rating."})
    if previous is not None:
        if not filed and _same(previous, level, narrative, parts):
            return previous
        previous.is_current = False
    finding = Finding(requirement_id=requirement.id, period_id=period.id, level_id=level.id, narrative=narrative,
                      monitor_id=actor.id, supersedes_id=previous.id if previous else None,
                      correction_reason=correction_reason if filed else None)
    db.session.add(finding)
    db.session.flush()
    db.session.add_all(FindingAssessment(finding_id=finding.id, level_id=p.level.id, status=p.status,
                                         measured=p.measured) for p in parts)
    db.session.flush()
    audit.record("finding.correct" if filed else "finding.record", finding,
                 agency_id=requirement.agency_id, actor=actor,
                 before={"level": previous.level.key} if previous else None,
                 after={"requirement": requirement.code, "period": period.name, "level": level.key,
                        "narrative": narrative, "correction_reason": correction_reason or None,
                        "assessments": assessments.describe(parts) or None})
    return finding


def respond(period, requirement, body, *, actor):
    """The agency's written answer to a draft finding while the draft is shared; a new answer replaces the
    current one (kept as history)."""
    if period.agency_id != requirement.agency_id:
        raise ValidationFailed({"period": "The period belongs to another agency."})
    errors = {}
    body = (body or "").strip()
    if not body:
        errors["body"] = "Write the agency's response."
    elif len(body) > MAX_NARRATIVE:
        errors["body"] = "The response must be at most 20,000 characters."
    if period.state != "shared":
        errors["period"] = (f"{period.name} is {period.state_label.lower()}; the agency answers draft findings "
                            "while the draft is shared with the parties.")
    finding = db.session.execute(
        sa.select(Finding).where(Finding.requirement_id == requirement.id, Finding.period_id == period.id,
                                 Finding.is_current.is_(True))).scalar_one_or_none()
    if finding is None:
        errors["requirement"] = f"There is no draft finding on {requirement.code} to answer."
    if errors:
        raise ValidationFailed(errors)
    previous = db.session.execute(
        sa.select(FindingResponse).where(FindingResponse.period_id == period.id,
                                         FindingResponse.requirement_id == requirement.id,
                                         FindingResponse.is_current.is_(True))).scalars().all()
    for old in previous:
        old.is_current = False
    response = FindingResponse(period_id=period.id, requirement_id=requirement.id, finding_id=finding.id,
                               body=body, author_id=actor.id)
    db.session.add(response)
    db.session.flush()
    audit.record("finding.respond", response, agency_id=requirement.agency_id, actor=actor,
                 before={"body": previous[-1].body} if previous else None,
                 after={"requirement": requirement.code, "period": period.name, "body": body})
    return response


def responses(period):
    """{requirement_id: current FindingResponse} of the period, one query."""
    return {r.requirement_id: r for r in db.session.execute(
        sa.select(FindingResponse).where(FindingResponse.period_id == period.id, FindingResponse.is_current.is_(True))
        .options(sa.orm.joinedload(FindingResponse.author))).scalars()}


def latest_findings(agency, before=None):
    """{requirement_id: Finding} — each requirement's current finding in its most recent FILED period (ending
    before `before` when given: the previous filed rating, whichever period that was)."""
    query = (sa.select(Finding).join(MonitoringPeriod, MonitoringPeriod.id == Finding.period_id)
             .where(MonitoringPeriod.agency_id == agency.id, counted(period=MonitoringPeriod))
             .options(sa.orm.contains_eager(Finding.period))
             .order_by(MonitoringPeriod.end_date, Finding.id))
    if before is not None:
        query = query.where(MonitoringPeriod.end_date < before)
    latest = {}
    for finding in db.session.execute(query).scalars():
        latest[finding.requirement_id] = finding
    return latest


def previous_period(period):
    """The last FILED period ending before this one (what "previous" means on every page)."""
    return db.session.execute(
        sa.select(MonitoringPeriod).where(MonitoringPeriod.agency_id == period.agency_id,
                                          MonitoringPeriod.state == FILED,
                                          MonitoringPeriod.end_date < period.end_date)
        .order_by(MonitoringPeriod.end_date.desc(), MonitoringPeriod.id.desc()).limit(1)
    ).scalar_one_or_none()


@dataclass
class ModuleDelta:
    module: Module
    # (requirement, old level, new level, period of the old rating)
    upgrades: list = field(default_factory=list)
    downgrades: list = field(default_factory=list)
    newly_rated: list = field(default_factory=list)


def deltas(period):
    """Upgrades, downgrades and newly rated requirements, per module: each requirement's finding in this period
    against its previous FILED rating, whichever period that was (rated in 1, skipped in 2, rated in 3: 3 is
    compared with 1). Only rating levels are compared; 'not yet assessed' and 'deferred' are neither."""
    before = previous_period(period)
    if before is None:
        return None, []
    now = {f.requirement_id: f for f in current_findings([period.id])}
    then = latest_findings(period.agency, before=period.end_date)
    requirements = {r.id: r for r in db.session.execute(
        sa.select(Requirement).where(Requirement.id.in_(set(now)))).scalars()}
    modules = {m.id: m for m in db.session.execute(Module.in_order()).scalars()}
    result = {m_id: ModuleDelta(module=m) for m_id, m in modules.items()}
    for req_id, new in now.items():
        req, old = requirements[req_id], then.get(req_id)
        entry = result[req.module_id]
        if new.level.kind != "rating":
            continue
        item = (req, old.level if old else None, new.level, old.period if old else None)
        if old is None or old.level.kind != "rating":
            entry.newly_rated.append(item)
        elif new.level.rank > old.level.rank:
            entry.upgrades.append(item)
        elif new.level.rank < old.level.rank:
            entry.downgrades.append(item)
    for entry in result.values():
        for items in (entry.upgrades, entry.downgrades, entry.newly_rated):
            items.sort(key=lambda item: item[0].code)
    return before, [d for d in result.values() if d.upgrades or d.downgrades or d.newly_rated]


def _plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


def delta_headline(deltas):
    """'4 upgrades, 1 downgrade, 1 newly rated'."""
    ups = sum(len(d.upgrades) for d in deltas)
    downs = sum(len(d.downgrades) for d in deltas)
    new = sum(len(d.newly_rated) for d in deltas)
    return f"{_plural(ups, 'upgrade')}, {_plural(downs, 'downgrade')}, {new} newly rated"


def top_rank(levels):
    ranks = [lvl.rank for lvl in levels if lvl.kind == "rating"]
    return max(ranks) if ranks else None


def disagreement(requirement, finding, top):
    """A sentence when the agency's own status and the monitor's latest filed rating disagree, else None. A
    requirement the agency marks not applicable but the monitor rates is flagged too."""
    if finding is None or finding.level.kind != "rating":
        return None
    if requirement.status == "not_applicable":
        return f"The agency marks it Not applicable; the monitor rates it {finding.level.label}."
    at_top = finding.level.rank == top
    if requirement.status == "implemented" and not at_top:
        return f"Agency reports Implemented; the monitor rates it {finding.level.label}."
    if requirement.status != "implemented" and at_top:
        return f"The monitor rates it {finding.level.label}; the agency reports {requirement.status_label}."
    return None


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


def requirement_findings(requirement, role=None):
    """Every finding on a requirement (corrections and replaced ones included) in periods whose findings `role`
    may read, newest period first."""
    query = (sa.select(Finding, MonitoringPeriod).join(MonitoringPeriod, MonitoringPeriod.id == Finding.period_id)
             .where(Finding.requirement_id == requirement.id)
             .options(sa.orm.joinedload(Finding.monitor))
             .order_by(MonitoringPeriod.end_date.desc(), Finding.created_at.desc(), Finding.id.desc()))
    if role not in DRAFT_READERS:
        states = [FILED, "shared"] if role == "officer" else [FILED]
        query = query.where(MonitoringPeriod.state.in_(states))
    return db.session.execute(query).all()


def requirement_monitoring(agency, requirement, role=None):
    """Findings history (what `role` may read; drafts marked), sustainment clock and disagreement flag (filed
    findings only) for the requirement page."""
    from tracker.services import sustainment

    top = top_rank(scale_levels(agency))
    history = requirement_findings(requirement, role)
    latest = latest_findings(agency).get(requirement.id)
    clocks, dips = sustainment.clocks(agency, [requirement.id])
    return {"findings": history, "parts": parts_of([f.id for f, _p in history]),
            "clock": clocks.get(requirement.id), "dip": dips.get(requirement.id),
            "flag": disagreement(requirement, latest, top), "top_label": next(
                (lvl.label for lvl in scale_levels(agency) if lvl.kind == "rating" and lvl.rank == top), None)}
