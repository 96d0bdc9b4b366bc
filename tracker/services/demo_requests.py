"""The demo's monitoring plan and document requests (issue 13), made through the same services users go through."""
from datetime import timedelta

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import Evidence, Membership, MonitoringPeriod, User, utcnow
from tracker.services import document_requests, plans


def load(agency, requirements, data):
    """`plan:` puts paragraphs in the named period's plan with their methodologies; `requests:` asks for
    documents (due `due_in_days` from today, negative for one already overdue), some answered."""
    by_code = {r.code: r for r in requirements}
    users = {u.email: u for u in db.session.execute(sa.select(User)).scalars()}
    monitor = db.session.execute(
        sa.select(User).join(User.memberships).where(Membership.agency_id == agency.id, Membership.role == "monitor")
    ).scalars().first()
    spec = data.get("plan") or {}
    period = db.session.execute(sa.select(MonitoringPeriod).where(
        MonitoringPeriod.agency_id == agency.id, MonitoringPeriod.name == spec.get("period"))).scalar_one_or_none()
    chosen = [by_code[c] for c in spec.get("methodologies", {}) if c in by_code]
    for req in chosen:
        plans.save_methodology(req, spec["methodologies"][req.code], actor=monitor)
    if period is not None and chosen:
        plans.set_scope(period, [r.id for r in chosen], actor=monitor)
    for item in data.get("requests", []):
        reqs = [by_code[c] for c in item["requirements"] if c in by_code]
        if not reqs:
            continue
        request = document_requests.create_request(agency, {
            "title": item["title"], "details": item.get("details", ""), "requirement_ids": [r.id for r in reqs],
            "due_date": utcnow().date() + timedelta(days=item["due_in_days"]),
            "period_id": period.id if period is not None else None}, actor=monitor, allow_past_due=True)
        answer = item.get("answer")
        if answer:
            evidence = db.session.execute(sa.select(Evidence).where(
                Evidence.requirement_id.in_([r.id for r in reqs]), Evidence.title == answer.get("evidence"))
            ).scalars().first()
            document_requests.answer(request, actor=users[answer["by"]], note=answer.get("note", ""),
                                     evidence=evidence)
