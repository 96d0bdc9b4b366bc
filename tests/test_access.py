"""Scoping: outside a user's memberships every agency URL answers 404, byte-identical to a missing one.

The route matrix is built from the app's URL map, so a new route with an agency slug is covered
without touching this file; a route that takes other ids must be listed in OBJECT_ROUTES.
"""
import re

import pytest
import sqlalchemy as sa

from tests.factories import make_agency, make_module, make_requirement, make_user
from tracker.models import Requirement

# Route arguments other than the slug, filled with ids of agency B's objects. A route with an
# argument missing here fails the matrix, so every new route gets a row.
OBJECT_ARGS = ("req_id", "evidence_id", "period_id", "request_id", "doc_id", "version_id", "meeting_id", "rec_id",
               "file_id", "indicator_id")
PUBLIC_PREFIXES = ("/static", "/catalog", "/api/v1/catalog", "/login")


def _agency_rules(app):
    for rule in app.url_map.iter_rules():
        if "slug" in rule.arguments and not rule.rule.startswith("/public"):
            yield rule


def _page(response):
    """The body with the per-request CSRF token blanked (it embeds a timestamp)."""
    return re.sub(r'(X-CSRFToken": "|name="csrf_token" value=")[^"]+', r"\1", response.get_data(as_text=True))


def _fill(pattern, values):
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: str(values[m.group(1)]), pattern)


@pytest.fixture
def two_agencies(db):
    from datetime import date

    from tracker.models import Evidence, MonitoringPeriod

    module = make_module("cit")
    a, b = make_agency(slug="agency-a"), make_agency(slug="agency-b")
    req_b = make_requirement(b, module=module)
    evidence_b = Evidence(requirement_id=req_b.id, kind="link", title="B's evidence", url="https://example.org/b")
    period_b = MonitoringPeriod(agency_id=b.id, name="Report 1", start_date=date(2025, 1, 1),
                                end_date=date(2025, 6, 30))
    from tracker.models import DocumentRequest

    request_b = DocumentRequest(agency_id=b.id, number=1, title="B's request", due_date=date(2099, 1, 1),
                                original_due_date=date(2099, 1, 1), requirements=[req_b])
    db.session.add_all([evidence_b, period_b, request_b])
    db.session.flush()
    policy_b, version_b = _policy_of(b)
    meeting_b, file_b, rec_b = _committee_of(b)
    indicator_b = _indicator_of(b)
    users = {
        "officer": make_user("officer-a@example.test", role="officer", agency=a),
        "monitor": make_user("monitor-a@example.test", role="monitor", agency=a),
        "committee": make_user("committee-a@example.test", role="committee", agency=a),
    }
    db.session.commit()
    global OBJECT_ROUTES
    OBJECT_ROUTES = {"req_id": req_b.id, "evidence_id": evidence_b.id, "period_id": period_b.id,
                     "request_id": request_b.id, "doc_id": policy_b.id, "version_id": version_b.id,
                     "meeting_id": meeting_b.id, "file_id": file_b.id, "rec_id": rec_b.id,
                     "indicator_id": indicator_b.id}
    return a, b, req_b, users


OBJECT_ROUTES = {}


def _indicator_of(agency):
    """Issue 14: an indicator of the agency."""
    from tracker.extensions import db
    from tracker.models import Indicator

    indicator = Indicator(agency_id=agency.id, key="b-indicator", name="B's indicator")
    db.session.add(indicator)
    db.session.flush()
    return indicator


def _committee_of(agency):
    """Issue 14: the agency's committee meeting with a document, and a submitted recommendation."""
    from datetime import date, datetime

    from tracker.extensions import db
    from tracker.models import CommitteeRecommendation, DocumentFile, Meeting

    meeting = Meeting(agency_id=agency.id, title="B's meeting", starts_at=datetime(2026, 4, 2, 18, 0))
    meeting.documents = [DocumentFile(agency_id=agency.id, sha256="0" * 64, size_bytes=1, filename="b.pdf",
                                      media_type="application/pdf")]
    rec = CommitteeRecommendation(agency_id=agency.id, number=1, title="B's", body="B's", state="submitted",
                                  response_due=date(2099, 1, 1))
    db.session.add_all([meeting, rec])
    db.session.flush()
    return meeting, meeting.documents[0], rec


def _policy_of(agency):
    """Issue 16: a policy document of `agency` with one version (its file need not be stored)."""
    from tracker.extensions import db
    from tracker.models import DocumentFile, PolicyDocument, PolicyVersion

    doc = PolicyDocument(agency_id=agency.id, title="B's policy", kind="policy", state="draft", approval_ref="")
    file = DocumentFile(agency_id=agency.id, sha256="b" * 64, size_bytes=1, filename="b.pdf",
                        media_type="application/pdf")
    db.session.add_all([doc, file])
    db.session.flush()
    version = PolicyVersion(document_id=doc.id, number=1, file_id=file.id, note="")
    db.session.add(version)
    db.session.flush()
    return doc, version


@pytest.mark.parametrize("role", ["officer", "monitor", "committee"])
def test_every_agency_route_is_404_outside_membership(app, client, auth, two_agencies, role):
    a, b, req_b, users = two_agencies
    auth.login(users[role].email)
    rules = list(_agency_rules(app))
    assert rules, "expected agency-scoped routes"
    for rule in rules:
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            url_b = _fill(rule.rule, {"slug": "agency-b", **OBJECT_ROUTES})
            url_missing = _fill(rule.rule, {"slug": "no-such-agency", **OBJECT_ROUTES})
            if method == "GET":
                got, missing = client.get(url_b), client.get(url_missing)
            else:
                got = auth.post(url_b)
                missing = auth.post(url_missing)
            assert got.status_code == 404, f"{method} {url_b} as {role}: {got.status_code}"
            assert _page(got) == _page(missing), f"{method} {url_b} differs from a missing agency"
            if set(rule.arguments) & set(OBJECT_ARGS):
                # Own agency's slug with B's object id: still 404.
                url_mixed = _fill(rule.rule, {"slug": "agency-a", **OBJECT_ROUTES})
                mixed = client.get(url_mixed) if method == "GET" else auth.post(url_mixed)
                assert mixed.status_code == 404, f"{method} {url_mixed} as {role}: {mixed.status_code}"
    # Own agency is reachable.
    assert client.get("/agencies/agency-a").status_code == 200


def test_admin_routes_are_404_for_non_admins(app, client, auth, two_agencies):
    a, b, req_b, users = two_agencies
    auth.login(users["officer"].email)
    admin_rules = [r for r in app.url_map.iter_rules() if r.rule.startswith("/admin")]
    assert admin_rules
    for rule in admin_rules:
        url = _fill(rule.rule, {"slug": "agency-a", "user_id": 1, "membership_id": 1, "action": "unlock"})
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.get(url) if method == "GET" else auth.post(url)
            assert response.status_code == 404, f"{method} {url}: {response.status_code}"


def test_anonymous_users_are_sent_to_sign_in(app, client, two_agencies):
    for rule in _agency_rules(app):
        if "GET" in rule.methods:
            response = client.get(_fill(rule.rule, {"slug": "agency-a", **OBJECT_ROUTES}))
            if rule.rule.startswith("/api/"):
                assert response.status_code == 401, rule.rule
                assert response.json["error"] == "authentication required"
            else:
                assert response.status_code == 302, rule.rule
                assert response.headers["Location"].startswith("/login")


def test_get_scoped_or_404_refuses_other_agencies_rows(app, db, two_agencies):
    from werkzeug.exceptions import NotFound

    from tracker.access import get_scoped_or_404

    a, b, req_b, users = two_agencies
    with pytest.raises(NotFound):
        get_scoped_or_404(Requirement, req_b.id, a)
    assert get_scoped_or_404(Requirement, req_b.id, b).id == req_b.id


def test_removed_membership_takes_effect_on_next_request(client, auth, db, two_agencies):
    from tracker.models import Membership
    from tracker.services import accounts

    a, b, req_b, users = two_agencies
    auth.login(users["officer"].email)
    assert client.get("/agencies/agency-a").status_code == 200
    membership = db.session.execute(sa.select(Membership).where(Membership.user_id == users["officer"].id)).scalar_one()
    accounts.remove_membership(membership)
    db.session.commit()
    assert client.get("/agencies/agency-a").status_code == 404


def test_route_matrix_is_not_empty_of_public_routes(app):
    rules = [r.rule for r in app.url_map.iter_rules()]
    for prefix in PUBLIC_PREFIXES:
        assert any(r.startswith(prefix) for r in rules), prefix
