"""Route x role for every issue-16 route: who reads each page, who may send each form (an empty form from an
allowed role is refused with 422 naming what is missing, never a 403 or a 500), who gets 403, and that anyone
outside the agency gets 404 and an anonymous visitor the sign-in page. The public comment pages answer anyone
while the window is open to the public and 404 otherwise."""
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import Auth, csrf_from
from tests.policy_builders import sign_in, staged
from tracker.models import PolicyComment, PolicyDocument
from tracker.services import policies

ROLES = ("officer", "monitor", "committee", "admin")
EMAILS = {"officer": "officer@example.test", "monitor": "monitor@example.test",
          "committee": "committee@example.test", "admin": "admin@example.test",
          "outsider": "officer-b@example.test"}
EVERY_MEMBER = set(ROLES)
DEPARTMENT = {"officer", "admin"}
# (endpoint, URL suffix after /agencies/agency-a, roles that may send it); each is sent empty, but for a round's
# bad deadline (an empty one means the default).
WRITES = [
    ("policies.create", "/policies", DEPARTMENT),
    ("policies.edit", "/policies/{doc}/edit", DEPARTMENT),
    ("policies.add_version", "/policies/{doc}/versions", DEPARTMENT),
    ("policies.open_round", "/policies/{doc}/rounds", {"officer", "monitor", "admin"}),
    ("policies.close_round", "/policies/{doc}/rounds/close", {"monitor", "admin"}),
    ("policies.comment", "/policies/{doc}/comments", {"monitor", "committee", "admin"}),
    ("policies.moderate", "/policies/{doc}/moderation", DEPARTMENT),
    ("policies.open_window", "/policies/{doc}/windows", DEPARTMENT),
    ("policies.window_summary", "/policies/{doc}/windows/summary", DEPARTMENT),
    ("policies.approve", "/policies/{doc}/approval", {"admin"}),
    ("policies.supersede", "/policies/{doc}/supersede", DEPARTMENT),
    ("policies.create_plan", "/policies/{doc}/training", DEPARTMENT),
    ("policies.import_training", "/policies/{doc}/training/import", DEPARTMENT),
]
READS = [
    ("policies.index", "/policies", EVERY_MEMBER),
    ("policies.document", "/policies/{doc}", EVERY_MEMBER),
    ("policies.download", "/policies/{doc}/versions/{version}/file", EVERY_MEMBER),
    ("status_report.page", "/status-report", DEPARTMENT),
    ("status_report.docx", "/status-report.docx", DEPARTMENT),
    ("status_report.pdf", "/status-report.pdf", DEPARTMENT),
]


@pytest.fixture
def doc(db, pol):
    """A draft with one version, open for committee and public comment."""
    users = pol["users"]
    document = policies.create_document(pol["a"], {"title": "GO 4.12", "kind": "policy"}, actor=users["officer"])
    policies.add_version(document, staged(), "", {}, actor=users["officer"])
    today = policies.today()
    policies.open_window(document, pol["a"], today, today + timedelta(days=10), True, actor=users["admin"])
    db.session.commit()
    return document


def _url(pattern, doc):
    return "/agencies/agency-a" + pattern.format(doc=doc.id, version=doc.versions[0].id)


def _count(db, model):
    db.session.commit()
    return db.session.execute(sa.select(sa.func.count()).select_from(model)).scalar()


def _anonymous(app):
    auth = Auth(app.test_client())
    auth.token = csrf_from(auth.client.get("/login").get_data(as_text=True))
    return auth


def test_every_new_route_is_in_the_matrix(app):
    ours = {rule.endpoint for rule in app.url_map.iter_rules()
            if rule.endpoint.split(".")[0] in ("policies", "status_report", "public_comments")}
    listed = {e for e, _u, _r in WRITES + READS} | {"public_comments.form", "public_comments.submit",
                                                  "public_comments.document_file"}
    assert ours == listed


def test_reads_by_role(app, db, pol, doc):
    callers = {role: sign_in(app, EMAILS[role]).client for role in (*ROLES, "outsider")}
    anonymous = app.test_client()
    for endpoint, pattern, allowed in READS:
        url = _url(pattern, doc)
        for role, client in callers.items():
            response = client.get(url)
            expected = 404 if role == "outsider" else 200 if role in allowed else 403
            assert response.status_code == expected, (endpoint, role, response.status_code)
            response.close()
        response = anonymous.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login"), endpoint


def test_writes_by_role(app, db, pol, doc):
    callers = {role: sign_in(app, EMAILS[role]) for role in (*ROLES, "outsider")}
    anonymous = _anonymous(app)
    before = (_count(db, PolicyDocument), _count(db, PolicyComment))
    for endpoint, pattern, allowed in WRITES:
        url = _url(pattern, doc)
        data = {"comment_due": "not a date"} if endpoint == "policies.open_round" else {}
        for role, auth in callers.items():
            response = auth.post(url, data)
            expected = 404 if role == "outsider" else 422 if role in allowed else 403
            assert response.status_code == expected, (endpoint, role, response.status_code)
        response = anonymous.post(url, {})
        assert response.status_code == 302 and response.headers["Location"].startswith("/login"), endpoint
    assert (_count(db, PolicyDocument), _count(db, PolicyComment)) == before


def test_public_comment_pages_answer_anyone_only_while_open_to_the_public(app, db, pol, doc):
    app.config["PUBLIC_COMMENT_RATE_LIMIT"] = "100 per hour"  # tests/security/test_public_comment.py: the limit
    base = f"/public/agency-a/policies/{doc.id}"
    callers = {"anonymous": _anonymous(app), **{role: sign_in(app, EMAILS[role]) for role in ("committee",
                                                                                               "outsider")}}
    for who, auth in callers.items():
        assert auth.client.get(base + "/comment").status_code == 200, who
        download = auth.client.get(base + "/document")
        assert download.status_code == 200 and download.headers["Content-Disposition"].startswith("attachment")
        download.close()
        assert auth.post(base + "/comment", {"body": ""}).status_code == 422, who
        assert auth.post(base + "/comment", {"body": f"From {who}."}).status_code == 303, who
    assert _count(db, PolicyComment) == 3
    other = policies.create_document(pol["a"], {"title": "Not open", "kind": "policy"}, actor=pol["users"]["officer"])
    db.session.commit()
    anonymous = callers["anonymous"]
    for url in (f"/public/agency-a/policies/{other.id}/comment", f"/public/agency-a/policies/{other.id}/document",
                f"/public/agency-b/policies/{doc.id}/comment", "/public/agency-a/policies/999999/comment"):
        assert anonymous.client.get(url).status_code == 404, url
    assert anonymous.post(f"/public/agency-a/policies/{other.id}/comment", {"body": "x"}).status_code == 404
    pol["a"].public_enabled = False
    db.session.commit()
    assert anonymous.client.get(base + "/comment").status_code == 404
    assert anonymous.post(base + "/comment", {"body": "Still here?"}).status_code == 404
    assert _count(db, PolicyComment) == 3
