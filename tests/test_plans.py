"""Monitoring plans and methodologies (issue 13 §3): paragraphs in scope per period, a versioned methodology per
paragraph that carries over, the findings grid narrowed to the plan and a module, the plan in the period report."""
from datetime import date

import pytest
import sqlalchemy as sa

from tests.conftest import Auth
from tests.factories import make_agency, make_module, make_requirement, make_user
from tracker.models import AuditEvent, Methodology, MonitoringPeriod, PlanItem
from tracker.services import plans
from tracker.services.errors import ValidationFailed

METHOD = {"measures": "Share of crisis calls answered by a CIT officer.", "sources": "CAD extract; CIT roster.",
          "sample": "200 calls drawn at random per quarter.",
          "level_criteria": "Partial: 50%\nFull: 80% in two quarters running"}


@pytest.fixture
def pw(db):
    cit = make_module("cit", "Crisis Intervention Teams", 1)
    data = make_module("data", "Data Collection", 2)
    a = make_agency(slug="agency-a", name="Harbor City PD")
    b = make_agency(slug="agency-b", name="Lakeside PD")
    users = {
        "monitor": make_user("monitor@example.test", role="monitor", agency=a, name="Mona Monitor"),
        "officer": make_user("officer@example.test", role="officer", agency=a, name="Olive Officer"),
        "committee": make_user("committee@example.test", role="committee", agency=a, name="Cole Committee"),
    }
    reqs = [make_requirement(a, module=cit, code="CIT-001", title="Crisis line", sort_key="cit-001"),
            make_requirement(a, module=cit, code="CIT-002", title="Training", sort_key="cit-002"),
            make_requirement(a, module=data, code="DAT-001", title="Crisis data", sort_key="dat-001")]
    req_b = make_requirement(b, module=cit, code="CIT-001", title="B's", sort_key="cit-001")
    p1 = MonitoringPeriod(agency_id=a.id, name="Report 1", start_date=date(2025, 1, 1), end_date=date(2025, 6, 30),
                          state="filed")
    p2 = MonitoringPeriod(agency_id=a.id, name="Report 2", start_date=date(2025, 7, 1), end_date=date(2025, 12, 31))
    db.session.add_all([p1, p2])
    db.session.commit()
    return {"a": a, "users": users, "reqs": reqs, "req_b": req_b, "p1": p1, "p2": p2}


def _login(app, email):
    auth = Auth(app.test_client())
    auth.login(email)
    return auth


def test_methodology_versions_carry_over_and_open_plans_follow_the_newest(db, pw):
    monitor, req = pw["users"]["monitor"], pw["reqs"][0]
    v1 = plans.save_methodology(req, METHOD, actor=monitor)
    assert v1.version == 1
    assert plans.save_methodology(req, METHOD, actor=monitor) is None          # unchanged: no new version
    # Report 1 (filed) and Report 2 (open) both include it; move Report 1 to filed after planning.
    pw["p1"].state = "open"
    plans.set_scope(pw["p1"], [str(req.id)], actor=monitor)
    pw["p1"].state = "filed"
    plans.set_scope(pw["p2"], [str(req.id)], actor=monitor)
    v2 = plans.save_methodology(req, {**METHOD, "sample": "300 calls per quarter."}, actor=monitor)
    assert v2.version == 2
    assert plans.plan_items(pw["p1"])[req.id].methodology_id == v1.id       # the record keeps what it used
    assert plans.plan_items(pw["p2"])[req.id].methodology_id == v2.id       # the open plan follows
    assert [m.version for m in plans.versions(req)] == [2, 1]
    assert plans.latest_methodologies([req.id])[req.id].sample == "300 calls per quarter."
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "methodology.save")
                               .order_by(AuditEvent.id.desc())).first()
    assert event.after["version"] == 2 and event.after["open_plans_updated"] == 1
    with pytest.raises(ValidationFailed, match="at least what is measured"):
        plans.save_methodology(req, {}, actor=monitor)
    with pytest.raises(ValidationFailed) as exc:
        plans.save_methodology(req, {"measures": "x" * 20001}, actor=monitor)
    assert "measures" in exc.value.errors
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Methodology)) == 2


def test_scope_is_set_exactly_refuses_other_agencies_and_filed_periods_and_carries_over(db, pw):
    monitor = pw["users"]["monitor"]
    r1, r2, r3 = pw["reqs"]
    plans.save_methodology(r1, METHOD, actor=monitor)
    pw["p1"].state = "open"
    added, removed = plans.set_scope(pw["p1"], [str(r1.id), str(r2.id)], actor=monitor)
    assert (added, removed) == (["CIT-001", "CIT-002"], [])
    added, removed = plans.set_scope(pw["p1"], [str(r1.id), str(r3.id)], actor=monitor)
    assert (added, removed) == (["DAT-001"], ["CIT-002"])
    assert plans.plan_items(pw["p1"])[r1.id].methodology.measures == METHOD["measures"]
    with pytest.raises(ValidationFailed, match="Not requirements of this agency"):
        plans.set_scope(pw["p1"], [str(pw["req_b"].id)], actor=monitor)
    pw["p1"].state = "filed"
    with pytest.raises(ValidationFailed, match="filed"):
        plans.set_scope(pw["p1"], [], actor=monitor)
    source, codes = plans.carry_over(pw["p2"], actor=monitor)
    assert source.id == pw["p1"].id and codes == ["CIT-001", "DAT-001"]
    assert set(plans.plan_items(pw["p2"])) == {r1.id, r3.id}
    scope_events = db.session.scalars(sa.select(AuditEvent.after).where(AuditEvent.action == "plan.scope")
                                      .order_by(AuditEvent.id)).all()
    assert scope_events[1]["removed"] == ["CIT-002"]
    pw["p1"].state = "open"
    with pytest.raises(ValidationFailed, match="No earlier period"):
        plans.carry_over(pw["p1"], actor=monitor)


def test_monitor_plans_through_the_pages_and_others_read(app, db, pw):
    r1, r2, r3 = pw["reqs"]
    monitor = _login(app, "monitor@example.test")
    url = f"/agencies/agency-a/periods/{pw['p2'].id}/plan"
    page = monitor.client.get(url).get_data(as_text=True)
    assert 'name="requirement_ids"' in page and "Save the plan" in page
    r = monitor.post(url, {"requirement_ids": [str(r1.id), str(r3.id)]})
    assert r.status_code == 303
    r = monitor.post(f"/agencies/agency-a/requirements/{r1.id}/methodology", METHOD)
    assert r.status_code == 303
    assert monitor.post(url, {"requirement_ids": ["abc"]}).status_code == 422
    officer = _login(app, "officer@example.test")
    assert officer.post(url, {"requirement_ids": [str(r2.id)]}).status_code == 403
    assert officer.post(f"/agencies/agency-a/requirements/{r1.id}/methodology", METHOD).status_code == 403
    committee = _login(app, "committee@example.test")
    page = committee.client.get(url).get_data(as_text=True)
    assert "CIT-001" in page and "DAT-001" in page and "CIT-002" not in page and "Save the plan" not in page
    assert METHOD["sample"] in page and "Methodology, version 1" in page
    # The requirement page shows the current methodology.
    req_page = officer.client.get(f"/agencies/agency-a/requirements/{r1.id}").get_data(as_text=True)
    assert "How the monitor assesses it" in req_page and METHOD["measures"] in req_page
    assert "Methodology version 1" in req_page and "Report 2" in req_page
    # The period report lists the plan.
    report = monitor.client.get(f"/agencies/agency-a/periods/{pw['p2'].id}/report").get_data(as_text=True)
    assert "Monitoring plan" in report and "2 paragraphs in scope" in report and METHOD["sources"] in report


def test_findings_grid_filters_to_the_plan_and_a_module(app, db, pw):
    r1, r2, r3 = pw["reqs"]
    plans.set_scope(pw["p2"], [str(r1.id), str(r3.id)], actor=pw["users"]["monitor"])
    db.session.commit()
    monitor = _login(app, "monitor@example.test")
    base = f"/agencies/agency-a/periods/{pw['p2'].id}"

    def rows(query=""):
        html = monitor.client.get(base + query).get_data(as_text=True)
        return {r.id for r in pw["reqs"] if f'id="finding-{r.id}"' in html}, html

    assert rows()[0] == {r1.id, r2.id, r3.id}
    shown, html = rows("?scope=in")
    assert shown == {r1.id, r3.id} and "2 paragraphs in the" in html
    assert rows("?scope=out")[0] == {r2.id}
    assert rows("?scope=in&module=cit")[0] == {r1.id}
    assert rows("?module=data")[0] == {r3.id}
    shown, html = rows("?scope=everything&module=nope")
    assert shown == {r1.id, r2.id, r3.id} and "Unknown filter value ignored: scope, module" in html


def test_plan_page_query_count_does_not_grow(app, db, pw, count_queries, no_page_cache):
    from tests.factories import make_requirement as mk

    monitor = _login(app, "monitor@example.test")
    url = f"/agencies/agency-a/periods/{pw['p2'].id}/plan"

    def measure():
        with count_queries() as n:
            assert monitor.client.get(url).status_code == 200
        return n.count

    small = measure()
    new = [mk(pw["a"], code=f"CIT-{i:03d}", sort_key=f"cit-{i:03d}") for i in range(10, 40)]
    for req in new:
        plans.save_methodology(req, METHOD, actor=pw["users"]["monitor"])
    plans.set_scope(pw["p2"], [str(r.id) for r in new[::2]], actor=pw["users"]["monitor"])
    db.session.commit()
    assert measure() == small
    assert db.session.scalar(sa.select(sa.func.count()).select_from(PlanItem)) == 15
