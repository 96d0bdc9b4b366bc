"""The demo's policies under review and their training (issue 16), made through the services users go through."""
import io
from datetime import date, timedelta

import sqlalchemy as sa
from werkzeug.datastructures import FileStorage

from seed.demo_pdf import simple_pdf
from tracker.extensions import db
from tracker.models import Membership, User
from tracker.services import evidence, policies, training


def _people(agency):
    """The first member of each role, and an administrator."""
    people = {}
    for role, user in db.session.execute(
            sa.select(Membership.role, User).join(User, User.id == Membership.user_id)
            .where(Membership.agency_id == agency.id).order_by(User.id)).all():
        people.setdefault(role, user)
    people["admin"] = db.session.execute(sa.select(User).where(User.is_admin).order_by(User.id)).scalars().first()
    return people


def _version(doc, number, note, officer, answers=None):
    pdf = simple_pdf([doc.title, f"Version {number}", note])
    staged = evidence.stage_upload(FileStorage(stream=io.BytesIO(pdf), filename=f"version-{number}.pdf"),
                                   len(pdf) + 1)
    return policies.add_version(doc, staged, note, answers or {}, actor=officer)


def load(agency, requirements, data):
    """`policies:` documents with their versions; `comments:` the monitoring team's on version 1 (answered in
    version 2), `community:` a committee member's comment in a window on version 2, `approved:` the court's
    order, `training:` a plan with completion counts; `review: true` leaves a review round open."""
    by_code = {r.code: r for r in requirements}
    people = _people(agency)
    officer, monitor = people.get("officer"), people.get("monitor")
    if officer is None or monitor is None:
        return
    for spec in data.get("policies", []):
        doc = policies.create_document(agency, {"title": spec["title"], "kind": spec["kind"], "requirement_ids": [
            by_code[c].id for c in spec.get("requirements", []) if c in by_code]}, actor=officer)
        notes = spec["versions"]
        _version(doc, 1, notes[0], officer)
        if spec.get("comments") or spec.get("review"):
            policies.open_review_round(doc, agency, None, spec.get("outside_reviewers", ""), actor=officer)
        comments = [(policies.add_comment(doc, "round", anchor, body, actor=monitor, role="monitor"), answer, why)
                    for anchor, body, answer, why in spec.get("comments", [])]
        if not comments:
            continue
        policies.close_review_round(doc, "comments_to_address", actor=monitor)
        _version(doc, 2, notes[1], officer, {c.id: (answer, why) for c, answer, why in comments})
        _community(doc, agency, spec, people)
        _approve_and_train(doc, agency, spec, people)


def _community(doc, agency, spec, people):
    if not spec.get("community") or people.get("committee") is None:
        return
    today = policies.today()
    policies.open_window(doc, agency, today - timedelta(days=1), today + timedelta(days=20), False,
                         actor=people["officer"])
    policies.add_comment(doc, "window", "", spec["community"], actor=people["committee"], role="committee")


def _approve_and_train(doc, agency, spec, people):
    approved = spec.get("approved")
    if not approved or people.get("admin") is None:
        return
    policies.record_approval(doc, approved["kind"], date.fromisoformat(approved["on"]), approved["ref"],
                             date.fromisoformat(approved["effective"]), actor=people["admin"])
    plan_spec = spec.get("training")
    if not plan_spec:
        return
    plan = training.create_plan(doc, {
        "population": plan_spec["population"], "population_size": plan_spec["size"],
        "target_date": date.fromisoformat(plan_spec["target_date"]), "target_pct": plan_spec["target_pct"]},
        actor=people["officer"])
    rows = "date,count\n" + "".join(f"{day},{count}\n" for day, count in plan_spec["counts"])
    training.import_file(plan, agency, "learning-system.csv", rows.encode(), actor=people["officer"])
