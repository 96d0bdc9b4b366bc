"""Double submits (SECURITY-PLAN T26): a form that creates something creates it once however often it
is sent, and the repeat is pointed at the first result. Each rendering of the form carries a new id."""
import io
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import Auth
from tests.factories import make_agency, make_module, make_requirement, make_user
from tracker.models import AuditEvent, Comment, Evidence, FormSubmission, utcnow
from tracker.services import submissions

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
ID_RE = re.compile(r'name="submission_id" value="([0-9a-f]{32})"')


@pytest.fixture
def setup(db, app):
    module = make_module("cit", "Crisis Intervention Teams", 1)
    agency = make_agency(slug="agency-a")
    make_user("officer@example.test", role="officer", agency=agency)
    make_user("monitor@example.test", role="monitor", agency=agency)
    req = make_requirement(agency, module=module, code="CIT-001", title="Crisis line")
    db.session.commit()
    return {"req_id": req.id, "page": f"/agencies/agency-a/requirements/{req.id}",
            "comment_url": f"/agencies/agency-a/requirements/{req.id}/comments",
            "evidence_url": f"/agencies/agency-a/requirements/{req.id}/evidence"}


def _signed_in(app, email):
    auth = Auth(app.test_client())
    auth.login(email)
    return auth


def _form_ids(auth, page):
    html = auth.client.get(page).get_data(as_text=True)
    return ID_RE.findall(html)


def _count(db, model):
    return db.session.execute(sa.select(sa.func.count()).select_from(model)).scalar()


def _comment(auth, url, submission_id, body="Training roster attached."):
    data = {"body": body}
    if submission_id is not None:
        data["submission_id"] = submission_id
    return auth.post(url, data)


def _upload(auth, url, submission_id, title="Roster"):
    return auth.post(url, {"kind": "file", "title": title, "description": "", "visibility": "restricted",
                           "submission_id": submission_id, "file": (io.BytesIO(PDF), "roster.pdf")},
                     content_type="multipart/form-data")


def test_every_rendering_of_a_creating_form_carries_a_new_id(app, setup):
    officer = _signed_in(app, "officer@example.test")
    first, second = _form_ids(officer, setup["page"]), _form_ids(officer, setup["page"])
    assert len(first) == 2  # the evidence form and the comment form
    assert len(set(first)) == 2 and not set(first) & set(second)


def test_a_comment_sent_twice_is_posted_once_and_the_repeat_points_at_it(app, db, setup):
    officer = _signed_in(app, "officer@example.test")
    submission_id = _form_ids(officer, setup["page"])[-1]
    first = _comment(officer, setup["comment_url"], submission_id)
    events = _count(db, AuditEvent)
    again = _comment(officer, setup["comment_url"], submission_id)
    assert first.status_code == again.status_code == 303
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Location"].endswith("#comments")
    assert _count(db, Comment) == 1
    assert _count(db, AuditEvent) == events  # the repeat changed nothing
    page = officer.client.get(again.headers["Location"]).get_data(as_text=True)
    assert "already been sent and was saved once" in page


def test_an_upload_sent_twice_makes_one_evidence_item(app, db, setup):
    officer = _signed_in(app, "officer@example.test")
    submission_id = _form_ids(officer, setup["page"])[0]
    first = _upload(officer, setup["evidence_url"], submission_id)
    again = _upload(officer, setup["evidence_url"], submission_id)
    assert first.status_code == again.status_code == 303
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Location"].endswith("#evidence-added")
    assert _count(db, Evidence) == 1


def test_a_new_version_sent_twice_is_added_once_and_not_called_stale(app, db, setup):
    officer = _signed_in(app, "officer@example.test")
    _upload(officer, setup["evidence_url"], _form_ids(officer, setup["page"])[0])
    original = db.session.execute(sa.select(Evidence)).scalar_one()
    versions_url = f"/agencies/agency-a/evidence/{original.id}/versions"
    submission_id = _form_ids(officer, setup["page"])[0]  # the new-version form of that item
    first = _upload(officer, versions_url, submission_id, title="Roster, corrected")
    again = _upload(officer, versions_url, submission_id, title="Roster, corrected")
    assert first.status_code == again.status_code == 303
    assert _count(db, Evidence) == 2
    page = officer.client.get(again.headers["Location"]).get_data(as_text=True)
    assert "already been sent and was saved once" in page
    assert "already has a newer version" not in page


def test_separate_renderings_are_separate_comments(app, db, setup):
    officer = _signed_in(app, "officer@example.test")
    for _ in range(2):
        _comment(officer, setup["comment_url"], _form_ids(officer, setup["page"])[-1], body="Same words twice.")
    assert _count(db, Comment) == 2


def test_ids_belong_to_their_user(app, db, setup):
    officer = _signed_in(app, "officer@example.test")
    monitor = _signed_in(app, "monitor@example.test")
    submission_id = _form_ids(officer, setup["page"])[-1]
    _comment(officer, setup["comment_url"], submission_id)
    response = _comment(monitor, setup["comment_url"], submission_id, body="Monitor's own comment.")
    assert response.status_code == 303
    assert _count(db, Comment) == 2


@pytest.mark.parametrize("sent", [None, "", "not-hex", "A" * 32, "0" * 31])
def test_a_missing_or_malformed_id_is_not_deduplicated(app, db, setup, sent):
    officer = _signed_in(app, "officer@example.test")
    for _ in range(2):
        assert _comment(officer, setup["comment_url"], sent).status_code == 303
    assert _count(db, Comment) == 2
    assert _count(db, FormSubmission) == 0


def test_a_repeat_racing_the_first_sending_gets_the_first_result(app, db, setup, monkeypatch):
    """The repeat's check ran before the first sending committed: the primary key settles it."""
    officer = _signed_in(app, "officer@example.test")
    submission_id = _form_ids(officer, setup["page"])[-1]
    first = _comment(officer, setup["comment_url"], submission_id)
    real = submissions.earlier_result
    calls = []

    def too_early(user):
        calls.append(user)
        return None if len(calls) == 1 else real(user)

    monkeypatch.setattr(submissions, "earlier_result", too_early)
    again = _comment(officer, setup["comment_url"], submission_id)
    assert len(calls) == 2
    assert again.status_code == 303 and again.headers["Location"] == first.headers["Location"]
    assert _count(db, Comment) == 1


def test_ids_older_than_two_days_are_forgotten(app, db, setup):
    officer = _signed_in(app, "officer@example.test")
    user_id = db.session.execute(sa.text("SELECT id FROM user_account WHERE email = 'officer@example.test'")).scalar()
    db.session.add(FormSubmission(user_id=user_id, id="f" * 32, result_url="/old",
                                  created_at=utcnow() - submissions.KEEP - timedelta(minutes=1)))
    db.session.add(FormSubmission(user_id=user_id, id="e" * 32, result_url="/recent", created_at=utcnow()))
    db.session.commit()
    _comment(officer, setup["comment_url"], _form_ids(officer, setup["page"])[-1])
    kept = set(db.session.execute(sa.select(FormSubmission.id)).scalars())
    assert "f" * 32 not in kept and "e" * 32 in kept and len(kept) == 2
    sweep = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "form_submission.sweep")).scalar_one()
    assert sweep.after["removed"] == 1 and sweep.actor_label == "officer@example.test"
