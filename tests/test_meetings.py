"""Advisory-committee meetings (issue 14 §1): who may schedule and edit them, Markdown agenda and minutes
rendered safely, attendance from the agency's members, documents in the evidence store, the dashboard,
the calendar feed and the public page."""
import io
import re
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.factories import make_agency, make_module, make_requirement, make_user
from tracker.models import AuditEvent, DocumentFile, Meeting, Membership, utcnow
from tracker.services import meetings as meeting_service
from tracker.services import tokens

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _count(db, model, *where):
    db.session.commit()
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _audits(db, action):
    return _count(db, AuditEvent, AuditEvent.action == action)


@pytest.fixture
def world(db):
    module = make_module("cit", "Crisis Intervention Teams", 1)
    a = make_agency(slug="harbor", name="Harbor City PD", public_enabled=True)
    b = make_agency(slug="other", name="Other Town PD")
    req = make_requirement(a, module=module, code="CIT-001", title="Crisis line")
    users = {
        "officer": make_user("officer@example.test", role="officer", agency=a, name="Olive Officer"),
        "monitor": make_user("monitor@example.test", role="monitor", agency=a, name="Mona Monitor"),
        "committee": make_user("committee@example.test", role="committee", agency=a, name="Cole Committee"),
        "chair": make_user("chair@example.test", role="committee", agency=a, name="Chris Chair"),
        "admin": make_user("admin@example.test", is_admin=True, name="Ada Admin"),
        "outsider": make_user("outsider@example.test", role="officer", agency=b, name="Otto Outside"),
    }
    db.session.execute(sa.update(Membership).where(Membership.user_id == users["chair"].id).values(is_chair=True))
    db.session.commit()
    return {"a": a, "b": b, "req": req, "users": users}


def _login(auth, world, role):
    if auth.token:
        auth.logout()
    assert auth.login(world["users"][role].email).status_code == 303


def _form(**values):
    base = {"title": "Quarterly meeting", "starts_at": "2030-03-04T18:30", "location": "City Hall, Room 2",
            "link": "", "agenda": "1. Crisis line staffing", "minutes": "", "guests": ""}
    return {**base, **values}


def _create(auth, world, **values):
    return auth.post("/agencies/harbor/committee/meetings", _form(**values))


def _meeting(db, title="Quarterly meeting"):
    db.session.commit()
    return db.session.execute(sa.select(Meeting).where(Meeting.title == title)).scalar_one()


@pytest.mark.parametrize("role", ["officer", "chair", "admin"])
def test_officers_the_chair_and_the_admin_schedule_meetings(client, auth, db, world, role):
    _login(auth, world, role)
    members = [world["users"]["committee"].id, world["users"]["officer"].id]
    r = _create(auth, world, attendee_ids=[str(i) for i in members], guests="Dr. Ruth Guest\n")
    assert r.status_code == 303, r.get_data(as_text=True)[-1500:]
    m = _meeting(db)
    assert r.headers["Location"].endswith(f"/agencies/harbor/committee/meetings/{m.id}")
    assert m.starts_at == datetime(2030, 3, 4, 18, 30) and m.location == "City Hall, Room 2"
    assert sorted(u.id for u in m.attendees) == sorted(members)
    assert _audits(db, "meeting.create") == 1
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Cole Committee" in page and "Olive Officer" in page and "Dr. Ruth Guest" in page
    assert "Mon Mar 4, 2030, 18:30" in page


@pytest.mark.parametrize("role", ["committee", "monitor"])
def test_other_members_read_meetings_but_may_not_edit_them(client, auth, db, world, role):
    _login(auth, world, "officer")
    assert _create(auth, world).status_code == 303
    m = _meeting(db)
    _login(auth, world, role)
    assert client.get(f"/agencies/harbor/committee/meetings/{m.id}").status_code == 200
    assert client.get("/agencies/harbor/committee").status_code == 200
    assert client.get("/agencies/harbor/committee/meetings/new").status_code == 403
    assert client.get(f"/agencies/harbor/committee/meetings/{m.id}/edit").status_code == 403
    assert _create(auth, world, title="Mine").status_code == 403
    assert auth.post(f"/agencies/harbor/committee/meetings/{m.id}/edit", _form(title="Changed")).status_code == 403
    assert _count(db, Meeting) == 1 and _meeting(db).title == "Quarterly meeting"


def test_outsiders_get_404(client, auth, db, world):
    _login(auth, world, "officer")
    _create(auth, world)
    m = _meeting(db)
    _login(auth, world, "outsider")
    assert client.get(f"/agencies/harbor/committee/meetings/{m.id}").status_code == 404
    # Their own agency's slug with harbor's meeting id: still 404.
    assert client.get(f"/agencies/other/committee/meetings/{m.id}").status_code == 404


def test_bad_input_names_the_field_and_writes_nothing(client, auth, db, world):
    _login(auth, world, "officer")
    cases = [({"title": ""}, "The title is required."),
             ({"starts_at": "next tuesday"}, "Enter the date and time of the meeting."),
             ({"link": "javascript:alert(1)"}, "Links must start with http:// or https://"),
             ({"attendee_ids": [str(world["users"]["outsider"].id)]}, "Only members of this agency")]
    for values, message in cases:
        r = _create(auth, world, **values)
        assert r.status_code == 422, values
        assert message in r.get_data(as_text=True), values
    assert _count(db, Meeting) == 0 and _audits(db, "meeting.create") == 0


def test_editing_a_meeting_records_what_changed(client, auth, db, world):
    _login(auth, world, "chair")
    _create(auth, world)
    m = _meeting(db)
    present = [str(world["users"]["committee"].id)]
    r = auth.post(f"/agencies/harbor/committee/meetings/{m.id}/edit",
                  _form(minutes="Staffing **improved**.", attendee_ids=present))
    assert r.status_code == 303
    m = _meeting(db)
    assert m.minutes == "Staffing **improved**." and [u.id for u in m.attendees] == [int(present[0])]
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "meeting.update")).scalar_one()
    assert set(event.after) == {"minutes", "attendees"} and event.after["attendees"] == ["committee@example.test"]
    # The same form again changes nothing and writes no event.
    assert auth.post(f"/agencies/harbor/committee/meetings/{m.id}/edit",
                     _form(minutes="Staffing **improved**.", attendee_ids=present)).status_code == 303
    assert _audits(db, "meeting.update") == 1
    page = client.get(f"/agencies/harbor/committee/meetings/{m.id}").get_data(as_text=True)
    assert "<strong>improved</strong>" in page


HOSTILE = ("# Agenda\n<script>alert(1)</script> <img src=x onerror=alert(1)>\n\n"
           "[click](javascript:alert(1)) [tab](java\tscript:alert(2)) [data](data:text/html,<b>x</b>) "
           "[ok](https://example.org/minutes) <javascript:alert(3)>")


def test_markdown_is_rendered_without_the_writers_html_or_unsafe_links(world):
    html = str(meeting_service.render_markdown(HOSTILE))
    assert "<script" not in html and "<img" not in html and "onerror=alert" in html  # shown as text
    assert "&lt;script&gt;" in html
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs == ["https://example.org/minutes"]
    assert 'rel="nofollow noopener noreferrer"' in html
    assert "<h3>Agenda</h3>" in html  # the writer's headings sit under the page's own


def test_safe_link_allows_web_mail_and_relative_links_only():
    for url in ("https://example.org", "http://x.test/a?b=c", "mailto:chair@example.org", "/agencies/x", "#item",
                "minutes.pdf"):
        assert meeting_service.safe_link(url), url
    for url in ("javascript:alert(1)", " JavaScript:alert(1)", "java\nscript:alert(1)", "vbscript:x",
                "data:text/html,x", "file:///etc/passwd"):
        assert not meeting_service.safe_link(url), url


def test_hostile_minutes_are_safe_on_the_meeting_page(client, auth, db, world):
    _login(auth, world, "officer")
    assert _create(auth, world, agenda=HOSTILE, minutes=HOSTILE).status_code == 303
    m = _meeting(db)
    _login(auth, world, "committee")
    html = client.get(f"/agencies/harbor/committee/meetings/{m.id}").get_data(as_text=True)
    assert "<script>alert" not in html and "<img src=x" not in html
    assert 'href="javascript' not in html.lower() and 'href="data:' not in html.lower()
    assert html.count('href="https://example.org/minutes"') == 2


def test_documents_go_to_the_evidence_store_with_its_checks(client, auth, db, world, app):
    _login(auth, world, "officer")
    _create(auth, world)
    m = _meeting(db)
    url = f"/agencies/harbor/committee/meetings/{m.id}/documents"
    bad = auth.post(url, {"file": (io.BytesIO(b"MZ\x90\x00"), "agenda.pdf")}, content_type="multipart/form-data")
    assert bad.status_code == 422 and "its content is not a PDF" in bad.get_data(as_text=True)
    exe = auth.post(url, {"file": (io.BytesIO(b"MZ"), "tool.exe")}, content_type="multipart/form-data")
    assert exe.status_code == 422 and "are not accepted" in exe.get_data(as_text=True)
    assert _count(db, DocumentFile) == 0
    ok = auth.post(url, {"file": (io.BytesIO(PDF), "Agenda <March>.pdf")}, content_type="multipart/form-data")
    assert ok.status_code == 303
    doc = db.session.execute(sa.select(DocumentFile)).scalar_one()
    assert doc.agency_id == world["a"].id and doc.media_type == "application/pdf"
    assert [d.id for d in _meeting(db).documents] == [doc.id] and _audits(db, "meeting.document") == 1
    # Every member of the agency downloads it; it never runs as a page of ours.
    _login(auth, world, "committee")
    got = client.get(f"/agencies/harbor/committee/meetings/{m.id}/documents/{doc.id}")
    assert got.status_code == 200 and got.data == PDF
    assert got.headers["Content-Security-Policy"].startswith("sandbox")
    assert "attachment" in got.headers["Content-Disposition"]
    got.close()
    # A document id of another meeting, or none at all, is 404.
    assert client.get(f"/agencies/harbor/committee/meetings/{m.id}/documents/{doc.id + 99}").status_code == 404
    _login(auth, world, "outsider")
    assert client.get(f"/agencies/harbor/committee/meetings/{m.id}/documents/{doc.id}").status_code == 404


def test_upcoming_meetings_on_the_dashboard_and_in_the_calendar_feed(client, auth, db, world):
    soon = (utcnow() + timedelta(days=10)).replace(hour=18, minute=0, second=0, microsecond=0)
    past = utcnow() - timedelta(days=30)
    _login(auth, world, "officer")
    _create(auth, world, title="Spring meeting", starts_at=soon.strftime("%Y-%m-%dT%H:%M"))
    _create(auth, world, title="Winter meeting", starts_at=past.strftime("%Y-%m-%dT%H:%M"))
    _login(auth, world, "committee")
    html = client.get("/agencies/harbor/dashboard").get_data(as_text=True)
    panel = html[html.index('id="committee-panel"'):]
    assert "Spring meeting" in panel and "Winter meeting" not in panel
    _cal, secret = tokens.create(world["users"]["committee"], "calendar", "", world["a"])
    db.session.commit()
    feed = client.get(f"/calendar/{secret}.ics").get_data(as_text=True)
    assert "SUMMARY:Advisory committee: Spring meeting" in feed
    assert f"DTSTART:{soon:%Y%m%dT%H%M%S}" in feed  # floating local time, as entered
    assert "LOCATION:City Hall\\, Room 2" in feed
    assert "SUMMARY:Advisory committee: Winter meeting" in feed


def test_only_the_admin_publishes_agenda_and_minutes_and_only_with_the_public_page_on(client, auth, db, world):
    _login(auth, world, "officer")
    _create(auth, world, agenda="Public *agenda* item", minutes="Secret minutes text")
    m = _meeting(db)
    url = f"/agencies/harbor/committee/meetings/{m.id}/publish"
    assert auth.post(url, {"agenda_public": "y"}).status_code == 403
    assert "Public <em>agenda</em>" not in client.get("/public/harbor").get_data(as_text=True)
    _login(auth, world, "admin")
    assert auth.post(url, {"agenda_public": "y"}).status_code == 303
    assert _audits(db, "meeting.publish") == 1
    auth.logout()
    auth.token = None
    public = client.get("/public/harbor").get_data(as_text=True)
    assert "Public <em>agenda</em> item" in public and "Secret minutes text" not in public
    # With the public page off, nothing more can be published.
    db.session.execute(sa.update(type(world["a"])).where(type(world["a"]).id == world["a"].id)
                       .values(public_enabled=False))
    db.session.commit()
    _login(auth, world, "admin")
    r = auth.post(url, {"agenda_public": "y", "minutes_public": "y"})
    assert r.status_code == 422 and "public page is off" in r.get_data(as_text=True)
    assert not _meeting(db).minutes_public


def test_the_committee_page_lists_meetings_with_a_fixed_number_of_queries(client, auth, db, world, count_queries,
                                                                          no_page_cache):
    _login(auth, world, "officer")
    _create(auth, world, title="Meeting 0", attendee_ids=[str(world["users"]["committee"].id)])
    with count_queries() as few:
        assert client.get("/agencies/harbor/committee").status_code == 200
    for i in range(1, 6):
        _create(auth, world, title=f"Meeting {i}", attendee_ids=[str(world["users"]["committee"].id)])
    with count_queries() as many:
        html = client.get("/agencies/harbor/committee").get_data(as_text=True)
    assert "Meeting 5" in html
    assert many.count == few.count
