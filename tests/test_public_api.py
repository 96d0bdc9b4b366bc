"""The public transparency page (aggregate only) and the read API under /api/v1 (scoping for every role,
pagination, tokens, and the OpenAPI document checked against real responses)."""
import hashlib
import re
from datetime import date, datetime

import pytest
import sqlalchemy as sa
from jsonschema import Draft202012Validator

from tests.factories import (
    PASSWORD,
    make_agency,
    make_module,
    make_recommendation,
    make_requirement,
    make_source,
    make_user,
)
from tracker.models import ApiToken, Comment, Evidence, EvidenceReview, Membership
from tracker.services import monitoring

ROLES = ("officer", "monitor", "committee")


def _secret_from(html):
    match = re.search(r'<input[^>]*id="secret"[^>]*value="([^"]+)"', html)
    assert match, "no secret on the answer page"
    return match.group(1)


def _page(response):
    return re.sub(r'(X-CSRFToken": "|name="csrf_token" value=")[^"]+', r"\1", response.get_data(as_text=True))


@pytest.fixture
def world(db):
    """Agencies A (five requirements, findings in two periods), B and C.

    officer: officer of A; monitor: monitor of A and B; committee: committee of B; admin: no memberships.
    Every free-text field a person wrote carries a SENTINEL string."""
    cit = make_module("cit", "CIT", position=0)
    trn = make_module("trn", "Training", position=1)
    source = make_source(key="decree")
    rec = make_recommendation("CIT-001", module=cit, source=source)
    a = make_agency(slug="agency-a", name="Alpha PD")
    b = make_agency(slug="agency-b", name="Beta PD")
    c = make_agency(slug="agency-c", name="Gamma PD")
    users = {
        "officer": make_user("sentinel-officer@example.test", role="officer", agency=a,
                             name="SENTINEL-NAME-OFFICER"),
        "monitor": make_user("sentinel-monitor@example.test", role="monitor", agency=a,
                             name="SENTINEL-NAME-MONITOR"),
        "committee": make_user("sentinel-committee@example.test", role="committee", agency=b,
                               name="SENTINEL-NAME-COMMITTEE"),
        "admin": make_user("sentinel-admin@example.test", is_admin=True, name="SENTINEL-NAME-ADMIN"),
    }
    db.session.add(Membership(user_id=users["monitor"].id, agency_id=b.id, role="monitor"))
    officer, monitor = users["officer"], users["monitor"]
    reqs = [
        make_requirement(a, module=cit, code="A-001", recommendation_id=rec.id, status="implemented",
                         owner_id=officer.id, due_date=date(2026, 3, 31), citation_text="¶ 12",
                         notes="SENTINEL-NOTE-123"),
        make_requirement(a, module=cit, code="A-002", status="in_progress", notes="SENTINEL-NOTE-456"),
        make_requirement(a, module=cit, code="A-003", status="not_started", terminated_at=date(2025, 10, 1),
                         termination_ref="Order"),
        make_requirement(a, module=trn, code="A-004", status="in_progress", owner_id=monitor.id),
        make_requirement(a, module=trn, code="A-005", status="not_applicable"),
    ]
    make_requirement(b, module=cit, code="B-001")
    lv = {lvl.key: lvl.id for lvl in a.scale.levels}
    p1 = monitoring.create_period(a, "Report 1", date(2025, 1, 1), date(2025, 6, 30), actor=monitor)
    p2 = monitoring.create_period(a, "Report 2", date(2025, 7, 1), date(2025, 12, 31), actor=monitor)
    monitoring.record_finding(reqs[0], p1, lv["partial"], "SENTINEL-NARRATIVE-1", actor=monitor)
    monitoring.record_finding(reqs[1], p1, lv["none"], "SENTINEL-NARRATIVE-2", actor=monitor)
    monitoring.file_period(p1, date(2025, 7, 15), "Dkt. 101", actor=monitor)
    monitoring.record_finding(reqs[1], p1, lv["partial"], "SENTINEL-NARRATIVE-3", actor=monitor,
                              correction_reason="SENTINEL-CORRECTION-1")
    monitoring.record_finding(reqs[0], p2, lv["full"], "SENTINEL-NARRATIVE-4", actor=monitor)
    monitoring.record_finding(reqs[3], p2, lv["not_assessed"], "", actor=monitor)
    monitoring.file_period(p2, date(2026, 1, 15), "Dkt. 102", actor=monitor)  # both reports filed
    ev = Evidence(requirement_id=reqs[0].id, kind="link", title="SENTINEL-EVIDENCE-TITLE",
                  description="SENTINEL-EVIDENCE-DESCRIPTION", url="https://example.org/sentinel-evidence-url",
                  visibility="shareable", review_state="returned", uploaded_by_id=officer.id)
    db.session.add(ev)
    db.session.flush()
    db.session.add_all([
        Comment(requirement_id=reqs[0].id, author_id=officer.id, body="SENTINEL-COMMENT-789"),
        EvidenceReview(evidence_id=ev.id, reviewer_id=monitor.id, decision="returned",
                       comment="SENTINEL-REVIEW-COMMENT"),
    ])
    db.session.commit()
    return {"a": a, "b": b, "c": c, "users": users, "reqs": reqs, "periods": (p1, p2)}


def login(auth, world, role):
    auth.login(world["users"][role].email)


# --- public page ---------------------------------------------------------------------------------

def test_public_page_is_404_until_switched_on(app, client, world, db):
    missing = client.get("/public/no-such-agency")
    assert missing.status_code == 404
    off = client.get("/public/agency-a")
    assert off.status_code == 404
    assert _page(off) == _page(missing)
    world["a"].public_enabled = True
    db.session.commit()
    assert client.get("/public/agency-a").status_code == 200
    assert client.get("/public/agency-b").status_code == 404
    world["a"].public_enabled = False
    db.session.commit()
    assert client.get("/public/agency-a").status_code == 404


def test_public_page_is_aggregate_only(client, auth, world, db):
    world["a"].public_enabled = True
    db.session.commit()
    response = client.get("/public/agency-a")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "How each percentage is computed" in html
    assert "Evidence, names, notes and comments are never published here." in html
    # Aggregates: 4 active (A-003 terminated); 1 implemented -> 25%; A-001 at the top -> 25%.
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert "4 active requirements" in text
    assert "25% reported implemented by the agency" in text
    assert "25% rated at the top level by the monitor" in text
    assert "Report 1" in html and "Report 2" in html  # trend by period
    # Nothing a person wrote, and nobody's name or address.
    assert "SENTINEL" not in html.upper()
    for user in world["users"].values():
        assert user.email not in html
    for word in ("sentinel-evidence-url", "A-001", "A-002", "Order", "@example.test"):
        assert word not in html
    # Signed-in members see the same page; still without other people's names.
    login(auth, world, "monitor")
    member_view = client.get("/public/agency-a").get_data(as_text=True)
    for role in ("officer", "committee", "admin"):
        assert world["users"][role].name not in member_view


# --- API: scoping --------------------------------------------------------------------------------

EXPECTED_AGENCIES = {
    "officer": [("agency-a", "officer")],
    "monitor": [("agency-a", "monitor"), ("agency-b", "monitor")],
    "committee": [("agency-b", "committee")],
    "admin": [("agency-a", "admin"), ("agency-b", "admin"), ("agency-c", "admin")],
}


@pytest.mark.parametrize("role", [*ROLES, "admin"])
def test_api_agencies_lists_only_the_users_agencies(client, auth, world, role):
    login(auth, world, role)
    response = client.get("/api/v1/agencies")
    assert response.status_code == 200
    items = response.json["items"]
    assert [(i["slug"], i["role"]) for i in items] == EXPECTED_AGENCIES[role]
    for item in items:
        assert item["requirements_url"] == f"/api/v1/agencies/{item['slug']}/requirements"
        assert item["findings_url"] == f"/api/v1/agencies/{item['slug']}/findings"


@pytest.mark.parametrize("role", [*ROLES, "admin"])
def test_api_404_outside_scope_for_every_role(client, auth, world, role):
    login(auth, world, role)
    visible = {slug for slug, _ in EXPECTED_AGENCIES[role]}
    unknown = client.get("/api/v1/agencies/no-such/requirements")
    assert unknown.status_code == 404
    for slug in ("agency-a", "agency-b", "agency-c"):
        for what in ("requirements", "findings"):
            response = client.get(f"/api/v1/agencies/{slug}/{what}")
            if slug in visible:
                assert response.status_code == 200, (role, slug, what)
            else:
                assert response.status_code == 404, (role, slug, what)
                assert response.is_json and response.json == unknown.json


def test_api_anonymous_is_401_json(client, world):
    for url in ("/api/v1/agencies", "/api/v1/agencies/agency-a/requirements", "/api/v1/agencies/agency-a/findings",
                "/api/v1/agencies/no-such/findings"):
        response = client.get(url)
        assert response.status_code == 401, url
        assert response.is_json and response.json["error"] == "authentication required"
    # The catalog and the OpenAPI document are public.
    assert client.get("/api/v1/catalog").status_code == 200
    assert client.get("/api/v1/openapi.json").status_code == 200


# --- API: pagination -----------------------------------------------------------------------------

def test_api_requirements_pagination(client, auth, world):
    login(auth, world, "officer")
    url = "/api/v1/agencies/agency-a/requirements"
    first = client.get(f"{url}?per_page=2").json
    assert [i["code"] for i in first["items"]] == ["A-001", "A-002"]
    assert (first["page"], first["per_page"], first["total"], first["pages"]) == (1, 2, 5, 3)
    assert first["next"] == f"{url}?page=2&per_page=2"
    second = client.get(first["next"]).json
    assert [i["code"] for i in second["items"]] == ["A-003", "A-004"]
    last = client.get(second["next"]).json
    assert [i["code"] for i in last["items"]] == ["A-005"] and last["next"] is None and last["page"] == 3
    beyond = client.get(f"{url}?page=9&per_page=2").json
    assert beyond["items"] == [] and beyond["total"] == 5 and beyond["next"] is None
    default = client.get(url).json
    assert (default["page"], default["per_page"], default["pages"], len(default["items"])) == (1, 50, 1, 5)
    capped = client.get(f"{url}?per_page=1000").json
    assert capped["per_page"] == 100 and len(capped["items"]) == 5
    assert client.get(f"{url}?page=0&per_page=0").json["page"] == 1
    assert client.get(f"{url}?page=-3&per_page=-1").json["per_page"] == 1

    item = first["items"][0]
    assert item["status"] == "implemented" and item["due_date"] == "2026-03-31"
    assert item["owner"] == {"name": "SENTINEL-NAME-OFFICER", "email": "sentinel-officer@example.test"}
    assert item["citation"] == "¶ 12" and item["citations"][0]["source"] == "decree"
    assert item["module"] == "cit"
    assert first["items"][1]["owner"] is None and first["items"][1]["citations"] == []
    assert second["items"][0]["terminated_on"] == "2025-10-01"


@pytest.mark.parametrize("query", ["page=abc", "per_page=x", "page=1.5", "page=", "per_page=2&page=two"])
def test_api_bad_page_is_400_json(client, auth, world, query):
    login(auth, world, "officer")
    for what in ("requirements", "findings"):
        response = client.get(f"/api/v1/agencies/agency-a/{what}?{query}")
        assert response.status_code == 400
        assert response.is_json and response.json["error"] == "bad request"
        assert "page" in response.json["message"]


def test_api_huge_page_number_is_a_400_naming_the_limits(client, auth, world):
    login(auth, world, "officer")
    response = client.get(f"/api/v1/agencies/agency-a/requirements?page={10 ** 20}")
    assert response.status_code == 400
    assert response.json == {"error": "bad request",
                             "message": "page must be a whole number from 1 to 1000000, per_page from 1 to 100."}
    assert client.get("/api/v1/agencies/agency-a/requirements?page=1000000").status_code == 200  # the last allowed


def test_api_findings_are_current_and_paginated(client, auth, world):
    login(auth, world, "monitor")
    url = "/api/v1/agencies/agency-a/findings"
    everything = client.get(url).json
    assert everything["total"] == 4
    got = [(f["requirement"], f["period"], f["level"], f["narrative"]) for f in everything["items"]]
    # The corrected finding replaces the original; ordered by period end, then requirement.
    assert got == [("A-001", "Report 1", "partial", "SENTINEL-NARRATIVE-1"),
                   ("A-002", "Report 1", "partial", "SENTINEL-NARRATIVE-3"),
                   ("A-001", "Report 2", "full", "SENTINEL-NARRATIVE-4"),
                   ("A-004", "Report 2", "not_assessed", "")]
    corrected = everything["items"][1]
    assert corrected["correction_reason"] == "SENTINEL-CORRECTION-1" and corrected["period_state"] == "filed"
    assert everything["items"][3]["level_kind"] == "unassessed"
    page = client.get(f"{url}?page=2&per_page=3").json
    assert (page["page"], page["pages"], page["total"], page["next"]) == (2, 2, 4, None)
    assert [f["requirement"] for f in page["items"]] == ["A-004"]
    assert client.get(f"{url}?per_page=3").json["next"] == f"{url}?page=2&per_page=3"
    assert client.get("/api/v1/agencies/agency-b/findings").json["total"] == 0


# --- API tokens ----------------------------------------------------------------------------------

def _create_api_token(auth, name="monthly report script"):
    response = auth.post("/account/tokens", {"kind": "api", "name": name, "current_password": PASSWORD})
    assert response.status_code == 200
    return _secret_from(response.get_data(as_text=True))


def test_api_token_works_as_bearer_with_the_users_scope(app, client, auth, world, db):
    login(auth, world, "committee")
    secret = _create_api_token(auth)
    assert secret.startswith("dt_api_")
    anonymous = app.test_client()
    bearer = {"Authorization": f"Bearer {secret}"}
    response = anonymous.get("/api/v1/agencies", headers=bearer)
    assert response.status_code == 200
    assert [i["slug"] for i in response.json["items"]] == ["agency-b"]
    assert "Set-Cookie" not in response.headers  # no session is created for a token
    assert anonymous.get("/api/v1/agencies/agency-b/requirements", headers=bearer).json["total"] == 1
    assert anonymous.get("/api/v1/agencies/agency-a/requirements", headers=bearer).status_code == 404
    assert anonymous.get("/api/v1/agencies/agency-a/findings", headers=bearer).status_code == 404
    # The scheme name is case-insensitive; the token does not open the HTML pages.
    assert anonymous.get("/api/v1/agencies", headers={"Authorization": f"bearer {secret}"}).status_code == 200
    assert anonymous.get("/agencies/agency-b/dashboard", headers=bearer).status_code == 302
    token = db.session.execute(sa.select(ApiToken)).scalar_one()
    assert token.last_used_at is not None and token.kind == "api" and token.name == "monthly report script"


def test_unknown_and_revoked_api_tokens_are_404_and_reveal_nothing(app, client, auth, world, db):
    login(auth, world, "officer")
    secret = _create_api_token(auth)
    anonymous = app.test_client()
    assert anonymous.get("/api/v1/agencies", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    unknown = anonymous.get("/api/v1/agencies", headers={"Authorization": "Bearer dt_api_" + "x" * 43})
    assert unknown.status_code == 404 and unknown.is_json
    for header in ("Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer", f"Token {secret}"):
        response = anonymous.get("/api/v1/agencies/agency-a/requirements", headers={"Authorization": header})
        assert response.status_code == 404 and response.json == unknown.json, header
    token = db.session.execute(sa.select(ApiToken)).scalar_one()
    assert auth.post(f"/account/tokens/{token.id}/revoke").status_code == 303
    for url in ("/api/v1/agencies", "/api/v1/agencies/agency-a/requirements"):
        revoked = anonymous.get(url, headers={"Authorization": f"Bearer {secret}"})
        assert revoked.status_code == 404
        assert revoked.json == unknown.json
        assert "agency-a" not in revoked.get_data(as_text=True)
    # A revoked token also spoils a signed-in session's request that sends it.
    assert client.get("/api/v1/agencies", headers={"Authorization": f"Bearer {secret}"}).status_code == 404
    assert client.get("/api/v1/agencies").status_code == 200


def test_token_of_a_disabled_user_is_404(app, client, auth, world, db):
    login(auth, world, "monitor")
    secret = _create_api_token(auth)
    anonymous = app.test_client()
    bearer = {"Authorization": f"Bearer {secret}"}
    assert anonymous.get("/api/v1/agencies", headers=bearer).status_code == 200
    world["users"]["monitor"].active = False
    db.session.commit()
    assert anonymous.get("/api/v1/agencies", headers=bearer).status_code == 404


def test_token_follows_membership_changes(app, client, auth, world, db):
    login(auth, world, "monitor")
    secret = _create_api_token(auth)
    anonymous = app.test_client()
    bearer = {"Authorization": f"Bearer {secret}"}
    assert anonymous.get("/api/v1/agencies/agency-b/findings", headers=bearer).status_code == 200
    db.session.execute(sa.delete(Membership).where(Membership.user_id == world["users"]["monitor"].id,
                                                   Membership.agency_id == world["b"].id))
    db.session.commit()
    assert anonymous.get("/api/v1/agencies/agency-b/findings", headers=bearer).status_code == 404
    assert [i["slug"] for i in anonymous.get("/api/v1/agencies", headers=bearer).json["items"]] == ["agency-a"]


def test_api_token_is_stored_hashed(client, auth, world, db):
    login(auth, world, "officer")
    secret = _create_api_token(auth)
    calendar_url = _secret_from(auth.post("/account/tokens", {"kind": "calendar", "agency": "agency-a",
                                                                "current_password": PASSWORD})
                                .get_data(as_text=True))
    calendar_secret = calendar_url.rsplit("/", 1)[1].removesuffix(".ics")
    rows = db.session.execute(sa.text("SELECT * FROM api_token")).mappings().all()
    assert len(rows) == 2
    dump = repr([dict(r) for r in rows])
    for s in (secret, calendar_secret):
        assert s not in dump
        assert s[11:] not in dump  # beyond the displayed prefix, nothing of the secret is kept
    hashes = {r["token_hash"] for r in rows}
    assert hashes == {hashlib.sha256(s.encode()).hexdigest() for s in (secret, calendar_secret)}
    # The account page lists the token by its prefix, never the secret.
    account = client.get("/account").get_data(as_text=True)
    assert secret[:11] in account and secret not in account


def test_api_token_needs_a_name(client, auth, world, db):
    login(auth, world, "officer")
    response = auth.post("/account/tokens", {"kind": "api", "name": "  ", "current_password": PASSWORD})
    assert response.status_code == 303
    assert db.session.execute(sa.select(sa.func.count()).select_from(ApiToken)).scalar() == 0


# --- OpenAPI document against the real responses -------------------------------------------------

def _validator(doc, ref):
    schema = {"$ref": ref, "components": doc["components"]}
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _indicator_with_values(agency, officer):
    from tracker.extensions import db
    from tracker.services import indicators

    ind = indicators.create_indicator(agency, {"key": "cit-on-scene", "name": "CIT officer on scene",
                                               "unit": "percent", "direction": "up", "frequency": "quarter",
                                               "target_value": "75"}, actor=officer)
    for period, value in (("2025-Q1", "40"), ("2025-Q2", "52.5")):
        indicators.enter_value(ind, {"period": period, "value": value}, actor=officer)
    db.session.commit()


def test_openapi_document_matches_real_responses(app, client, auth, world):
    doc = client.get("/api/v1/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
    base = doc["servers"][0]["url"]
    assert base == "/api/v1"
    login(auth, world, "officer")
    anonymous = app.test_client()
    # How to produce each documented (path, status) for real.
    calls = {
        ("/catalog", "200"): lambda: anonymous.get(f"{base}/catalog"),
        ("/agencies", "200"): lambda: client.get(f"{base}/agencies"),
        ("/agencies", "401"): lambda: anonymous.get(f"{base}/agencies"),
        ("/agencies", "404"): lambda: anonymous.get(f"{base}/agencies", headers={"Authorization": "Bearer dt_api_x"}),
    }
    # Issue 14: the agency's indicators (one, with two quarters and a target).
    _indicator_with_values(world["a"], world["users"]["officer"])
    path = "/agencies/{slug}/indicators"
    calls[(path, "200")] = lambda: client.get(f"{base}/agencies/agency-a/indicators")
    calls[(path, "401")] = lambda: anonymous.get(f"{base}/agencies/agency-a/indicators")
    calls[(path, "404")] = lambda: client.get(f"{base}/agencies/agency-c/indicators")
    for what in ("requirements", "findings"):
        path = f"/agencies/{{slug}}/{what}"
        calls[(path, "200")] = lambda what=what: client.get(f"{base}/agencies/agency-a/{what}?per_page=2&page=2")
        calls[(path, "401")] = lambda what=what: anonymous.get(f"{base}/agencies/agency-a/{what}")
        calls[(path, "404")] = lambda what=what: client.get(f"{base}/agencies/agency-c/{what}")
        calls[(path, "400")] = lambda what=what: client.get(f"{base}/agencies/agency-a/{what}?page=zero")

    exercised = set()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert method == "get"
            for status, spec in operation["responses"].items():
                assert (path, status) in calls, f"no real call for {path} {status}"
                response = calls[(path, status)]()
                assert str(response.status_code) == status, (path, status, response.status_code)
                assert response.mimetype == "application/json"
                ref = spec["content"]["application/json"]["schema"]["$ref"]
                body = response.json
                errors = sorted(_validator(doc, ref).iter_errors(body), key=lambda e: list(e.path))
                assert not errors, f"{path} {status}: " + "; ".join(
                    f"{list(e.path)}: {e.message}" for e in errors)
                if status == "200" and "items" in body:
                    assert body["items"], f"{path}: validate a non-empty answer"
                exercised.add((path, status))
    assert exercised == set(calls)
    assert {p for p, _ in exercised} == set(doc["paths"])


def test_openapi_schemas_reject_wrong_answers(client):
    """The schemas are strict enough to catch a drifting answer (extra or missing fields)."""
    doc = client.get("/api/v1/openapi.json").json
    page = {"items": [], "page": 1, "per_page": 50, "total": 0, "pages": 1, "next": None}
    assert _validator(doc, "#/components/schemas/RequirementPage").is_valid(page)
    assert not _validator(doc, "#/components/schemas/RequirementPage").is_valid({**page, "extra": 1})
    assert not _validator(doc, "#/components/schemas/FindingPage").is_valid({k: v for k, v in page.items()
                                                                             if k != "next"})
    finding = {"requirement": "A", "period": "P", "period_start": "2025-01-01", "period_end": "2025-06-30",
               "period_state": "open", "level": "full", "level_label": "Full", "level_kind": "rating",
               "narrative": "", "recorded_at": datetime(2025, 1, 1).isoformat() + "Z", "correction_reason": None}
    assert _validator(doc, "#/components/schemas/Finding").is_valid(finding)
    assert not _validator(doc, "#/components/schemas/Finding").is_valid({**finding, "level_kind": "bad"})


def test_openapi_documents_the_paging_parameters(client):
    doc = client.get("/api/v1/openapi.json").json
    for what in ("requirements", "findings"):
        params = {p["name"]: p for p in doc["paths"][f"/agencies/{{slug}}/{what}"]["get"]["parameters"]}
        assert params["per_page"]["schema"]["maximum"] == 100
        assert params["page"]["schema"]["minimum"] == 1


def test_openapi_documents_the_400_answer(client, auth, world):
    doc = client.get("/api/v1/openapi.json").json
    login(auth, world, "officer")
    for what in ("requirements", "findings"):
        response = client.get(f"/api/v1/agencies/agency-a/{what}?page=abc")
        assert response.status_code == 400
        responses = doc["paths"][f"/agencies/{{slug}}/{what}"]["get"]["responses"]
        assert "400" in responses
        ref = responses["400"]["content"]["application/json"]["schema"]["$ref"]
        assert _validator(doc, ref).is_valid(response.json)
