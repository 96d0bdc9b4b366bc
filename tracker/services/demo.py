"""Load the demo agency: users with random passwords, adopted requirements, a spread of statuses.

Everything goes through the services users go through, so every demo row has its audit event.
"""
import io
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa
import yaml

from seed.demo_pdf import simple_pdf
from tracker.extensions import db
from tracker.models import ComplianceScale, Membership, Requirement, Source, User, utcnow
from tracker.services import (
    accounts,
    agencies,
    audit,
    demo_committee,
    demo_decree,
    demo_policies,
    demo_requests,
    evidence,
    monitoring,
)
from tracker.services import requirements as req_service
from tracker.services.errors import ValidationFailed
from tracker.storage import get_store


def load_demo(path):
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    spec = data["agency"]
    scale = db.session.execute(
        sa.select(ComplianceScale).where(ComplianceScale.key == spec["scale"])
    ).scalar_one_or_none()
    if scale is None:
        raise ValidationFailed({"scale": f"Compliance scale '{spec['scale']}' is not loaded; load the catalog first."})
    source_id = None
    if spec.get("source"):
        source_id = db.session.execute(sa.select(Source.id).where(Source.key == spec["source"])).scalar_one()

    agency = agencies.create_agency({
        "name": spec["name"], "slug": spec["slug"], "state": spec["state"], "source_id": source_id,
        "effective_date": date.fromisoformat(spec["effective_date"]), "scale_id": scale.id,
        "sustainment_months": spec.get("sustainment_months"),
    })
    created = agencies.adopt(agency)
    if not created:
        raise ValidationFailed({"catalog": "No recommendations to adopt; load the catalog first."})

    credentials = []
    officers = []
    for u in data["users"]:
        password = accounts.random_password()
        role = u["role"]
        user = accounts.create_user(u["email"], password, name=u["name"], role=role,
                                    agency=agency if role != "admin" else None)
        credentials.append((u["email"], role, password))
        if role == "officer":
            officers.append(user)

    if not officers:
        raise ValidationFailed({"users": "The demo needs at least one compliance officer."})
    requirements = db.session.execute(
        sa.select(Requirement).where(Requirement.agency_id == agency.id).order_by(Requirement.code)
    ).scalars().all()
    for i, req in enumerate(requirements):
        _demo_requirement(req, i, officers, data["status_cycle"], data["due_offsets_days"])
    _demo_activity(agency, requirements, officers, data.get("activity", []))
    _demo_periods(agency, requirements, data.get("periods", []))
    demo_requests.load(agency, requirements, data)  # issue 13: a monitoring plan and document requests
    demo_policies.load(agency, requirements, data)  # issue 16: policies under review and their training
    demo_committee.load(agency, requirements, data)  # issue 14: meetings, recommendations, indicators
    demo_decree.load(agency, data)  # issue 12: the agreement's own paragraphs, sections and recurring duties
    audit.record("demo.load", agency, after={"requirements": len(requirements), "users": len(credentials)})
    return credentials


def _demo_requirement(req, i, officers, statuses, offsets):
    """A spread of statuses, owners and due dates, set the way an officer sets them (each one audited)."""
    officer = officers[0]
    status = statuses[i % len(statuses)]
    if status != req.status:
        note = ("Demo: no crisis receiving facility operates in the city; the county provides it."
                if status == "not_applicable" else "Demo: initial status from the 2025 gap assessment.")
        req_service.set_status(req, status, note, req.row_version, actor=officer)
    if i % 3:
        req_service.set_owner(req, officers[i % len(officers)].id, req.row_version, actor=officer)
    offset = offsets[i % len(offsets)]
    if req.due_date is None and offset is not None:
        req_service.set_due_date(req, utcnow().date() + timedelta(days=offset), "", req.row_version, actor=officer)


def _demo_activity(agency, requirements, officers, activity):
    """Evidence, comments and a deadline extension so the screens show real history on first run."""
    by_code = {r.code: r for r in requirements}
    users = {u.email: u for u in db.session.execute(sa.select(User)).scalars()}
    for item in activity:
        req = by_code.get(item["requirement"])
        actor = users[item["by"]]
        if req is None:
            continue
        if item["kind"] == "pdf":
            pdf = simple_pdf([item["title"], f"{agency.name} - demo evidence for {req.code}", *item.get("lines", [])])
            blob = get_store().put(io.BytesIO(pdf))
            evidence.add_file(req, (blob, "application/pdf", item["filename"]), item, actor=actor)
        elif item["kind"] == "link":
            evidence.add_link(req, item["url"], item, actor=actor)
        elif item["kind"] == "comment":
            req_service.add_comment(req, item["body"], actor=actor)
        elif item["kind"] == "extension":
            req_service.set_due_date(req, date.fromisoformat(item["new_date"]), item["reason"], req.row_version,
                                     actor=actor)


def _demo_periods(agency, requirements, periods):
    by_code = {r.code: r for r in requirements}
    monitor = db.session.execute(
        sa.select(User).join(User.memberships).where(Membership.agency_id == agency.id, Membership.role == "monitor")
    ).scalars().first()
    levels = {lvl.key: lvl for lvl in monitoring.scale_levels(agency)}
    for spec in periods:
        period = monitoring.create_period(agency, spec["name"], date.fromisoformat(spec["start"]),
                                          date.fromisoformat(spec["end"]), actor=monitor)
        for code, (level_key, narrative) in spec.get("findings", {}).items():
            if code in by_code:
                monitoring.record_finding(by_code[code], period, levels[level_key].id, narrative, actor=monitor)
        if spec.get("share"):
            monitoring.share_period(period, actor=monitor)
        if spec.get("filed_on"):
            monitoring.file_period(period, date.fromisoformat(spec["filed_on"]), spec["docket_ref"], actor=monitor)
