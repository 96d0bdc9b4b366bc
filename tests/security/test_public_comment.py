"""The public comment form on a policy (issue 16): the one form of the app anyone may send without signing in.

- XSS (T17): hostile name, reference and comment, and hostile text through every policy form, render as text on
  every page that shows them; a web address in a comment is never made a live link.
- CSRF (T14): no token, another session's token, or a cross-site page over HTTPS: 400 and nothing written.
- Rate limit (T07): five comments an hour per address (PUBLIC_COMMENT_RATE_LIMIT); the sixth is 429 and
  writes nothing; another address is not held back.
- Size (T09): a name, reference or comment over its limit is refused with a message naming the field; a body
  past the request limit is 413; a NUL byte is 400; nothing is written.
"""
import io
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import csrf_from
from tests.security.conftest import PDF, changed_tables, injection_problems, signed_in, table_digests
from tests.security.test_xss import EVALUATED, value
from tracker.models import PolicyComment
from tracker.services import policies

pytestmark = pytest.mark.security

HTTPS = "https://localhost"
LINK = "https://evil.example/phish"


def _form_url(world):
    return f"/public/agency-a/policies/{world['public_policy'].id}/comment"


def _visitor(app, address="127.0.0.1", base_url="http://localhost"):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    token = csrf_from(client.get("/login", base_url=base_url).get_data(as_text=True))
    return client, token


def _send(client, token, world, base_url="http://localhost", headers=None, **fields):
    data = {"public_name": "", "anchor": "", "body": "A comment.", **fields}
    if token is not None:
        data["csrf_token"] = token
    return client.post(_form_url(world), data=data, base_url=base_url, headers=headers or {})


def _comments(db):
    db.session.commit()
    return db.session.scalar(sa.select(sa.func.count()).select_from(PolicyComment))


def _problems(html, where, expected):
    found = [f"{where}: {p}" for p in injection_problems(html)]
    if EVALUATED.search(html):
        found.append(f"{where}: template syntax evaluated")
    found += [f"{where}: {t[:30]!r} missing" for t in expected if t.replace("&", "&amp;").replace("<", "&lt;")
              .replace(">", "&gt;").replace('"', "&#34;").replace("'", "&#39;") not in html]
    if f'href="{LINK}' in html:
        found.append(f"{where}: a live link to {LINK}")
    return found


def test_hostile_public_text_is_text_before_and_after_moderation(app, db, world):
    client, token = _visitor(app)
    body = value("public-body") + " " + LINK
    response = _send(client, token, world, public_name=value("public-name")[:100], anchor=value("public-anchor"),
                     body=body)
    assert response.status_code == 303
    comment = db.session.execute(sa.select(PolicyComment)).scalar_one()
    assert comment.state == "pending" and comment.author_id is None
    doc_url = f"/agencies/agency-a/policies/{world['public_policy'].id}"
    officer, committee = signed_in(app, "officer@example.test"), signed_in(app, "committee@example.test")
    problems = _problems(officer.client.get(doc_url).get_data(as_text=True), "moderation queue",
                         [body, value("public-anchor")])
    assert body not in client.get(_form_url(world)).get_data(as_text=True)  # not published yet
    assert body not in committee.client.get(doc_url).get_data(as_text=True)
    assert officer.post(doc_url + "/moderation", {"comment_id": str(comment.id), "decision": "published"}
                        ).status_code == 303
    problems += _problems(client.get(_form_url(world)).get_data(as_text=True), "public page", [body])
    problems += _problems(committee.client.get(doc_url).get_data(as_text=True), "committee", [body])
    refused = _send(client, token, world, body=value("again") + "x" * 4000)
    problems += _problems(refused.get_data(as_text=True), "422 answer", [])
    assert refused.status_code == 422
    assert not problems, "\n".join(problems)


def test_hostile_text_in_every_policy_form_renders_as_text(app, db, world):
    officer, monitor = signed_in(app, "officer@example.test"), signed_in(app, "monitor@example.test")
    admin, committee = signed_in(app, "admin@example.test"), signed_in(app, "committee@example.test")
    r = officer.post("/agencies/agency-a/policies", {"title": value("pol-title"), "kind": "policy",
                                                     "requirement_ids": [str(world["req"].id)]})
    doc_url = r.headers["Location"]
    officer.post(doc_url + "/versions", {"file": (io.BytesIO(PDF + b"%x"), "v1.pdf"),
                                         "note": value("pol-note")}, content_type="multipart/form-data")
    assert officer.post(doc_url + "/rounds", {"comment_due": "", "outside_reviewers": value("pol-reviewers")}
                        ).status_code == 303
    problems = _problems(officer.client.get(doc_url).get_data(as_text=True), "round", [value("pol-reviewers")])
    assert monitor.post(doc_url + "/comments", {"channel": "round", "anchor": value("pol-anchor"),
                                                "body": value("pol-comment") + " " + LINK}).status_code == 303
    assert monitor.post(doc_url + "/rounds/close", {"outcome": "comments_to_address"}).status_code == 303
    today = policies.today()
    assert officer.post(doc_url + "/windows", {"opens_on": today.isoformat(),
                                               "closes_on": (today + timedelta(days=9)).isoformat()}
                        ).status_code == 303
    window_id = re.search(r'name="window_id" value="(\d+)"', officer.client.get(doc_url).get_data(as_text=True))
    assert officer.post(doc_url + "/windows/summary", {"window_id": window_id.group(1),
                                                       "summary": value("pol-summary")}).status_code == 303
    assert admin.post(doc_url + "/approval", {"approval_kind": "court_order", "approved_on": today.isoformat(),
                                              "approval_ref": value("pol-ref"), "effective_on": today.isoformat()}
                      ).status_code == 303
    assert officer.post(doc_url + "/training", {"population": value("pol-population"), "population_size": "10",
                                                "target_pct": "90"}).status_code == 303
    texts = [value(t) for t in ("pol-title", "pol-note", "pol-anchor", "pol-summary", "pol-ref", "pol-population")]
    problems += _problems(officer.client.get(doc_url).get_data(as_text=True), "document", texts)
    problems += _problems(committee.client.get(doc_url).get_data(as_text=True), "committee",
                          [value("pol-title"), value("pol-summary")])
    for url in ("/agencies/agency-a/policies", f"/agencies/agency-a/requirements/{world['req'].id}",
                "/agencies/agency-a/status-report"):
        problems += _problems(officer.client.get(url).get_data(as_text=True), url, [value("pol-title")])
    problems += _problems(officer.client.get("/agencies/agency-a/dashboard").get_data(as_text=True), "dashboard", [])
    assert not problems, "\n".join(problems)


def test_the_form_needs_this_sessions_token(app, db, world):
    client, token = _visitor(app)
    other, other_token = _visitor(app)
    before = table_digests(db)
    assert _send(client, None, world).status_code == 400
    assert _send(client, other_token, world).status_code == 400
    assert _send(client, "x" + token[1:], world).status_code == 400
    assert changed_tables(before, table_digests(db)) == []
    assert _send(client, token, world).status_code == 303


@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example", "Referer": "https://evil.example/a.html"},
                                     {"Origin": "null"}, {}], ids=["foreign", "null-origin", "no-referer"])
def test_a_cross_site_post_over_https_is_refused_even_with_a_token(make_app, db, world, headers):
    app = make_app(SESSION_COOKIE_SECURE=True, SESSION_COOKIE_NAME="__Host-session")
    client, token = _visitor(app, base_url=HTTPS)
    before = table_digests(db)
    assert _send(client, token, world, base_url=HTTPS, headers=headers).status_code == 400
    assert changed_tables(before, table_digests(db)) == []
    same_site = {"Referer": f"{HTTPS}{_form_url(world)}"}
    assert _send(client, token, world, base_url=HTTPS, headers=same_site).status_code == 303


def test_five_comments_an_hour_per_address(app, db, world):
    client, token = _visitor(app, "203.0.113.7")
    for n in range(5):
        assert _send(client, token, world, body=f"Comment {n}.").status_code == 303, n
    before = table_digests(db)
    refused = _send(client, token, world, body="One too many.")
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert changed_tables(before, table_digests(db)) == []
    neighbour, neighbour_token = _visitor(app, "203.0.113.8")
    assert _send(neighbour, neighbour_token, world).status_code == 303
    assert _comments(db) == 6


def test_oversized_fields_are_refused_and_write_nothing(app, db, world):
    client, token = _visitor(app)
    before = table_digests(db)
    cases = {"public_name": ("n" * 101, "The name must be at most 100 characters."),
             "anchor": ("a" * 201, "The section or page reference must be at most 200 characters."),
             "body": ("b" * 4001, "The comment must be at most 4,000 characters.")}
    for field, (text, message) in cases.items():
        response = _send(client, token, world, **{field: text})
        html = response.get_data(as_text=True)
        assert response.status_code == 422 and message in html, field
        assert f'id="pc-{field}-error"' in html
    assert _send(client, token, world, body="   ").status_code == 422
    app.config["MAX_CONTENT_LENGTH"] = 100_000
    assert _send(client, token, world, body="x" * 200_000).status_code == 413
    app.config["MAX_CONTENT_LENGTH"] = 25 * 1024 * 1024
    assert _send(client, token, world, body="a\x00b").status_code == 400
    assert changed_tables(before, table_digests(db)) == []
    assert _send(client, token, world, body="b" * 4000).status_code == 303
