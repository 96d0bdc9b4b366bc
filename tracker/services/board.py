"""Reads for the requirement board and the requirement page (constant query counts)."""
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import (
    STATUSES,
    Citation,
    Comment,
    DeadlineChange,
    Evidence,
    EvidenceReview,
    Module,
    Recommendation,
    Requirement,
    StatusChange,
    utcnow,
)

DUE_FILTERS = {"overdue": "Overdue", "upcoming": "Due in the next 30 days", "none": "No due date"}


@dataclass
class BoardFilters:
    module: str = ""
    status: str = ""
    owner: str = ""
    due: str = ""
    q: str = ""
    ignored: list = field(default_factory=list)

    @classmethod
    def from_args(cls, args, module_keys, owner_ids):
        """Unknown values are dropped with a notice, never an error."""
        f = cls()
        ignored = []
        for name, allowed in (("module", module_keys), ("status", STATUSES), ("due", DUE_FILTERS)):
            value = (args.get(name) or "").strip()
            if value and value not in allowed:
                ignored.append(name)
                value = ""
            setattr(f, name, value)
        owner = (args.get("owner") or "").strip()
        if owner and owner != "none" and owner not in {str(i) for i in owner_ids}:
            ignored.append("owner")
            owner = ""
        f.owner = owner
        f.q = (args.get("q") or "").strip()[:200]
        f.ignored = ignored
        return f

    def as_args(self):
        return {k: v for k, v in (("module", self.module), ("status", self.status), ("owner", self.owner),
                                  ("due", self.due), ("q", self.q)) if v}

    @property
    def active(self):
        return bool(self.as_args())


def _escape_like(text):
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def board_rows(agency, filters):
    """Requirements of the agency matching the filters, with owners; one query."""
    today = utcnow().date()
    query = (sa.select(Requirement).where(Requirement.agency_id == agency.id)
             .options(sa.orm.joinedload(Requirement.owner))
             .order_by(Requirement.code))
    if filters.module:
        query = query.join(Module, Module.id == Requirement.module_id).where(Module.key == filters.module)
    if filters.status:
        query = query.where(Requirement.status == filters.status)
    if filters.owner == "none":
        query = query.where(Requirement.owner_id.is_(None))
    elif filters.owner:
        query = query.where(Requirement.owner_id == int(filters.owner))
    if filters.due == "overdue":
        query = query.where(Requirement.due_date < today, Requirement.is_open)
    elif filters.due == "upcoming":
        query = query.where(Requirement.due_date >= today, Requirement.due_date <= today + timedelta(days=30),
                            Requirement.is_open)
    elif filters.due == "none":
        query = query.where(Requirement.due_date.is_(None))
    if filters.q:
        pattern = f"%{_escape_like(filters.q.lower())}%"
        query = query.where(sa.or_(*(sa.func.lower(col).like(pattern, escape="\\") for col in (
            Requirement.code, Requirement.title, Requirement.summary, Requirement.citation_text))))
    return db.session.execute(query).unique().scalars().all()


def evidence_summary(agency, requirement_id=None):
    """{requirement_id: {"total": n, "submitted": n, "accepted": n, "returned": n}} for current versions."""
    query = (sa.select(Evidence.requirement_id, Evidence.review_state, sa.func.count())
             .join(Requirement, Requirement.id == Evidence.requirement_id)
             .where(Requirement.agency_id == agency.id, Evidence.superseded.is_(False))
             .group_by(Evidence.requirement_id, Evidence.review_state))
    if requirement_id is not None:
        query = query.where(Evidence.requirement_id == requirement_id)
    rows = db.session.execute(query).all()
    summary = {}
    for req_id, state, n in rows:
        entry = summary.setdefault(req_id, {"total": 0, "submitted": 0, "accepted": 0, "returned": 0})
        entry[state] += n
        entry["total"] += n
    return summary


def disagreement_flags(agency, rows):
    """{requirement_id: sentence} where the agency's status and the latest finding disagree (2 queries)."""
    from tracker.services import monitoring

    top = monitoring.top_rank(monitoring.scale_levels(agency))
    latest = monitoring.latest_findings(agency)
    flags = {}
    for r in rows:
        flag = monitoring.disagreement(r, latest.get(r.id), top)
        if flag:
            flags[r.id] = flag
    return flags


def status_counts(rows):
    """Counts by status per module; requirements the court has terminated are not active and not counted."""
    counts = {}
    for r in rows:
        per = counts.setdefault(r.module_id, dict.fromkeys(STATUSES, 0))
        if r.terminated_at is None:
            per[r.status] += 1
    return counts


def requirement_detail(requirement, requests=False):
    """Citations, evidence (all versions) and the merged timeline for one requirement: fixed query count.
    `requests`: also document requests concerning it (for the agency and its monitors only)."""
    citations = []
    if requirement.recommendation_id:
        citations = db.session.execute(
            sa.select(Citation).where(Citation.recommendation_id == requirement.recommendation_id)
            .order_by(Citation.position)
        ).scalars().all()
        recommendation = db.session.get(Recommendation, requirement.recommendation_id)
    else:
        recommendation = None
    evidence = db.session.execute(
        sa.select(Evidence).where(Evidence.requirement_id == requirement.id)
        .options(sa.orm.joinedload(Evidence.uploaded_by)).order_by(Evidence.created_at.desc(), Evidence.id.desc())
    ).scalars().all()
    reviews = db.session.execute(
        sa.select(EvidenceReview).join(Evidence).where(Evidence.requirement_id == requirement.id)
        .options(sa.orm.joinedload(EvidenceReview.reviewer))
    ).scalars().all()
    statuses = db.session.execute(
        sa.select(StatusChange).where(StatusChange.requirement_id == requirement.id)
        .options(sa.orm.joinedload(StatusChange.actor))
    ).scalars().all()
    deadlines = db.session.execute(
        sa.select(DeadlineChange).where(DeadlineChange.requirement_id == requirement.id)
        .options(sa.orm.joinedload(DeadlineChange.actor))
    ).scalars().all()
    comments = db.session.execute(
        sa.select(Comment).where(Comment.requirement_id == requirement.id).options(sa.orm.joinedload(Comment.author))
    ).scalars().all()
    by_id = {e.id: e for e in evidence}
    timeline = (
        [("status", s.created_at, s.actor, s) for s in statuses]
        + [("deadline", d.created_at, d.actor, d) for d in deadlines]
        + [("comment", c.created_at, c.author, c) for c in comments]
        + [("evidence", e.created_at, e.uploaded_by, e) for e in evidence]
        + [("review", r.created_at, r.reviewer, (r, by_id.get(r.evidence_id))) for r in reviews]
    )
    if requests:
        from tracker.services.document_requests import timeline as request_timeline

        timeline += request_timeline(requirement)
    timeline.sort(key=lambda item: item[1], reverse=True)
    latest_returns = {}
    for r in sorted(reviews, key=lambda r: r.created_at):
        latest_returns[r.evidence_id] = r
    return {"citations": citations, "recommendation": recommendation, "evidence": evidence,
            "latest_review": latest_returns, "timeline": timeline}


def latest_reviews(evidence_ids):
    """{evidence_id: latest EvidenceReview} in one query."""
    if not evidence_ids:
        return {}
    latest = {}
    for review in db.session.execute(
        sa.select(EvidenceReview).where(EvidenceReview.evidence_id.in_(evidence_ids))
        .options(sa.orm.joinedload(EvidenceReview.reviewer)).order_by(EvidenceReview.created_at, EvidenceReview.id)
    ).scalars():
        latest[review.evidence_id] = review
    return latest


def version_chain(evidence, all_evidence):
    """This item and the versions it replaced, newest first (from an already loaded list)."""
    by_id = {e.id: e for e in all_evidence}
    chain, current = [], evidence
    while current is not None:
        chain.append(current)
        current = by_id.get(current.supersedes_id)
    return chain


def owner_choices(agency_id):
    from tracker.services.requirements import agency_members

    return agency_members(agency_id)

