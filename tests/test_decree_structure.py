"""The decree's structure (issue 12 §3-4): instruments with their own effective dates, sections, responsible
entities, and the crosswalk from an agency's paragraphs to the catalog."""
import re
from datetime import date

import pytest
import sqlalchemy as sa

from tests.factories import make_agency, make_instrument, make_module, make_recommendation, make_user
from tracker.models import AuditEvent, DecreeSection, Instrument, Requirement, RequirementLink, ResponsibleEntity
from tracker.services import imports

URL = "/agencies/agency-a/decree"


@pytest.fixture
def world(db):
    module = make_module("cit", "Crisis Intervention Teams", 1)
    a = make_agency(slug="agency-a", name="Harbor City PD", effective_date=date(2025, 1, 1))
    b = make_agency(slug="agency-b", name="Other PD")
    make_instrument(a, short_name="MOA 2023", title="Memorandum of Agreement", effective_date=date(2023, 7, 1))
    users = {role: make_user(f"{role}@example.test", role=role, agency=a) for role in ("officer", "monitor",
                                                                                        "committee")}
    users["admin"] = make_user("admin@example.test", is_admin=True)
    users["officer_b"] = make_user("officer-b@example.test", role="officer", agency=b)
    make_recommendation("CIT-004", module=module, title="Crisis line staffing")
    imports.import_paragraphs(a, "d.csv", (
        b"paragraph,title,module,instrument,section,entity,deadline\n"
        b"131(a),Staffing,cit,Consent Decree,III.C Crisis Intervention,Police Department,within 90 days\n"
        b"131(b),Dispatch,cit,Consent Decree,III.C Crisis Intervention,Office of Emergency Communications,\n"
        b"M-1,Data,cit,MOA 2023,IV Data,Office of Emergency Communications,within 90 days\n"),
        actor=users["officer"])
    db.session.commit()
    reqs = {r.code: r for r in db.session.execute(sa.select(Requirement)).scalars()}
    return {"a": a, "b": b, "users": users, "reqs": reqs}


def _count(db, model):
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_the_page_lists_instruments_sections_and_entities_with_counts(client, auth, world):
    auth.login("committee@example.test")
    r = client.get(URL)
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    for text in ("Consent Decree", "MOA 2023", "Memorandum of Agreement", "III.C Crisis Intervention", "IV Data",
                 "Police Department", "Office of Emergency Communications"):
        assert text in html, text
    assert "<td>2</td>" in html and "<td>1</td>" in html
    assert 'action="/agencies/agency-a/decree/sections"' not in html     # members who don't edit see no forms
    assert "An administrator adds and edits instruments." in html


def test_an_officer_names_sections_and_entities(client, auth, db, world):
    auth.login("officer@example.test")
    html = client.get(URL).get_data(as_text=True)
    assert 'action="/agencies/agency-a/decree/sections"' in html and 'id="s-new-label"' in html
    r = auth.post(f"{URL}/sections", {"section_id": "", "s-new-label": "  V   Training "})
    assert r.status_code == 303
    section = db.session.execute(sa.select(DecreeSection).where(DecreeSection.label == "V Training")).scalar_one()
    assert r.headers["Location"].endswith(f"#section-{section.id}")
    r = auth.post(f"{URL}/sections", {"section_id": section.id, f"s{section.id}-label": "iii.c crisis intervention"})
    assert r.status_code == 422
    assert "The agency already has a section" in r.get_data(as_text=True)
    assert auth.post(f"{URL}/sections", {"section_id": section.id,
                                         f"s{section.id}-label": "V.A Training"}).status_code == 303
    assert db.session.get(DecreeSection, section.id).label == "V.A Training"
    assert auth.post(f"{URL}/entities", {"entity_id": "", "e-new-name": "Civilian Oversight Agency"}
                     ).status_code == 303
    assert _count(db, ResponsibleEntity) == 3
    actions = db.session.execute(sa.select(AuditEvent.action).where(AuditEvent.action.in_(
        ["section.create", "section.update", "entity.create"]))).scalars().all()
    assert sorted(actions) == ["entity.create", "section.create", "section.update"]


def test_another_agencys_section_is_404_and_other_roles_403(client, auth, db, world):
    other = DecreeSection(agency_id=world["b"].id, label="I General", sort_key="1")
    db.session.add(other)
    db.session.commit()
    auth.login("officer@example.test")
    assert auth.post(f"{URL}/sections", {"section_id": other.id, f"s{other.id}-label": "Mine"}).status_code == 404
    assert auth.post(f"{URL}/sections", {"section_id": "x", "s-new-label": "Mine"}).status_code == 404
    auth.logout()
    auth.login("monitor@example.test")
    assert auth.post(f"{URL}/sections", {"section_id": "", "s-new-label": "Mine"}).status_code == 403
    auth.logout()
    auth.login("officer-b@example.test")
    assert client.get(URL).status_code == 404
    assert db.session.get(DecreeSection, other.id).label == "I General"


def test_an_admin_adds_an_instrument_and_moves_its_effective_date(client, auth, db, world):
    auth.login("officer@example.test")
    assert auth.post(f"{URL}/instruments", {"instrument_id": "", "i-new-short_name": "Order"}).status_code == 403
    auth.logout()
    auth.login("admin@example.test")
    scale_id = world["a"].scale.id
    r = auth.post(f"{URL}/instruments", {
        "instrument_id": "", "i-new-short_name": "Settlement 2026", "i-new-kind": "settlement_agreement",
        "i-new-effective_date": "2026-02-01", "i-new-scale_id": scale_id, "i-new-case_number": "1:26-cv-1"})
    assert r.status_code == 303
    added = db.session.execute(sa.select(Instrument).where(Instrument.short_name == "Settlement 2026")).scalar_one()
    assert (added.position, added.case_number, added.effective_date) == (2, "1:26-cv-1", date(2026, 2, 1))
    # A duplicate name is refused beside the field.
    r = auth.post(f"{URL}/instruments", {"instrument_id": "", "i-new-short_name": "moa 2023",
                                         "i-new-kind": "court_order", "i-new-scale_id": scale_id})
    assert r.status_code == 422 and "already has an instrument called" in r.get_data(as_text=True)
    # The MOA's effective date moves its own paragraph's derived due date, not the consent decree's.
    moa = db.session.execute(sa.select(Instrument).where(Instrument.short_name == "MOA 2023")).scalar_one()
    r = auth.post(f"{URL}/instruments", {
        "instrument_id": moa.id, f"i{moa.id}-short_name": "MOA 2023", f"i{moa.id}-kind": "memorandum_of_agreement",
        f"i{moa.id}-effective_date": "2023-10-01", f"i{moa.id}-scale_id": scale_id})
    assert r.status_code == 303
    assert "1 due date(s) recomputed" in client.get(r.headers["Location"]).get_data(as_text=True)
    db.session.expire_all()
    reqs = {r.code: r for r in db.session.execute(sa.select(Requirement)).scalars()}
    assert reqs["M-1"].due_date == date(2023, 12, 30) and reqs["¶ 131(a)"].due_date == date(2025, 4, 1)


def test_instrument_of_another_agency_is_404(client, auth, db, world):
    auth.login("admin@example.test")
    foreign = world["b"].primary_instrument
    r = auth.post(f"{URL}/instruments", {"instrument_id": foreign.id, f"i{foreign.id}-short_name": "Mine"})
    assert r.status_code == 404


def test_the_requirement_page_shows_its_structure(client, auth, world):
    req = world["reqs"]["¶ 131(b)"]
    auth.login("monitor@example.test")
    html = client.get(f"/agencies/agency-a/requirements/{req.id}").get_data(as_text=True)
    assert "Instrument: Consent Decree" in html and "Section: III.C Crisis Intervention" in html
    assert "Responsible entity: Office of Emergency Communications" in html
    assert "Link recommendation" not in html        # monitors read the crosswalk; officers edit it


def test_an_officer_links_a_paragraph_to_the_catalog(client, auth, db, world):
    req = world["reqs"]["¶ 131(a)"]
    url = f"/agencies/agency-a/requirements/{req.id}"
    auth.login("officer@example.test")
    r = auth.post(f"{url}/links", {"code": " cit-004 "})
    assert r.status_code == 303 and r.headers["Location"].endswith("#crosswalk")
    html = client.get(url).get_data(as_text=True)
    assert "131(a) now implements CIT-004." in html and "Crisis line staffing" in html
    assert 'href="/catalog/recommendations/CIT-004"' in html
    r = auth.post(f"{url}/links", {"code": "CIT-999"})
    assert "There is no catalog recommendation &#39;CIT-999&#39;." in client.get(r.headers["Location"]).get_data(
        as_text=True)
    # The catalog page shows the paragraph to the agency's members only.
    catalog = client.get("/catalog/recommendations/CIT-004").get_data(as_text=True)
    assert "Your paragraphs that implement it" in catalog and "Harbor City PD" in catalog and "¶ 131(a)" in catalog
    auth.logout()
    assert "Your paragraphs" not in client.get("/catalog/recommendations/CIT-004").get_data(as_text=True)
    auth.login("officer-b@example.test")
    assert "Your paragraphs" not in client.get("/catalog/recommendations/CIT-004").get_data(as_text=True)
    auth.logout()
    auth.login("officer@example.test")
    rec_id = db.session.execute(sa.select(RequirementLink.recommendation_id)).scalar_one()
    assert auth.post(f"{url}/links/remove", {"recommendation_id": rec_id}).status_code == 303
    assert _count(db, RequirementLink) == 0
    actions = db.session.execute(sa.select(AuditEvent.action).where(AuditEvent.action.like("requirement.%link"))
                                 .order_by(AuditEvent.id)).scalars().all()
    assert actions == ["requirement.link", "requirement.unlink"]


def test_only_officers_edit_the_crosswalk(client, auth, db, world):
    req = world["reqs"]["¶ 131(a)"]
    for email, status in (("monitor@example.test", 403), ("committee@example.test", 403),
                          ("officer-b@example.test", 404)):
        auth.login(email)
        assert auth.post(f"/agencies/agency-a/requirements/{req.id}/links", {"code": "CIT-004"}).status_code == status
        auth.logout()
    assert _count(db, RequirementLink) == 0


# --- Exports, calendar and API carry the structure ----------------------------------------------

def _link_and_recur(db, world):
    from tracker.services import decree, occurrences

    reqs = world["reqs"]
    decree.link(reqs["¶ 131(a)"], "CIT-004", actor=world["users"]["officer"])
    annual = reqs["¶ 131(b)"]
    annual.cadence_months, annual.cadence_text, annual.due_date = 12, "annually", date(2026, 1, 1)
    annual.summary = "Dispatch reports yearly.\n\n(a) calls;\n(b) outcomes."
    db.session.flush()
    occurrences.start(annual, annual.due_date)
    db.session.commit()
    return reqs


def test_exports_show_instrument_section_entity_wording_cadence_links_and_text(client, auth, db, world):
    import csv
    import io

    from tracker.services import exports

    _link_and_recur(db, world)
    auth.login("officer@example.test")
    body = client.get("/agencies/agency-a/export.csv").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(body[1:])))
    header = rows[0]
    assert header == list(exports.MATRIX_COLUMNS)
    by_code = {r[0]: dict(zip(header, r, strict=True)) for r in rows[1:]}
    assert [r[0] for r in rows[1:]] == ["¶ 131(a)", "¶ 131(b)", "M-1"]          # decree order
    a, b, m = by_code["¶ 131(a)"], by_code["¶ 131(b)"], by_code["M-1"]
    assert (a["Instrument"], a["Section"], a["Responsible entity"], a["Deadline as written"]) == (
        "Consent Decree", "III.C Crisis Intervention", "Police Department", "within 90 days")
    assert a["Implements (catalog)"] == "CIT-004" and a["Recurs"] == ""
    assert (b["Recurs"], b["Due date"]) == ("annually", "2026-01-01")
    assert b["Text"] == "Dispatch reports yearly.\n\n(a) calls;\n(b) outcomes."     # line breaks kept
    assert (m["Instrument"], m["Section"]) == ("MOA 2023", "IV Data")


def test_the_calendar_shows_a_recurring_duty_at_its_open_occurrence(db, world):
    from icalendar import Calendar

    from tracker.services import exports, occurrences

    reqs = _link_and_recur(db, world)
    events = {str(e["summary"]): e for e in Calendar.from_ical(exports.calendar(world["a"], "https://x/")).walk("VEVENT")}
    event = events["¶ 131(b) due: Dispatch (2026 annual)"]
    assert event.decoded("dtstart") == date(2026, 1, 1) and "Recurs: annually" in str(event["description"])
    occurrence = occurrences.open_occurrence(reqs["¶ 131(b)"])
    occurrences.complete(reqs["¶ 131(b)"], occurrence.id, date(2025, 12, 20), "", actor=world["users"]["officer"])
    db.session.commit()
    events = {str(e["summary"]): e for e in Calendar.from_ical(exports.calendar(world["a"], "https://x/")).walk("VEVENT")}
    assert events["¶ 131(b) due: Dispatch (2027 annual)"].decoded("dtstart") == date(2027, 1, 1)


def test_the_api_shows_the_structure_in_a_constant_number_of_queries(client, auth, db, world, count_queries):
    _link_and_recur(db, world)
    auth.login("officer@example.test")
    with count_queries() as few:
        items = client.get("/api/v1/agencies/agency-a/requirements").json["items"]
    by_code = {i["code"]: i for i in items}
    assert [i["code"] for i in items] == ["¶ 131(a)", "¶ 131(b)", "M-1"]
    a, b = by_code["¶ 131(a)"], by_code["¶ 131(b)"]
    assert (a["instrument"], a["section"], a["entity"], a["deadline_text"], a["implements"]) == (
        "Consent Decree", "III.C Crisis Intervention", "Police Department", "within 90 days", ["CIT-004"])
    assert a["recurring"] is None
    assert b["recurring"] == {"cadence_months": 12, "cadence": "annually", "cadence_text": "annually",
                              "next_due_date": "2026-01-01"}
    assert b["text"].startswith("Dispatch reports yearly.\n\n")
    imports.import_paragraphs(world["a"], "more.csv", b"paragraph,title,module,instrument,section,entity\n"
                              + "".join(f"{i},T{i},cit,MOA 2023,S{i},E{i}\n" for i in range(200, 230)).encode(),
                              actor=world["users"]["officer"])
    db.session.commit()
    with count_queries() as many:
        assert len(client.get("/api/v1/agencies/agency-a/requirements").json["items"]) == 33
    assert many.count == few.count


# --- The board by section and entity ------------------------------------------------------------

def test_the_board_filters_by_section_and_entity_and_groups_by_section(client, auth, db, world):
    from tracker.models import DecreeSection, ResponsibleEntity

    sections = {s.label: s.id for s in db.session.execute(sa.select(DecreeSection)).scalars()}
    entities = {e.name: e.id for e in db.session.execute(sa.select(ResponsibleEntity)).scalars()}
    imports.import_paragraphs(world["a"], "more.csv", b"paragraph,title,module,instrument,deadline\n"
                              b"9,No section,cit,Consent Decree,annually\n", actor=world["users"]["officer"])
    db.session.commit()
    auth.login("monitor@example.test")
    html = client.get("/agencies/agency-a").get_data(as_text=True)
    assert 'id="filter-section"' in html and 'id="filter-entity"' in html and 'id="filter-group"' in html
    assert "Recurs annually" in html
    assert 'href="/agencies/agency-a/decree"' in html

    def ids(query):
        page = client.get(f"/agencies/agency-a?{query}").get_data(as_text=True)
        return re.findall(r'<th scope="row"[^>]*>(?:<[^>]+>)*([^<]+)', page), page

    codes, _ = ids(f"section={sections['III.C Crisis Intervention']}")
    assert [c.strip() for c in codes] == ["¶ 131(a)", "¶ 131(b)"]
    codes, _ = ids(f"entity={entities['Office of Emergency Communications']}")
    assert [c.strip() for c in codes] == ["¶ 131(b)", "M-1"]
    codes, _ = ids("section=none")
    assert [c.strip() for c in codes] == ["¶ 9"]
    codes, page = ids("group=section")
    assert [c.strip() for c in codes] == ["¶ 131(a)", "¶ 131(b)", "M-1", "¶ 9"]   # III.C, IV, then no section
    headings = re.findall(r'<h2 id="module-([^"]+)"[^>]*>([^<]+)', page)
    assert [h[1].strip() for h in headings] == ["III.C Crisis Intervention", "IV Data", "No section"]
    # The grouping is kept in the URL of the sort links; a bogus value is ignored with a notice.
    assert "group=section" in re.search(r'href="([^"]*sort=status[^"]*)"', page).group(1)
    _, page = ids("group=colour&section=x")
    assert "Unknown filter value ignored: section, group." in page


def test_the_dashboard_filters_by_responsible_entity(client, auth, db, world):
    from tracker.models import ResponsibleEntity

    entities = {e.name: e.id for e in db.session.execute(sa.select(ResponsibleEntity)).scalars()}
    auth.login("committee@example.test")
    url = "/agencies/agency-a/dashboard"
    everything = client.get(url).get_data(as_text=True)
    assert 'id="dash-entity"' in everything and "¶ 131(a)" in everything and "M-1" in everything
    police = client.get(f"{url}?entity={entities['Police Department']}").get_data(as_text=True)
    assert "¶ 131(a)" in police and "M-1" not in police
    oec = client.get(f"{url}?entity={entities['Office of Emergency Communications']}").get_data(as_text=True)
    assert "M-1" in oec and "¶ 131(a)" not in oec
    assert "Unknown responsible entity ignored" in client.get(f"{url}?entity=999").get_data(as_text=True)



def test_the_dashboard_shows_a_recurring_duty_with_its_cadence(client, auth, db, world):
    _link_and_recur(db, world)
    req = world["reqs"]["¶ 131(b)"]
    req.due_date = date(2025, 1, 1)  # overdue, so it is listed whatever today is
    db.session.commit()
    auth.login("officer@example.test")
    html = client.get("/agencies/agency-a/dashboard").get_data(as_text=True)
    listed = html.split("Overdue and upcoming deadlines")[1].split("Recent activity")[0]
    assert "¶ 131(b)" in listed and "Recurs annually" in listed
