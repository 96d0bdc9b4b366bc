"""Issue 13: draft, shared and filed findings (who sees what when), the agency's responses to a shared draft,
corrections that never add a rating, per-level and percentage scales from seed/catalog.yaml, deltas against the
previous filed rating, and the sustainment clock from a court order."""
import functools
import re
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from tests.factories import make_agency, make_module, make_requirement, make_user
from tests.test_monitoring import CLEVELAND, _scale
from tracker.models import (
    AuditEvent,
    ComplianceLevel,
    ComplianceScale,
    Finding,
    FindingAssessment,
    FindingResponse,
    Membership,
    MonitoringPeriod,
    SustainmentOrder,
    utcnow,
)
from tracker.services import dashboard, monitoring, sustainment
from tracker.services.catalog import YAML_LOADER, ScaleSpec
from tracker.services.errors import ValidationFailed

SEED = Path(__file__).resolve().parents[1] / "seed" / "catalog.yaml"
SECRET = "DRAFT-SECRET-NARRATIVE"


@functools.cache
def _seed_catalog():
    """seed/catalog.yaml parsed once per run (read only: each scale is validated into new objects)."""
    return yaml.load(SEED.read_text(encoding="utf-8"), Loader=YAML_LOADER)  # noqa: S506 - the safe loader


def _seed_scale(db, key):
    """A scale exactly as seed/catalog.yaml declares it (validated by the catalog's own schema)."""
    data = _seed_catalog()
    spec = ScaleSpec.model_validate(next(s for s in data["compliance_scales"] if s["key"] == key))
    scale = ComplianceScale(**spec.model_dump(exclude={"levels"}))
    scale.levels = [ComplianceLevel(**level.model_dump(), position=j) for j, level in enumerate(spec.levels)]
    db.session.add(scale)
    db.session.flush()
    return scale


@pytest.fixture
def proc(db):
    """Agency A on a Cleveland-style scale, C on the seed's Chicago-style per-level ladder (12-month
    sustainment), D on the seed's Albuquerque-style percentage scale (24 months)."""
    cit = make_module("cit", "Crisis Intervention Teams", 1)
    data = make_module("data", "Data Collection", 2)
    cleveland = _scale(db, "cleveland_t", "Cleveland-style scale", CLEVELAND)
    chicago = _seed_scale(db, "chicago_per_level")
    albuquerque = _seed_scale(db, "albuquerque_percentage")
    a = make_agency(slug="agency-a", name="Harbor City PD", scale=cleveland, sustainment_months=24)
    c = make_agency(slug="agency-c", name="Lake City PD", scale=chicago, sustainment_months=12)
    d = make_agency(slug="agency-d", name="Mesa PD", scale=albuquerque, sustainment_months=24)
    users = {
        "monitor": make_user("monitor@example.test", role="monitor", agency=a, name="Mona Monitor"),
        "officer": make_user("officer@example.test", role="officer", agency=a, name="Olive Officer"),
        "committee": make_user("committee@example.test", role="committee", agency=a, name="Cole Committee"),
        "monitor_b": make_user("monitor-b@example.test", role="monitor", agency=c, name="Bo Elsewhere"),
        "admin": make_user("admin@example.test", is_admin=True, name="Ada Admin"),
    }
    db.session.add_all(Membership(user_id=users["monitor"].id, agency_id=agency.id, role="monitor")
                       for agency in (c, d))
    reqs = {
        "cit1": make_requirement(a, module=cit, code="CIT-001", title="Crisis line staffing"),
        "cit2": make_requirement(a, module=cit, code="CIT-002", title="Forty-hour training"),
        "dat1": make_requirement(a, module=data, code="DAT-001", title="Use-of-force data",
                                 status="not_applicable"),
    }
    for agency, prefix in ((c, "c"), (d, "d")):
        for n in range(1, 6):
            reqs[f"{prefix}{n}"] = make_requirement(agency, module=cit if n < 5 else data, code=f"P-{n:03d}",
                                                    title=f"Paragraph {n}")
    db.session.commit()
    return {"a": a, "c": c, "d": d, "cleveland": cleveland, "chicago": chicago, "albuquerque": albuquerque,
            "users": users, "reqs": reqs, "cit": cit, "data": data}


def _login(auth, proc, role):
    if auth.token:
        auth.logout()
    auth.login(proc["users"][role].email)


def _level(scale, key):
    return next(lvl for lvl in scale.levels if lvl.key == key)


def _period(db, agency, name, start, end):
    period = MonitoringPeriod(agency_id=agency.id, name=name, start_date=date.fromisoformat(start),
                              end_date=date.fromisoformat(end))
    db.session.add(period)
    db.session.commit()
    return period


def _url(period, tail=""):
    return f"/agencies/{period.agency.slug}/periods/{period.id}{tail}"


def _text(html):
    return re.sub(r"\s+", " ", html)


def _row(html, req_id):
    match = re.search(rf'<tr id="finding-{req_id}">.*?</tr>', html, re.S)
    assert match, f"no row finding-{req_id}"
    return match.group(0)


def _count(db, model, *where):
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _actions(db):
    return [e.action for e in db.session.execute(
        sa.select(AuditEvent).where(AuditEvent.action.not_like("auth.%")).order_by(AuditEvent.id)).scalars()]


# --- who sees what when ---------------------------------------------------------------------------------------

def _committee_view(client, proc, period, req):
    """What the committee's pages, API and export show about a requirement and a period."""
    return {
        "dashboard": client.get("/agencies/agency-a/dashboard").get_data(as_text=True),
        "board": client.get("/agencies/agency-a").get_data(as_text=True),
        "requirement": _text(client.get(f"/agencies/agency-a/requirements/{req.id}").get_data(as_text=True)),
        "period": _text(client.get(_url(period)).get_data(as_text=True)),
        "report": client.get(_url(period, "/report")).get_data(as_text=True),
        "api": client.get("/api/v1/agencies/agency-a/findings").json,
        "csv": client.get("/agencies/agency-a/export.csv").get_data(as_text=True),
    }


def test_draft_findings_reach_the_committee_only_when_filed(client, auth, db, proc):
    a, cit1, cit2 = proc["a"], proc["reqs"]["cit1"], proc["reqs"]["cit2"]
    general, partial = _level(proc["cleveland"], "general"), _level(proc["cleveland"], "partial")
    p1 = _period(db, a, "Report 1", "2025-01-01", "2025-03-31")
    monitoring.record_finding(cit1, p1, partial.id, "Filed narrative", actor=proc["users"]["monitor"])
    monitoring.file_period(p1, date(2025, 4, 15), "Dkt. 101", actor=proc["users"]["monitor"])
    p2 = _period(db, a, "Report 2", "2025-04-01", "2025-06-30")
    db.session.commit()
    _login(auth, proc, "committee")
    before = _committee_view(client, proc, p2, cit1)
    top_before = dashboard.agency_measures(a)[1].at_top

    # The monitor rates two paragraphs at the top level in the open period.
    _login(auth, proc, "monitor")
    for req in (cit1, cit2):
        assert auth.post(_url(p2, f"/findings/{req.id}"), {"level_id": general.id, "narrative": SECRET}
                         ).status_code == 303
    mine = _text(client.get(_url(p2)).get_data(as_text=True))
    assert SECRET in _row(mine, cit1.id) and "Draft</span>" in _row(mine, cit1.id)
    assert "2 of 3 requirements rated" in mine
    assert "1 upgrade, 0 downgrades, 1 newly rated" in mine  # CIT-001 up from its filed rating, CIT-002 new

    # Nothing the committee sees has changed: counts, flags, clocks, narrative, API, export, activity.
    _login(auth, proc, "committee")
    after = _committee_view(client, proc, p2, cit1)
    assert dashboard.agency_measures(a)[1].at_top == top_before == 0
    assert after["api"] == before["api"] and after["api"]["total"] == 1
    assert after["csv"] == before["csv"] and "Report 2" not in after["csv"]
    for page in ("dashboard", "board", "requirement", "period", "report"):
        assert SECRET not in after[page], page
    assert "In sustainment" not in after["requirement"] and "Disagreement" not in after["board"]
    assert "confidential until the report is filed" in after["period"]
    assert "Confidential until the report is filed" in after["report"]
    assert "Filed narrative" in after["requirement"]  # the last filed report still shows
    # The agency's officers do not see it either until the draft is shared.
    _login(auth, proc, "officer")
    page = _text(client.get(_url(p2)).get_data(as_text=True))
    assert SECRET not in page and "confidential until the draft is shared with the parties" in page

    # Shared: the officers see the findings marked draft; the committee still does not.
    _login(auth, proc, "monitor")
    assert auth.post(_url(p2, "/share")).status_code == 303
    _login(auth, proc, "officer")
    row = _row(client.get(_url(p2)).get_data(as_text=True), cit1.id)
    assert SECRET in row and "Draft</span>" in row and "Answer this draft finding" in row
    officer_page = _text(client.get(f"/agencies/agency-a/requirements/{cit1.id}").get_data(as_text=True))
    assert "General compliance <span class=\"tracker-badge\">Draft</span>" in officer_page
    assert "In sustainment" not in officer_page  # a draft starts no clock
    _login(auth, proc, "committee")
    shared = _committee_view(client, proc, p2, cit1)
    assert shared["api"] == before["api"] and shared["csv"] == before["csv"]
    assert all(SECRET not in shared[page] for page in ("dashboard", "board", "requirement", "period", "report"))

    # Filed: everyone sees them, they count, and they start the clock on the filing date.
    _login(auth, proc, "monitor")
    assert auth.post(_url(p2, "/file"), {"filed_on": "2025-07-20", "docket_ref": "Dkt. 1123"}).status_code == 303
    _login(auth, proc, "committee")
    filed = _committee_view(client, proc, p2, cit1)
    assert dashboard.agency_measures(a)[1].at_top == 2
    assert filed["api"]["total"] == 3 and "General compliance (Report 2)" in filed["csv"]
    assert SECRET in filed["period"] and SECRET in filed["requirement"] and SECRET in filed["report"]
    assert "In sustainment since Jul 20, 2025</strong> (filing of Report 2" in filed["requirement"]
    assert "Disagreement" in filed["board"]
    assert "1 upgrade, 0 downgrades, 1 newly rated" in _text(filed["report"])
    assert "Filed Jul 20, 2025 (Dkt. 1123)" in filed["period"]
    assert ["finding.record", "period.file", "finding.record", "finding.record", "period.share",
            "period.file"] == _actions(db)


def test_the_committee_activity_feed_leaves_draft_work_out(client, auth, db, proc):
    a, cit1 = proc["a"], proc["reqs"]["cit1"]
    p1 = _period(db, a, "Report 1", "2025-01-01", "2025-06-30")
    monitor = proc["users"]["monitor"]
    monitoring.record_finding(cit1, p1, _level(proc["cleveland"], "general").id, SECRET, actor=monitor)
    monitoring.share_period(p1, actor=monitor)
    monitoring.respond(p1, cit1, "We disagree.", actor=proc["users"]["officer"])
    db.session.commit()
    assert [e.action for e in dashboard.recent_activity(a)] == []
    monitoring.file_period(p1, date(2025, 7, 15), "Dkt. 9", actor=monitor)
    db.session.commit()
    assert [e.action for e in dashboard.recent_activity(a)] == ["period.file"]


def test_officers_answer_a_shared_draft_finding(client, auth, db, proc):
    a, cit1, cit2 = proc["a"], proc["reqs"]["cit1"], proc["reqs"]["cit2"]
    p = _period(db, a, "Report 1", "2025-01-01", "2025-06-30")
    monitoring.record_finding(cit1, p, _level(proc["cleveland"], "partial").id, "Half the shifts covered.",
                              actor=proc["users"]["monitor"])
    db.session.commit()
    url = _url(p, f"/responses/{cit1.id}")
    _login(auth, proc, "officer")
    # Not while the period is open: the officer has not seen the draft.
    r = auth.post(url, {"response": "Early answer"})
    assert r.status_code == 422 and "the agency answers draft findings while the draft is shared" in r.get_data(
        as_text=True)
    monitoring.share_period(db.session.get(MonitoringPeriod, p.id), actor=proc["users"]["monitor"])
    db.session.commit()
    for data, message in (({"response": "  "}, "Write the agency&#39;s response."),
                          ({"response": "x" * 20001}, "The response must be at most 20,000 characters.")):
        r = auth.post(url, data)
        assert r.status_code == 422 and message in r.get_data(as_text=True)
    r = auth.post(_url(p, f"/responses/{cit2.id}"), {"response": "Nothing to answer"})
    assert r.status_code == 422 and "There is no draft finding on CIT-002 to answer." in r.get_data(as_text=True)
    assert _count(db, FindingResponse) == 0

    # htmx: the row comes back with the response; a second answer replaces the first (kept as history).
    headers = {"HX-Request": "true", "HX-Target": f"finding-{cit1.id}"}
    r = auth.post(url, {"response": "Staffing reached 100 % in May; rosters attached."}, headers=headers)
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert html.lstrip().startswith(f'<tr id="finding-{cit1.id}">')
    assert "Staffing reached 100 % in May; rosters attached." in html and "Change the response" in html
    assert auth.post(url, {"response": "Rosters for May and June attached."}).status_code == 303
    responses = db.session.execute(sa.select(FindingResponse).order_by(FindingResponse.id)).scalars().all()
    assert [(r.is_current, r.author_id) for r in responses] == [(False, proc["users"]["officer"].id),
                                                                 (True, proc["users"]["officer"].id)]
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "finding.respond")
                               .order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
    assert event.agency_id == a.id and event.after["body"] == "Rosters for May and June attached."
    assert event.before == {"body": "Staffing reached 100 % in May; rosters attached."}
    # The monitor reads it in the grid; the committee, not until filing.
    _login(auth, proc, "monitor")
    assert "Rosters for May and June attached." in _row(client.get(_url(p)).get_data(as_text=True), cit1.id)
    assert "Answer this draft finding" not in client.get(_url(p)).get_data(as_text=True)
    _login(auth, proc, "committee")
    assert auth.post(url, {"response": "Committee view"}).status_code == 403
    assert "Rosters for May" not in client.get(_url(p)).get_data(as_text=True)
    # Once filed the response is part of the record; no more answers.
    monitoring.file_period(db.session.get(MonitoringPeriod, p.id), date(2025, 7, 20), "Dkt. 5",
                           actor=proc["users"]["monitor"])
    db.session.commit()
    assert "Rosters for May and June attached." in client.get(_url(p)).get_data(as_text=True)
    _login(auth, proc, "officer")
    assert auth.post(url, {"response": "Late"}).status_code == 422
    assert _count(db, FindingResponse) == 2


def test_filing_needs_a_past_date_and_a_docket_reference(client, auth, db, proc):
    p = _period(db, proc["a"], "Report 1", "2025-01-01", "2025-06-30")
    _login(auth, proc, "monitor")
    tomorrow = date.fromordinal(utcnow().date().toordinal() + 1).isoformat()
    for data, message in (
        ({"filed_on": "", "docket_ref": "Dkt. 1"}, "Enter the date the report was filed with the court as YYYY-MM-DD."),
        ({"filed_on": tomorrow, "docket_ref": "Dkt. 1"}, "The filing date cannot be later than today"),
        ({"filed_on": "2024-12-31", "docket_ref": "Dkt. 1"},
         "The filing date cannot be before the period began (2025-01-01)."),
        ({"filed_on": "2025-07-01", "docket_ref": " "}, "Cite the filing, e.g. “Dkt. 1123”."),
    ):
        r = auth.post(_url(p, "/file"), data)
        assert r.status_code == 422, data
        html = r.get_data(as_text=True)
        assert message in html and 'aria-invalid="true"' in html
    db.session.expire_all()
    assert db.session.get(MonitoringPeriod, p.id).state == "open" and _actions(db) == []
    assert auth.post(_url(p, "/share")).status_code == 303
    assert auth.post(_url(p, "/share")).status_code == 303  # refused with a message, nothing written
    assert _actions(db) == ["period.share"]


def test_a_correction_on_a_filed_period_never_adds_a_rating(client, auth, db, proc):
    a, cit1, cit2 = proc["a"], proc["reqs"]["cit1"], proc["reqs"]["cit2"]
    partial, general = _level(proc["cleveland"], "partial"), _level(proc["cleveland"], "general")
    p = _period(db, a, "Report 1", "2025-01-01", "2025-06-30")
    monitoring.record_finding(cit1, p, partial.id, "Half", actor=proc["users"]["monitor"])
    monitoring.file_period(p, date(2025, 7, 15), "Dkt. 1", actor=proc["users"]["monitor"])
    db.session.commit()
    _login(auth, proc, "monitor")
    html = client.get(_url(p)).get_data(as_text=True)
    assert "Record a correction<span class=\"usa-sr-only\"> for CIT-001" in _row(html, cit1.id)
    assert "Record a correction" not in _row(html, cit2.id) and "Not rated in this report" in _row(html, cit2.id)
    assert "1 of 3 requirements rated" in html
    events = _actions(db)
    for headers in ({}, {"HX-Request": "true", "HX-Target": f"finding-{cit2.id}"}):
        r = auth.post(_url(p, f"/findings/{cit2.id}"), {"level_id": general.id, "correction_reason": "Missed it"},
                      headers=headers)
        assert r.status_code == 422
        assert ("Report 1 is filed and has no finding on CIT-002; a correction replaces an existing finding and "
                "never adds a rating.") in r.get_data(as_text=True)
    assert _count(db, Finding, Finding.period_id == p.id) == 1 and _actions(db) == events
    assert "1 of 3 requirements rated" in client.get(_url(p)).get_data(as_text=True)
    # Correcting the existing one is still possible.
    assert auth.post(_url(p, f"/findings/{cit1.id}"), {"level_id": general.id, "correction_reason": "Typo"}
                     ).status_code == 303
    assert _count(db, Finding, Finding.period_id == p.id, Finding.is_current.is_(True)) == 1


def test_each_htmx_save_updates_the_rated_count(client, auth, db, proc):
    p = _period(db, proc["a"], "Report 1", "2025-01-01", "2025-06-30")
    _login(auth, proc, "monitor")
    assert '<li id="rated-count">0 of 3 requirements rated</li>' in client.get(_url(p)).get_data(as_text=True)
    for n, req in enumerate((proc["reqs"]["cit1"], proc["reqs"]["cit2"]), start=1):
        r = auth.post(_url(p, f"/findings/{req.id}"), {"level_id": _level(proc["cleveland"], "partial").id},
                      headers={"HX-Request": "true", "HX-Target": f"finding-{req.id}"})
        assert r.status_code == 200
        assert f'<li id="rated-count" hx-swap-oob="true">{n} of 3 requirements rated</li>' in r.get_data(as_text=True)


def test_not_applicable_but_rated_is_flagged_once_filed(client, auth, db, proc):
    a, dat1 = proc["a"], proc["reqs"]["dat1"]
    p = _period(db, a, "Report 1", "2025-01-01", "2025-06-30")
    monitoring.record_finding(dat1, p, _level(proc["cleveland"], "partial").id, "", actor=proc["users"]["monitor"])
    db.session.commit()
    flag = "The agency marks it Not applicable; the monitor rates it Partial compliance."
    _login(auth, proc, "committee")
    assert flag not in client.get("/agencies/agency-a").get_data(as_text=True)
    monitoring.file_period(p, date(2025, 7, 15), "Dkt. 1", actor=proc["users"]["monitor"])
    db.session.commit()
    assert flag in client.get("/agencies/agency-a").get_data(as_text=True)
    assert flag in client.get(f"/agencies/agency-a/requirements/{dat1.id}").get_data(as_text=True)


# --- per-level and percentage scales --------------------------------------------------------------------------

def _ladder(scale):
    return [lvl for lvl in scale.levels if lvl.ladder]


def _statuses(scale, *statuses):
    return {f"status-{lvl.id}": s for lvl, s in zip(_ladder(scale), statuses, strict=True)}


def _measured(scale, *values):
    return {f"measured-{lvl.id}": v for lvl, v in zip(_ladder(scale), values, strict=True)}


def _levels(db, period):
    db.session.expire_all()
    return {f.requirement.code: f.level.key for f in monitoring.current_findings([period.id])}


def test_seed_scales_declare_their_kind_and_ladders(db, proc):
    chicago, albuquerque = proc["chicago"], proc["albuquerque"]
    assert (chicago.assessment, albuquerque.assessment) == ("per_level", "percentage")
    assert [lvl.key for lvl in _ladder(chicago)] == ["preliminary", "secondary", "full"]
    assert [(lvl.key, float(lvl.threshold)) for lvl in _ladder(albuquerque)] == [
        ("primary", 95.0), ("secondary", 95.0), ("operational", 95.0)]
    with pytest.raises(ValueError, match="assessment"):
        ScaleSpec.model_validate({"key": "x", "name": "X", "assessment": "ladder", "levels": []})


def test_per_level_scale_through_a_full_period(client, auth, db, proc):
    c, chicago, r = proc["c"], proc["chicago"], proc["reqs"]
    p1 = _period(db, c, "Report 1", "2025-01-01", "2025-03-31")
    _login(auth, proc, "monitor")
    cases = {
        "c1": (("in_compliance", "in_compliance", "not_in_compliance"), "secondary"),
        "c2": (("in_compliance", "not_in_compliance", "in_compliance"), "preliminary"),
        "c3": (("in_compliance", "not_applicable", "in_compliance"), "full"),
        "c4": (("not_in_compliance", "in_compliance", "in_compliance"), "not_in_compliance"),
        "c5": (("under_assessment", "not_yet_assessed", "not_yet_assessed"), "not_assessed"),
    }
    for name, (statuses, _expected) in cases.items():
        r_ = auth.post(_url(p1, f"/findings/{r[name].id}"), {**_statuses(chicago, *statuses), "narrative": name})
        assert r_.status_code == 303, r_.get_data(as_text=True)[:500]
    assert _levels(db, p1) == {r[name].code: expected for name, (_s, expected) in cases.items()}
    finding = next(f for f in monitoring.current_findings([p1.id]) if f.requirement_id == r["c1"].id)
    parts = {p.level.key: p.status for p in monitoring.parts_of([finding.id])[finding.id]}
    assert parts == {"preliminary": "in_compliance", "secondary": "in_compliance", "full": "not_in_compliance"}
    row = _row(client.get(_url(p1)).get_data(as_text=True), r["c1"].id)
    assert "<strong>Secondary compliance</strong>" in row and "Full compliance: Not in compliance" in row
    assert 'selected>Not in compliance</option>' in row  # the form shows the recorded statuses
    # Every level not applicable is refused, naming why; a status outside the list too.
    for statuses, message in ((("not_applicable",) * 3, "At least one level must apply to the paragraph"),
                              (("in_compliance", "bogus", "in_compliance"), "Choose a status for Secondary")):
        bad = auth.post(_url(p1, f"/findings/{r['c1'].id}"), _statuses(chicago, *statuses))
        assert bad.status_code == 422 and message in bad.get_data(as_text=True)
    assert _count(db, FindingAssessment) == 15
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "finding.record")
                               .order_by(AuditEvent.id)).scalars().first()
    assert event.after["assessments"] == ("Preliminary compliance: In compliance; Secondary compliance: In compliance; "
                                          "Full compliance: Not in compliance")
    assert auth.post(_url(p1, "/file"), {"filed_on": "2025-04-15", "docket_ref": "Dkt. 20"}).status_code == 303

    # Report 2 rates only P-002 (now full); Report 3 rates P-001 again: compared with Report 1, where it was last
    # rated, not with Report 2 where it was skipped.
    p2 = _period(db, c, "Report 2", "2025-04-01", "2025-06-30")
    auth.post(_url(p2, f"/findings/{r['c2'].id}"), _statuses(chicago, *("in_compliance",) * 3))
    assert auth.post(_url(p2, "/file"), {"filed_on": "2025-07-15", "docket_ref": "Dkt. 21"}).status_code == 303
    p3 = _period(db, c, "Report 3", "2025-07-01", "2025-09-30")
    auth.post(_url(p3, f"/findings/{r['c1'].id}"), _statuses(chicago, *("in_compliance",) * 3))
    auth.post(_url(p3, f"/findings/{r['c2'].id}"), _statuses(chicago, "in_compliance", "in_compliance",
                                                             "not_in_compliance"))
    auth.post(_url(p3, f"/findings/{r['c5'].id}"), _statuses(chicago, "in_compliance", "under_assessment",
                                                             "not_yet_assessed"))
    before, deltas = monitoring.deltas(db.session.get(MonitoringPeriod, p3.id))
    assert before.name == "Report 2"
    got = {kind: [(req.code, old.key if old else None, new.key, was.name if was else None)
                  for d in deltas for req, old, new, was in getattr(d, kind)]
           for kind in ("upgrades", "downgrades", "newly_rated")}
    assert got == {"upgrades": [("P-001", "secondary", "full", "Report 1")],
                   "downgrades": [("P-002", "full", "secondary", "Report 2")],
                   "newly_rated": [("P-005", "not_assessed", "preliminary", "Report 1")]}
    assert monitoring.delta_headline(deltas) == "1 upgrade, 1 downgrade, 1 newly rated"
    page = _text(client.get(_url(p3)).get_data(as_text=True))
    assert "<strong>1 upgrade, 1 downgrade, 1 newly rated</strong>" in page
    assert "P-001: Secondary compliance (Report 1) → Full compliance" in page


def test_percentage_scale_through_a_full_period(client, auth, db, proc):
    d, scale, r = proc["d"], proc["albuquerque"], proc["reqs"]
    p1 = _period(db, d, "Report 1", "2024-07-01", "2024-12-31")
    _login(auth, proc, "monitor")
    cases = {
        "d1": (("99", "96.5", "90"), "secondary"),
        "d2": (("80", "", ""), "not_in_compliance"),
        "d3": (("100", "97,5 %", "95"), "operational"),
        "d4": (("", "", ""), "not_assessed"),
    }
    for name, (values, _expected) in cases.items():
        assert auth.post(_url(p1, f"/findings/{r[name].id}"), _measured(scale, *values)).status_code == 303
    assert _levels(db, p1) == {r[name].code: expected for name, (_v, expected) in cases.items()}
    finding = next(f for f in monitoring.current_findings([p1.id]) if f.requirement_id == r["d1"].id)
    measured = {p.level.key: float(p.measured) for p in monitoring.parts_of([finding.id])[finding.id]}
    assert measured == {"primary": 99.0, "secondary": 96.5, "operational": 90.0}
    row = _row(client.get(_url(p1)).get_data(as_text=True), r["d1"].id)
    assert "Operational compliance: 90 % (threshold 95 %)" in row and 'value="96.5"' in row
    for values, message in ((("abc", "", ""), "Primary compliance: enter the measured share as a number from 0 to "
                                              "100 (got “abc”)"),
                            (("99", "120", ""), "Secondary compliance: enter the measured share"),
                            (("nan", "", ""), "Primary compliance: enter the measured share")):
        bad = auth.post(_url(p1, f"/findings/{r['d1'].id}"), _measured(scale, *values))
        assert bad.status_code == 422 and message in bad.get_data(as_text=True)
    assert _levels(db, p1)["P-001"] == "secondary"
    assert auth.post(_url(p1, "/file"), {"filed_on": "2025-01-10", "docket_ref": "Dkt. 40"}).status_code == 303

    p2 = _period(db, d, "Report 2", "2025-01-01", "2025-06-30")
    auth.post(_url(p2, f"/findings/{r['d1'].id}"), _measured(scale, "99", "98", "95.5"))
    auth.post(_url(p2, f"/findings/{r['d3'].id}"), _measured(scale, "99", "94", ""))
    assert auth.post(_url(p2, "/file"), {"filed_on": "2025-07-10", "docket_ref": "Dkt. 41"}).status_code == 303
    _before, deltas = monitoring.deltas(db.session.get(MonitoringPeriod, p2.id))
    assert monitoring.delta_headline(deltas) == "1 upgrade, 1 downgrade, 0 newly rated"
    # Sustainment: P-001 reached operational in Report 2, filed 2025-07-10; the instrument's 24 months follow.
    clocks, _dips = sustainment.clocks(db.session.get(type(d), d.id))
    assert {req_id: (c.since, c.eligible_on) for req_id, c in clocks.items()} == {
        r["d1"].id: (date(2025, 7, 10), date(2027, 7, 10))}


# --- sustainment by court order -------------------------------------------------------------------------------

def test_sustainment_starts_on_the_court_order_date(client, auth, db, proc):
    c, chicago, r = proc["c"], proc["chicago"], proc["reqs"]
    monitor = proc["users"]["monitor"]
    top = _statuses(chicago, *("in_compliance",) * 3)
    p1 = _period(db, c, "Report 1", "2025-01-01", "2025-03-31")
    for name in ("c1", "c2", "c3"):
        monitoring.record_finding(r[name], p1, None, "", actor=monitor, form=top)
    monitoring.file_period(p1, date(2025, 4, 20), "Dkt. 30", actor=monitor)
    db.session.commit()
    agency = db.session.get(type(c), c.id)
    assert {k: v.since for k, v in sustainment.clocks(agency)[0].items()} == {
        r[n].id: date(2025, 4, 20) for n in ("c1", "c2", "c3")}

    # The court sets 2025-06-01 for P-001 and for the whole Data Collection module (P-005).
    _login(auth, proc, "admin")
    data = {"order_date": "2025-06-01", "docket_ref": "Order of Jun 1, 2025 (Dkt. 512)", "codes": "p-001",
            "modules": "data", "note": "Partial sustainment order"}
    assert auth.post("/agencies/agency-c/sustainment-orders", data).status_code == 303
    order = db.session.execute(sa.select(SustainmentOrder)).scalar_one()
    assert [q.code for q in order.requirements] == ["P-001"] and [m.key for m in order.modules] == ["data"]
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "sustainment_order.create")
                               ).scalar_one()
    assert event.agency_id == c.id and event.after["requirements"] == ["P-001"] and event.after["modules"] == ["data"]
    clocks, _dips = sustainment.clocks(agency)
    assert (clocks[r["c1"].id].since, clocks[r["c1"].id].eligible_on) == (date(2025, 6, 1), date(2026, 6, 1))
    assert clocks[r["c5"].id].since == date(2025, 6, 1)  # through its module, rated or not
    assert clocks[r["c2"].id].since == date(2025, 4, 20)  # not covered: the filing date
    page = _text(client.get(f"/agencies/agency-c/requirements/{r['c1'].id}").get_data(as_text=True))
    assert ("<strong>In sustainment since Jun 1, 2025</strong> (court order Order of Jun 1, 2025 (Dkt. 512)); "
            "eligible for termination on Jun 1, 2026 (12-month sustainment period of the instrument).") in page
    periods = _text(client.get("/agencies/agency-c/periods").get_data(as_text=True))
    assert "Order of Jun 1, 2025 (Dkt. 512)" in periods and "Module Data Collection; P-001" in periods

    # A dip after the order stops the clock and is flagged; the next top-level run restarts it from its filing.
    p2 = _period(db, c, "Report 2", "2025-04-01", "2025-06-30")
    monitoring.record_finding(r["c1"], p2, None, "", actor=monitor,
                              form=_statuses(chicago, "in_compliance", "not_in_compliance", "not_yet_assessed"))
    monitoring.file_period(p2, date(2025, 7, 20), "Dkt. 31", actor=monitor)
    db.session.commit()
    clocks, dips = sustainment.clocks(agency)
    assert r["c1"].id not in clocks
    assert dips[r["c1"].id] == ("Fell to Preliminary compliance in Report 2 (filed 2025-07-20); the clock stopped "
                                "until it is back at the top level.")
    p3 = _period(db, c, "Report 3", "2025-07-01", "2025-09-30")
    monitoring.record_finding(r["c1"], p3, None, "", actor=monitor, form=top)
    monitoring.file_period(p3, date(2025, 10, 20), "Dkt. 32", actor=monitor)
    db.session.commit()
    clocks, dips = sustainment.clocks(agency)
    assert clocks[r["c1"].id].since == date(2025, 10, 20) and "the clock restarted" in dips[r["c1"].id]
    # No clock ever starts after today.
    assert all(clock.since <= utcnow().date() for clock in clocks.values())


def test_bad_sustainment_orders_are_refused_and_write_nothing(client, auth, db, proc):
    _login(auth, proc, "admin")
    tomorrow = date.fromordinal(utcnow().date().toordinal() + 1).isoformat()
    for data, field, message in (
        ({"order_date": tomorrow, "docket_ref": "Dkt. 1", "codes": "P-001"}, "order_date",
         "The date cannot be later than today"),
        ({"order_date": "", "docket_ref": "Dkt. 1", "codes": "P-001"}, "order_date", "Enter the date the order sets"),
        ({"order_date": "2025-06-01", "docket_ref": "", "codes": "P-001"}, "docket_ref", "Cite the order"),
        ({"order_date": "2025-06-01", "docket_ref": "Dkt. 1", "codes": "P-001, Q-9"}, "codes",
         "No requirement of Lake City PD has the code Q-9."),
        ({"order_date": "2025-06-01", "docket_ref": "Dkt. 1", "codes": ""}, "codes",
         "Name the requirements (codes) or choose the modules the order covers."),
        ({"order_date": "2025-06-01", "docket_ref": "Dkt. 1", "modules": "nope"}, "modules",
         "Choose modules from the list."),
    ):
        r = auth.post("/agencies/agency-c/sustainment-orders", data)
        assert r.status_code == 422, data
        assert message in r.get_data(as_text=True), field
    assert _count(db, SustainmentOrder) == 0
    with pytest.raises(ValidationFailed):
        sustainment.record_order(proc["c"], date(2025, 1, 1), "x" * 301, "P-001", [], "", actor=proc["users"]["admin"])


# --- routes x roles -------------------------------------------------------------------------------------------

ROUTES = {  # route: expected status per role (outsider = a monitor of another agency)
    "share": {"monitor": 303, "admin": 303, "officer": 403, "committee": 403, "monitor_b": 404},
    "file": {"monitor": 303, "admin": 303, "officer": 403, "committee": 403, "monitor_b": 404},
    "respond": {"officer": 303, "admin": 303, "monitor": 403, "committee": 403, "monitor_b": 404},
    "order": {"admin": 303, "monitor": 403, "officer": 403, "committee": 403, "monitor_b": 404},
}


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("role", ["monitor", "admin", "officer", "committee", "monitor_b"])
def test_new_monitoring_routes_by_role(client, auth, db, proc, route, role):
    a, cit1 = proc["a"], proc["reqs"]["cit1"]
    p = _period(db, a, "Report 1", "2025-01-01", "2025-06-30")
    monitoring.record_finding(cit1, p, _level(proc["cleveland"], "partial").id, "", actor=proc["users"]["monitor"])
    if route == "respond":
        monitoring.share_period(p, actor=proc["users"]["monitor"])
    db.session.commit()
    url, data = {
        "share": (_url(p, "/share"), {}),
        "file": (_url(p, "/file"), {"filed_on": "2025-07-15", "docket_ref": "Dkt. 1"}),
        "respond": (_url(p, f"/responses/{cit1.id}"), {"response": "Our answer"}),
        "order": ("/agencies/agency-a/sustainment-orders", {"order_date": "2025-06-01", "docket_ref": "Dkt. 2",
                                                            "codes": "CIT-001"}),
    }[route]
    _login(auth, proc, role)
    events = len(_actions(db))
    r = auth.post(url, data)
    assert r.status_code == ROUTES[route][role], (route, role)
    assert len(_actions(db)) == events + (1 if r.status_code == 303 else 0)
