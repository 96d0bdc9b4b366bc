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
