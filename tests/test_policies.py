"""Policies and curricula through review to approval (issue 16 §1): versions in the evidence store, review rounds
with a per-agency comment deadline, anchored comments and the department's answers, community comment windows,
approval and the effective date, states everywhere they are shown, and the calendar feed."""
import re
from datetime import date, timedelta

import sqlalchemy as sa
import time_machine
from icalendar import Calendar

from tests.policy_builders import PDF, create_document, doc_url, docx_bytes, sign_in, staged, upload
from tracker.models import (
    AuditEvent,
    CommentWindow,
    DocumentFile,
    PolicyComment,
    PolicyDocument,
    PolicyVersion,
    ReviewRound,
    utcnow,
)
from tracker.services import exports, policies


def _doc(db, doc_id):
    db.session.expire_all()
    return db.session.get(PolicyDocument, doc_id)


def _text(response):
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def test_a_policy_goes_from_draft_through_review_and_comment_to_approval(app, db, pol):
    officer, monitor = sign_in(app, "officer@example.test"), sign_in(app, "monitor@example.test")
    committee, admin = sign_in(app, "committee@example.test"), sign_in(app, "admin@example.test")
    doc_id = create_document(officer, requirement_ids=[pol["req"].id, pol["req2"].id])
    assert _doc(db, doc_id).state == "draft"
    assert [r.code for r in _doc(db, doc_id).requirements] == ["¶ 131", "¶ 132"]

    assert upload(officer, doc_id).status_code == 303
    assert officer.post(doc_url(doc_id, "/rounds"), {"comment_due": "", "outside_reviewers": "DOJ attorney"}
                        ).status_code == 303
    review = db.session.execute(sa.select(ReviewRound)).scalar_one()
    assert review.comment_due == utcnow().date() + timedelta(days=30)
    assert _doc(db, doc_id).state == "in_review"

    for anchor, body in (("§ 4.2(b)", "Say who dispatches the CIT officer."), ("", "Define 'crisis call'.")):
        assert monitor.post(doc_url(doc_id, "/comments"), {"channel": "round", "anchor": anchor, "body": body}
                            ).status_code == 303
    first, second = db.session.execute(sa.select(PolicyComment).order_by(PolicyComment.id)).scalars().all()
    assert (first.anchor, first.round_id, first.state) == ("§ 4.2(b)", review.id, "published")
    assert monitor.post(doc_url(doc_id, "/rounds/close"), {"outcome": "comments_to_address"}).status_code == 303

    response = upload(officer, doc_id, docx_bytes(), "go-4-12-v2.docx", note="Answers the monitor.",
                      **{f"answer-{first.id}": "accepted", f"answer-{second.id}": "not_accepted",
                         f"reason-{second.id}": "The decree defines it in ¶ 12."})
    assert response.status_code == 303, _text(response)[:2000]
    doc = _doc(db, doc_id)
    assert doc.state == "revised" and [v.number for v in doc.versions] == [1, 2]
    v2 = doc.versions[1]
    assert v2.file.media_type.endswith("wordprocessingml.document") and len(v2.file.sha256) == 64
    answered = {c.id: (c.response, c.response_reason, c.answered_in_version_id)
                for c in db.session.execute(sa.select(PolicyComment)).scalars()}
    assert answered == {first.id: ("accepted", "", v2.id),
                        second.id: ("not_accepted", "The decree defines it in ¶ 12.", v2.id)}

    today = utcnow().date()
    assert officer.post(doc_url(doc_id, "/windows"), {"opens_on": today.isoformat(),
                                                      "closes_on": (today + timedelta(days=21)).isoformat()}
                        ).status_code == 303
    assert _doc(db, doc_id).state == "in_comment"
    assert committee.post(doc_url(doc_id, "/comments"), {"channel": "window", "anchor": "p. 3",
                                                         "body": "Involve peer specialists."}).status_code == 303
    assert admin.post(doc_url(doc_id, "/approval"), {
        "approval_kind": "court_order", "approved_on": today.isoformat(), "approval_ref": "Order (Dkt. 512)",
        "effective_on": today.isoformat()}).status_code == 303
    doc = _doc(db, doc_id)
    assert (doc.state, doc.approval_kind, doc.approval_ref, doc.effective_on) == (
        "approved", "court_order", "Order (Dkt. 512)", today)
    assert policies.display_state(doc) == "in_effect"
    page = _text(officer.client.get(doc_url(doc_id)))
    assert "In effect" in page and "Dkt. 512" in page and "Involve peer specialists." in page
    assert "Not accepted" in page and "The decree defines it in ¶ 12." in page
    actions = set(db.session.execute(sa.select(AuditEvent.action)).scalars())
    assert {"policy.create", "policy.version", "policy.round_open", "policy.comment", "policy.round_close",
            "policy.window_open", "policy.approve"} <= actions


def test_the_comment_deadline_defaults_to_the_agencys_review_period(app, db, pol):
    pol["a"].review_comment_days = 45
    db.session.commit()
    officer = sign_in(app, "officer@example.test")
    doc_id = create_document(officer)
    upload(officer, doc_id)
    page = officer.client.get(doc_url(doc_id)).get_data(as_text=True)
    assert (utcnow().date() + timedelta(days=45)).isoformat() in page  # prefilled in the form
    officer.post(doc_url(doc_id, "/rounds"), {"comment_due": ""})
    assert db.session.execute(sa.select(ReviewRound.comment_due)).scalar_one() == utcnow().date() + timedelta(days=45)
    chosen = utcnow().date() + timedelta(days=10)
    monitor = sign_in(app, "monitor@example.test")
    monitor.post(doc_url(doc_id, "/rounds/close"), {"outcome": "no_objection"})
    monitor.post(doc_url(doc_id, "/rounds"), {"comment_due": chosen.isoformat()})
    assert sorted(db.session.execute(sa.select(ReviewRound.comment_due)).scalars()) == [
        chosen, utcnow().date() + timedelta(days=45)]


def test_each_step_belongs_to_its_role(app, db, pol):
    officer, monitor = sign_in(app, "officer@example.test"), sign_in(app, "monitor@example.test")
    committee = sign_in(app, "committee@example.test")
    doc_id = create_document(officer)
    upload(officer, doc_id)
    assert committee.post("/agencies/agency-a/policies", {"title": "X", "kind": "policy"}).status_code == 403
    assert monitor.post(doc_url(doc_id, "/versions")).status_code == 403
    assert officer.post(doc_url(doc_id, "/approval"), {"approval_kind": "no_objection"}).status_code == 403
    assert committee.post(doc_url(doc_id, "/rounds/close"), {"outcome": "objection"}).status_code == 403
    officer.post(doc_url(doc_id, "/rounds"), {"comment_due": ""})
    refused = committee.post(doc_url(doc_id, "/comments"), {"channel": "round", "body": "Me too."})
    assert refused.status_code == 422 and "monitoring team" in _text(refused)
    monitor.post(doc_url(doc_id, "/comments"), {"channel": "round", "body": "Confidential draft remark."})
    # Review-round comments pass between the department and the monitoring team only.
    assert "Confidential draft remark." in officer.client.get(doc_url(doc_id)).get_data(as_text=True)
    assert "Confidential draft remark." not in committee.client.get(doc_url(doc_id)).get_data(as_text=True)
    assert db.session.execute(sa.select(sa.func.count()).select_from(PolicyComment)).scalar() == 1


def test_refused_input_names_the_field_and_writes_nothing(app, db, pol):
    officer, monitor = sign_in(app, "officer@example.test"), sign_in(app, "monitor@example.test")
    bad = officer.post("/agencies/agency-a/policies", {"title": "", "kind": "memo",
                                                        "requirement_ids": [str(pol["req"].id + 999)]})
    assert bad.status_code == 422
    assert "Give the document a title" in _text(bad) and "Choose the kind" in _text(bad)
    assert db.session.execute(sa.select(sa.func.count()).select_from(PolicyDocument)).scalar() == 0
    doc_id = create_document(officer)
    text = upload(officer, doc_id, b"Just text.\n", "notes.txt")
    assert text.status_code == 422 and "PDF or a Word" in _text(text)
    forged = upload(officer, doc_id, b"not a pdf", "fake.pdf")
    assert forged.status_code == 422 and "not a PDF" in _text(forged)
    assert db.session.execute(sa.select(sa.func.count()).select_from(DocumentFile)).scalar() == 0
    upload(officer, doc_id)
    officer.post(doc_url(doc_id, "/rounds"), {"comment_due": "2001-01-01"})
    assert db.session.execute(sa.select(sa.func.count()).select_from(ReviewRound)).scalar() == 0
    officer.post(doc_url(doc_id, "/rounds"), {"comment_due": ""})
    monitor.post(doc_url(doc_id, "/comments"), {"channel": "round", "body": "x" * 4001})
    monitor.post(doc_url(doc_id, "/comments"), {"channel": "round", "body": "Fix § 2.", "anchor": "§ 2"})
    comment = db.session.execute(sa.select(PolicyComment)).scalar_one()
    still_open = upload(officer, doc_id, PDF + b"%v2", "v2.pdf")
    assert still_open.status_code == 422 and "record its outcome" in _text(still_open)
    monitor.post(doc_url(doc_id, "/rounds/close"), {"outcome": "comments_to_address"})
    no_reason = upload(officer, doc_id, PDF + b"%v2", "v2.pdf", **{f"answer-{comment.id}": "not_accepted"})
    assert no_reason.status_code == 422 and "say why it is not accepted" in _text(no_reason)
    assert db.session.execute(sa.select(sa.func.count()).select_from(PolicyVersion)).scalar() == 1
    assert db.session.execute(sa.select(PolicyComment.response)).scalar_one() is None


def test_in_effect_follows_the_effective_date_without_a_write(app, db, pol):
    officer, admin = sign_in(app, "officer@example.test"), sign_in(app, "admin@example.test")
    doc_id = create_document(officer, requirement_ids=[pol["req"].id])
    upload(officer, doc_id)
    today = utcnow().date()
    admin.post(doc_url(doc_id, "/approval"), {
        "approval_kind": "no_objection", "approved_on": today.isoformat(), "approval_ref": "",
        "effective_on": (today + timedelta(days=10)).isoformat()})
    assert policies.display_state(_doc(db, doc_id)) == "approved"
    listing = officer.client.get("/agencies/agency-a/policies?state=in_effect").get_data(as_text=True)
    assert "No documents match these filters" in listing
    requirement_page = _text(officer.client.get(f"/agencies/agency-a/requirements/{pol['req'].id}"))
    assert "Crisis Intervention</a> — Approved (in effect from" in requirement_page
    later = today + timedelta(days=11)
    assert [r.state for r in policies.list_documents(pol["a"], state="in_effect", on=later)] == ["in_effect"]
    assert policies.list_documents(pol["a"], state="approved", on=later) == []
    with time_machine.travel(later):
        assert policies.display_state(_doc(db, doc_id)) == "in_effect"
        assert [r.state for r in policies.for_requirement(pol["req"])] == ["in_effect"]
    assert _doc(db, doc_id).state == "approved"


def test_list_filters_and_constant_queries(app, db, pol, count_queries, no_page_cache):
    officer = sign_in(app, "officer@example.test")
    kinds = ["policy", "curriculum", "general_order"]
    for i in range(3):
        create_document(officer, title=f"Document {i}", kind=kinds[i], requirement_ids=[pol["req"].id])
    with count_queries() as small:
        assert officer.client.get("/agencies/agency-a/policies").status_code == 200
    for i in range(3, 15):
        create_document(officer, title=f"Document {i}", kind="policy", requirement_ids=[pol["req2"].id])
    with count_queries() as large:
        page = officer.client.get("/agencies/agency-a/policies").get_data(as_text=True)
    assert large.count == small.count, (small.count, large.count)
    assert "15 documents" in page
    curricula = officer.client.get("/agencies/agency-a/policies?kind=curriculum").get_data(as_text=True)
    assert "1 document<" in curricula and "Document 1" in curricula
    by_requirement = officer.client.get(f"/agencies/agency-a/policies?requirement={pol['req'].id}")
    assert "3 documents" in by_requirement.get_data(as_text=True)
    drafts = officer.client.get("/agencies/agency-a/policies?state=in_review").get_data(as_text=True)
    assert "No documents match" in drafts
    unknown = officer.client.get("/agencies/agency-a/policies?state=bogus")
    assert unknown.status_code == 200 and "Unknown state" in unknown.get_data(as_text=True)


def test_dashboard_and_requirement_page_show_the_states(app, db, pol):
    officer, admin = sign_in(app, "officer@example.test"), sign_in(app, "admin@example.test")
    today = utcnow().date()
    for title in ("GO 1", "GO 2", "GO 3"):
        doc_id = create_document(officer, title=title, requirement_ids=[pol["req"].id])
        upload(officer, doc_id)
        officer.post(doc_url(doc_id, "/rounds"), {"comment_due": ""})
    doc_id = create_document(officer, title="Curriculum", kind="curriculum")
    upload(officer, doc_id)
    closes = today + timedelta(days=14)
    admin.post(doc_url(doc_id, "/windows"), {"opens_on": today.isoformat(), "closes_on": closes.isoformat()})
    dashboard = _text(officer.client.get("/agencies/agency-a/dashboard"))
    assert "3 policies in review" in dashboard
    assert f"1 comment window open until {closes:%b} {closes.day}, {closes.year}" in dashboard
    page = _text(officer.client.get(f"/agencies/agency-a/requirements/{pol['req'].id}"))
    assert page.count("— In review") == 3


def test_the_calendar_feed_carries_policy_deadlines(app, db, pol):
    officer, admin = sign_in(app, "officer@example.test"), sign_in(app, "admin@example.test")
    today = utcnow().date()
    doc_id = create_document(officer, title="GO 7")
    upload(officer, doc_id)
    officer.post(doc_url(doc_id, "/rounds"), {"comment_due": (today + timedelta(days=30)).isoformat()})
    cal = Calendar.from_ical(exports.calendar(pol["a"], "https://tracker.example/"))
    events = {str(e["summary"]): e for e in cal.walk("VEVENT")}
    assert events["Review comments due: GO 7"].decoded("dtstart") == today + timedelta(days=30)
    assert str(events["Review comments due: GO 7"]["url"]).endswith(f"/agencies/agency-a/policies/{doc_id}")
    sign_in(app, "monitor@example.test").post(doc_url(doc_id, "/rounds/close"), {"outcome": "no_objection"})
    admin.post(doc_url(doc_id, "/windows"), {"opens_on": today.isoformat(),
                                             "closes_on": (today + timedelta(days=20)).isoformat()})
    admin.post(doc_url(doc_id, "/approval"), {"approval_kind": "no_objection", "approved_on": today.isoformat(),
                                              "effective_on": today.isoformat()})
    officer.post(doc_url(doc_id, "/training"), {"population": "All sworn members", "population_size": "1200",
                                                "target_date": "2027-01-31", "target_pct": "95"})
    cal = Calendar.from_ical(exports.calendar(pol["a"], "https://tracker.example/"))
    summaries = {str(e["summary"]): e.decoded("dtstart") for e in cal.walk("VEVENT")}
    assert "Review comments due: GO 7" not in summaries  # the round has its outcome
    assert summaries["Comment window closes: GO 7"] == today + timedelta(days=20)
    assert summaries["Training target: GO 7"] == date(2027, 1, 31)


def test_only_an_admin_opens_a_window_to_the_public_and_only_on_a_public_agency(app, db, pol):
    officer, admin = sign_in(app, "officer@example.test"), sign_in(app, "admin@example.test")
    today = utcnow().date()
    doc_id = create_document(officer)
    upload(officer, doc_id)
    window = {"opens_on": today.isoformat(), "closes_on": (today + timedelta(days=7)).isoformat(), "allow_public": "y"}
    refused = officer.post(doc_url(doc_id, "/windows"), window)
    assert refused.status_code == 422 and "Only an administrator" in _text(refused)
    pol["a"].public_enabled = False
    db.session.commit()
    refused = admin.post(doc_url(doc_id, "/windows"), window)
    assert refused.status_code == 422 and "public page is off" in _text(refused)
    pol["a"].public_enabled = True
    db.session.commit()
    assert admin.post(doc_url(doc_id, "/windows"), window).status_code == 303
    assert db.session.execute(sa.select(CommentWindow.allow_public)).scalar_one() is True
    assert f"/public/agency-a/policies/{doc_id}/comment" in sign_in(app, "admin@example.test").client.get(
        "/public/agency-a").get_data(as_text=True)


def test_moderation_summary_supersede_and_downloads(app, db, pol):
    officer, admin = sign_in(app, "officer@example.test"), sign_in(app, "admin@example.test")
    today = utcnow().date()
    doc_id = create_document(officer)
    upload(officer, doc_id)
    admin.post(doc_url(doc_id, "/windows"), {"opens_on": today.isoformat(),
                                             "closes_on": (today + timedelta(days=7)).isoformat(), "allow_public": "y"})
    doc = _doc(db, doc_id)
    policies.add_public_comment(doc, pol["a"], "Pat Public", "p. 1", "Please add a section on youth.")
    db.session.commit()
    comment = db.session.execute(sa.select(PolicyComment)).scalar_one()
    assert comment.state == "pending" and comment.author_id is None
    assert "Please add a section on youth." in officer.client.get(doc_url(doc_id)).get_data(as_text=True)
    committee = sign_in(app, "committee@example.test")
    assert "Please add a section on youth." not in committee.client.get(doc_url(doc_id)).get_data(as_text=True)
    assert officer.post(doc_url(doc_id, "/moderation"), {"comment_id": str(comment.id), "decision": "published"}
                        ).status_code == 303
    published = committee.client.get(doc_url(doc_id)).get_data(as_text=True)
    assert "Please add a section on youth." in published
    assert "Pat Public" not in published and "Member of the public" in published  # the name is the department's
    assert "Pat Public (public)" in officer.client.get(doc_url(doc_id)).get_data(as_text=True)
    window_id = db.session.execute(sa.select(CommentWindow.id)).scalar_one()
    assert officer.post(doc_url(doc_id, "/windows/summary"), {"window_id": str(window_id),
                                                              "summary": "One comment; a youth section was added."}
                        ).status_code == 303
    assert "a youth section was added" in committee.client.get(doc_url(doc_id)).get_data(as_text=True)
    version = db.session.execute(sa.select(PolicyVersion)).scalar_one()
    download = committee.client.get(doc_url(doc_id, f"/versions/{version.id}/file"))
    assert download.status_code == 200 and download.data == PDF
    download.close()
    assert download.headers["X-Evidence-SHA256"] == version.file.sha256
    assert "sandbox" in download.headers["Content-Security-Policy"]
    admin.post(doc_url(doc_id, "/approval"), {"approval_kind": "no_objection", "approved_on": today.isoformat(),
                                              "effective_on": today.isoformat()})
    newer = create_document(officer, title="General Order 4.12 (2027)")
    assert officer.post(doc_url(doc_id, "/supersede"), {"superseded_by": str(newer)}).status_code == 303
    assert (_doc(db, doc_id).state, _doc(db, doc_id).superseded_by_id) == ("superseded", newer)
    assert officer.post(doc_url(doc_id, "/supersede"), {"superseded_by": str(newer)}).status_code == 422


def test_the_document_page_costs_the_same_queries_with_more_versions_and_comments(app, db, pol, count_queries,
                                                                                   no_page_cache):
    users = pol["users"]
    doc = policies.create_document(pol["a"], {"title": "GO 9", "kind": "policy"}, actor=users["officer"])

    def cycle(n):
        policies.add_version(doc, staged(PDF + f"%{n}".encode(), f"v{n}.pdf"), f"Version {n}", {},
                             actor=users["officer"])
        policies.open_review_round(doc, pol["a"], None, "", actor=users["officer"])
        for i in range(2):
            policies.add_comment(doc, "round", f"§ {i}", f"Comment {n}.{i}", actor=users["monitor"], role="monitor")
        policies.close_review_round(doc, "comments_to_address", actor=users["monitor"])
        db.session.commit()

    cycle(1)
    officer = sign_in(app, "officer@example.test")
    with count_queries() as small:
        assert officer.client.get(doc_url(doc.id)).status_code == 200
    for n in range(2, 7):
        cycle(n)
    with count_queries() as large:
        page = _text(officer.client.get(doc_url(doc.id)))
    assert "Version 6" in page and "Comment 6.1" in page and "Comment 1.0" in page
    assert large.count == small.count, (small.count, large.count)
