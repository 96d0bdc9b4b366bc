"""Admin creates an agency, adopts modules (due dates derived), overview lists requirements by module."""
from datetime import date

import sqlalchemy as sa

from tests.factories import make_agency, make_module, make_recommendation, make_requirement, make_scale, make_user
from tracker.models import Agency, AuditEvent, DeadlineChange, Requirement
from tracker.services import agencies
from tracker.services.errors import ValidationFailed


def _catalog(db):
    cit, data = make_module("cit", "Crisis Intervention Teams", 1), make_module("data", "Data", 2)
    recs = [
        make_recommendation("CIT-001", cit, deadline_amount=180, deadline_unit="days"),
        make_recommendation("CIT-002", cit, deadline_amount=12, deadline_unit="months"),
        make_recommendation("CIT-003", cit),
        make_recommendation("DAT-001", data, deadline_amount=1, deadline_unit="months"),
    ]
    return recs


def test_add_months_clamps_to_month_end():
    assert agencies.add_months(date(2025, 1, 31), 1) == date(2025, 2, 28)
    assert agencies.add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert agencies.add_months(date(2025, 11, 15), 14) == date(2027, 1, 15)


def test_admin_creates_agency_and_adopts_modules(client, auth, db):
    _catalog(db)
    scale = make_scale("cleveland")
    make_user("admin@example.test", is_admin=True)
    db.session.commit()
    auth.login("admin@example.test")
    page = client.get("/admin/agencies/new")
    assert page.status_code == 200
    r = auth.post("/admin/agencies/new", data={
        "name": "Harbor City PD", "slug": "harbor", "state": "oh", "source_id": "0",
        "effective_date": "2025-03-03", "scale_id": str(scale.id), "sustainment_months": "24",
    })
    assert r.status_code == 303, r.get_data(as_text=True)
    agency = db.session.execute(sa.select(Agency).where(Agency.slug == "harbor")).scalar_one()
    assert agency.state == "OH" and agency.source_id is None and agency.effective_date == date(2025, 3, 3)

    r = auth.post("/admin/agencies/harbor/adopt", data={"modules": ["cit"]})
    assert r.status_code == 303
    db.session.rollback()
    reqs = {r.code: r for r in db.session.execute(
        sa.select(Requirement).where(Requirement.agency_id == agency.id)).scalars()}
    assert set(reqs) == {"CIT-001", "CIT-002", "CIT-003"}
    assert reqs["CIT-001"].due_date == date(2025, 8, 30)      # + 180 days
    assert reqs["CIT-002"].due_date == date(2026, 3, 3)       # + 12 months
    assert reqs["CIT-003"].due_date is None                   # no typical deadline
    assert all(r.status == "not_started" and r.row_version == 1 for r in reqs.values())
    assert reqs["CIT-001"].citation_text  # citation copied for the board

    # Adopting again adds nothing; adopting another module adds only it.
    auth.post("/admin/agencies/harbor/adopt", data={"modules": ["cit", "data"]})
    db.session.rollback()
    codes = db.session.execute(sa.select(Requirement.code).where(Requirement.agency_id == agency.id)).scalars().all()
    assert sorted(codes) == ["CIT-001", "CIT-002", "CIT-003", "DAT-001"]

    overview = client.get("/agencies/harbor").get_data(as_text=True)
    assert "Crisis Intervention Teams" in overview and "CIT-002" in overview and "DAT-001" in overview
    assert "Mar 3, 2026" in overview

    actions = db.session.execute(sa.select(AuditEvent.action)).scalars().all()
    assert actions.count("agency.create") == 1 and actions.count("agency.adopt") == 2


def test_agency_form_errors_name_the_field_and_change_nothing(client, auth, db):
    scale = make_scale()
    make_agency(slug="taken")
    make_user("admin@example.test", is_admin=True)
    db.session.commit()
    auth.login("admin@example.test")
    before = db.session.execute(sa.select(sa.func.count()).select_from(Agency)).scalar()
    r = auth.post("/admin/agencies/new", data={
        "name": "X", "slug": "taken", "state": "ZZ", "effective_date": "03/03/2025", "scale_id": str(scale.id),
        "source_id": "0"})
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert "already used by another agency" in html
    assert "two-letter U.S. state" in html
    assert "Not a valid date value" in html
    db.session.rollback()
    assert db.session.execute(sa.select(sa.func.count()).select_from(Agency)).scalar() == before


def test_moving_effective_date_recomputes_derived_due_dates_only(db):
    recs = _catalog(db)
    agency = make_agency(effective_date=date(2025, 1, 1))
    agencies.adopt(agency, ["cit"])
    manual = db.session.execute(sa.select(Requirement).where(Requirement.code == "CIT-002")).scalar_one()
    manual.due_date, manual.due_date_derived = date(2030, 1, 1), False
    values = {"name": agency.name, "slug": agency.slug, "state": agency.state, "source_id": None,
              "effective_date": date(2025, 7, 1), "scale_id": agency.scale_id, "sustainment_months": None}
    changed = agencies.update_agency(agency, values)
    assert changed == 1
    reqs = {r.code: r for r in db.session.execute(sa.select(Requirement)).scalars()}
    assert reqs["CIT-001"].due_date == date(2025, 12, 28)
    assert reqs["CIT-002"].due_date == date(2030, 1, 1)
    assert recs


def test_moving_the_effective_date_is_a_deadline_change_on_each_moved_requirement(client, auth, db):
    _catalog(db)
    agency = make_agency(slug="harbor", effective_date=date(2025, 1, 1))
    agencies.adopt(agency, ["cit"])
    make_user("admin@example.test", is_admin=True)
    db.session.commit()
    auth.login("admin@example.test")
    r = auth.post("/admin/agencies/harbor", data={
        "name": agency.name, "slug": "harbor", "state": "OH", "source_id": "0", "effective_date": "2025-07-01",
        "scale_id": str(agency.scale_id), "sustainment_months": ""})
    assert r.status_code == 303
    db.session.rollback()
    moved = db.session.execute(sa.select(DeadlineChange, Requirement.code).join(
        Requirement, Requirement.id == DeadlineChange.requirement_id).order_by(Requirement.code)).all()
    assert [(code, c.old_date, c.new_date) for c, code in moved] == [
        ("CIT-001", date(2025, 6, 30), date(2025, 12, 28)), ("CIT-002", date(2026, 1, 1), date(2026, 7, 1))]
    assert {c.reason for c, _ in moved} == {"Effective date moved to 2025-07-01"}
    assert {c.actor.email for c, _ in moved} == {"admin@example.test"}
    events = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "requirement.due_date")
                                .order_by(AuditEvent.id)).scalars().all()
    assert [(e.object_id, e.actor_label, e.after["due_date"]) for e in events] == [
        (str(c.requirement_id), "admin@example.test", c.new_date.isoformat()) for c, _ in moved]
    page = client.get(f"/agencies/harbor/requirements/{moved[0][0].requirement_id}").get_data(as_text=True)
    assert "Effective date moved to 2025-07-01" in page

def test_adopt_unknown_module_refused(db):
    _catalog(db)
    agency = make_agency()
    try:
        agencies.adopt(agency, ["nope"])
    except ValidationFailed as exc:
        assert "nope" in exc.errors["modules"]
    else:
        raise AssertionError("unknown module accepted")


def test_retired_recommendations_are_not_adopted(db):
    from tracker.models import utcnow

    recs = _catalog(db)
    recs[0].retired_at = utcnow()
    agency = make_agency()
    created = agencies.adopt(agency, ["cit"])
    assert created == ["CIT-002", "CIT-003"]


def test_overview_query_count_is_constant(client, auth, db, count_queries):
    cit = make_module("cit")
    small, large = make_agency(slug="small"), make_agency(slug="large")
    owner = make_user("owner@example.test", role="officer", agency=large)
    for i in range(10):
        make_requirement(small, module=cit, owner_id=owner.id)
    for i in range(100):
        make_requirement(large, module=cit, owner_id=owner.id)
    make_user("admin@example.test", is_admin=True)
    db.session.commit()
    auth.login("admin@example.test")
    with count_queries() as n_small:
        assert client.get("/agencies/small").status_code == 200
    with count_queries() as n_large:
        assert client.get("/agencies/large").status_code == 200
    assert n_small.count == n_large.count
