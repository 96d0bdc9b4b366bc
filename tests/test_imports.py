"""Bulk import of an agency's own decree paragraphs from CSV and XLSX (issue 3, item 7)."""
import io
from datetime import date, datetime

import pytest
import sqlalchemy as sa

from tests.factories import make_agency, make_module, make_recommendation, make_requirement, make_user
from tracker.models import AuditEvent, Requirement

HEADER = "paragraph,title,text,module,due_date,deadline"
GOOD_CSV = "\n".join([
    HEADER,
    "131(a),Crisis line staffing,Staff the crisis line 24/7.,cit,2026-03-31,",
    '131(b),Forty-hour training,"Train every officer, including supervisors.",CIT,,180 days',
    "257,Publish data,Quarterly use-of-force reports.,data,,12 months",
    "258,No deadline yet,,data,,",
]) + "\n"


def _xlsx(rows):
    from openpyxl import Workbook

    workbook = Workbook()
    for row in rows:
        workbook.active.append(row)
    buf = io.BytesIO()
    workbook.save(buf)
    return buf.getvalue()


@pytest.fixture
def imp(db):
    make_module("cit", "Crisis Intervention Teams", 1)
    make_module("data", "Data Collection", 2)
    a = make_agency(slug="agency-a", name="Harbor City PD", effective_date=date(2025, 1, 1))
    b = make_agency(slug="agency-b")
    users = {
        "officer": make_user("officer@example.test", role="officer", agency=a),
        "monitor": make_user("monitor@example.test", role="monitor", agency=a),
        "committee": make_user("committee@example.test", role="committee", agency=a),
        "officer_b": make_user("officer-b@example.test", role="officer", agency=b),
        "admin": make_user("admin@example.test", is_admin=True),
    }
    db.session.commit()
    return {"a": a, "b": b, "users": users, "url": "/agencies/agency-a/import"}


def _login(auth, imp, role="officer"):
    auth.login(imp["users"][role].email)


def _post(auth, imp, content, filename="paragraphs.csv", url=None):
    data = content.encode("utf-8") if isinstance(content, str) else content
    return auth.post(url or imp["url"], {"file": (io.BytesIO(data), filename)}, content_type="multipart/form-data")


def _reqs(db, agency):
    return {r.code: r for r in db.session.execute(
        sa.select(Requirement).where(Requirement.agency_id == agency.id)).scalars()}


def _imports(db):
    return db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "requirement.import"))


def _module_id(db, key):
    from tracker.models import Module

    return db.session.execute(sa.select(Module.id).where(Module.key == key)).scalar_one()


def test_import_page_documents_the_columns(client, auth, imp):
    _login(auth, imp)
    r = client.get(imp["url"])
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    for column in ("paragraph", "title", "text", "module", "due_date", "deadline"):
        assert f'<th scope="row">{column}</th>' in html
    assert 'enctype="multipart/form-data"' in html


def test_csv_import_creates_requirements(client, auth, db, imp):
    _login(auth, imp)
    r = _post(auth, imp, GOOD_CSV)
    assert r.status_code == 303, r.get_data(as_text=True)
    assert r.headers["Location"].endswith("/agencies/agency-a")
    board = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Imported paragraphs.csv: 4 added, 0 updated, 0 unchanged." in board
    assert "¶ 131(a)" in board and "Crisis line staffing" in board

    reqs = _reqs(db, imp["a"])
    assert set(reqs) == {"¶ 131(a)", "¶ 131(b)", "¶ 257", "¶ 258"}
    first = reqs["¶ 131(a)"]
    assert first.title == "Crisis line staffing" and first.summary == "Staff the crisis line 24/7."
    assert first.module_id == _module_id(db, "cit") and first.recommendation_id is None
    assert first.status == "not_started" and first.row_version == 1
    assert "¶ 131(a)" in first.citation_text
    assert first.due_date == date(2026, 3, 31) and first.due_date_derived is False
    assert reqs["¶ 131(b)"].summary == "Train every officer, including supervisors."
    assert reqs["¶ 131(b)"].module_id == _module_id(db, "cit")               # module is case-insensitive
    assert reqs["¶ 131(b)"].due_date == date(2025, 6, 30)                    # effective date + 180 days
    assert reqs["¶ 257"].due_date == date(2026, 1, 1)                        # effective date + 12 months
    assert reqs["¶ 257"].module_id == _module_id(db, "data")
    assert reqs["¶ 258"].due_date is None
    assert _imports(db) == 1
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "requirement.import")).scalar_one()
    assert event.agency_id == imp["a"].id and event.actor_id == imp["users"]["officer"].id
    assert sorted(event.after["added"]) == sorted(reqs)
    assert _reqs(db, imp["b"]) == {}


def test_reimporting_the_same_file_changes_nothing(client, auth, db, imp):
    _login(auth, imp)
    assert _post(auth, imp, GOOD_CSV).status_code == 303
    before = {code: (r.row_version, r.updated_at) for code, r in _reqs(db, imp["a"]).items()}
    audits = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent))
    r = _post(auth, imp, GOOD_CSV)
    assert r.status_code == 303
    assert "0 added, 0 updated, 4 unchanged." in client.get(r.headers["Location"]).get_data(as_text=True)
    assert {code: (r.row_version, r.updated_at) for code, r in _reqs(db, imp["a"]).items()} == before
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) == audits


def test_edited_rows_update_their_requirements(client, auth, db, imp):
    _login(auth, imp)
    assert _post(auth, imp, GOOD_CSV).status_code == 303
    edited = GOOD_CSV.replace("Crisis line staffing", "Crisis line staffing and call-taking").replace(
        "257,Publish data,Quarterly use-of-force reports.,data", "257,Publish data,Monthly reports.,cit")
    r = _post(auth, imp, edited)
    assert r.status_code == 303
    assert "0 added, 2 updated, 2 unchanged." in client.get(r.headers["Location"]).get_data(as_text=True)
    reqs = _reqs(db, imp["a"])
    assert reqs["¶ 131(a)"].title == "Crisis line staffing and call-taking" and reqs["¶ 131(a)"].row_version == 2
    assert reqs["¶ 257"].summary == "Monthly reports." and reqs["¶ 257"].module_id == _module_id(db, "cit")
    assert reqs["¶ 258"].row_version == 1
    assert _imports(db) == 2
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "requirement.import")
                               .order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
    assert sorted(event.after["updated"]) == ["¶ 131(a)", "¶ 257"] and event.after["added"] == []


def test_reimport_keeps_a_due_date_moved_by_hand(client, auth, db, imp):
    """Due dates move only through the requirement page (with a reason); re-importing does not undo that."""
    _login(auth, imp)
    assert _post(auth, imp, GOOD_CSV).status_code == 303
    req = _reqs(db, imp["a"])["¶ 131(a)"]
    r = auth.post(f"/agencies/agency-a/requirements/{req.id}/due-date",
                  {"due_date": "2026-06-30", "reason": "Court order", "row_version": "1"})
    assert r.status_code == 303
    assert _post(auth, imp, GOOD_CSV).status_code == 303
    assert db.session.get(Requirement, req.id).due_date == date(2026, 6, 30)


def test_xlsx_import(client, auth, db, imp):
    content = _xlsx([
        ["Paragraph", "Module", "Title", "Due_Date", "Text"],             # any order, any case
        [12, "cit", "Dispatch protocol", datetime(2026, 5, 1), "Write the protocol."],
        ["12(b)", "data", "Dispatch data", "2026-07-15", None],
        ["¶ 13", "data", "Already marked", None, None],
        [None, None, None, None, None],                                    # blank rows are skipped
    ])
    _login(auth, imp)
    r = _post(auth, imp, content, "paragraphs.xlsx")
    assert r.status_code == 303, r.get_data(as_text=True)
    reqs = _reqs(db, imp["a"])
    assert set(reqs) == {"¶ 12", "¶ 12(b)", "¶ 13"}
    assert reqs["¶ 12"].due_date == date(2026, 5, 1) and reqs["¶ 12"].summary == "Write the protocol."
    assert reqs["¶ 12(b)"].due_date == date(2026, 7, 15) and reqs["¶ 12(b)"].summary == ""
    # Re-importing the XLSX changes nothing.
    r = _post(auth, imp, content, "paragraphs.xlsx")
    assert "0 added, 0 updated, 3 unchanged." in client.get(r.headers["Location"]).get_data(as_text=True)
    assert _imports(db) == 1


def test_csv_with_a_byte_order_mark_and_crlf(client, auth, db, imp):
    _login(auth, imp)
    content = ("\ufeff" + GOOD_CSV.replace("\n", "\r\n")).encode("utf-8")
    assert _post(auth, imp, content).status_code == 303
    assert len(_reqs(db, imp["a"])) == 4


BAD_FILES = [
    # (name, filename, content, expected problems)
    ("missing required", "p.csv", HEADER + "\n1,,text,cit,,\n2,Title,,,,\n,Title,,cit,,\n",
     ["row 2, column 'title': required", "row 3, column 'module': required", "row 4, column 'paragraph': required"]),
    ("unknown module", "p.csv", HEADER + "\n1,Title,,cit,,\n2,Title,,training,,\n",
     ["row 3, column 'module': unknown module 'training'"]),
    ("bad date", "p.csv", HEADER + "\n1,Title,,cit,31/03/2026,\n2,Title,,cit,2026-02-30,\n",
     ["row 2, column 'due_date': '31/03/2026' is not a date like 2026-03-31",
      "row 3, column 'due_date': '2026-02-30' is not a date"]),
    ("bad deadline", "p.csv", HEADER + "\n1,Title,,cit,,six months\n2,Title,,cit,,12 weeks\n",
     ["row 2, column 'deadline': 'six months' is not like '180 days' or '12 months'",
      "row 3, column 'deadline': '12 weeks' is not like"]),
    ("both due_date and deadline", "p.csv", HEADER + "\n1,Title,,cit,2026-01-01,180 days\n",
     ["row 2: give either 'due_date' or 'deadline', not both"]),
    ("duplicate paragraph", "p.csv", HEADER + "\n5,One,,cit,,\n6,Two,,cit,,\n5,Three,,cit,,\n",
     ["row 4, column 'paragraph': '5' already appears in row 2"]),
    ("too long", "p.csv", HEADER + "\n" + "9" * 51 + ",Title,,cit,,\n1," + "t" * 301 + ",,cit,,\n",
     ["row 2, column 'paragraph': at most 50 characters", "row 3, column 'title': at most 300 characters"]),
    ("unknown column", "p.csv", "paragraph,title,module,colour\n1,Title,cit,red\n",
     ["unknown column(s) colour"]),
    ("missing column", "p.csv", "paragraph,text,module\n1,Text,cit\n", ["missing column(s): title"]),
    ("empty file", "p.csv", "", ["the file is empty"]),
    ("blank lines only", "p.csv", "\n,,,\n\n", ["the file is empty"]),
    ("not UTF-8", "p.csv", (HEADER + "\n1,Caf\u00e9 protocol,,cit,,\n").encode("latin-1"),
     ["the file is not UTF-8 text"]),
    ("wrong extension", "p.txt", GOOD_CSV, ["only .csv and .xlsx files can be imported"]),
    ("no extension", "paragraphs", GOOD_CSV, ["only .csv and .xlsx files can be imported"]),
    ("broken xlsx", "p.xlsx", b"PK\x03\x04 this is not a workbook", ["the file is not a readable XLSX workbook"]),
    ("csv named xlsx", "p.xlsx", GOOD_CSV, ["the file is not a readable XLSX workbook"]),
    ("xlsx row errors", "p.xlsx", _xlsx([["paragraph", "title", "module", "deadline"], [1, "T", "cit", "soon"]]),
     ["row 2, column 'deadline': 'soon' is not like"]),
]


def test_bad_files_name_row_and_column_and_write_nothing(client, auth, db, imp):
    _login(auth, imp)
    audits = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent))
    for case, filename, content, problems in BAD_FILES:
        r = _post(auth, imp, content, filename)
        assert r.status_code == 422, case
        html = r.get_data(as_text=True)
        assert "was not imported; nothing was changed" in html, case
        for problem in problems:
            assert problem.replace("'", "&#39;") in html, (case, problem)
        assert _reqs(db, imp["a"]) == {}, case
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) == audits, case


def test_one_bad_row_blocks_the_whole_file(client, auth, db, imp):
    _login(auth, imp)
    content = GOOD_CSV + "300,Bad module,,nope,,\n"
    r = _post(auth, imp, content)
    assert r.status_code == 422
    assert "row 6, column &#39;module&#39;: unknown module &#39;nope&#39;" in r.get_data(as_text=True)
    assert _reqs(db, imp["a"]) == {} and _imports(db) == 0


def test_a_row_clashing_with_a_catalog_requirement_writes_nothing(client, auth, db, imp):
    rec = make_recommendation("REC-9")
    make_requirement(imp["a"], code="¶ 9", title="From the catalog", recommendation_id=rec.id)
    db.session.commit()
    _login(auth, imp)
    r = _post(auth, imp, HEADER + "\n8,New one,,cit,,\n9,Clash,,cit,,\n")
    assert r.status_code == 422
    assert "¶ 9 is a catalog requirement of this agency" in r.get_data(as_text=True)
    reqs = _reqs(db, imp["a"])
    assert set(reqs) == {"¶ 9"} and reqs["¶ 9"].title == "From the catalog"
    assert _imports(db) == 0


def test_deadline_needs_an_effective_date(client, auth, db, imp):
    imp["a"].primary_instrument.effective_date = None
    db.session.commit()
    _login(auth, imp)
    r = _post(auth, imp, HEADER + "\n1,Title,,cit,,180 days\n")
    assert r.status_code == 422
    assert "row 2, column &#39;deadline&#39;: the agency has no effective date" in r.get_data(as_text=True)
    assert _reqs(db, imp["a"]) == {}


def test_paragraphs_that_become_the_same_id_are_reported_as_duplicates(client, auth, db, imp):
    """'5', '¶5' and '¶ 5' all become '¶ 5': a duplicate by row and column, not a unique-constraint crash."""
    _login(auth, imp)
    r = _post(auth, imp, HEADER + "\n5,One,,cit,,\n¶ 5,Two,,cit,,\n¶5,Three,,cit,,\n")
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert "row 3, column &#39;paragraph&#39;" in html and "row 4, column &#39;paragraph&#39;" in html
    assert _reqs(db, imp["a"]) == {}


def test_due_date_written_as_a_spreadsheet_datetime_is_accepted(client, auth, db, imp):
    _login(auth, imp)
    assert _post(auth, imp, HEADER + "\n1,Title,,cit,2026-03-31 00:00:00,\n").status_code == 303
    assert _reqs(db, imp["a"])["¶ 1"].due_date == date(2026, 3, 31)


def test_due_date_with_trailing_text_is_refused(client, auth, db, imp):
    _login(auth, imp)
    r = _post(auth, imp, HEADER + "\n1,Title,,cit,2026-03-31abc,\n2,Title,,cit,2026-03-31 or later,\n")
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert "row 2, column &#39;due_date&#39;" in html and "row 3, column &#39;due_date&#39;" in html
    assert _reqs(db, imp["a"]) == {}


def test_missing_file(client, auth, db, imp):
    _login(auth, imp)
    r = auth.post(imp["url"], {}, content_type="multipart/form-data")
    assert r.status_code == 422
    assert "Choose a CSV or XLSX file." in r.get_data(as_text=True)


@pytest.mark.parametrize("role", ["monitor", "committee"])
def test_monitor_and_committee_cannot_import(client, auth, db, imp, role):
    _login(auth, imp, role)
    assert client.get(imp["url"]).status_code == 403
    assert _post(auth, imp, GOOD_CSV).status_code == 403
    assert _reqs(db, imp["a"]) == {}


def test_another_agency_gets_404(client, auth, db, imp):
    _login(auth, imp, "officer_b")
    assert client.get(imp["url"]).status_code == 404
    assert _post(auth, imp, GOOD_CSV).status_code == 404
    assert _reqs(db, imp["a"]) == {} and _reqs(db, imp["b"]) == {}


def test_admin_may_import(client, auth, db, imp):
    _login(auth, imp, "admin")
    assert _post(auth, imp, GOOD_CSV).status_code == 303
    assert len(_reqs(db, imp["a"])) == 4


def test_import_without_csrf_token_is_refused(client, auth, db, imp):
    _login(auth, imp)
    r = client.post(imp["url"], data={"file": (io.BytesIO(GOOD_CSV.encode()), "p.csv")},
                    content_type="multipart/form-data")
    assert r.status_code == 400
    assert _reqs(db, imp["a"]) == {}
