"""Issue 16 in a real browser: the officer drafts a policy and sends it for the monitoring team's 30-day review;
the monitor leaves two comments and asks for changes; the officer's second version answers both (one accepted,
one not, with the reason); a community comment window gets one committee comment; the administrator records
the court's approval and the effective date; the officer plans training and imports completions, 40 % then 85 %;
the status report opens as DOCX and PDF with the policy and the training in it. Every page is checked with axe."""
import io
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from docx import Document
from playwright.sync_api import expect
from pypdf import PdfReader

from tests.browser.test_foundation_journey import sign_in
from tests.factories import make_user
from tracker.extensions import db
from tracker.models import ComplianceScale, PolicyComment, Requirement, utcnow
from tracker.services import agencies

AGENCY = "Lakeside Police Department"
OFFICER, MONITOR, COMMITTEE = ("officer@lakeside.example", "monitor@lakeside.example",
                               "committee@lakeside.example")
ADMIN = "admin@example.test"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
TITLE = "General Order 4.12: Crisis Intervention"


@pytest.fixture(scope="module")
def lakeside(live_app):
    with live_app.app_context():
        scale = db.session.execute(sa.select(ComplianceScale).where(ComplianceScale.key == "cleveland")).scalar_one()
        agency = agencies.create_agency({"name": AGENCY, "slug": "lakeside", "state": "MI", "source_id": None,
                                         "effective_date": utcnow().date() - timedelta(days=400),
                                         "scale_id": scale.id})
        agencies.adopt(agency, ["cit"])
        make_user(OFFICER, role="officer", agency=agency, name="Lena Officer")
        make_user(MONITOR, role="monitor", agency=agency, name="Milo Monitor")
        make_user(COMMITTEE, role="committee", agency=agency, name="Cora Committee")
        db.session.commit()
        reqs = {r.code: r.id for r in db.session.execute(
            sa.select(Requirement).where(Requirement.agency_id == agency.id)).scalars()}
        return {"slug": agency.slug, "reqs": reqs}


def _context(browser, live_server, email):
    context = browser.new_context(ignore_https_errors=True)
    sign_in(context.new_page(), live_server, email)
    return context


def _comment_ids(live_app):
    with live_app.app_context():
        return db.session.execute(sa.select(PolicyComment.id).order_by(PolicyComment.id)).scalars().all()


def _draft_and_review(officer, monitor, base, reqs, check_a11y, tmp_path):
    officer.goto(f"{base}/policies")
    expect(officer.get_by_role("heading", name="Policies and curricula under review")).to_be_visible()
    check_a11y(officer)
    officer.locator("#new-title").fill(TITLE)
    officer.locator("#new-kind").select_option("policy")
    officer.get_by_label("Requirements it implements").select_option([str(reqs["CIT-001"]), str(reqs["CIT-002"])])
    officer.get_by_role("button", name="Create draft").click()
    expect(officer.locator("#flash")).to_contain_text("created as a draft")
    expect(officer.locator("#document-state")).to_have_text("Draft")
    v1 = tmp_path / "go-4-12.pdf"
    v1.write_bytes(PDF)
    officer.get_by_label("File", exact=True).set_input_files(str(v1))
    officer.get_by_role("button", name="Upload version 1").click()
    expect(officer.locator("#flash")).to_contain_text("Version 1 uploaded (go-4-12.pdf)")
    due = utcnow().date() + timedelta(days=30)
    expect(officer.get_by_label("Comments due")).to_have_value(due.isoformat())  # the agency's 30 days
    check_a11y(officer)
    officer.get_by_role("button", name="Send version 1 for review").click()
    expect(officer.locator("#flash")).to_contain_text(f"comments are due {due:%b} {due.day}, {due.year}")
    expect(officer.locator("#document-state")).to_have_text("In review")

    monitor.goto(officer.url.split("#")[0])
    check_a11y(monitor)
    for anchor, body in (("§ 4.2(b)", "Say who dispatches the CIT officer."), ("", "Define “crisis call”.")):
        monitor.locator("#rc-anchor").fill(anchor)
        monitor.locator("#rc-body").fill(body)
        monitor.get_by_role("button", name="Add review comment").click()
        expect(monitor.locator("#flash")).to_contain_text("Comment added")
    monitor.locator("label[for='outcome-comments_to_address']").click()
    monitor.get_by_role("button", name="Close the round").click()
    expect(monitor.locator("#flash")).to_contain_text("Review round closed: Comments to address")
    check_a11y(monitor)


def _revise_and_community(officer, committee, live_app, check_a11y, tmp_path):
    officer.reload()
    first, second = _comment_ids(live_app)
    check_a11y(officer)
    buffer = io.BytesIO()
    revised = Document()
    revised.add_heading(TITLE + " (revised)", level=1)
    revised.save(buffer)
    v2 = tmp_path / "go-4-12-v2.docx"
    v2.write_bytes(buffer.getvalue())
    officer.get_by_label("File", exact=True).set_input_files(str(v2))
    officer.get_by_label("What changed (optional)").fill("Section 4.2 names the dispatcher.")
    officer.locator(f"label[for='answer-{first}-accepted']").click()
    officer.locator(f"label[for='answer-{second}-not_accepted']").click()
    officer.locator(f"#reason-{second}").fill("The decree defines it in ¶ 12.")
    officer.get_by_role("button", name="Upload version 2").click()
    expect(officer.locator("#flash")).to_contain_text("Version 2 uploaded (go-4-12-v2.docx)")
    expect(officer.locator("#document-state")).to_have_text("Revised")
    expect(officer.locator(f"#comment-{first}")).to_contain_text("Accepted in version 2")
    expect(officer.locator(f"#comment-{second}")).to_contain_text("Not accepted in version 2: The decree defines it")

    today = utcnow().date()
    officer.get_by_text("Open a community comment window on version 2").click()
    officer.get_by_label("Opens").fill(today.isoformat())
    officer.get_by_label("Closes").fill((today + timedelta(days=21)).isoformat())
    officer.get_by_role("button", name="Open the window").click()
    expect(officer.locator("#flash")).to_contain_text("Community comment window open")
    expect(officer.locator("#document-state")).to_have_text("In community comment")

    committee.goto(officer.url.split("#")[0])
    check_a11y(committee)
    expect(committee.get_by_text("Say who dispatches the CIT officer.")).to_have_count(0)  # the round's, not theirs
    committee.locator("#wc-body").fill("Involve peer specialists in the training.")
    committee.get_by_role("button", name="Add community comment").click()
    expect(committee.locator("#flash")).to_contain_text("Comment added")
    expect(committee.get_by_text("Involve peer specialists in the training.")).to_be_visible()
    check_a11y(committee)


def _approve_and_train(officer, admin, check_a11y, tmp_path):
    today = utcnow().date()
    admin.goto(officer.url.split("#")[0])
    check_a11y(admin)
    admin.locator("label[for='approval-court_order']").click()
    admin.get_by_label("Date of the approval").fill(today.isoformat())
    admin.get_by_label("Reference").fill("Order of the court (Dkt. 512)")
    admin.get_by_label("Takes effect on").fill(today.isoformat())
    admin.get_by_role("button", name="Record approval").click()
    expect(admin.locator("#flash")).to_contain_text(f"in effect from {today:%b} {today.day}, {today.year}")
    expect(admin.locator("#document-state")).to_have_text("In effect")

    officer.reload()
    officer.get_by_text("Plan training for a population").click()
    officer.get_by_label("Who must be trained").fill("All sworn members")
    officer.get_by_label("How many people").fill("1200")
    officer.get_by_label("Target date").fill((today + timedelta(days=90)).isoformat())
    officer.get_by_label("Target percentage trained").fill("95")
    officer.get_by_role("button", name="Add training plan").click()
    expect(officer.locator("#flash")).to_contain_text("Training of All sworn members planned")
    for days_ago, count, pct in ((20, 480, "40.0"), (5, 1020, "85.0")):
        counts = tmp_path / f"lms-{count}.csv"
        counts.write_text(f"date,count\n{(today - timedelta(days=days_ago)).isoformat()},{count}\n")
        officer.get_by_label("CSV or XLSX from the learning system").set_input_files(str(counts))
        officer.get_by_role("button", name="Import").click()
        expect(officer.locator("#flash")).to_contain_text("Imported 1 completion counts for All sworn members")
        expect(officer.get_by_role("heading", name=f"All sworn members: {pct}% trained")).to_be_visible()
    table = officer.get_by_role("table", name="Training completions reported for All sworn members")
    expect(table.get_by_role("row")).to_have_count(3)
    expect(table).to_contain_text("40.0%")
    expect(table).to_contain_text("85.0%")
    check_a11y(officer)


def _status_report(officer, base, check_a11y):
    officer.goto(f"{base}/policies")
    expect(officer.get_by_role("row", name=re.compile(re.escape(TITLE)))).to_contain_text("85.0% of All sworn")
    officer.get_by_role("link", name="Draft the agency's status report").click()
    expect(officer.get_by_role("heading", level=1)).to_contain_text(f"{AGENCY}: status report")
    check_a11y(officer)
    with officer.expect_download() as word:
        officer.get_by_role("link", name="Download as Word (DOCX, editable)").click()
    doc = Document(word.value.path())
    headings = [p.text for p in doc.paragraphs if p.style.name == "Heading 2"]
    assert headings[:2] and headings[0].startswith("CIT-001 ") and headings[1].startswith("CIT-002 ")
    bullets = " ".join(p.text for p in doc.paragraphs if p.style.name == "List Bullet")
    assert f"{TITLE} approved (Court order, Order of the court (Dkt. 512))" in bullets
    assert "85.0% of All sworn members trained (1,020 of 1,200)" in bullets
    with officer.expect_download() as pdf:
        officer.get_by_role("link", name="Download as PDF").click()
    text = "\n".join(page.extract_text() for page in PdfReader(pdf.value.path()).pages)
    positions = [text.index(h.split(" ")[0] + " ") for h in headings]
    assert positions == sorted(positions)


def test_a_policy_from_draft_to_training_and_the_status_report(browser, live_server, live_app, lakeside,
                                                              check_a11y, tmp_path):
    base = f"{live_server}/agencies/{lakeside['slug']}"
    contexts = {email: _context(browser, live_server, email) for email in (OFFICER, MONITOR, COMMITTEE, ADMIN)}
    try:
        officer, monitor = contexts[OFFICER].pages[0], contexts[MONITOR].pages[0]
        committee, admin = contexts[COMMITTEE].pages[0], contexts[ADMIN].pages[0]
        _draft_and_review(officer, monitor, base, lakeside["reqs"], check_a11y, tmp_path)
        _revise_and_community(officer, committee, live_app, check_a11y, tmp_path)
        _approve_and_train(officer, admin, check_a11y, tmp_path)
        _status_report(officer, base, check_a11y)
    finally:
        for context in contexts.values():
            context.close()
