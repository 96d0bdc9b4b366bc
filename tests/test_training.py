"""Training rollout after approval (issue 16 §1): a plan for a population, completion counts or rosters imported
from the learning system (CSV or XLSX), percent trained over time against the target; person ids kept only as
a keyed hash; a bad file names its row and column and changes nothing."""
import io
import re
from datetime import date

import sqlalchemy as sa
from openpyxl import Workbook

from tests.policy_builders import approved_policy, create_document, doc_url, sign_in, upload
from tracker.models import AuditEvent, TrainingCount, TrainingPlan, TrainingRosterEntry
from tracker.services import training

PLAN = {"population": "All sworn members", "population_size": "1,200", "target_date": "2026-12-31",
        "target_pct": "95"}


def _text(response):
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def _import(auth, doc_id, plan_id, content, filename):
    return auth.post(doc_url(doc_id, "/training/import"), {"plan_id": str(plan_id),
                                                           "file": (io.BytesIO(content), filename)},
                     content_type="multipart/form-data")


def _planned(app, db, pol):
    doc = approved_policy(pol)
    db.session.commit()
    officer = sign_in(app, "officer@example.test")
    assert officer.post(doc_url(doc.id, "/training"), PLAN).status_code == 303
    plan = db.session.execute(sa.select(TrainingPlan)).scalar_one()
    return officer, doc, plan


def _xlsx(rows):
    book = Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_counts_show_percent_trained_over_time_against_the_target(app, db, pol, count_queries):
    officer, doc, plan = _planned(app, db, pol)
    assert (plan.population, plan.population_size, plan.target_date, plan.target_pct) == (
        "All sworn members", 1200, date(2026, 12, 31), 95)
    response = _import(officer, doc.id, plan.id, b"date,count\n2026-03-01,480\n", "lms.csv")
    assert response.status_code == 303
    page = _text(officer.client.get(doc_url(doc.id)))
    assert "All sworn members: 40.0% trained" in page
    workbook = _xlsx([["As of", "Completed"], [date(2026, 3, 1), 480], [date(2026, 5, 1), 1020]])
    response = _import(officer, doc.id, plan.id, workbook, "lms.xlsx")
    assert response.status_code == 303
    assert "Imported 2 completion counts for All sworn members; 1 changed." in _text(
        officer.client.get(response.headers["Location"]))
    page = _text(officer.client.get(doc_url(doc.id)))
    assert "All sworn members: 85.0% trained" in page and "1,020 of 1,200 people; target 95% by" in page
    assert '<svg class="tracker-chart"' in page and "2026-03-01 40.0%, 2026-05-01 85.0%" in page
    assert "<td>40.0%</td>" in page and "<td>85.0%</td>" in page
    listing = _text(officer.client.get("/agencies/agency-a/policies"))
    assert "85.0% of All sworn members" in listing
    # The same date again replaces that date's count.
    _import(officer, doc.id, plan.id, b"date,count\n2026-05-01,1080\n", "lms.csv")
    assert [(p.on, p.pct) for p in training.series(plan)] == [(date(2026, 3, 1), 40.0), (date(2026, 5, 1), 90.0)]
    with count_queries() as few:
        officer.client.get("/agencies/agency-a/policies")
    for n in range(3):
        officer.post(doc_url(doc.id, "/training"), {**PLAN, "population": f"Unit {n}"})
    with count_queries() as more:
        officer.client.get("/agencies/agency-a/policies")
    assert more.count == few.count


def test_a_roster_counts_each_person_once_and_never_keeps_the_id(app, db, pol):
    officer, doc, plan = _planned(app, db, pol)
    roster = b"person_id,completion_date\nE-1001,2026-03-02\nE-1002,2026-03-02\nE-1003,2026-04-10\n"
    assert _import(officer, doc.id, plan.id, roster, "roster.csv").status_code == 303
    again = b"person_id,completion_date\ne-1001,2026-02-20\nE-1002,2026-05-01\nE-1004,2026-04-10\n"
    assert _import(officer, doc.id, plan.id, again, "roster.csv").status_code == 303
    entries = db.session.execute(sa.select(TrainingRosterEntry)).scalars().all()
    assert len(entries) == 4  # E-1001 (any case) once, at its earliest date; E-1002 kept at March 2
    assert sorted(e.completed_on for e in entries) == [date(2026, 2, 20), date(2026, 3, 2), date(2026, 4, 10),
                                                       date(2026, 4, 10)]
    assert all(re.fullmatch(r"[0-9a-f]{64}", e.person_hash) for e in entries)
    assert [(p.on, p.completed) for p in training.series(plan)] == [
        (date(2026, 2, 20), 1), (date(2026, 3, 2), 2), (date(2026, 4, 10), 4)]
    stored = " ".join(str(v) for v in db.session.execute(sa.select(AuditEvent.after)).scalars())
    page = officer.client.get(doc_url(doc.id)).get_data(as_text=True)
    for text in (stored, page):
        assert "E-1001" not in text and "1001" not in text
    assert training.person_hash(pol["a"].id, "E-1001") != training.person_hash(pol["b"].id, "E-1001")


def test_a_bad_file_names_row_and_column_and_changes_nothing(app, db, pol):
    officer, doc, plan = _planned(app, db, pol)
    _import(officer, doc.id, plan.id, b"date,count\n2026-03-01,480\n", "lms.csv")
    cases = [
        (b"date,count\n2026-04-01,500\n2026-13-01,520\n2026-05-01,many\n", ["row 3, column date: “2026-13-01”",
                                                                          "row 4, column count: “many”"]),
        (b"date,count\n2026-04-01,1300\n", ["row 2, column count: 1,300 is more than the 1,200 people"]),
        (b"name,when\nPat,2026-04-01\n", ["expected columns date and count", "found: name, when"]),
        (b"person_id,completion_date\n,2026-04-01\nE1,yesterday\n", ["row 2, column person_id: empty",
                                                                   "row 3, column completion_date: “yesterday”"]),
    ]
    for content, messages in cases:
        response = _import(officer, doc.id, plan.id, content, "bad.csv")
        assert response.status_code == 422
        for message in messages:
            assert message in _text(response), (message, _text(response)[:3000])
        assert "bad.csv" in _text(response)
    assert db.session.execute(sa.select(TrainingCount.completed)).scalars().all() == [480]
    assert db.session.execute(sa.select(sa.func.count()).select_from(TrainingRosterEntry)).scalar() == 0
    refused = _import(officer, doc.id, plan.id, b"%PDF-1.4", "lms.pdf")
    assert refused.status_code == 422 and "only .csv and .xlsx" in _text(refused)
    no_plan = _import(officer, doc.id, plan.id + 99, b"date,count\n", "lms.csv")
    assert no_plan.status_code == 422 and "Choose the training plan" in _text(no_plan)


def test_training_is_planned_only_for_an_approved_document_and_checked(app, db, pol):
    officer, doc, plan = _planned(app, db, pol)
    bad = officer.post(doc_url(doc.id, "/training"), {"population": "", "population_size": "0",
                                                      "target_date": "31/12/2026", "target_pct": "120"})
    assert bad.status_code == 422
    assert "Enter the target date as YYYY-MM-DD." in _text(bad)
    bad = officer.post(doc_url(doc.id, "/training"), {"population": "", "population_size": "0", "target_pct": "120"})
    for message in ("Name who must be trained", "Give the number of people to train", "from 1 to 100"):
        assert message in _text(bad)
    draft_id = create_document(officer, title="Still a draft")
    upload(officer, draft_id)
    refused = officer.post(doc_url(draft_id, "/training"), PLAN)
    assert refused.status_code == 422 and "record the approval first" in _text(refused)
    assert db.session.execute(sa.select(sa.func.count()).select_from(TrainingPlan)).scalar() == 1
    monitor = sign_in(app, "monitor@example.test")
    assert monitor.post(doc_url(doc.id, "/training"), PLAN).status_code == 403
    assert _import(monitor, doc.id, plan.id, b"date,count\n2026-03-01,1\n", "lms.csv").status_code == 403
