"""Monitoring periods, findings on the agency's own scale, deltas, disagreement flags, the sustainment clock and
partial terminations (issue 4, items 2-5)."""
import re
from datetime import date

import pytest
import sqlalchemy as sa

from tests.factories import make_agency, make_module, make_requirement, make_user
from tracker.models import (
    AuditEvent,
    ComplianceLevel,
    ComplianceScale,
    Finding,
    MonitoringPeriod,
    Requirement,
    utcnow,
)
from tracker.services import audit, monitoring, sustainment
from tracker.services import board as board_service

CLEVELAND = [("not_assessed", "Not yet assessed", "unassessed", 0),
             ("evaluation_deferred", "Evaluation deferred", "deferred", 0),
             ("non_compliance", "Non-compliance", "rating", 0),
             ("partial", "Partial compliance", "rating", 1),
             ("operational", "Operational compliance", "rating", 2),
             ("general", "General compliance", "rating", 3)]
CHICAGO = [("not_assessed", "Not yet assessed", "unassessed", 0),
           ("not_in_compliance", "Not in compliance", "rating", 0),
           ("preliminary", "Preliminary compliance", "rating", 1),
           ("secondary", "Secondary compliance", "rating", 2),
           ("full", "Full compliance", "rating", 3)]


def _scale(db, key, name, levels):
    scale = ComplianceScale(key=key, name=name)
    scale.levels = [ComplianceLevel(key=k, label=label, kind=kind, rank=rank, position=i)
                    for i, (k, label, kind, rank) in enumerate(levels)]
    db.session.add(scale)
    db.session.flush()
    return scale


@pytest.fixture
def mon(db):
    """Agency A on a Cleveland-style scale (24-month sustainment), agency B on a Chicago-style ladder."""
    cit = make_module("cit", "Crisis Intervention Teams", 1)
    data = make_module("data", "Data Collection", 2)
    cleveland = _scale(db, "cleveland_t", "Cleveland-style scale", CLEVELAND)
    chicago = _scale(db, "chicago_t", "Chicago-style ladder", CHICAGO)
    a = make_agency(slug="agency-a", name="Harbor City PD", scale=cleveland, sustainment_months=24)
    b = make_agency(slug="agency-b", name="Lakeside PD", scale=chicago)
    users = {
        "monitor": make_user("monitor@example.test", role="monitor", agency=a, name="Mona Monitor"),
        "monitor2": make_user("monitor2@example.test", role="monitor", agency=a, name="Milo Monitor"),
        "officer": make_user("officer@example.test", role="officer", agency=a, name="Olive Officer"),
        "committee": make_user("committee@example.test", role="committee", agency=a, name="Cole Committee"),
        "monitor_b": make_user("monitor-b@example.test", role="monitor", agency=b, name="Bo Elsewhere"),
        "admin": make_user("admin@example.test", is_admin=True, name="Ada Admin"),
    }
    reqs = {
        "cit1": make_requirement(a, module=cit, code="CIT-001", title="Crisis line staffing"),
        "cit2": make_requirement(a, module=cit, code="CIT-002", title="Forty-hour training"),
        "cit3": make_requirement(a, module=cit, code="CIT-003", title="Co-responders", status="in_progress"),
        "dat1": make_requirement(a, module=data, code="DAT-001", title="Use-of-force data"),
        "dat2": make_requirement(a, module=data, code="DAT-002", title="Crisis call data"),
        "b1": make_requirement(b, module=data, code="DAT-001", title="Lakeside data"),
    }
    db.session.commit()
    return {"a": a, "b": b, "cit": cit, "data": data, "cleveland": cleveland, "chicago": chicago, "users": users,
            "reqs": reqs}


def _login(auth, mon, role):
    auth.login(mon["users"][role].email)


def _level(scale, key):
    return next(lvl for lvl in scale.levels if lvl.key == key)


def _period(db, agency, name, start, end, state="filed"):
    period = MonitoringPeriod(agency_id=agency.id, name=name, start_date=date.fromisoformat(start),
                              end_date=date.fromisoformat(end), state=state,
                              filed_at=utcnow() if state == "filed" else None)
    db.session.add(period)
    db.session.flush()
    return period


def _rate(db, mon, req, period, key, *, current=True, monitor="monitor", narrative=""):
    agency = mon["a"] if req.agency_id == mon["a"].id else mon["b"]
    scale = mon["cleveland"] if agency is mon["a"] else mon["chicago"]
    finding = Finding(requirement_id=req.id, period_id=period.id, level_id=_level(scale, key).id,
                      narrative=narrative, monitor_id=mon["users"][monitor].id, is_current=current)
    db.session.add(finding)
    db.session.flush()
    return finding


def _audits(db, *actions):
    """Audit events other than sign-ins and sign-outs, oldest first."""
    query = sa.select(AuditEvent).where(AuditEvent.action.not_like("auth.%")).order_by(AuditEvent.id)
    if actions:
        query = query.where(AuditEvent.action.in_(actions))
    return db.session.execute(query).scalars().all()


def _count(db, model, *where):
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _findings(db, req, period):
    db.session.expire_all()
    return db.session.execute(sa.select(Finding).where(Finding.requirement_id == req.id,
                                                       Finding.period_id == period.id)
                              .order_by(Finding.id)).scalars().all()


def _text(html):
    return re.sub(r"\s+", " ", html)


def _row(html, prefix, req_id):
    match = re.search(rf'<tr id="{prefix}-{req_id}">.*?</tr>', html, re.S)
    assert match, f"no row {prefix}-{req_id}"
    return match.group(0)


def _finding_url(period, req, slug="agency-a"):
    return f"/agencies/{slug}/periods/{period.id}/findings/{req.id}"


# --- periods -----------------------------------------------------------------------------------

def test_monitor_creates_a_period(client, auth, db, mon):
    _login(auth, mon, "monitor")
    r = auth.post("/agencies/agency-a/periods", {"name": "  Report 9  ", "start_date": "2026-01-01",
                                                  "end_date": "2026-06-30"})
    assert r.status_code == 303
    period = db.session.execute(sa.select(MonitoringPeriod)).scalar_one()
    assert r.headers["Location"].endswith(f"/agencies/agency-a/periods/{period.id}")
    assert (period.agency_id, period.name, period.start_date, period.end_date, period.state) == (
        mon["a"].id, "Report 9", date(2026, 1, 1), date(2026, 6, 30), "open")
    events = _audits(db)
    assert [e.action for e in events] == ["period.create"]
    assert events[0].agency_id == mon["a"].id and events[0].actor_id == mon["users"]["monitor"].id
    assert events[0].after == {"name": "Report 9", "start": "2026-01-01", "end": "2026-06-30"}
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Monitoring period “Report 9” opened." in page and "<h1>Report 9</h1>" in page
    assert "Jan 1, 2026 – Jun 30, 2026" in page and "Scale: Cleveland-style scale" in page
    listing = client.get("/agencies/agency-a/periods").get_data(as_text=True)
    assert "Report 9</a>" in listing and "Open" in listing
    # The same name is fine in another agency.
    auth.logout()
    _login(auth, mon, "monitor_b")
    assert auth.post("/agencies/agency-b/periods", {"name": "Report 9", "start_date": "2026-01-01",
                                                     "end_date": "2026-06-30"}).status_code == 303
    assert _count(db, MonitoringPeriod) == 2


BAD_PERIODS = [
    ({"name": ""}, "name", "Name the period, e.g. “Report 9: Jan–Jun 2026”."),
    ({"name": "   "}, "name", "Name the period, e.g. “Report 9: Jan–Jun 2026”."),
    ({"name": "Report 1"}, "name", "This agency already has a period named “Report 1”."),
    ({"name": " Report 1 "}, "name", "This agency already has a period named “Report 1”."),
    ({"name": "x" * 201}, "name", "The name must be at most 200 characters."),
    ({"end_date": "2025-12-31"}, "end_date", "The period must end on or after its first day."),
    ({"start_date": ""}, "start_date", "Enter the first day of the period as YYYY-MM-DD."),
    ({"start_date": "2026-13-01"}, "start_date", "Enter the first day of the period as YYYY-MM-DD."),
    ({"end_date": "30/06/2026"}, "end_date", "Enter the last day of the period as YYYY-MM-DD."),
    ({"end_date": ""}, "end_date", "Enter the last day of the period as YYYY-MM-DD."),
]


def test_bad_periods_are_refused_and_nothing_is_written(client, auth, db, mon):
    _period(db, mon["a"], "Report 1", "2025-01-01", "2025-06-30")
    db.session.commit()
    _login(auth, mon, "monitor")
    for data, field, message in BAD_PERIODS:
        form = {"name": "Report 2", "start_date": "2026-01-01", "end_date": "2026-06-30", **data}
        r = auth.post("/agencies/agency-a/periods", form)
        assert r.status_code == 422, data
        html = r.get_data(as_text=True)
        assert f'<span class="usa-error-message" id="period-{field}-error">{message}</span>' in html, data
        assert _count(db, MonitoringPeriod) == 1 and _audits(db) == [], data


def test_a_period_that_ends_on_its_first_day_is_fine(client, auth, db, mon):
    _login(auth, mon, "monitor")
    r = auth.post("/agencies/agency-a/periods", {"name": "One day", "start_date": "2026-01-01",
                                                  "end_date": "2026-01-01"})
    assert r.status_code == 303
    period = db.session.execute(sa.select(MonitoringPeriod)).scalar_one()
    assert (period.name, period.start_date, period.end_date) == ("One day", date(2026, 1, 1), date(2026, 1, 1))


# --- findings ----------------------------------------------------------------------------------

def test_record_a_finding_on_the_agencys_scale(client, auth, db, mon):
    period = _period(db, mon["a"], "Report 1", "2026-01-01", "2026-06-30", state="open")
    db.session.commit()
    req = mon["reqs"]["cit1"]
    _login(auth, mon, "monitor")
    page = client.get(f"/agencies/agency-a/periods/{period.id}").get_data(as_text=True)
    options = re.findall(r'<option value="\d+">([^<]+)</option>', _row(page, "finding", req.id))
    assert options == [label for _k, label, _kind, _r in CLEVELAND]  # this agency's scale only, in order
    partial = _level(mon["cleveland"], "partial")
    r = auth.post(_finding_url(period, req), {"level_id": str(partial.id), "narrative": " Policy approved. "})
    assert r.status_code == 303 and r.headers["Location"].endswith(f"/periods/{period.id}#finding-{req.id}")
    finding = db.session.execute(sa.select(Finding)).scalar_one()
    assert (finding.requirement_id, finding.period_id, finding.level_id, finding.narrative, finding.is_current,
            finding.monitor_id, finding.correction_reason, finding.supersedes_id) == (
        req.id, period.id, partial.id, "Policy approved.", True, mon["users"]["monitor"].id, None, None)
    events = _audits(db)
    assert [e.action for e in events] == ["finding.record"]
    assert events[0].agency_id == mon["a"].id and events[0].object_id == str(finding.id)
    assert events[0].after["level"] == "partial" and events[0].before is None
    html = client.get(f"/agencies/agency-a/periods/{period.id}").get_data(as_text=True)
    row = _row(html, "finding", req.id)
    assert "<strong>Partial compliance</strong>" in row and "Policy approved." in row and "Mona Monitor" in row
    assert "CIT-001: finding recorded for Report 1." in html
    assert "1 of 5 requirements rated" in html
    # The requirement page shows it too.
    page = client.get(f"/agencies/agency-a/requirements/{req.id}").get_data(as_text=True)
    assert "Partial compliance" in page and "Policy approved." in page


def test_a_level_outside_the_agencys_scale_is_refused(client, auth, db, mon):
    period = _period(db, mon["a"], "Report 1", "2026-01-01", "2026-06-30", state="open")
    db.session.commit()
    other_scale = str(_level(mon["chicago"], "full").id)
    _login(auth, mon, "monitor")
    for level in (other_scale, "", "abc", "999999", "-1", "1.5"):
        r = auth.post(_finding_url(period, mon["reqs"]["cit1"]), {"level_id": level, "narrative": "x"})
        assert r.status_code == 422, level
        html = r.get_data(as_text=True)
        assert "Choose a level of this requirement&#39;s scale (Cleveland-style scale)." in html, level
        assert _count(db, Finding) == 0 and _audits(db) == [], level
    # Without the field at all.
    assert auth.post(_finding_url(period, mon["reqs"]["cit1"]), {"narrative": "x"}).status_code == 422
    assert _count(db, Finding) == 0


def test_a_too_long_narrative_is_refused(client, auth, db, mon):
    period = _period(db, mon["a"], "Report 1", "2026-01-01", "2026-06-30", state="open")
    db.session.commit()
    _login(auth, mon, "monitor")
    r = auth.post(_finding_url(period, mon["reqs"]["cit1"]),
                  {"level_id": str(_level(mon["cleveland"], "partial").id), "narrative": "x" * 20001})
    assert r.status_code == 422
    assert "The narrative must be at most 20,000 characters." in r.get_data(as_text=True)
    assert _count(db, Finding) == 0 and _audits(db) == []


def test_htmx_finding_answers_with_the_row(client, auth, db, mon):
    period = _period(db, mon["a"], "Report 1", "2026-01-01", "2026-06-30", state="open")
    db.session.commit()
    req = mon["reqs"]["cit1"]
    headers = {"HX-Request": "true", "HX-Target": f"finding-{req.id}"}
    _login(auth, mon, "monitor")
    r = auth.post(_finding_url(period, req), {"level_id": str(_level(mon["cleveland"], "general").id)},
                  headers=headers)
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert html.lstrip().startswith(f'<tr id="finding-{req.id}">') and "<strong>General compliance</strong>" in html
    assert "<html" not in html
    r = auth.post(_finding_url(period, req), {"level_id": "nope"}, headers=headers)
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert f'id="finding-{req.id}-error"' in html and "Choose a level of this requirement" in html
    assert _count(db, Finding) == 1


def test_re_rating_an_open_period_replaces_the_current_finding_and_keeps_the_old(client, auth, db, mon):
    period = _period(db, mon["a"], "Report 1", "2026-01-01", "2026-06-30", state="open")
    db.session.commit()
    req = mon["reqs"]["cit1"]
    partial, operational = _level(mon["cleveland"], "partial"), _level(mon["cleveland"], "operational")
    _login(auth, mon, "monitor")
    assert auth.post(_finding_url(period, req), {"level_id": partial.id, "narrative": "First"}).status_code == 303
    auth.logout()
    _login(auth, mon, "monitor2")
    assert auth.post(_finding_url(period, req), {"level_id": operational.id,
                                                 "narrative": "Second"}).status_code == 303
    first, second = _findings(db, req, period)
    assert (first.level_id, first.is_current, first.narrative) == (partial.id, False, "First")
    assert (second.level_id, second.is_current, second.supersedes_id) == (operational.id, True, first.id)
    assert second.monitor_id == mon["users"]["monitor2"].id and second.correction_reason is None
    events = _audits(db)
    assert [e.action for e in events] == ["finding.record", "finding.record"]
    assert events[1].before == {"level": "partial"} and events[1].after["level"] == "operational"
    # Submitting the same again is not a change: no new row, no audit event.
    assert auth.post(_finding_url(period, req), {"level_id": operational.id,
                                                 "narrative": "Second"}).status_code == 303
    assert len(_findings(db, req, period)) == 2 and len(_audits(db)) == 2
    # Only the current finding is shown in the grid and counted.
    current = monitoring.current_findings([period.id])
    assert [f.id for f in current] == [second.id]
    html = client.get(f"/agencies/agency-a/periods/{period.id}").get_data(as_text=True)
    row = _row(html, "finding", req.id)
    assert "Operational compliance</strong>" in row and "Partial compliance</strong>" not in row
    # The requirement page keeps both, the old one marked as replaced.
    page = client.get(f"/agencies/agency-a/requirements/{req.id}").get_data(as_text=True)
    assert ("Partial compliance <span class=\"tracker-badge\">Draft</span> "
            "<span class=\"tracker-badge\">Replaced</span>") in page


def test_filing_freezes_findings_and_a_correction_is_a_new_audited_entry(client, auth, db, mon):
    period = _period(db, mon["a"], "Report 1", "2026-01-01", "2026-06-30", state="open")
    db.session.commit()
    req = mon["reqs"]["cit1"]
    partial, general = _level(mon["cleveland"], "partial"), _level(mon["cleveland"], "general")
    _login(auth, mon, "monitor")
    auth.post(_finding_url(period, req), {"level_id": partial.id, "narrative": "Policy only"})
    r = auth.post(f"/agencies/agency-a/periods/{period.id}/file", {"filed_on": "2026-07-20", "docket_ref": "Dkt. 77"})
    assert r.status_code == 303
    db.session.expire_all()
    period = db.session.get(MonitoringPeriod, period.id)
    assert period.state == "filed" and period.filed_at is not None
    assert (period.filed_on, period.docket_ref) == (date(2026, 7, 20), "Dkt. 77")
    assert period.filed_by_id == mon["users"]["monitor"].id
    filing = _audits(db)[-1]
    assert filing.action == "period.file" and filing.agency_id == mon["a"].id
    assert filing.before == {"state": "open"}
    assert filing.after == {"state": "filed", "filed_on": "2026-07-20", "docket_ref": "Dkt. 77"}
    html = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Report 1 is filed (Dkt. 77, 2026-07-20): its findings are now visible to the committee" in html
    assert "File Report 1" not in html and "Record a correction" in html
    events = len(_audits(db))

    # A plain re-rate is refused, and so is a blank reason.
    message = "Report 1 is filed and its findings are frozen. Record a correction with a reason instead."
    for reason in ("", "   "):
        r = auth.post(_finding_url(period, req), {"level_id": general.id, "narrative": "Better now",
                                                  "correction_reason": reason})
        assert r.status_code == 422
        assert message in r.get_data(as_text=True)
    # Even the same level with a new narrative.
    r = auth.post(_finding_url(period, req), {"level_id": partial.id, "narrative": "Edited"})
    assert r.status_code == 422
    [only] = _findings(db, req, period)
    assert (only.level_id, only.narrative, only.is_current) == (partial.id, "Policy only", True)
    assert len(_audits(db)) == events

    # A correction with a reason is a new row, audited as a correction.
    r = auth.post(_finding_url(period, req), {"level_id": general.id, "narrative": "Field audit was missed",
                                              "correction_reason": "Transcription error in the report"})
    assert r.status_code == 303
    old, new = _findings(db, req, period)
    assert (old.is_current, old.level_id, old.narrative) == (False, partial.id, "Policy only")
    assert (new.is_current, new.level_id, new.supersedes_id) == (True, general.id, old.id)
    assert new.correction_reason == "Transcription error in the report"
    events_after = _audits(db)
    assert len(events_after) == events + 1
    event = events_after[-1]
    assert event.action == "finding.correct" and event.agency_id == mon["a"].id
    assert event.before == {"level": "partial"}
    assert event.after["correction_reason"] == "Transcription error in the report" and event.after["level"] == "general"
    db.session.expire_all()
    assert db.session.get(MonitoringPeriod, period.id).state == "filed"  # still filed
    html = client.get(f"/agencies/agency-a/periods/{period.id}").get_data(as_text=True)
    row = _row(html, "finding", req.id)
    assert "General compliance</strong>" in row and "Corrected" in row
    assert "correction: Transcription error in the report" in row
    page = client.get(f"/agencies/agency-a/requirements/{req.id}").get_data(as_text=True)
    assert "Correction: Transcription error in the report" in page and "Replaced" in page

    # Filing again is refused with a message and writes nothing; so is sharing a filed period.
    r = auth.post(f"/agencies/agency-a/periods/{period.id}/file", {"filed_on": "2026-07-21", "docket_ref": "Dkt. 78"})
    assert r.status_code == 422 and "Report 1 was already filed on 2026-07-20." in r.get_data(as_text=True)
    r = auth.post(f"/agencies/agency-a/periods/{period.id}/share")
    assert "Report 1 is filed; only an open period&#39;s draft can be shared." in client.get(
        r.headers["Location"]).get_data(as_text=True)
    assert len(_audits(db)) == events + 1


def test_a_correction_reason_on_an_open_period_is_not_a_correction(client, auth, db, mon):
    period = _period(db, mon["a"], "Report 1", "2026-01-01", "2026-06-30", state="open")
    db.session.commit()
    _login(auth, mon, "monitor")
    auth.post(_finding_url(period, mon["reqs"]["cit1"]), {"level_id": _level(mon["cleveland"], "partial").id,
                                                          "correction_reason": "Nothing to correct"})
    [finding] = _findings(db, mon["reqs"]["cit1"], period)
    assert finding.correction_reason is None
    assert [e.action for e in _audits(db)] == ["finding.record"]


# --- deltas ------------------------------------------------------------------------------------

@pytest.fixture
def two_reports(db, mon):
    """Report 1 and Report 2 (both closed) with known answers: 3 upgrades, 1 downgrade, 1 newly rated."""
    a, reqs = mon["a"], mon["reqs"]
    more = {
        "dat3": make_requirement(a, module=mon["data"], code="DAT-003", title="Dispatch data"),
        "dat4": make_requirement(a, module=mon["data"], code="DAT-004", title="Survey data"),
        "dat5": make_requirement(a, module=mon["data"], code="DAT-005", title="Outcome data"),
        "dat6": make_requirement(a, module=mon["data"], code="DAT-006", title="Referral data"),
    }
    r0 = _period(db, a, "Report 0", "2024-07-01", "2024-12-31")
    r1 = _period(db, a, "Report 1", "2025-01-01", "2025-06-30")
    r2 = _period(db, a, "Report 2", "2025-07-01", "2025-12-31")
    # Another agency's period between them is never "the previous period".
    other = _period(db, mon["b"], "B report", "2025-07-01", "2025-09-30")
    _rate(db, mon, mon["reqs"]["b1"], other, "full")
    plan = {  # requirement: (Report 0, Report 1, Report 2)
        reqs["cit1"]: ("general", "partial", "operational"),       # upgrade
        reqs["cit2"]: (None, "non_compliance", "general"),         # upgrade
        reqs["cit3"]: ("partial", "operational", "partial"),       # downgrade
        reqs["dat1"]: (None, "partial", "general"),                # upgrade
        reqs["dat2"]: (None, None, "partial"),                     # newly rated
        more["dat3"]: (None, "evaluation_deferred", "evaluation_deferred"),  # neither
        more["dat4"]: (None, "general", "general"),                # unchanged
        more["dat5"]: (None, "operational", "evaluation_deferred"),  # deferred: not a downgrade
        more["dat6"]: (None, "general", "not_assessed"),           # not assessed: not a downgrade
    }
    for req, keys in plan.items():
        for period, key in zip((r0, r1, r2), keys, strict=True):
            if key:
                _rate(db, mon, req, period, key)
    # Replaced (non-current) findings are history, not deltas.
    _rate(db, mon, reqs["dat2"], r1, "general", current=False)
    _rate(db, mon, more["dat4"], r2, "non_compliance", current=False)
    db.session.commit()
    return {"r0": r0, "r1": r1, "r2": r2, "more": more}


def _clocks(agency):
    """{requirement_id: (since, eligible on)} of the agency's sustainment clocks."""
    clocks, _dips = sustainment.clocks(agency)
    return {req_id: (c.since, c.eligible_on) for req_id, c in clocks.items()}


def _codes(items):
    return [(r.code, old.key if old else None, new.key) for r, old, new, _was in items]


def test_deltas_against_the_previous_period_have_known_answers(app, db, mon, two_reports):
    before, deltas = monitoring.deltas(two_reports["r2"])
    assert before.id == two_reports["r1"].id
    by_module = {d.module.key: d for d in deltas}
    assert list(by_module) == ["cit", "data"]  # module order
    cit, data = by_module["cit"], by_module["data"]
    assert _codes(cit.upgrades) == [("CIT-001", "partial", "operational"), ("CIT-002", "non_compliance", "general")]
    assert _codes(cit.downgrades) == [("CIT-003", "operational", "partial")]
    assert cit.newly_rated == []
    assert _codes(data.upgrades) == [("DAT-001", "partial", "general")]
    assert data.downgrades == []
    assert _codes(data.newly_rated) == [("DAT-002", None, "partial")]
    assert sum(len(d.upgrades) for d in deltas) == 3 and sum(len(d.downgrades) for d in deltas) == 1

    # Report 1 against Report 0: CIT-001 down, CIT-003 up, the rest newly rated (deferred is not rated).
    before, deltas = monitoring.deltas(two_reports["r1"])
    assert before.id == two_reports["r0"].id
    by_module = {d.module.key: d for d in deltas}
    assert _codes(by_module["cit"].downgrades) == [("CIT-001", "general", "partial")]
    assert _codes(by_module["cit"].upgrades) == [("CIT-003", "partial", "operational")]
    assert _codes(by_module["cit"].newly_rated) == [("CIT-002", None, "non_compliance")]
    assert _codes(by_module["data"].newly_rated) == [("DAT-001", None, "partial"), ("DAT-004", None, "general"),
                                                     ("DAT-005", None, "operational"), ("DAT-006", None, "general")]

    # The first period has nothing to compare with.
    assert monitoring.deltas(two_reports["r0"]) == (None, [])


def test_closed_period_page_states_the_deltas(client, auth, db, mon, two_reports):
    _login(auth, mon, "committee")  # anyone in the agency can read them
    html = client.get(f"/agencies/agency-a/periods/{two_reports['r2'].id}").get_data(as_text=True)
    assert '<h2 id="deltas">Changes since the previous filed ratings</h2>' in html
    assert ("<strong>3 upgrades, 1 downgrade, 1 newly rated</strong> against each requirement's previous filed "
            "rating (latest report: Report 1).") in html
    table = re.search(r"<caption>Upgrades, downgrades and newly rated requirements by module.*?</table>", html,
                      re.S).group(0)
    cit = re.search(r'<th scope="row">Crisis Intervention Teams</th>(.*?)</tr>', table, re.S).group(1)
    assert ("<td>2<br>CIT-001: Partial compliance (Report 1) → Operational compliance<br>"
            "CIT-002: Non-compliance (Report 1) → General compliance</td>") in cit
    assert "<td>1<br>CIT-003: Operational compliance (Report 1) → Partial compliance</td>" in cit
    data = re.search(r'<th scope="row">Data Collection</th>(.*?)</tr>', table, re.S).group(1)
    assert "<td>1<br>DAT-001: Partial compliance (Report 1) → General compliance</td>" in data
    assert "<td>0</td>" in data and "<td>1<br>DAT-002: no filed rating → Partial compliance</td>" in data
    for code in ("DAT-003", "DAT-004", "DAT-005", "DAT-006"):
        assert code + ":" not in table
    html = client.get(f"/agencies/agency-a/periods/{two_reports['r1'].id}").get_data(as_text=True)
    assert "<strong>1 upgrade, 1 downgrade, 5 newly rated</strong>" in html and "(latest report: Report 0)" in html
    html = client.get(f"/agencies/agency-a/periods/{two_reports['r0'].id}").get_data(as_text=True)
    assert "No report was filed before this period; there is nothing to compare with." in html
    assert "<h1>Report 0</h1>" in html


def test_no_change_reads_zero_upgrades_zero_downgrades(client, auth, db, mon):
    p1 = _period(db, mon["a"], "Report 1", "2025-01-01", "2025-06-30")
    p2 = _period(db, mon["a"], "Report 2", "2025-07-01", "2025-12-31")
    for period in (p1, p2):
        _rate(db, mon, mon["reqs"]["cit1"], period, "partial")
    db.session.commit()
    _login(auth, mon, "monitor")
    html = client.get(f"/agencies/agency-a/periods/{p2.id}").get_data(as_text=True)
    assert "<strong>0 upgrades, 0 downgrades, 0 newly rated</strong>" in html
    assert "<caption>Upgrades, downgrades" not in html


def test_an_open_period_shows_draft_deltas_to_the_monitor_and_compares_with_the_previous(client, auth, db, mon,
                                                                                       two_reports):
    p3 = _period(db, mon["a"], "Report 3", "2026-01-01", "2026-06-30", state="open")
    _rate(db, mon, mon["reqs"]["cit1"], p3, "general")
    db.session.commit()
    _login(auth, mon, "monitor")
    html = client.get(f"/agencies/agency-a/periods/{p3.id}").get_data(as_text=True)
    assert '<h2 id="deltas">Changes since the previous filed ratings (draft)</h2>' in html
    assert "<strong>1 upgrade, 0 downgrades, 0 newly rated</strong>" in html
    assert "Previous filed report: Report 2" in html
    row = _row(html, "finding", mon["reqs"]["cit1"].id)
    assert "<td>Operational compliance<br><span class=\"usa-hint\">Report 2</span></td>" in row  # previous filed
    assert "Share the draft of Report 3 with the parties" in html and "File Report 3" in html


# --- not assessed and deferred -----------------------------------------------------------------

def test_not_assessed_and_deferred_are_never_non_compliance(app, db, mon):
    a, reqs = mon["a"], mon["reqs"]
    p1 = _period(db, a, "Report 1", "2025-01-01", "2025-06-30")
    p2 = _period(db, a, "Report 2", "2025-07-01", "2025-12-31")
    p3 = _period(db, a, "Report 3", "2026-01-01", "2026-06-30")
    reqs["cit1"].status = "implemented"
    reqs["cit2"].status = "implemented"
    # CIT-001: general, deferred, general; CIT-002: general, not assessed, not assessed;
    # CIT-003 (in progress): deferred, not assessed, deferred.
    for req, keys in ((reqs["cit1"], ("general", "evaluation_deferred", "general")),
                      (reqs["cit2"], ("general", "not_assessed", "not_assessed")),
                      (reqs["cit3"], ("evaluation_deferred", "not_assessed", "evaluation_deferred"))):
        for period, key in zip((p1, p2, p3), keys, strict=True):
            _rate(db, mon, req, period, key)
    db.session.commit()
    # Not an upgrade or a downgrade, nor newly rated when it comes back to the same level.
    for period in (p2, p3):
        _before, deltas = monitoring.deltas(period)
        assert all(not d.upgrades and not d.downgrades for d in deltas), period.name
    _before, deltas = monitoring.deltas(p3)
    assert [_codes(d.newly_rated) for d in deltas] == [[("CIT-001", "evaluation_deferred", "general")]]
    # Not a break in the sustainment run.
    top = monitoring.top_rank(monitoring.scale_levels(a))
    clock = _clocks(a)
    assert clock[reqs["cit1"].id] == (date(2025, 6, 30), date(2027, 6, 30))
    assert clock[reqs["cit2"].id] == (date(2025, 6, 30), date(2027, 6, 30))
    assert reqs["cit3"].id not in clock
    # Not a disagreement with an Implemented status.
    rows = db.session.execute(sa.select(Requirement).where(Requirement.agency_id == a.id)).scalars().all()
    flags = board_service.disagreement_flags(a, rows)
    assert reqs["cit2"].id not in flags and reqs["cit3"].id not in flags
    # The top rank comes from rating levels only.
    assert top == 3


# --- disagreement flags ------------------------------------------------------------------------

def test_disagreement_flags_on_the_board_the_period_and_the_requirement(client, auth, db, mon):
    a, cit, data = mon["a"], mon["cit"], mon["data"]
    p1 = _period(db, a, "Report 1", "2025-01-01", "2025-06-30")
    p2 = _period(db, a, "Report 2", "2025-07-01", "2025-12-31")
    cases = {  # code: (status, Report 1, Report 2, expected flag)
        "F-01": ("implemented", None, "operational",
                 "Agency reports Implemented; the monitor rates it Operational compliance."),
        "F-02": ("in_progress", None, "general",
                 "The monitor rates it General compliance; the agency reports In progress."),
        "F-03": ("not_started", None, "general",
                 "The monitor rates it General compliance; the agency reports Not started."),
        # Not applicable for the agency but rated by the monitor: flagged.
        "F-04": ("not_applicable", None, "general",
                 "The agency marks it Not applicable; the monitor rates it General compliance."),
        "F-05": ("not_applicable", None, "partial",
                 "The agency marks it Not applicable; the monitor rates it Partial compliance."),
        "F-06": ("implemented", None, "evaluation_deferred", None),
        "F-07": ("implemented", None, "not_assessed", None),
        "F-08": ("implemented", None, "general", None),
        "F-09": ("in_progress", None, "partial", None),
        "F-10": ("implemented", "general", "partial",  # the latest finding counts
                 "Agency reports Implemented; the monitor rates it Partial compliance."),
        "F-11": ("implemented", "partial", None,  # no finding this period: Report 1's is the latest
                 "Agency reports Implemented; the monitor rates it Partial compliance."),
        "F-12": ("implemented", None, None, None),
        "F-13": ("implemented", None, "non_compliance",
                 "Agency reports Implemented; the monitor rates it Non-compliance."),
    }
    reqs = {}
    for i, (code, (status, first, second, _flag)) in enumerate(cases.items()):
        reqs[code] = make_requirement(a, module=cit if i % 2 else data, code=code, title=f"Req {code}",
                                      status=status)
        if first:
            _rate(db, mon, reqs[code], p1, first)
        if second:
            _rate(db, mon, reqs[code], p2, second)
    db.session.commit()

    rows = db.session.execute(sa.select(Requirement).where(Requirement.agency_id == a.id)).scalars().all()
    flags = board_service.disagreement_flags(a, rows)
    expected = {reqs[code].id: flag for code, (*_x, flag) in cases.items() if flag}
    assert flags == expected

    _login(auth, mon, "monitor")
    board = client.get("/agencies/agency-a").get_data(as_text=True)
    period = client.get(f"/agencies/agency-a/periods/{p2.id}").get_data(as_text=True)
    for code, (*_x, flag) in cases.items():
        req_id = reqs[code].id
        for html, prefix in ((board, "req"), (period, "finding")):
            row = _row(html, prefix, req_id)
            if flag:
                assert f'<div class="tracker-flag" role="note"><strong>Disagreement:</strong> {flag}</div>' in row, (
                    code, prefix)
            else:
                assert "Disagreement" not in row, (code, prefix)
    page = client.get(f"/agencies/agency-a/requirements/{reqs['F-01'].id}").get_data(as_text=True)
    assert "<strong>Disagreement:</strong> Agency reports Implemented; the monitor rates it Operational" in page
    page = client.get(f"/agencies/agency-a/requirements/{reqs['F-08'].id}").get_data(as_text=True)
    assert "Disagreement" not in page


def test_flags_follow_the_scale_of_the_agency(client, auth, db, mon):
    """Chicago-style ladder: Secondary compliance is below the top (Full)."""
    b, req = mon["b"], mon["reqs"]["b1"]
    req.status = "implemented"
    period = _period(db, b, "Report 1", "2025-01-01", "2025-06-30")
    _rate(db, mon, req, period, "secondary")
    db.session.commit()
    _login(auth, mon, "monitor_b")
    board = client.get("/agencies/agency-b").get_data(as_text=True)
    assert "Agency reports Implemented; the monitor rates it Secondary compliance." in _row(board, "req", req.id)


# --- sustainment clock -------------------------------------------------------------------------

@pytest.fixture
def four_reports(db, mon):
    a, reqs = mon["a"], mon["reqs"]
    periods = [_period(db, a, "Report 1", "2024-01-01", "2024-06-30"),
               _period(db, a, "Report 2", "2024-07-01", "2024-12-31"),
               _period(db, a, "Report 3", "2025-01-01", "2025-06-30"),
               _period(db, a, "Report 4", "2025-07-01", "2025-12-31")]
    plan = {
        "cit1": ("partial", "general", "general", "general"),           # since end of Report 2
        "cit2": ("general", "partial", "general", "general"),           # broken in Report 2: since Report 3
        "cit3": ("general", "general", "general", "operational"),       # broken at the end: no clock
        "dat1": ("general", "evaluation_deferred", None, "general"),    # deferred/missing do not break it
        "dat2": (None, None, None, None),                               # never rated
    }
    for name, keys in plan.items():
        for period, key in zip(periods, keys, strict=True):
            if key:
                _rate(db, mon, reqs[name], period, key)
    # A replaced finding does not count: CIT-002 was first rated General in Report 2, then Partial.
    _rate(db, mon, reqs["cit2"], periods[1], "general", current=False)
    db.session.commit()
    return periods


def test_sustainment_clock_has_known_dates(client, auth, db, mon, four_reports):
    a, reqs = mon["a"], mon["reqs"]
    clock = _clocks(a)
    assert clock == {
        reqs["cit1"].id: (date(2024, 12, 31), date(2026, 12, 31)),
        reqs["cit2"].id: (date(2025, 6, 30), date(2027, 6, 30)),
        reqs["dat1"].id: (date(2024, 6, 30), date(2026, 6, 30)),
    }
    _login(auth, mon, "officer")
    page = _text(client.get(f"/agencies/agency-a/requirements/{reqs['cit1'].id}").get_data(as_text=True))
    assert ("<strong>In sustainment since Dec 31, 2024</strong> (filing of Report 2, first General compliance "
            "finding of the unbroken run); eligible for termination on Dec 31, 2026 (24-month sustainment period "
            "of the instrument).") in page
    page = _text(client.get(f"/agencies/agency-a/requirements/{reqs['cit2'].id}").get_data(as_text=True))
    assert "In sustainment since Jun 30, 2025</strong>" in page and "eligible for termination on Jun 30, 2027" in page
    assert ("<strong>Sustainment:</strong> Fell to Partial compliance in Report 2 (filed 2024-12-31); the clock "
            "restarted with the next top-level finding.") in page
    for name in ("cit3", "dat2"):
        page = client.get(f"/agencies/agency-a/requirements/{reqs[name].id}").get_data(as_text=True)
        assert "In sustainment" not in page, name


def test_a_correction_that_lowers_a_rating_restarts_the_clock(client, auth, db, mon, four_reports):
    a, req = mon["a"], mon["reqs"]["cit1"]
    _login(auth, mon, "monitor")
    r = auth.post(_finding_url(four_reports[2], req), {"level_id": _level(mon["cleveland"], "operational").id,
                                                       "correction_reason": "Field audit found lapses"})
    assert r.status_code == 303
    db.session.expire_all()
    clock = _clocks(a)
    assert clock[req.id] == (date(2025, 12, 31), date(2027, 12, 31))
    page = _text(client.get(f"/agencies/agency-a/requirements/{req.id}").get_data(as_text=True))
    assert "In sustainment since Dec 31, 2025</strong>" in page and "eligible for termination on Dec 31, 2027" in page
    assert "Fell to Operational compliance in Report 3 (filed 2025-06-30); the clock restarted" in page


def test_sustainment_without_a_period_set_and_month_end_dates(client, auth, db, mon):
    b, req = mon["b"], mon["reqs"]["b1"]
    p1 = _period(db, b, "Report 1", "2023-09-01", "2024-02-29")
    _rate(db, mon, req, p1, "full")
    db.session.commit()
    assert _clocks(b) == {req.id: (date(2024, 2, 29), None)}
    _login(auth, mon, "monitor_b")
    page = _text(client.get(f"/agencies/agency-b/requirements/{req.id}").get_data(as_text=True))
    assert "In sustainment since Feb 29, 2024</strong>" in page
    assert "no sustainment period is set for the instrument." in page
    b = db.session.get(type(b), b.id)
    b.primary_instrument.sustainment_months = 12
    db.session.commit()
    assert _clocks(b) == {req.id: (date(2024, 2, 29), date(2025, 2, 28))}


# --- partial termination -----------------------------------------------------------------------

def _status_counts(html, module_key):
    section = re.search(rf'<section aria-labelledby="module-{module_key}">(.*?)</section>', html, re.S).group(1)
    stats = re.search(r'<ul class="tracker-stats"[^>]*requirements by status">(.*?)</ul>', section, re.S).group(1)
    return {key: int(n) for key, n in re.findall(r'tracker-badge--(\w+)">[^<]+</span> (\d+)', stats)}


def test_admin_terminates_a_requirement(client, auth, db, mon, four_reports):
    req = mon["reqs"]["cit1"]
    _login(auth, mon, "admin")
    board = client.get("/agencies/agency-a").get_data(as_text=True)
    assert _status_counts(board, "cit") == {"not_started": 2, "in_progress": 1, "implemented": 0,
                                            "not_applicable": 0}
    r = auth.post(f"/agencies/agency-a/requirements/{req.id}/terminate",
                  {"terminated_on": "2026-03-03", "reference": " Order of Mar 3, 2026 (Dkt. 512) "})
    assert r.status_code == 303 and r.headers["Location"].endswith(f"/agencies/agency-a/requirements/{req.id}")
    db.session.expire_all()
    req = db.session.get(Requirement, req.id)
    assert req.terminated_at == date(2026, 3, 3) and req.termination_ref == "Order of Mar 3, 2026 (Dkt. 512)"
    [event] = _audits(db)
    assert event.action == "requirement.terminate" and event.agency_id == mon["a"].id
    assert event.object_id == str(req.id) and event.actor_id == mon["users"]["admin"].id
    assert event.after == {"date": "2026-03-03", "reference": "Order of Mar 3, 2026 (Dkt. 512)"}

    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "1 requirement(s) recorded as terminated by the court." in page
    assert "Terminated by the court on Mar 3, 2026 (Order of Mar 3, 2026 (Dkt. 512))." in page
    assert "Record a partial termination" not in page
    # History kept: the findings are still there.
    assert page.count("General compliance") >= 3 and "Report 4" in page
    assert _count(db, Finding, Finding.requirement_id == req.id) == 4

    # The board still lists it with a badge, but it leaves the active counts.
    board = client.get("/agencies/agency-a").get_data(as_text=True)
    assert "Terminated by the court Mar 3, 2026" in _row(board, "req", req.id)
    assert _status_counts(board, "cit") == {"not_started": 1, "in_progress": 1, "implemented": 0,
                                            "not_applicable": 0}
    rows = db.session.execute(sa.select(Requirement).where(Requirement.agency_id == mon["a"].id)).scalars().all()
    assert board_service.status_counts(rows)[mon["cit"].id]["not_started"] == 1
    # The period page shows the badge and no rating form for it.
    period = client.get(f"/agencies/agency-a/periods/{four_reports[3].id}").get_data(as_text=True)
    row = _row(period, "finding", req.id)
    assert "Terminated Mar 3, 2026" in row and "<form" not in row

    # Terminating it again changes nothing and is not audited again.
    r = auth.post(f"/agencies/agency-a/requirements/{req.id}/terminate",
                  {"terminated_on": "2026-05-05", "reference": "Another order"})
    assert "0 requirement(s) recorded" in client.get(r.headers["Location"]).get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Requirement, req.id).terminated_at == date(2026, 3, 3)
    assert len(_audits(db)) == 1


def test_admin_terminates_a_module(client, auth, db, mon):
    a, reqs = mon["a"], mon["reqs"]
    already = make_requirement(a, module=mon["data"], code="DAT-009", title="Already released",
                               terminated_at=date(2025, 1, 1), termination_ref="Earlier order")
    db.session.commit()
    _login(auth, mon, "admin")
    page = client.get("/agencies/agency-a/periods").get_data(as_text=True)
    assert "Record a partial termination of a module" in page
    r = auth.post("/agencies/agency-a/terminations", {"module": "data", "terminated_on": "2026-04-01",
                                                      "reference": "Order of Apr 1, 2026 (Dkt. 530)"})
    assert r.status_code == 303 and r.headers["Location"].endswith("/agencies/agency-a/periods")
    assert "2 requirement(s) recorded as terminated by the court." in client.get(
        r.headers["Location"]).get_data(as_text=True)
    db.session.expire_all()
    for name in ("dat1", "dat2"):
        req = db.session.get(Requirement, reqs[name].id)
        assert (req.terminated_at, req.termination_ref) == (date(2026, 4, 1), "Order of Apr 1, 2026 (Dkt. 530)")
    # Other modules, other agencies and earlier terminations are untouched.
    for name in ("cit1", "cit2", "cit3", "b1"):
        assert db.session.get(Requirement, reqs[name].id).terminated_at is None, name
    assert db.session.get(Requirement, already.id).termination_ref == "Earlier order"
    events = _audits(db)
    assert [e.action for e in events] == ["requirement.terminate"] * 2  # one per requirement released
    assert sorted(e.object_id for e in events) == sorted(str(reqs[n].id) for n in ("dat1", "dat2"))
    assert all(e.agency_id == a.id for e in events)
    page = client.get(f"/agencies/agency-a/requirements/{reqs['dat1'].id}").get_data(as_text=True)
    assert "Terminated by the court on Apr 1, 2026" in page


def test_board_still_shows_a_module_whose_requirements_are_all_terminated(client, auth, db, mon):
    """Regression: the board indexed counts[m.id], which status_counts() left out for such a module (500)."""
    _login(auth, mon, "admin")
    auth.post("/agencies/agency-a/terminations", {"module": "data", "terminated_on": "2026-04-01",
                                                  "reference": "Order of Apr 1, 2026"})
    assert db.session.get(Requirement, mon["reqs"]["dat1"].id).terminated_at == date(2026, 4, 1)
    r = client.get("/agencies/agency-a")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "Terminated by the court Apr 1, 2026" in _row(html, "req", mon["reqs"]["dat1"].id)
    assert _status_counts(html, "data") == dict.fromkeys(("not_started", "in_progress", "implemented",
                                                          "not_applicable"), 0)


BAD_TERMINATIONS = [
    ({"terminated_on": ""}, "Enter the date of the court&#39;s order as YYYY-MM-DD."),
    ({"terminated_on": "2026-02-30"}, "Enter the date of the court&#39;s order as YYYY-MM-DD."),
    ({"reference": ""}, "Cite the order, e.g. “Order of Mar 3, 2026 (Dkt. 512)”."),
    ({"reference": "   "}, "Cite the order, e.g. “Order of Mar 3, 2026 (Dkt. 512)”."),
    ({"reference": "x" * 301}, "The reference must be at most 300 characters."),
    ({"terminated_on": "", "reference": ""}, "Cite the order"),
]


def test_termination_without_a_date_or_reference_is_refused(client, auth, db, mon):
    _login(auth, mon, "admin")
    for data, message in BAD_TERMINATIONS:
        for target in ("requirement", "module"):
            form = {"terminated_on": "2026-03-03", "reference": "Order of Mar 3, 2026", **data}
            if target == "module":
                url = "/agencies/agency-a/terminations"
                form["module"] = "cit"
            else:
                url = f"/agencies/agency-a/requirements/{mon['reqs']['cit1'].id}/terminate"
            r = auth.post(url, form)
            assert r.status_code == 303, (data, target)
            html = client.get(r.headers["Location"]).get_data(as_text=True)
            assert "Not recorded: " in html and message in html, (data, target)
            db.session.expire_all()
            assert _count(db, Requirement, Requirement.terminated_at.is_not(None)) == 0, (data, target)
            assert _audits(db) == [], (data, target)


def test_module_termination_needs_a_known_module(client, auth, db, mon):
    _login(auth, mon, "admin")
    for module in ("", "nope"):
        r = auth.post("/agencies/agency-a/terminations", {"module": module, "terminated_on": "2026-03-03",
                                                          "reference": "Order"})
        assert r.status_code == 303
        assert "Not recorded: choose the module the court released." in client.get(
            r.headers["Location"]).get_data(as_text=True)
    assert _count(db, Requirement, Requirement.terminated_at.is_not(None)) == 0 and _audits(db) == []


def test_module_with_no_requirements_in_the_agency_is_refused(client, auth, db, mon):
    make_module("empty", "Empty Module", 3)
    db.session.commit()
    _login(auth, mon, "admin")
    r = auth.post("/agencies/agency-a/terminations", {"module": "empty", "terminated_on": "2026-03-03",
                                                      "reference": "Order"})
    assert "Not recorded: Nothing to terminate." in client.get(r.headers["Location"]).get_data(as_text=True)
    assert _audits(db) == []


def test_only_an_admin_records_a_termination(client, auth, db, mon):
    req = mon["reqs"]["cit1"]
    form = {"terminated_on": "2026-03-03", "reference": "Order of Mar 3, 2026"}
    for role in ("officer", "monitor", "committee"):
        _login(auth, mon, role)
        page = client.get(f"/agencies/agency-a/requirements/{req.id}").get_data(as_text=True)
        assert "Record a partial termination" not in page, role
        assert "Record a partial termination" not in client.get("/agencies/agency-a/periods").get_data(as_text=True)
        assert auth.post(f"/agencies/agency-a/requirements/{req.id}/terminate", form).status_code == 403, role
        assert auth.post("/agencies/agency-a/terminations", {**form, "module": "cit"}).status_code == 403, role
        auth.logout()
    # A monitor of another agency is not told the agency exists.
    _login(auth, mon, "monitor_b")
    assert auth.post(f"/agencies/agency-a/requirements/{req.id}/terminate", form).status_code == 404
    assert auth.post("/agencies/agency-a/terminations", {**form, "module": "cit"}).status_code == 404
    assert _count(db, Requirement, Requirement.terminated_at.is_not(None)) == 0 and _audits(db) == []


# --- who may write -----------------------------------------------------------------------------

def test_committee_members_and_officers_may_not_post_monitoring(client, auth, db, mon):
    period = _period(db, mon["a"], "Report 1", "2026-01-01", "2026-06-30", state="open")
    db.session.commit()
    level = _level(mon["cleveland"], "general").id
    for role in ("committee", "officer"):
        _login(auth, mon, role)
        page = client.get(f"/agencies/agency-a/periods/{period.id}").get_data(as_text=True)
        assert "Record a finding" not in page and "File Report 1" not in page and "Share the draft" not in page, role
        assert "Open a new period" not in client.get("/agencies/agency-a/periods").get_data(as_text=True)
        assert auth.post("/agencies/agency-a/periods", {"name": "Report 2", "start_date": "2026-07-01",
                                                         "end_date": "2026-12-31"}).status_code == 403, role
        assert auth.post(_finding_url(period, mon["reqs"]["cit1"]), {"level_id": level}).status_code == 403, role
        assert auth.post(f"/agencies/agency-a/periods/{period.id}/share").status_code == 403, role
        assert auth.post(f"/agencies/agency-a/periods/{period.id}/file", {"filed_on": "2026-07-01",
                                                                           "docket_ref": "Dkt. 1"}).status_code == 403
        auth.logout()
    db.session.expire_all()
    assert _count(db, MonitoringPeriod) == 1 and _count(db, Finding) == 0
    assert db.session.get(MonitoringPeriod, period.id).state == "open"
    assert _audits(db) == []


def test_a_monitor_of_another_agency_gets_404(client, auth, db, mon):
    period = _period(db, mon["a"], "Report 1", "2026-01-01", "2026-06-30", state="open")
    period_b = _period(db, mon["b"], "B report", "2026-01-01", "2026-06-30", state="open")
    db.session.commit()
    req, req_b = mon["reqs"]["cit1"], mon["reqs"]["b1"]
    level = _level(mon["cleveland"], "general").id
    _login(auth, mon, "monitor_b")
    assert client.get("/agencies/agency-a/periods").status_code == 404
    assert client.get(f"/agencies/agency-a/periods/{period.id}").status_code == 404
    assert client.get(f"/agencies/agency-b/periods/{period.id}").status_code == 404  # A's period via B
    assert auth.post("/agencies/agency-a/periods", {"name": "Mine", "start_date": "2026-01-01",
                                                     "end_date": "2026-06-30"}).status_code == 404
    assert auth.post(_finding_url(period, req), {"level_id": level}).status_code == 404
    assert auth.post(_finding_url(period, req, "agency-b"), {"level_id": level}).status_code == 404
    for action in ("share", "file"):
        assert auth.post(f"/agencies/agency-a/periods/{period.id}/{action}").status_code == 404
        assert auth.post(f"/agencies/agency-b/periods/{period.id}/{action}").status_code == 404
    assert auth.post(f"/agencies/agency-a/periods/{period.id}/responses/{req.id}").status_code == 404
    auth.logout()
    # A's monitor cannot reach B's period or requirement through A's URLs either.
    _login(auth, mon, "monitor")
    assert auth.post(_finding_url(period_b, req), {"level_id": level}).status_code == 404
    assert auth.post(_finding_url(period, req_b), {"level_id": level}).status_code == 404
    assert auth.post(f"/agencies/agency-a/periods/{period_b.id}/share").status_code == 404
    assert auth.post(f"/agencies/agency-a/periods/{period_b.id}/file").status_code == 404
    db.session.expire_all()
    assert _count(db, Finding) == 0 and _count(db, MonitoringPeriod) == 2
    assert {p.state for p in db.session.execute(sa.select(MonitoringPeriod)).scalars()} == {"open"}
    assert _audits(db) == []


# --- audit -------------------------------------------------------------------------------------

def test_every_write_is_one_audit_event_with_the_right_action(client, auth, db, mon):
    req = mon["reqs"]["cit1"]
    cleveland = mon["cleveland"]
    _login(auth, mon, "monitor")
    auth.post("/agencies/agency-a/periods", {"name": "Report 1", "start_date": "2026-01-01",
                                              "end_date": "2026-06-30"})
    period = db.session.execute(sa.select(MonitoringPeriod)).scalar_one()
    auth.post("/agencies/agency-a/periods", {"name": "Report 1", "start_date": "2026-01-01",
                                              "end_date": "2026-06-30"})  # refused: no event
    auth.post(_finding_url(period, req), {"level_id": _level(cleveland, "partial").id})
    auth.post(_finding_url(period, req), {"level_id": "bad"})  # refused
    auth.post(_finding_url(period, req), {"level_id": _level(cleveland, "operational").id})
    auth.post(_finding_url(period, mon["reqs"]["cit2"]), {"level_id": _level(cleveland, "evaluation_deferred").id})
    auth.post(f"/agencies/agency-a/periods/{period.id}/share")
    auth.post(f"/agencies/agency-a/periods/{period.id}/file", {"filed_on": "2026-07-40", "docket_ref": "x"})  # bad
    auth.post(f"/agencies/agency-a/periods/{period.id}/file", {"filed_on": "2026-07-20", "docket_ref": "Dkt. 5"})
    auth.post(_finding_url(period, req), {"level_id": _level(cleveland, "general").id})  # refused: frozen
    auth.post(_finding_url(period, req), {"level_id": _level(cleveland, "general").id,
                                          "correction_reason": "Typo"})
    auth.post(_finding_url(period, mon["reqs"]["dat1"]), {"level_id": _level(cleveland, "general").id,
                                                          "correction_reason": "Add one"})  # refused: never adds
    auth.post(f"/agencies/agency-a/periods/{period.id}/file", {"filed_on": "2026-07-20", "docket_ref": "Dkt. 5"})
    auth.logout()
    _login(auth, mon, "admin")
    auth.post(f"/agencies/agency-a/requirements/{req.id}/terminate", {"terminated_on": "", "reference": "x"})
    auth.post(f"/agencies/agency-a/requirements/{req.id}/terminate", {"terminated_on": "2026-09-01",
                                                                      "reference": "Order"})
    events = _audits(db)
    assert [e.action for e in events] == ["period.create", "finding.record", "finding.record", "finding.record",
                                          "period.share", "period.file", "finding.correct", "requirement.terminate"]
    assert all(e.agency_id == mon["a"].id for e in events)
    assert [e.actor_id for e in events] == [mon["users"]["monitor"].id] * 7 + [mon["users"]["admin"].id]
    checked, bad, _reason = audit.verify_chain()
    assert bad is None and checked >= 7


# --- query counts ------------------------------------------------------------------------------

def test_findings_grid_issues_a_constant_number_of_queries(client, auth, db, mon, count_queries):
    a = mon["a"]
    p1 = _period(db, a, "Report 1", "2025-01-01", "2025-06-30")
    p2 = _period(db, a, "Report 2", "2025-07-01", "2025-12-31")
    p3 = _period(db, a, "Report 3", "2026-01-01", "2026-06-30", state="open")
    monitors = ("monitor", "monitor2")
    keys = [k for k, *_ in CLEVELAND]
    statuses = ("not_started", "in_progress", "implemented", "not_applicable")
    made = []

    def add(n):
        start = len(made)
        for i in range(start, start + n):
            req = make_requirement(a, module=mon["cit"] if i % 2 else mon["data"], code=f"G-{i:03d}",
                                   status=statuses[i % 4])
            made.append(req)
            _rate(db, mon, req, p1, keys[i % 6], monitor=monitors[i % 2])
            _rate(db, mon, req, p2, keys[(i + 2) % 6], monitor=monitors[(i + 1) % 2], narrative=f"N{i}")
            if i % 3:
                _rate(db, mon, req, p3, keys[(i + 3) % 6], monitor=monitors[i % 2])
        db.session.commit()

    add(5)  # with the fixture's 5: 10 requirements
    _login(auth, mon, "monitor")
    urls = [f"/agencies/agency-a/periods/{p.id}" for p in (p2, p3)]
    for url in urls:
        client.get(url)  # warm up
    few = {}
    for url in urls:
        with count_queries() as n:
            html = client.get(url).get_data(as_text=True)
        few[url] = n.count
        assert html.count('<tr id="finding-') == 10
    add(50)
    for url in urls:
        with count_queries() as n:
            html = client.get(url).get_data(as_text=True)
        assert html.count('<tr id="finding-') == 60
        assert n.count == few[url], (url, few[url], n.count)
    # The requirement page (findings history and clock) does not grow with the number of findings either.
    with count_queries() as one:
        client.get(f"/agencies/agency-a/requirements/{made[0].id}")
    for period in (p1, p2, p3):
        _rate(db, mon, made[0], period, "general", current=False)
    db.session.commit()
    with count_queries() as more:
        client.get(f"/agencies/agency-a/requirements/{made[0].id}")
    assert more.count == one.count


# --- concurrency -------------------------------------------------------------------------------

def test_two_monitors_rating_at_once_leave_one_current_finding(app, db, mon):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE)")
    import threading
    import time

    from tracker.models import User

    period = _period(db, mon["a"], "Report 1", "2026-01-01", "2026-06-30", state="open")
    db.session.commit()
    req_id, period_id = mon["reqs"]["cit1"].id, period.id
    other_monitor_id = mon["users"]["monitor2"].id
    general_id = _level(mon["cleveland"], "general").id
    # Mona's request has read "no current finding", written hers and is about to commit.
    monitoring.record_finding(db.session.get(Requirement, req_id), db.session.get(MonitoringPeriod, period_id),
                              _level(mon["cleveland"], "partial").id, "Mona", actor=mon["users"]["monitor"])
    errors, backend = [], []

    def milo():
        try:
            with app.app_context():
                backend.append(db.session.execute(sa.text("SELECT pg_backend_pid()")).scalar())
                monitoring.record_finding(db.session.get(Requirement, req_id),
                                          db.session.get(MonitoringPeriod, period_id), general_id, "Milo",
                                          actor=db.session.get(User, other_monitor_id))
                db.session.commit()
        except Exception as exc:  # a refused concurrent write is an acceptable outcome
            errors.append(exc)

    thread = threading.Thread(target=milo)
    thread.start()
    # Wait until Milo's transaction is blocked behind Mona's (it has read the state by then).
    deadline = time.monotonic() + 5
    with db.engine.connect() as conn:
        while time.monotonic() < deadline:
            if backend and conn.execute(sa.text("SELECT count(*) FROM pg_locks WHERE pid = :pid AND NOT granted"),
                                        {"pid": backend[0]}).scalar():
                break
            conn.rollback()
            time.sleep(0.02)
    db.session.commit()
    thread.join(10)
    assert not thread.is_alive()
    db.session.expire_all()
    current = db.session.execute(sa.select(Finding).where(Finding.requirement_id == req_id,
                                                          Finding.period_id == period_id,
                                                          Finding.is_current.is_(True))).scalars().all()
    assert len(current) == 1, [(f.narrative, f.supersedes_id) for f in current]
