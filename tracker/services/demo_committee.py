"""The demo's advisory committee and indicators (issue 14): a past meeting with minutes and an upcoming one, the
committee's recommendations (one answered, one awaiting its answer), and indicators adopted from the catalog with
eight quarters of values, targets and the requirements they evidence. Made through the services users go through."""
from datetime import date, datetime, time, timedelta

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import User, utcnow
from tracker.services import committee, indicators, meetings
from tracker.services.indicators import period_label


def load(agency, requirements, data):
    by_code = {r.code: r for r in requirements}
    users = {u.email: u for u in db.session.execute(sa.select(User)).scalars()}
    today = utcnow().date()
    made = []
    for spec in data.get("meetings", []):
        day = today + timedelta(days=spec["days_from_today"])
        made.append(meetings.create_meeting(agency, {
            "title": spec["title"], "starts_at": datetime.combine(day, time.fromisoformat(spec["time"])),
            "location": spec.get("location", ""), "agenda": spec.get("agenda", ""), "minutes": spec.get("minutes", ""),
            "attendee_ids": [users[e].id for e in spec.get("present", [])]}, actor=users[spec["by"]]))
    for spec in data.get("committee_recommendations", []):
        author = users[spec["by"]]
        rec = committee.create(agency, {
            "title": spec["title"], "body": spec["body"], "rationale": spec.get("rationale", ""),
            "meeting_id": made[spec["meeting"]].id if "meeting" in spec else None,
            "requirement_ids": [by_code[c].id for c in spec.get("requirements", []) if c in by_code]}, actor=author)
        committee.submit(rec, rec.row_version, actor=author)
        answer = spec.get("answer")
        if answer:
            committee.respond(rec, {**answer, "requirement_ids": [
                by_code[c].id for c in answer.get("requirements", []) if c in by_code]}, rec.row_version,
                actor=users[answer["by"]])
    for spec in data.get("indicators", []):
        officer = users[spec["by"]]
        indicator = indicators.adopt(agency, spec["adopt"], actor=officer, target_value=str(spec["target"]))
        linked = [by_code[c].id for c in spec.get("requirements", []) if c in by_code]
        if linked:
            indicators.update_indicator(indicator, _editable(indicator), linked, actor=officer)
        for start, value in zip(_last_quarters(today, len(spec["values"])), spec["values"], strict=True):
            indicators.enter_value(indicator, {"period": period_label(start, "quarter"), "value": str(value)},
                                   actor=officer)


def _editable(indicator):
    return {name: getattr(indicator, name) for name in indicators.EDIT_FIELDS} | {
        "target_value": str(indicator.target_value) if indicator.target_value is not None else ""}


def _last_quarters(today, n):
    """The first days of the n quarters that ended before today's quarter, oldest first."""
    quarter = (today.month - 1) // 3
    starts = []
    year = today.year
    for _ in range(n):
        quarter -= 1
        if quarter < 0:
            quarter, year = 3, year - 1
        starts.append(date(year, 3 * quarter + 1, 1))
    return list(reversed(starts))
