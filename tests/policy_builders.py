"""Builders shared by the policy, training, status-report and public-comment tests (issue 16)."""
import io
from datetime import date

import pytest

from tests.conftest import Auth
from tests.factories import make_agency, make_module, make_requirement, make_user

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def docx_bytes(text="General Order 4.12, revised"):
    """A real Word document, made with python-docx."""
    from docx import Document

    doc = Document()
    doc.add_heading(text, level=1)
    doc.add_paragraph("Section 4.2: officers request a CIT-certified officer on every crisis call.")
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def sign_in(app, email):
    auth = Auth(app.test_client())
    response = auth.login(email)
    assert response.status_code == 303, f"sign-in of {email} failed"
    return auth


@pytest.fixture
def pol(db):
    """Agency A (public page on) with two requirements and every role; agency B next door."""
    module = make_module("cit", "Crisis Intervention Teams", 1)
    a = make_agency(slug="agency-a", name="Harbor City PD", public_enabled=True)
    b = make_agency(slug="agency-b", name="Other Town PD")
    req = make_requirement(a, module=module, code="¶ 131", title="CIT policy", due_date=date(2026, 6, 30))
    req2 = make_requirement(a, module=module, code="¶ 132", title="CIT training")
    users = {
        "officer": make_user("officer@example.test", role="officer", agency=a, name="Olive Officer"),
        "monitor": make_user("monitor@example.test", role="monitor", agency=a, name="Mona Monitor"),
        "committee": make_user("committee@example.test", role="committee", agency=a, name="Cole Committee"),
        "admin": make_user("admin@example.test", is_admin=True, name="Ada Admin"),
        "officer_b": make_user("officer-b@example.test", role="officer", agency=b, name="Bea Elsewhere"),
    }
    db.session.commit()
    return {"a": a, "b": b, "module": module, "req": req, "req2": req2, "users": users}


def create_document(auth, title="General Order 4.12: Crisis Intervention", kind="policy", requirement_ids=()):
    response = auth.post("/agencies/agency-a/policies", {"title": title, "kind": kind,
                                                          "requirement_ids": [str(i) for i in requirement_ids]})
    assert response.status_code == 303, response.get_data(as_text=True)[:3000]
    return int(response.headers["Location"].rsplit("/", 1)[1])


def upload(auth, doc_id, content=PDF, filename="go-4-12.pdf", **fields):
    data = {"file": (io.BytesIO(content), filename), **fields}
    return auth.post(f"/agencies/agency-a/policies/{doc_id}/versions", data,
                     content_type="multipart/form-data")


def doc_url(doc_id, suffix=""):
    return f"/agencies/agency-a/policies/{doc_id}{suffix}"


def staged(content=PDF, filename="file.pdf"):
    """Bytes staged in the evidence store as an upload would be."""
    from werkzeug.datastructures import FileStorage

    from tracker.services import evidence as evidence_service

    return evidence_service.stage_upload(FileStorage(stream=io.BytesIO(content), filename=filename), 10**6)


def approved_policy(pol, title="General Order 4.12: Crisis Intervention", approved_on=date(2025, 3, 3),
                    effective_on=date(2025, 4, 1), requirements=None):
    """A policy through the services: created, one version, approved by court order (Dkt. 512)."""
    from tracker.services import policies

    users = pol["users"]
    doc = policies.create_document(pol["a"], {"title": title, "kind": "policy", "requirement_ids": [
        r.id for r in (requirements or [pol["req"], pol["req2"]])]}, actor=users["officer"])
    policies.add_version(doc, staged(PDF + title.encode(), "go.pdf"), "", {}, actor=users["officer"])
    policies.record_approval(doc, "court_order", approved_on, "Order (Dkt. 512)", effective_on, actor=users["admin"])
    return doc


def status_world(db, pol):
    """A reporting period (Jan-Jun 2025, filed) in which things happened, dated with time_machine: a status change,
    evidence, a policy approved with its training at 40 % then 85 %; a third requirement, ¶ 9, comes first in
    decree order; ¶ 131 is due after the period."""
    import time_machine

    from tests.factories import make_requirement
    from tracker.models import Finding, MonitoringPeriod
    from tracker.services import evidence as evidence_service
    from tracker.services import requirements as req_service
    from tracker.services import training

    users, a = pol["users"], pol["a"]
    first = make_requirement(a, module=pol["module"], code="¶ 9", title="Crisis line staffing")
    with time_machine.travel(date(2025, 2, 10)):
        req_service.set_status(pol["req"], "in_progress", "Drafting GO 4.12", pol["req"].row_version,
                               actor=users["officer"])
    with time_machine.travel(date(2025, 3, 1)):
        evidence = evidence_service.add_file(pol["req"], staged(PDF + b"%roster", "roster.pdf"),
                                             {"title": "CIT roster", "visibility": "restricted"},
                                             actor=users["officer"])
        doc = approved_policy(pol)
    plan = training.create_plan(doc, {"population": "All sworn members", "population_size": "1200",
                                      "target_date": date(2025, 12, 31), "target_pct": "95"}, actor=users["officer"])
    training.import_file(plan, a, "counts.csv", b"date,count\n2025-04-01,480\n2025-06-01,1020\n",
                         actor=users["officer"])
    with time_machine.travel(date(2025, 5, 1)):
        req_service.set_status(pol["req2"], "implemented", "", pol["req2"].row_version, actor=users["officer"])
    period = MonitoringPeriod(agency_id=a.id, name="Report 1", start_date=date(2025, 1, 1),
                              end_date=date(2025, 6, 30), state="filed")
    later = MonitoringPeriod(agency_id=a.id, name="Report 2", start_date=date(2099, 1, 1),
                             end_date=date(2099, 6, 30))
    db.session.add_all([period, later])
    db.session.flush()
    partial = next(level for level in a.scale.levels if level.key == "partial")
    db.session.add(Finding(requirement_id=pol["req"].id, period_id=period.id, level_id=partial.id,
                           narrative="Half way.", monitor_id=users["monitor"].id))
    db.session.commit()
    return {"first": first, "evidence": evidence, "doc": doc, "plan": plan, "period": period}
