"""Exports opened back and compared with the database: the requirement matrix (CSV, XLSX) with formula
neutralisation, the calendar feed behind a revocable per-user token, the printable period report and
the shareable evidence package."""
import csv
import hashlib
import io
import json
import re
import zipfile
from datetime import date, datetime
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from icalendar import Calendar
from openpyxl import load_workbook

from tests.factories import PASSWORD, make_agency, make_module, make_requirement, make_user
from tracker.models import ApiToken, Evidence, Membership, Requirement
from tracker.services import exports, monitoring
from tracker.storage import get_store

FORMULA_TITLES = {
    "A-001": '=HYPERLINK("http://evil.example","click")',
    "A-002": "+SUM(1,2)",
    "A-003": "@import",
    "A-004": "\tTabbed title",
    "A-005": "-minus first",
    "A-006": "Plain title",
}
DANGEROUS = ("=", "+", "-", "@", "\t")


def _page(response):
    """A page's HTML with the per-request CSRF token blanked."""
    return re.sub(r'(X-CSRFToken": "|name="csrf_token" value=")[^"]+', r"\1", response.get_data(as_text=True))


def _secret_from(html):
    match = re.search(r'<input[^>]*id="secret"[^>]*value="([^"]+)"', html)
    assert match, "no secret on the answer page"
    return match.group(1)


@pytest.fixture
def world(db, app):
    """Agency A (six requirements, two periods, evidence of every kind) and agency B."""
    cit = make_module("cit", "CIT", position=0)
    trn = make_module("trn", "Training", position=1)
    agency = make_agency(slug="agency-a", name="Alpha PD")
    other = make_agency(slug="agency-b", name="Beta PD")
    users = {
        "officer": make_user("officer@example.test", role="officer", agency=agency, name="Olive Officer"),
        "monitor": make_user("monitor@example.test", role="monitor", agency=agency, name="Mona Monitor"),
        "committee": make_user("committee@example.test", role="committee", agency=agency, name="Cam Committee"),
        "owner1": make_user("owner1@example.test", name="@Owner One"),
        "owner2": make_user("owner2@example.test", name=""),
        "outsider": make_user("outsider@example.test", role="officer", agency=other),
    }
    spec = {
        "A-001": dict(module=cit, status="in_progress", owner_id=users["owner1"].id, due_date=date(2026, 3, 31),
                      citation_text="¶ 12(a)"),
        "A-002": dict(module=cit, status="implemented", owner_id=users["owner2"].id, due_date=date(2025, 9, 30),
                      citation_text="-3+4 cmd"),
        "A-003": dict(module=cit, status="not_started"),
        "A-004": dict(module=trn, status="not_applicable", due_date=date(2026, 1, 15)),
        "A-005": dict(module=cit, status="not_started", due_date=date(2025, 12, 1),
                      terminated_at=date(2025, 11, 1), termination_ref="Order of Nov 1, 2025"),
        "A-006": dict(module=trn, status="in_progress", due_date=date(2026, 6, 30)),
    }
    # Created out of code order: the matrix is sorted by code.
    reqs = {code: make_requirement(agency, code=code, title=FORMULA_TITLES[code], **spec[code])
            for code in sorted(spec, reverse=True)}
    monitor = users["monitor"]
    p1 = monitoring.create_period(agency, "Report 1", date(2025, 1, 1), date(2025, 6, 30), actor=monitor)
    p2 = monitoring.create_period(agency, "Report 2", date(2025, 7, 1), date(2025, 12, 31), actor=monitor)
    lv = {lvl.key: lvl.id for lvl in agency.scale.levels}
    for code, key in (("A-001", "partial"), ("A-002", "full"), ("A-004", "not_assessed"), ("A-006", "full")):
        monitoring.record_finding(reqs[code], p1, lv[key], f"NARR-{code}-P1", actor=monitor)
    for code, key in (("A-001", "full"), ("A-002", "partial"), ("A-003", "none"), ("A-004", "partial")):
        monitoring.record_finding(reqs[code], p2, lv[key], f"NARR-{code}-P2", actor=monitor)
    monitoring.file_period(p1, date(2025, 7, 15), "Dkt. 101", actor=monitor)
    monitoring.file_period(p2, date(2026, 1, 15), "Dkt. 102", actor=monitor)  # both reports filed

    store = get_store()

    def evidence(code, title, *, kind="file", body=None, visibility="shareable", state="submitted",
                 start=None, end=None, superseded=False, created=None, requirement=None):
        ev = Evidence(requirement_id=(requirement or reqs[code]).id, kind=kind, title=title, visibility=visibility,
                      review_state=state, superseded=superseded, uploaded_by_id=users["officer"].id,
                      period_start=start, period_end=end)
        if kind == "file":
            blob = store.put(io.BytesIO(body))
            ev.sha256, ev.size_bytes, ev.filename = blob.sha256, blob.size, f"{title.split()[0].lower()}.pdf"
            ev.media_type = "application/pdf"
        else:
            ev.url = "https://example.org/" + title.split()[0].lower()
        if created:
            ev.created_at = created
        db.session.add(ev)
        db.session.flush()
        return ev

    ev = {
        "shared": evidence("A-001", "Shareable policy", body=b"shareable file one", state="accepted",
                           start=date(2025, 8, 1), end=date(2025, 8, 31)),
        "restricted": evidence("A-001", "Restricted roster", body=b"restricted secret bytes", visibility="restricted",
                               start=date(2025, 7, 1), end=date(2025, 12, 31)),
        "link": evidence("A-002", "Shareable link", kind="link", start=date(2025, 9, 1)),
        "early": evidence("A-002", "Early training log", body=b"report one bytes", state="returned",
                          start=date(2025, 2, 1), end=date(2025, 3, 1)),
        "old": evidence("A-001", "Old version", body=b"old version bytes", state="accepted", superseded=True,
                        start=date(2025, 8, 1), end=date(2025, 8, 31)),
        "during": evidence("A-006", "Added during", body=b"added during the period", created=datetime(2025, 10, 5, 12)),
        "foreign": evidence(None, "Foreign file", body=b"agency b bytes", start=date(2025, 8, 1),
                            requirement=make_requirement(other, module=cit, code="B-001")),
    }
    p_other = monitoring.create_period(other, "Report 2", date(2025, 7, 1), date(2025, 12, 31), actor=monitor)
    db.session.commit()
    return {"agency": agency, "other": other, "users": users, "reqs": reqs, "periods": (p1, p2), "evidence": ev,
            "other_period": p_other}


# Hand-computed matrix, in code order (counts: current versions only); every requirement comes from the primary
# instrument, with no section, entity, deadline wording, cadence, catalog link or text (issue 12's columns).
ISSUE_12_COLUMNS = ["Consent Decree", "", "", "", "", "", ""]
EXPECTED_MATRIX = [row + ISSUE_12_COLUMNS for row in [
    ["A-001", "'" + FORMULA_TITLES["A-001"], "¶ 12(a)", "CIT", "In progress", "'@Owner One", "2026-03-31",
     "Full (Report 2)", "2", "1", "1", "0", ""],
    ["A-002", "'+SUM(1,2)", "'-3+4 cmd", "CIT", "Implemented", "owner2@example.test", "2025-09-30",
     "Partial (Report 2)", "2", "0", "1", "1", ""],
    ["A-003", "'@import", "", "CIT", "Not started", "", "", "Not in compliance (Report 2)", "0", "0", "0", "0", ""],
    ["A-004", "'\tTabbed title", "", "Training", "Not applicable", "", "2026-01-15", "Partial (Report 2)",
     "0", "0", "0", "0", ""],
    ["A-005", "'-minus first", "", "CIT", "Not started", "", "2025-12-01", "", "0", "0", "0", "0", "2025-11-01"],
    ["A-006", "Plain title", "", "Training", "In progress", "", "2026-06-30", "Full (Report 1)", "1", "0", "1", "0",
     ""],
]]


# --- requirement matrix --------------------------------------------------------------------------

def test_csv_export_streams_and_matches_the_database(client, auth, world, db):
    auth.login("committee@example.test")
    with client.get("/agencies/agency-a/export.csv") as response:
        assert response.status_code == 200
        assert response.is_streamed
        assert response.mimetype == "text/csv"
        assert re.fullmatch(r'attachment; filename="agency-a-requirements-\d{4}-\d{2}-\d{2}\.csv"',
                            response.headers["Content-Disposition"])
        body = response.get_data(as_text=True)
    assert body.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(body[1:])))
    assert rows[0] == list(exports.MATRIX_COLUMNS)
    assert rows[1:] == EXPECTED_MATRIX
    # One row per requirement of the agency, and only of this agency.
    codes = db.session.execute(sa.select(Requirement.code).where(Requirement.agency_id == world["agency"].id)
                               .order_by(Requirement.code)).scalars().all()
    assert [r[0] for r in rows[1:]] == codes
    # No cell reaches a spreadsheet as a formula.
    for row in rows:
        for cell in row:
            assert not cell.startswith(DANGEROUS), cell


def test_xlsx_export_matches_the_database_and_has_no_formulas(client, auth, world):
    auth.login("officer@example.test")
    with client.get("/agencies/agency-a/export.xlsx") as response:
        assert response.status_code == 200
        assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        assert "agency-a-requirements-" in response.headers["Content-Disposition"]
        data = response.get_data()
    workbook = load_workbook(io.BytesIO(data))
    sheet = workbook.worksheets[0]
    assert sheet.title == "Alpha PD"
    rows = list(sheet.iter_rows())
    for row in rows:
        for cell in row:
            assert cell.data_type != "f", (cell.coordinate, cell.value)
    values = [["" if c.value is None else str(c.value) for c in row] for row in rows]
    assert values[0] == list(exports.MATRIX_COLUMNS)
    assert values[1:] == EXPECTED_MATRIX
    # Counts are numbers in the workbook, not text.
    assert rows[1][8].value == 2 and isinstance(rows[1][8].value, int)
    workbook.close()


def test_neutralise():
    for raw in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\r=1"):
        assert exports.neutralise(raw) == "'" + raw
    for safe in ("plain", "1-2", "", " =1", "a=b"):
        assert exports.neutralise(safe) == safe
    assert exports.neutralise(-5) == -5 and exports.neutralise(None) is None


def test_matrix_reads_in_batches(world):
    whole = list(exports.matrix_rows(world["agency"]))
    assert [r[0] for r in whole] == [r[0] for r in EXPECTED_MATRIX]
    assert list(exports.matrix_rows(world["agency"], batch_size=2)) == whole
    assert list(exports.matrix_rows(world["agency"], batch_size=1)) == whole


def test_xlsx_export_survives_control_characters_from_an_import(client, auth, world, db):
    from tracker.services import imports

    imports.import_paragraphs(world["agency"], "paragraphs.csv",
                              b"paragraph,title,module\n77,Page\x0cbreak from a PDF,cit\n",
                              actor=world["users"]["officer"])
    db.session.commit()
    auth.login("officer@example.test")
    with client.get("/agencies/agency-a/export.xlsx") as response:
        assert response.status_code == 200
        data = response.get_data()
    titles = [row[1] for row in load_workbook(io.BytesIO(data)).worksheets[0].iter_rows(values_only=True)]
    assert any(t and t.startswith("Page") for t in titles)


# --- calendar feed -------------------------------------------------------------------------------

def _create_feed(auth, slug="agency-a"):
    response = auth.post("/account/tokens", {"kind": "calendar", "agency": slug, "current_password": PASSWORD})
    assert response.status_code == 200
    url = _secret_from(response.get_data(as_text=True))
    return urlsplit(url).path


def test_calendar_feed_has_one_event_per_dated_active_requirement(app, client, auth, world):
    auth.login("committee@example.test")
    path = _create_feed(auth)
    assert re.fullmatch(r"/calendar/dt_cal_[A-Za-z0-9_-]{40,}\.ics", path)
    anonymous = app.test_client()
    response = anonymous.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/calendar"
    cal = Calendar.from_ical(response.get_data())
    events = {str(e["summary"]).split()[0]: e for e in cal.walk("VEVENT")}
    # A-003 has no due date and A-005 was terminated.
    dated = {code: r.due_date for code, r in world["reqs"].items() if r.due_date and not r.terminated_at}
    assert set(events) == set(dated) == {"A-001", "A-002", "A-004", "A-006"}
    for code, due in dated.items():
        event = events[code]
        assert event.decoded("dtstart") == due
        assert event.decoded("dtend") == date.fromordinal(due.toordinal() + 1)
        assert str(event["uid"]) == f"requirement-{world['reqs'][code].id}@agency-a.decree-tracker"
        assert str(event["url"]).endswith(f"/agencies/agency-a/requirements/{world['reqs'][code].id}")
    assert str(cal["x-wr-calname"]) == "Alpha PD: decree deadlines"


def test_calendar_feed_token_cannot_be_made_for_another_agency(client, auth, world, db):
    auth.login("committee@example.test")
    response = auth.post("/account/tokens", {"kind": "calendar", "agency": "agency-b", "current_password": PASSWORD})
    assert response.status_code == 303 and response.headers["Location"] == "/account#tokens"
    assert ("Not created: Choose the agency whose deadlines the calendar shows."
            in client.get("/account").get_data(as_text=True))
    assert db.session.execute(sa.select(sa.func.count()).select_from(ApiToken)).scalar() == 0


def test_calendar_unknown_and_revoked_tokens_are_404_and_reveal_nothing(app, client, auth, world, db):
    auth.login("officer@example.test")
    path = _create_feed(auth)
    anonymous = app.test_client()
    assert anonymous.get(path).status_code == 200
    unknown = anonymous.get("/calendar/dt_cal_" + "x" * 43 + ".ics")
    assert unknown.status_code == 404
    assert anonymous.get("/calendar/not-a-token.ics").status_code == 404
    token = db.session.execute(sa.select(ApiToken).where(ApiToken.kind == "calendar")).scalar_one()
    assert auth.post(f"/account/tokens/{token.id}/revoke").status_code == 303
    revoked = anonymous.get(path)
    assert revoked.status_code == 404
    assert _page(revoked) == _page(unknown)
    assert "Alpha" not in revoked.get_data(as_text=True)


def test_calendar_token_dies_with_the_membership(app, client, auth, world, db):
    auth.login("monitor@example.test")
    path = _create_feed(auth)
    anonymous = app.test_client()
    assert anonymous.get(path).status_code == 200
    db.session.execute(sa.delete(Membership).where(Membership.user_id == world["users"]["monitor"].id))
    db.session.commit()
    assert anonymous.get(path).status_code == 404


def test_calendar_token_of_a_disabled_user_is_404(app, client, auth, world, db):
    auth.login("committee@example.test")
    path = _create_feed(auth)
    anonymous = app.test_client()
    assert anonymous.get(path).status_code == 200
    world["users"]["committee"].active = False
    db.session.commit()
    assert anonymous.get(path).status_code == 404


def test_api_token_is_not_a_calendar_token(app, client, auth, world):
    auth.login("officer@example.test")
    response = auth.post("/account/tokens", {"kind": "api", "name": "script", "current_password": PASSWORD})
    secret = _secret_from(response.get_data(as_text=True))
    assert app.test_client().get(f"/calendar/{secret}.ics").status_code == 404


# --- period report -------------------------------------------------------------------------------

def test_period_report_findings_deltas_and_evidence_index(client, auth, world):
    p1, p2 = world["periods"]
    ev = world["evidence"]
    auth.login("officer@example.test")
    response = client.get(f"/agencies/agency-a/periods/{p2.id}/report")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Monitoring report: Report 2" in html
    # Deltas against Report 1: A-001 up, A-002 down; newly rated.
    assert "1 upgrade, 1 downgrade, 2 newly rated</strong> against each requirement's previous filed rating " \
           "(latest report: Report 1)." in html
    assert "Upgrade: A-001 Partial (Report 1) → Full" in html
    assert "Downgrade: A-002 Full (Report 1) → Partial" in html
    assert "Newly rated: A-003 Not in compliance" in html and "Newly rated: A-004 Partial" in html
    # Findings by module, with the narratives of this period only.
    findings = html.split("<h2>Findings by module</h2>")[1].split("<h2>Evidence index</h2>")[0]
    assert "<h3>CIT</h3>" in findings and "<h3>Training</h3>" in findings
    assert findings.index("<h3>CIT</h3>") < findings.index("NARR-A-001-P2") < findings.index("<h3>Training</h3>")
    assert findings.index("<h3>Training</h3>") < findings.index("NARR-A-004-P2")
    for code in ("A-001", "A-002", "A-003", "A-004"):
        assert f"NARR-{code}-P2" in html
    assert "-P1" not in html
    assert "Not rated in this period" in html  # A-006 in Report 2
    # Evidence index: current evidence covering the period, restricted included for the officer.
    for key in ("shared", "restricted", "during"):
        assert ev[key].title in html and ev[key].sha256 in html
    assert ev["link"].title in html and ev["link"].url in html
    for key in ("early", "old", "foreign"):
        assert ev[key].title not in html and ev[key].sha256 not in html
    assert "SHA-256" in html

    first = client.get(f"/agencies/agency-a/periods/{p1.id}/report").get_data(as_text=True)
    assert "No report was filed before this period; there is nothing to compare with." in first
    assert ev["early"].sha256 in first and ev["shared"].sha256 not in first


def test_period_report_shows_committee_only_shareable_evidence(client, auth, world):
    _p1, p2 = world["periods"]
    ev = world["evidence"]
    auth.login("committee@example.test")
    html = client.get(f"/agencies/agency-a/periods/{p2.id}/report").get_data(as_text=True)
    assert "(shareable items only)" in html
    for key in ("shared", "during"):
        assert ev[key].title in html and ev[key].sha256 in html
    assert ev["link"].title in html
    assert ev["restricted"].title not in html and ev["restricted"].sha256 not in html


def test_period_report_monitor_sees_restricted_evidence(client, auth, world):
    _p1, p2 = world["periods"]
    auth.login("monitor@example.test")
    html = client.get(f"/agencies/agency-a/periods/{p2.id}/report").get_data(as_text=True)
    assert world["evidence"]["restricted"].sha256 in html
    assert "(shareable items only)" not in html


# --- evidence package ----------------------------------------------------------------------------

def _package(client, slug, period_id):
    with client.get(f"/agencies/{slug}/periods/{period_id}/evidence-package.zip") as response:
        assert response.status_code == 200
        assert response.mimetype == "application/zip"
        assert response.headers["Content-Disposition"].startswith("attachment;")
        assert "sandbox" in response.headers["Content-Security-Policy"]
        return zipfile.ZipFile(io.BytesIO(response.get_data()))


@pytest.mark.parametrize("role", ["committee", "officer"])
def test_evidence_package_holds_only_shareable_files_with_a_true_manifest(client, auth, world, role):
    _p1, p2 = world["periods"]
    ev = world["evidence"]
    auth.login(f"{role}@example.test")
    archive = _package(client, "agency-a", p2.id)
    names = archive.namelist()
    files = {n: archive.read(n) for n in names if n not in ("manifest.json", "MANIFEST.txt")}
    assert "manifest.json" in names and "MANIFEST.txt" in names
    assert sorted(files) == sorted([f"A-001/{ev['shared'].id}-shareable.pdf", f"A-006/{ev['during'].id}-added.pdf"])
    assert files[f"A-001/{ev['shared'].id}-shareable.pdf"] == b"shareable file one"

    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["agency"] == "Alpha PD" and manifest["period"] == "Report 2"
    assert (manifest["start"], manifest["end"]) == ("2025-07-01", "2025-12-31")
    by_title = {item["title"]: item for item in manifest["items"]}
    assert set(by_title) == {"Shareable policy", "Shareable link", "Added during"}
    assert by_title["Shareable link"]["url"] == ev["link"].url and "file" not in by_title["Shareable link"]
    for title, key in (("Shareable policy", "shared"), ("Added during", "during")):
        item = by_title[title]
        data = files[item["file"]]
        assert item["sha256"] == hashlib.sha256(data).hexdigest() == ev[key].sha256
        assert item["size_bytes"] == len(data)
    text = archive.read("MANIFEST.txt").decode()
    for item in manifest["items"]:
        if "file" in item:
            assert f"{item['sha256']}  {item['file']}  ({item['requirement']}: {item['title']})" in text
        else:
            assert item["url"] in text

    # Restricted, superseded, other periods' and other agencies' evidence never travel.
    everything = b"".join(archive.read(n) for n in names)
    for key, body in (("restricted", b"restricted secret bytes"), ("old", b"old version bytes"),
                      ("early", b"report one bytes"), ("foreign", b"agency b bytes")):
        assert body not in everything
        assert ev[key].title.encode() not in everything
        assert ev[key].sha256.encode() not in everything


def test_evidence_package_of_the_first_period(client, auth, world):
    p1, _p2 = world["periods"]
    auth.login("committee@example.test")
    archive = _package(client, "agency-a", p1.id)
    assert [n for n in archive.namelist() if n.endswith(".pdf")] == [f"A-002/{world['evidence']['early'].id}-early.pdf"]


def test_evidence_package_entry_names_never_climb_out(client, auth, world, db):
    from tracker.services import imports

    _p1, p2 = world["periods"]
    imports.import_paragraphs(world["agency"], "paragraphs.csv",
                              b"paragraph,title,module\n../../../evil,Innocent title,cit\n",
                              actor=world["users"]["officer"])
    # The paragraph id is kept as typed (issue 12).
    req = db.session.execute(sa.select(Requirement).where(Requirement.code == "../../../evil")).scalar_one()
    blob = get_store().put(io.BytesIO(b"climbing"))
    db.session.add(Evidence(requirement_id=req.id, kind="file", title="Climb", visibility="shareable",
                            sha256=blob.sha256, size_bytes=blob.size, filename="x.pdf",
                            period_start=date(2025, 8, 1), period_end=date(2025, 8, 2)))
    db.session.commit()
    auth.login("committee@example.test")
    archive = _package(client, "agency-a", p2.id)
    for name in archive.namelist():
        assert not name.startswith("/") and ".." not in name.split("/"), name


# --- scoping -------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["officer", "monitor", "committee"])
def test_exports_and_reports_are_404_outside_the_agency(client, auth, world, role):
    _p1, p2 = world["periods"]
    other_period = world["other_period"]
    auth.login(f"{role}@example.test")
    for url in ("/agencies/agency-b/export.csv", "/agencies/agency-b/export.xlsx",
                f"/agencies/agency-b/periods/{other_period.id}/report",
                f"/agencies/agency-b/periods/{other_period.id}/evidence-package.zip",
                # own agency, other agency's period
                f"/agencies/agency-a/periods/{other_period.id}/report",
                f"/agencies/agency-a/periods/{other_period.id}/evidence-package.zip",
                "/agencies/no-such/export.csv", f"/agencies/agency-a/periods/{p2.id + 999}/report"):
        with client.get(url) as response:
            assert response.status_code == 404, url


def test_exports_need_sign_in(client, world):
    for url in ("/agencies/agency-a/export.csv", "/agencies/agency-a/export.xlsx"):
        response = client.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_the_matrix_is_read_in_pages_after_the_last_row_in_decree_order(app, db):
    """Issue 18: pages of `batch_size` rows keyed on (sort_key, id), so the first row never waits for the
    whole export and nothing is skipped or repeated across page boundaries."""
    module = make_module("cit", "Crisis Intervention Teams", 1)
    agency = make_agency(slug="paged")
    for code in ("¶ 10", "¶ 2", "¶ 33", "¶ 4", "¶ 1"):
        make_requirement(agency, module=module, code=code, title=f"Paragraph {code}")
    db.session.commit()
    agency_id = agency.id
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    with app.test_request_context("/"):
        agency = db.session.get(type(agency), agency_id)
        sa.event.listen(db.engine, "before_cursor_execute", record)
        try:
            codes = [row[0] for row in exports.matrix_rows(agency, batch_size=2)]
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", record)
    assert codes == ["¶ 1", "¶ 2", "¶ 4", "¶ 10", "¶ 33"]
    pages = [s for s in statements if s.lstrip().startswith("SELECT requirement.code")]
    assert len(pages) == 3  # 2, 2 and 1 rows: each page a LIMIT query after the last (sort_key, id)
