"""Monitor review of evidence: the queue, accept/return, the officer's returned list, new versions (issue 4, item 1)."""
import hashlib
import io
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.factories import make_agency, make_module, make_requirement, make_user
from tracker.models import AuditEvent, Comment, Evidence, EvidenceReview, Membership, Requirement, utcnow
from tracker.services import audit

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PDF_V2 = b"%PDF-1.4\n1 0 obj << /Type /Catalog /V 2 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


# --- fixtures and helpers ----------------------------------------------------------------------

@pytest.fixture
def rv(db):
    """Agencies A and B (Mona monitors both), C next door with its own monitor; two modules."""
    cit = make_module("cit", "Crisis Intervention Teams", 1)
    data = make_module("data", "Data Collection", 2)
    a = make_agency(slug="agency-a", name="Harbor City PD")
    b = make_agency(slug="agency-b", name="Lakeside PD")
    c = make_agency(slug="agency-c", name="Other Town PD")
    users = {
        "officer": make_user("officer@example.test", role="officer", agency=a, name="Olive Officer"),
        "officer2": make_user("officer2@example.test", role="officer", agency=a, name="Oscar Second"),
        "monitor": make_user("monitor@example.test", role="monitor", agency=a, name="Mona Monitor"),
        "committee": make_user("committee@example.test", role="committee", agency=a, name="Cole Committee"),
        "officer_b": make_user("officer-b@example.test", role="officer", agency=b, name="Bea Lakeside"),
        "monitor_c": make_user("monitor-c@example.test", role="monitor", agency=c, name="Max Elsewhere"),
        "nobody": make_user("nobody@example.test", name="No Memberships"),
        "admin": make_user("admin@example.test", is_admin=True, name="Ada Admin"),
    }
    db.session.add(Membership(user_id=users["monitor"].id, agency_id=b.id, role="monitor"))
    reqs = {
        "crisis": make_requirement(a, module=cit, code="CIT-001", title="Crisis line staffing",
                                   summary="Staff the crisis line around the clock."),
        "data": make_requirement(a, module=data, code="DAT-001", title="Publish use-of-force data"),
        "b": make_requirement(b, module=cit, code="CIT-001", title="Lakeside crisis line"),
        "c": make_requirement(c, module=cit, code="CIT-001", title="Other town crisis line"),
    }
    db.session.commit()
    return {"a": a, "b": b, "c": c, "cit": cit, "data": data, "users": users, "reqs": reqs}


def _login(auth, rv, role):
    auth.login(rv["users"][role].email)


def _evidence(db, req, title, *, days_ago=0, state="submitted", superseded=False, uploader=None, **kw):
    evidence = Evidence(requirement_id=req.id, kind="link", title=title, url="https://example.org/e",
                        uploaded_by_id=uploader.id if uploader else None, review_state=state,
                        superseded=superseded, created_at=utcnow() - timedelta(days=days_ago, minutes=1), **kw)
    db.session.add(evidence)
    db.session.flush()
    return evidence


def _titles(html):
    """Evidence titles in the queue, in page order."""
    return re.findall(r">Review “([^”]*)”</a>", html)


def _counts(html):
    stats = re.search(r'<ul class="tracker-stats" aria-label="Waiting items by agency">(.*?)</ul>', html, re.S)
    return dict((name, int(n)) for name, n in re.findall(r"<li>([^<:]+): <strong>(\d+)</strong></li>", stats.group(1)))


def _review_url(evidence, slug="agency-a"):
    return f"/agencies/{slug}/evidence/{evidence.id}/review"


def _audits(db, *actions):
    """Audit events other than sign-ins and sign-outs, oldest first."""
    query = sa.select(AuditEvent).where(AuditEvent.action.not_like("auth.%")).order_by(AuditEvent.id)
    if actions:
        query = query.where(AuditEvent.action.in_(actions))
    return db.session.execute(query).scalars().all()


def _count(db, model, *where):
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _state(db, evidence_id):
    db.session.expire_all()
    evidence = db.session.get(Evidence, evidence_id)
    return evidence.review_state, evidence.superseded


def _flashes(html):
    return re.findall(r'<p class="usa-alert__text">(.*?)</p>', html, re.S)


def _upload(auth, url, filename, content, **fields):
    data = {"kind": "file", "title": fields.pop("title", "Evidence title"), "description": "",
            "visibility": "restricted", **fields, "file": (io.BytesIO(content), filename)}
    return auth.post(url, data, content_type="multipart/form-data")


# --- the queue ---------------------------------------------------------------------------------

def test_queue_lists_submitted_current_evidence_of_assigned_agencies_oldest_first(client, auth, db, rv):
    reqs, officer = rv["reqs"], rv["users"]["officer"]
    _evidence(db, reqs["crisis"], "A middle", days_ago=5, uploader=officer)
    _evidence(db, reqs["b"], "B oldest", days_ago=40, uploader=rv["users"]["officer_b"])
    _evidence(db, reqs["data"], "A newest", days_ago=0)
    _evidence(db, reqs["crisis"], "A accepted", days_ago=50, state="accepted")
    _evidence(db, reqs["crisis"], "A returned", days_ago=50, state="returned")
    _evidence(db, reqs["crisis"], "A superseded", days_ago=60, superseded=True)
    _evidence(db, reqs["c"], "C not assigned", days_ago=70)
    db.session.commit()
    _login(auth, rv, "monitor")
    r = client.get("/reviews")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert _titles(html) == ["B oldest", "A middle", "A newest"]
    assert "3 items shown, oldest first." in html
    assert _counts(html) == {"Harbor City PD": 2, "Lakeside PD": 1}  # only agencies the monitor is assigned to
    assert "Other Town PD" not in html
    assert "Olive Officer" in html  # who submitted it
    assert "40 day(s) waiting" in html
    # Nav: the monitor's waiting count.
    assert re.search(r'Review queue <span class="tracker-nav__count">3</span>', html)


def test_queue_filters_by_agency_module_and_age(client, auth, db, rv):
    reqs = rv["reqs"]
    _evidence(db, reqs["crisis"], "A cit 40d", days_ago=40)
    _evidence(db, reqs["crisis"], "A cit 10d", days_ago=10)
    _evidence(db, reqs["data"], "A data 3d", days_ago=3)
    _evidence(db, reqs["data"], "A data 8d", days_ago=8)
    _evidence(db, reqs["b"], "B cit 31d", days_ago=31)
    _evidence(db, reqs["b"], "B cit today", days_ago=0)
    db.session.commit()
    _login(auth, rv, "monitor")
    cases = {
        "": ["A cit 40d", "B cit 31d", "A cit 10d", "A data 8d", "A data 3d", "B cit today"],
        "?agency=agency-a": ["A cit 40d", "A cit 10d", "A data 8d", "A data 3d"],
        "?agency=agency-b": ["B cit 31d", "B cit today"],
        "?module=data": ["A data 8d", "A data 3d"],
        "?module=cit": ["A cit 40d", "B cit 31d", "A cit 10d", "B cit today"],
        "?age=7": ["A cit 40d", "B cit 31d", "A cit 10d", "A data 8d"],
        "?age=30": ["A cit 40d", "B cit 31d"],
        "?agency=agency-a&module=cit&age=30": ["A cit 40d"],
        "?agency=agency-b&module=data": [],
    }
    for query, expected in cases.items():
        r = client.get("/reviews" + query)
        assert r.status_code == 200, query
        html = r.get_data(as_text=True)
        assert _titles(html) == expected, query
        # Counts per agency are the whole queue's, whatever the filter.
        assert _counts(html) == {"Harbor City PD": 4, "Lakeside PD": 2}, query
        assert "Unknown filter value ignored" not in html, query
    html = client.get("/reviews?agency=agency-b&module=data").get_data(as_text=True)
    assert "Nothing is waiting for review." in html
    # The chosen filters stay selected.
    html = client.get("/reviews?agency=agency-a&module=cit&age=30").get_data(as_text=True)
    assert '<option value="agency-a" selected>' in html and '<option value="cit" selected>' in html
    assert '<option value="30" selected>' in html


UNKNOWN_FILTERS = [
    ("agency=no-such-agency", "agency"),
    ("agency=agency-c", "agency"),  # exists, but the monitor is not assigned to it
    ("module=nope", "module"),
    ("age=3", "age"),
    ("age=abc", "age"),
    ("age=-1", "age"),
    ("agency=%3Cscript%3E&module=%27%3B--&age=99999999999999999999", "agency, module, age"),
]


def test_queue_unknown_filter_values_are_ignored_with_a_notice(client, auth, db, rv):
    _evidence(db, rv["reqs"]["crisis"], "A item", days_ago=1)
    _evidence(db, rv["reqs"]["b"], "B item", days_ago=2)
    _evidence(db, rv["reqs"]["c"], "C item", days_ago=3)
    db.session.commit()
    _login(auth, rv, "monitor")
    for query, ignored in UNKNOWN_FILTERS:
        r = client.get("/reviews?" + query)
        assert r.status_code == 200, query
        html = r.get_data(as_text=True)
        assert f"Unknown filter value ignored: {ignored}." in html, query
        assert _titles(html) == ["B item", "A item"], query  # the filter is dropped, the rest of the queue shows
        assert "<script>" not in html


def test_queue_is_404_for_someone_who_is_not_a_monitor_anywhere(client, auth, db, rv):
    _evidence(db, rv["reqs"]["crisis"], "A item")
    db.session.commit()
    for role in ("officer", "committee", "nobody"):
        _login(auth, rv, role)
        assert client.get("/reviews").status_code == 404, role
        assert client.get("/reviews?agency=agency-a").status_code == 404, role
        home = client.get("/").get_data(as_text=True)
        assert "Review queue" not in home, role
        auth.logout()


def test_queue_needs_a_login(client, db, rv):
    r = client.get("/reviews")
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=/reviews?"


def test_admin_sees_every_agency_in_the_queue(client, auth, db, rv):
    _evidence(db, rv["reqs"]["crisis"], "A item", days_ago=1)
    _evidence(db, rv["reqs"]["c"], "C item", days_ago=2)
    db.session.commit()
    _login(auth, rv, "admin")
    html = client.get("/reviews").get_data(as_text=True)
    assert _titles(html) == ["C item", "A item"]


@pytest.mark.parametrize("page_cache", [True, False], ids=["page-cache", "cold"])
def test_the_navigation_count_stops_at_its_cap_and_the_queue_gives_the_exact_figure(app, client, auth, db, rv,
                                                                                    monkeypatch, page_cache):
    from tracker.services import reviews

    if not page_cache:
        app.config["PAGE_CACHE_ENTRIES"] = 0
    monkeypatch.setattr(reviews, "NAV_CAP", 2)
    _evidence(db, rv["reqs"]["crisis"], "A item", days_ago=1)
    _evidence(db, rv["reqs"]["c"], "C item", days_ago=2)
    db.session.commit()
    _login(auth, rv, "admin")
    assert re.search(r'Review queue <span class="tracker-nav__count">2</span>', client.get("/reviews").get_data(
        as_text=True))
    _evidence(db, rv["reqs"]["b"], "B item", days_ago=3)
    db.session.commit()
    app.extensions["fragment_cache"].clear()  # written around the app: no audit event to invalidate the cache
    html = client.get("/reviews").get_data(as_text=True)
    assert re.search(r'Review queue <span class="tracker-nav__count">2\+</span><span class="usa-sr-only"> items '
                     r'waiting', html)
    assert "3 items shown, oldest first." in html  # the queue itself counts them all
    auth.logout()
    _login(auth, rv, "monitor")  # two agencies, two items: under the cap, exact
    assert re.search(r'Review queue <span class="tracker-nav__count">2</span>', client.get("/").get_data(
        as_text=True))


# --- the review page ---------------------------------------------------------------------------

def test_review_page_shows_file_sha256_period_versions_and_the_requirement(client, auth, db, rv):
    req = rv["reqs"]["crisis"]
    _login(auth, rv, "officer")
    r = _upload(auth, f"/agencies/agency-a/requirements/{req.id}/evidence", "roster.pdf", PDF,
                title="Crisis line roster", period_start="2026-01-01", period_end="2026-03-31")
    assert r.status_code == 303
    v1 = db.session.execute(sa.select(Evidence)).scalar_one()
    auth.logout()

    _login(auth, rv, "monitor")
    r = auth.post(_review_url(v1), {"decision": "return", "comment": "The March roster is missing"})
    assert r.status_code == 303
    auth.logout()

    _login(auth, rv, "officer")
    r = _upload(auth, f"/agencies/agency-a/evidence/{v1.id}/versions", "roster-v2.pdf", PDF_V2,
                title="Crisis line roster v2", period_start="2026-01-01", period_end="2026-03-31")
    assert r.status_code == 303
    v2 = db.session.execute(sa.select(Evidence).where(Evidence.supersedes_id == v1.id)).scalar_one()
    auth.logout()

    _login(auth, rv, "monitor")
    r = client.get(_review_url(v2))
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    sha1, sha2 = hashlib.sha256(PDF).hexdigest(), hashlib.sha256(PDF_V2).hexdigest()
    assert f'href="/agencies/agency-a/evidence/{v2.id}/download">Download roster-v2.pdf</a>' in html
    assert f'<dd class="tracker-mono">{sha2}</dd>' in html
    assert "<dt>Period covered</dt><dd>Jan 1, 2026 – Mar 31, 2026</dd>" in html
    assert "Olive Officer" in html
    # Both versions, newest first, with the earlier decision and its comment.
    versions = re.search(r"<h3>Versions</h3>(.*?)</ol>", html, re.S).group(1)
    assert versions.index(sha2) < versions.index(sha1)
    assert "Returned: “The March roster is missing”" in versions and "Submitted" in versions
    # The requirement it supports.
    assert "CIT-001: Crisis line staffing" in html and "Staff the crisis line around the clock." in html
    assert f'href="/agencies/agency-a/requirements/{req.id}"' in html
    # The decision form for the current item.
    assert 'name="decision" value="accept"' in html and 'name="decision" value="return"' in html
    # The monitor can download the file and check it against the SHA-256 shown.
    with client.get(f"/agencies/agency-a/evidence/{v2.id}/download") as download:
        assert download.status_code == 200 and download.get_data() == PDF_V2
        assert download.headers["X-Evidence-SHA256"] == sha2
    # The old version has no decision form any more.
    old = client.get(_review_url(v1)).get_data(as_text=True)
    assert 'name="decision"' not in old


def test_review_page_for_a_link_without_a_period(client, auth, db, rv):
    evidence = _evidence(db, rv["reqs"]["crisis"], "Policy page")
    db.session.commit()
    _login(auth, rv, "monitor")
    html = client.get(_review_url(evidence)).get_data(as_text=True)
    assert 'href="https://example.org/e" rel="noopener noreferrer nofollow"' in html
    assert "<dt>Period covered</dt><dd>Not given</dd>" in html
    assert "SHA-256" not in html and "<h3>Versions</h3>" not in html


# --- decisions ---------------------------------------------------------------------------------

def test_accept(client, auth, db, rv):
    evidence = _evidence(db, rv["reqs"]["crisis"], "Roster", uploader=rv["users"]["officer"])
    db.session.commit()
    _login(auth, rv, "monitor")
    before = len(_audits(db))
    r = auth.post(_review_url(evidence), {"decision": "accept", "comment": "  Complete.  "})
    assert r.status_code == 303 and r.headers["Location"].endswith("/reviews")
    assert _state(db, evidence.id) == ("accepted", False)
    review = db.session.execute(sa.select(EvidenceReview)).scalar_one()
    assert (review.evidence_id, review.reviewer_id, review.decision, review.comment) == (
        evidence.id, rv["users"]["monitor"].id, "accepted", "Complete.")
    events = _audits(db)
    assert len(events) == before + 1
    event = events[-1]
    assert event.action == "evidence.accept" and event.object_type == "evidence"
    assert event.object_id == str(evidence.id) and event.agency_id == rv["a"].id
    assert event.actor_id == rv["users"]["monitor"].id
    assert event.before == {"review_state": "submitted"} and event.after["review_state"] == "accepted"
    html = client.get("/reviews").get_data(as_text=True)
    assert "“Roster” accepted." in html
    assert _titles(html) == []
    # Accepting needs no comment.
    other = _evidence(db, rv["reqs"]["crisis"], "Other")
    db.session.commit()
    assert auth.post(_review_url(other), {"decision": "accept"}).status_code == 303
    assert _state(db, other.id) == ("accepted", False)


def test_return_without_a_comment_is_refused_and_changes_nothing(client, auth, db, rv):
    evidence = _evidence(db, rv["reqs"]["crisis"], "Roster")
    db.session.commit()
    _login(auth, rv, "monitor")
    before = len(_audits(db))
    message = "Say what is missing or wrong: a comment is required to return evidence."
    for data in ({"decision": "return", "comment": ""}, {"decision": "return", "comment": "   "},
                 {"decision": "return", "comment": "\n\t"}, {"decision": "return"}):
        r = auth.post(_review_url(evidence), data)
        assert r.status_code == 422, data
        html = r.get_data(as_text=True)
        assert f'<span class="usa-error-message" id="comment-error">{message}</span>' in html, data
        assert "Not saved: " + message in html, data
    assert _state(db, evidence.id) == ("submitted", False)
    assert _count(db, EvidenceReview) == 0 and len(_audits(db)) == before
    assert _titles(client.get("/reviews").get_data(as_text=True)) == ["Roster"]


def test_return_without_a_comment_via_the_service_is_refused(app, db, rv):
    from tracker.services import reviews
    from tracker.services.errors import ValidationFailed

    evidence = _evidence(db, rv["reqs"]["crisis"], "Roster")
    with pytest.raises(ValidationFailed) as exc:
        reviews.return_(evidence, None, actor=rv["users"]["monitor"])
    assert "comment" in exc.value.errors and evidence.review_state == "submitted"


BAD_DECISIONS = [
    ({"decision": "maybe"}, "Choose Accept or Return."),
    ({}, "Choose Accept or Return."),
    ({"decision": "accept", "comment": "x" * 4001}, "The comment must be at most 4000 characters."),
    ({"decision": "return", "comment": "x" * 4001}, "The comment must be at most 4000 characters."),
]


def test_bad_decisions_are_refused_and_change_nothing(client, auth, db, rv):
    evidence = _evidence(db, rv["reqs"]["crisis"], "Roster")
    db.session.commit()
    _login(auth, rv, "monitor")
    before = len(_audits(db))
    for data, message in BAD_DECISIONS:
        r = auth.post(_review_url(evidence), data)
        assert r.status_code == 422, message
        assert message in r.get_data(as_text=True)
    assert _state(db, evidence.id) == ("submitted", False)
    assert _count(db, EvidenceReview) == 0 and len(_audits(db)) == before


def test_return_with_a_comment(client, auth, db, rv):
    evidence = _evidence(db, rv["reqs"]["crisis"], "Roster", uploader=rv["users"]["officer"])
    db.session.commit()
    _login(auth, rv, "monitor")
    r = auth.post(_review_url(evidence), {"decision": "return", "comment": "Add the March roster"})
    assert r.status_code == 303
    assert _state(db, evidence.id) == ("returned", False)
    review = db.session.execute(sa.select(EvidenceReview)).scalar_one()
    assert (review.decision, review.comment, review.reviewer_id) == (
        "returned", "Add the March roster", rv["users"]["monitor"].id)
    event = _audits(db)[-1]
    assert event.action == "evidence.return" and event.agency_id == rv["a"].id
    assert event.after == {"review_state": "returned", "comment": "Add the March roster"}
    assert len(_audits(db, "evidence.return", "evidence.accept")) == 1
    html = client.get("/reviews").get_data(as_text=True)
    assert "“Roster” returned to the agency." in html and _titles(html) == []
    assert audit.verify_chain()[1] is None


def test_deciding_twice_is_refused(client, auth, db, rv):
    pairs = [("accept", "accept"), ("accept", "return"), ("return", "accept"), ("return", "return")]
    items = [_evidence(db, rv["reqs"]["crisis"], f"Roster {i}") for i in range(len(pairs))]
    db.session.commit()
    _login(auth, rv, "monitor")
    for evidence, (first, second) in zip(items, pairs, strict=True):
        assert auth.post(_review_url(evidence), {"decision": first, "comment": "First look"}).status_code == 303
        state = _state(db, evidence.id)
        events = len(_audits(db))
        r = auth.post(_review_url(evidence), {"decision": second, "comment": "Second look"})
        assert r.status_code == 422, (first, second)
        done = "accepted" if first == "accept" else "returned"
        assert f"This evidence was already {done}." in r.get_data(as_text=True)
        assert _state(db, evidence.id) == state
        assert _count(db, EvidenceReview, EvidenceReview.evidence_id == evidence.id) == 1
        assert len(_audits(db)) == events


# --- what the officer sees ---------------------------------------------------------------------

def test_officer_sees_the_decision_on_the_requirement_page_in_returned_and_in_the_nav(client, auth, db, rv):
    users, req = rv["users"], rv["reqs"]["crisis"]
    returned = _evidence(db, req, "Roster", uploader=users["officer"])
    accepted = _evidence(db, req, "Policy", uploader=users["officer"])
    # Uploaded by someone else, on a requirement the second officer owns: theirs, not Olive's.
    owned = make_requirement(rv["a"], module=rv["cit"], code="CIT-002", title="Training",
                             owner_id=users["officer2"].id)
    other = _evidence(db, owned, "Curriculum", uploader=users["officer2"])
    db.session.commit()
    _login(auth, rv, "monitor")
    auth.post(_review_url(returned), {"decision": "return", "comment": "Add the March roster"})
    auth.post(_review_url(accepted), {"decision": "accept", "comment": "Fine"})
    auth.post(_review_url(other), {"decision": "return", "comment": "Needs hours per officer"})
    auth.logout()

    _login(auth, rv, "officer")
    page = client.get(f"/agencies/agency-a/requirements/{req.id}").get_data(as_text=True)
    evidence_table = page[page.index('<h2 id="evidence">'):page.index('<h2 id="comments">')]
    assert 'tracker-review--returned">Returned</span>' in evidence_table
    assert "“Add the March roster” — Mona Monitor" in evidence_table
    assert 'tracker-review--accepted">Accepted</span>' in evidence_table
    assert "returned “Roster” — “Add the March roster”" in page  # the history

    html = client.get("/returned").get_data(as_text=True)
    assert '<th scope="row">Roster</th>' in html and "Harbor City PD" in html
    assert "“Add the March roster” — Mona Monitor" in html
    assert f'href="/agencies/agency-a/requirements/{req.id}#evidence"' in html
    assert "Curriculum" not in html and "Policy" not in html
    assert re.search(r'Returned to you <span class="tracker-nav__count">1</span>', html)
    assert "Review queue" not in html  # an officer is not a monitor
    auth.logout()

    # The second officer owns the other requirement and uploaded its evidence.
    _login(auth, rv, "officer2")
    html = client.get("/returned").get_data(as_text=True)
    assert "Curriculum" in html and "“Needs hours per officer”" in html and "Roster" not in html
    auth.logout()

    # A committee member has nothing returned to them.
    _login(auth, rv, "committee")
    html = client.get("/returned").get_data(as_text=True)
    assert "Nothing has been returned to you." in html and "Returned to you <span" not in html


def test_new_version_goes_back_into_the_queue_and_can_be_accepted(client, auth, db, rv):
    users, req = rv["users"], rv["reqs"]["crisis"]
    old = _evidence(db, req, "Roster", uploader=users["officer"], days_ago=3)
    db.session.commit()
    _login(auth, rv, "monitor")
    assert auth.post(_review_url(old), {"decision": "return", "comment": "Add the March roster"}).status_code == 303
    auth.logout()

    _login(auth, rv, "officer")
    r = auth.post(f"/agencies/agency-a/evidence/{old.id}/versions",
                  {"kind": "link", "url": "https://example.org/roster-v2", "title": "Roster v2",
                   "visibility": "restricted"})
    assert r.status_code == 303
    new = db.session.execute(sa.select(Evidence).where(Evidence.title == "Roster v2")).scalar_one()
    assert (new.review_state, new.superseded, new.supersedes_id) == ("submitted", False, old.id)
    assert _state(db, old.id) == ("returned", True)  # the old stays as it was decided
    assert _audits(db)[-1].action == "evidence.version"
    html = client.get("/returned").get_data(as_text=True)
    assert "Nothing has been returned to you." in html and "Returned to you <span" not in html
    auth.logout()

    _login(auth, rv, "monitor")
    html = client.get("/reviews").get_data(as_text=True)
    assert _titles(html) == ["Roster v2"] and "New version" in html
    assert re.search(r'Review queue <span class="tracker-nav__count">1</span>', html)
    # The old version can no longer be decided.
    events = len(_audits(db))
    r = auth.post(_review_url(old), {"decision": "accept"})
    assert r.status_code == 422
    assert "A newer version of this evidence exists; review that one." in r.get_data(as_text=True)
    assert _state(db, old.id) == ("returned", True) and len(_audits(db)) == events
    # The new one is accepted.
    assert auth.post(_review_url(new), {"decision": "accept"}).status_code == 303
    assert _state(db, new.id) == ("accepted", False) and _state(db, old.id) == ("returned", True)
    assert [e.action for e in _audits(db, "evidence.accept", "evidence.return")] == [
        "evidence.return", "evidence.accept"]
    html = client.get("/reviews").get_data(as_text=True)
    assert _titles(html) == [] and "tracker-nav__count" not in html


# --- who may review ----------------------------------------------------------------------------

def test_a_monitor_of_another_agency_gets_404_and_changes_nothing(client, auth, db, rv):
    evidence = _evidence(db, rv["reqs"]["crisis"], "Roster")
    db.session.commit()
    _login(auth, rv, "monitor_c")
    before = len(_audits(db))
    for slug in ("agency-a", "agency-c"):  # A's evidence through A's URL and through C's own
        assert client.get(_review_url(evidence, slug)).status_code == 404, slug
        for decision in ("accept", "return"):
            r = auth.post(_review_url(evidence, slug), {"decision": decision, "comment": "Nope"})
            assert r.status_code == 404, (slug, decision)
    # The monitor's own queue does not show it either.
    assert _titles(client.get("/reviews").get_data(as_text=True)) == []
    assert _state(db, evidence.id) == ("submitted", False)
    assert _count(db, EvidenceReview) == 0 and len(_audits(db)) == before


def test_missing_evidence_is_404(client, auth, db, rv):
    _login(auth, rv, "monitor")
    assert client.get("/agencies/agency-a/evidence/999999/review").status_code == 404
    assert auth.post("/agencies/agency-a/evidence/999999/review", {"decision": "accept"}).status_code == 404


def test_officer_and_committee_may_not_decide(client, auth, db, rv):
    evidence = _evidence(db, rv["reqs"]["crisis"], "Roster", uploader=rv["users"]["officer"])
    db.session.commit()
    before = len(_audits(db))
    for role in ("officer", "committee"):
        _login(auth, rv, role)
        assert client.get(_review_url(evidence)).status_code == 403, role
        for decision in ("accept", "return"):
            r = auth.post(_review_url(evidence), {"decision": decision, "comment": "Self-approved"})
            assert r.status_code == 403, (role, decision)
        auth.logout()
    assert _state(db, evidence.id) == ("submitted", False)
    assert _count(db, EvidenceReview) == 0 and len(_audits(db)) == before


def test_decision_without_csrf_token_is_refused(client, auth, db, rv):
    evidence = _evidence(db, rv["reqs"]["crisis"], "Roster")
    db.session.commit()
    _login(auth, rv, "monitor")
    r = client.post(_review_url(evidence), data={"decision": "accept"})
    assert r.status_code == 400
    assert _state(db, evidence.id) == ("submitted", False)


MONITOR_EDITS = [
    ("status", {"status": "implemented", "note": ""}),
    ("status", {"status": "not_applicable", "note": "The monitor says so"}),
    ("owner", {"owner_id": "0"}),
    ("due-date", {"due_date": "2030-01-01", "reason": "Monitor moved it"}),
    ("notes", {"notes": "Monitor notes"}),
]


def test_monitors_never_change_the_agencys_own_status(client, auth, db, rv):
    req = rv["reqs"]["crisis"]
    _login(auth, rv, "monitor")
    page = client.get(f"/agencies/agency-a/requirements/{req.id}").get_data(as_text=True)
    assert "Change status" not in page  # no form for the monitor
    version = req.row_version
    before = len(_audits(db))
    for action, data in MONITOR_EDITS:
        r = auth.post(f"/agencies/agency-a/requirements/{req.id}/{action}", {**data, "row_version": version})
        assert r.status_code == 403, action
    db.session.expire_all()
    req = db.session.get(Requirement, req.id)
    assert (req.status, req.row_version, req.notes) == ("not_started", version, "")
    assert len(_audits(db)) == before


def test_monitor_and_officer_comment_on_the_same_thread(client, auth, db, rv):
    req = rv["reqs"]["crisis"]
    url = f"/agencies/agency-a/requirements/{req.id}"
    _login(auth, rv, "monitor")
    assert auth.post(url + "/comments", {"body": "Which shifts does the roster cover?"}).status_code == 303
    auth.logout()
    _login(auth, rv, "officer")
    assert auth.post(url + "/comments", {"body": "All three shifts."}).status_code == 303
    html = client.get(url).get_data(as_text=True)
    comments = html[html.index('<h2 id="comments">'):html.index('<h2 id="history">')]
    assert comments.index("Mona Monitor") < comments.index("Olive Officer")
    assert "Which shifts does the roster cover?" in comments and "All three shifts." in comments
    assert _count(db, Comment, Comment.requirement_id == req.id) == 2


# --- query counts ------------------------------------------------------------------------------

def test_queue_issues_a_constant_number_of_queries(client, auth, db, rv, count_queries, no_page_cache):
    users = [make_user(f"uploader{i}@example.test", role="officer", agency=rv["a"], name=f"Uploader {i}")
             for i in range(5)]
    reqs = [make_requirement(rv["a"] if i % 2 else rv["b"], module=rv["cit"] if i % 3 else rv["data"],
                             code=f"Q-{i:03d}") for i in range(10)]

    def add(n, start):
        for i in range(start, start + n):
            _evidence(db, reqs[i % len(reqs)], f"Item {i}", days_ago=i % 40, uploader=users[i % len(users)])
        db.session.commit()

    add(5, 0)
    _login(auth, rv, "monitor")
    client.get("/reviews")  # warm up
    with count_queries() as few:
        html = client.get("/reviews").get_data(as_text=True)
    assert len(_titles(html)) == 5
    add(45, 5)
    with count_queries() as many:
        html = client.get("/reviews").get_data(as_text=True)
    assert len(_titles(html)) == 50
    assert many.count == few.count, (few.count, many.count)
    with count_queries() as filtered:
        html = client.get("/reviews?agency=agency-a&module=cit&age=7").get_data(as_text=True)
    assert filtered.count == few.count


def test_returned_list_issues_a_constant_number_of_queries(client, auth, db, rv, count_queries):
    officer = rv["users"]["officer"]
    monitors = [make_user(f"mon{i}@example.test", role="monitor", agency=rv["a"]) for i in range(3)]
    from tracker.models import EvidenceReview as Review

    def add(n, start):
        for i in range(start, start + n):
            e = _evidence(db, rv["reqs"]["crisis"], f"Returned {i}", uploader=officer, state="returned")
            db.session.add(Review(evidence_id=e.id, reviewer_id=monitors[i % 3].id, decision="returned",
                                  comment=f"Fix {i}"))
        db.session.commit()

    add(3, 0)
    _login(auth, rv, "officer")
    client.get("/returned")
    with count_queries() as few:
        client.get("/returned")
    add(27, 3)
    with count_queries() as many:
        html = client.get("/returned").get_data(as_text=True)
    assert html.count("<th scope=\"row\">Returned ") == 30
    assert many.count == few.count, (few.count, many.count)


# --- concurrency -------------------------------------------------------------------------------

def test_two_concurrent_decisions_do_not_both_succeed(app, db, rv):
    """A second monitor's decision made against a stale read must not also be recorded."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: a stale writer fails on its snapshot")
    from tracker.services import reviews
    from tracker.services.errors import ValidationFailed

    evidence = _evidence(db, rv["reqs"]["crisis"], "Roster")
    db.session.commit()
    stale = db.session.get(Evidence, evidence.id)
    assert stale.review_state == "submitted"  # this transaction read it as submitted
    # Meanwhile another monitor accepts it in their own transaction.
    with db.engine.begin() as conn:
        conn.execute(sa.update(Evidence).where(Evidence.id == evidence.id).values(review_state="accepted"))
        conn.execute(sa.insert(EvidenceReview).values(evidence_id=evidence.id, reviewer_id=rv["users"]["admin"].id,
                                                      decision="accepted", comment="", created_at=utcnow()))
    try:
        reviews.return_(stale, "Too late", actor=rv["users"]["monitor"])
        db.session.commit()
    except ValidationFailed:
        db.session.rollback()
    db.session.expire_all()
    assert _count(db, EvidenceReview, EvidenceReview.evidence_id == evidence.id) == 1
    assert db.session.get(Evidence, evidence.id).review_state == "accepted"
