"""Evidence: files checked by extension and content, stored by SHA-256, links, versions, downloads (issue 3, item 5)."""
import hashlib
import io
import re
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import FileStorage
from werkzeug.http import parse_options_header

from tests.conftest import Auth
from tests.factories import make_agency, make_module, make_requirement, make_user
from tracker.models import AuditEvent, Evidence, Requirement
from tracker.services import evidence as evidence_service
from tracker.services.errors import ValidationFailed
from tracker.storage import LocalStore

# --- sample files ------------------------------------------------------------------------------

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
TXT = b"Training roster, spring 2026\nAll 40 hours completed.\n"
CSV = "name,hours\nJos\u00e9,40\nAna,40\n".encode()
JPG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
HTML = b"<!doctype html><html><body><script>alert(1)</script></body></html>"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48


def _png():
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
            + chunk(b"IEND", b""))


PNG = _png()

CONTENT_TYPES = ('<?xml version="1.0" encoding="UTF-8"?>'
                 '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                 '<Default Extension="xml" ContentType="application/xml"/>'
                 '<Override PartName="/word/document.xml" ContentType="application/'
                 'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')


def _zip(parts):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return buf.getvalue()


def _docx():
    return _zip({
        "[Content_Types].xml": CONTENT_TYPES,
        "_rels/.rels": '<?xml version="1.0"?><Relationships '
                       'xmlns="http://schemas.openxmlformats.org/package/2006/relationships"/>',
        "word/document.xml": '<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
                             'wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>Policy 4.2</w:t></w:r></w:p>'
                             '</w:body></w:document>',
    })


def _xlsx():
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.active.append(["Quarter", "Calls"])
    workbook.active.append(["Q1", 120])
    buf = io.BytesIO()
    workbook.save(buf)
    return buf.getvalue()


DOCX = _docx()
XLSX = _xlsx()

GOOD_FILES = [
    ("report.pdf", PDF, "application/pdf"),
    ("chart.png", PNG, "image/png"),
    ("photo.JPG", JPG, "image/jpeg"),
    ("roster.txt", TXT, "text/plain"),
    ("hours.csv", CSV, "text/csv"),
    ("policy.docx", DOCX, "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("calls.xlsx", XLSX, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
]


# --- helpers -----------------------------------------------------------------------------------

def _sha(data):
    return hashlib.sha256(data).hexdigest()


def _store_files(app):
    """Every file under EVIDENCE_DIR, as paths relative to it."""
    root = Path(app.config["EVIDENCE_DIR"])
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _blobs(app):
    return [p for p in _store_files(app) if not p.startswith("tmp")]


def _temps(app):
    return [p for p in _store_files(app) if p.startswith("tmp")]


def _count(db, model, *where):
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _upload(auth, url, filename, content, **fields):
    data = {"kind": "file", "title": fields.pop("title", "Evidence title"), "description": "",
            "visibility": "restricted", **fields}
    if filename is not None:
        data["file"] = (io.BytesIO(content), filename)
    return auth.post(url, data, content_type="multipart/form-data")


def _raw_upload(auth, url, disposition_filename, content, title="Crafted"):
    """A hand-built multipart body, so the filename can carry what a test client would not send."""
    boundary = "----evidence-test-boundary"
    parts = []
    for name, value in (("csrf_token", auth.token), ("kind", "file"), ("title", title),
                        ("visibility", "restricted")):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; {disposition_filename}\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return auth.client.post(url, data=b"".join(parts), content_type=f"multipart/form-data; boundary={boundary}")


@pytest.fixture
def ev(db):
    module = make_module("cit", "Crisis Intervention Teams", 1)
    a = make_agency(slug="agency-a")
    b = make_agency(slug="agency-b")
    users = {
        "officer": make_user("officer@example.test", role="officer", agency=a, name="Olive Officer"),
        "monitor": make_user("monitor@example.test", role="monitor", agency=a),
        "committee": make_user("committee@example.test", role="committee", agency=a),
        "officer_b": make_user("officer-b@example.test", role="officer", agency=b),
    }
    req = make_requirement(a, module=module, code="CIT-001", title="Crisis line")
    req_b = make_requirement(b, module=module, code="CIT-001", title="B's")
    db.session.commit()
    return {"a": a, "b": b, "req": req, "req_b": req_b, "users": users, "module": module,
            "add": f"/agencies/agency-a/requirements/{req.id}/evidence",
            "page": f"/agencies/agency-a/requirements/{req.id}"}


def _login(auth, ev, role="officer"):
    auth.login(ev["users"][role].email)


def _only_evidence(db):
    return db.session.execute(sa.select(Evidence)).scalar_one()


# --- uploads -----------------------------------------------------------------------------------

def test_valid_files_are_stored_by_sha256_and_recorded_as_submitted(app, client, auth, db, ev):
    _login(auth, ev)
    root = Path(app.config["EVIDENCE_DIR"])
    for filename, content, media_type in GOOD_FILES:
        audits = _count(db, AuditEvent, AuditEvent.action == "evidence.create")
        r = _upload(auth, ev["add"], filename, content, title=f"Evidence {filename}", description="From HR",
                    period_start="2026-01-01", period_end="2026-03-31", visibility="shareable")
        assert r.status_code == 303, (filename, r.get_data(as_text=True)[-2000:])
        assert r.headers["Location"].endswith(ev["page"] + "#evidence-added")
        sha = _sha(content)
        evidence = db.session.execute(sa.select(Evidence).where(Evidence.title == f"Evidence {filename}")
                                      ).scalar_one()
        assert evidence.kind == "file" and evidence.review_state == "submitted"
        assert evidence.sha256 == sha and evidence.size_bytes == len(content)
        assert evidence.media_type == media_type and evidence.filename == filename
        assert evidence.description == "From HR" and evidence.visibility == "shareable"
        assert str(evidence.period_start) == "2026-01-01" and str(evidence.period_end) == "2026-03-31"
        assert evidence.uploaded_by_id == ev["users"]["officer"].id and not evidence.superseded
        blob = root / sha[:2] / sha[2:4] / sha
        assert blob.read_bytes() == content, filename
        assert _count(db, AuditEvent, AuditEvent.action == "evidence.create") == audits + 1
    assert sorted(_blobs(app)) == sorted(f"{_sha(c)[:2]}/{_sha(c)[2:4]}/{_sha(c)}" for _, c, _ in GOOD_FILES)
    assert _temps(app) == []

    page = client.get(ev["page"]).get_data(as_text=True)
    for filename, content, _ in GOOD_FILES:
        assert f'<span class="tracker-mono">{_sha(content)}</span>' in page  # a monitor can verify a copy
        assert f"Download {filename}" in page
    assert "Submitted" in page


def test_link_evidence(client, auth, db, ev):
    _login(auth, ev)
    r = auth.post(ev["add"], {"kind": "link", "url": "https://example.org/policy?id=4#s2",
                              "title": "Policy page <script>alert(1)</script>", "visibility": "restricted"})
    assert r.status_code == 303
    evidence = _only_evidence(db)
    assert (evidence.kind, evidence.url, evidence.sha256, evidence.review_state) == (
        "link", "https://example.org/policy?id=4#s2", None, "submitted")
    page = client.get(ev["page"]).get_data(as_text=True)
    assert 'href="https://example.org/policy?id=4#s2" rel="noopener noreferrer nofollow"' in page
    assert "Policy page &lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    # A link has nothing to download.
    assert client.get(f"/agencies/agency-a/evidence/{evidence.id}/download").status_code == 404


BAD_LINKS = ["javascript:alert(1)", "JavaScript:alert(document.cookie)", " javascript:x", "ftp://files.example.org/a.pdf",
             "data:text/html,<script>alert(1)</script>", "https://", "//example.org/x", "example.org", ""]


def test_bad_links_are_refused_next_to_the_field(app, client, auth, db, ev):
    _login(auth, ev)
    for url in BAD_LINKS:
        r = auth.post(ev["add"], {"kind": "link", "url": url, "title": "Bad link", "visibility": "restricted"})
        assert r.status_code == 422, url
        html = r.get_data(as_text=True)
        assert re.search(r'<span class="usa-error-message" id="url-error">Links must start with http:// or https://',
                         html), url
        assert _count(db, Evidence) == 0 and _count(db, AuditEvent, AuditEvent.action.like("evidence%")) == 0


REJECTED = [
    ("setup.exe", EXE, "Files of type .exe are not accepted."),
    ("page.html", HTML, "Files of type .html are not accepted."),
    ("page.htm", HTML, "Files of type .htm are not accepted."),
    ("noextension", PDF, "Files of type .(none) are not accepted."),
    ("report.pdf", HTML, "The file is named .pdf but its content is not a PDF."),
    ("image.pdf", PNG, "The file is named .pdf but its content is not a PDF."),
    ("chart.png", PDF, "The file is named .png but its content is not a PNG image."),
    ("photo.jpg", PNG, "The file is named .jpg but its content is not a JPEG image."),
    ("policy.docx", PDF, "The file is named .docx but its content is not a Word document."),
    ("calls.xlsx", DOCX, "The file is named .xlsx but its content is not an Excel workbook."),
    ("policy.docx", _zip({"[Content_Types].xml": CONTENT_TYPES}), "is not a Word document"),
    ("notes.txt", b"text\x00with a NUL", "The file is named .txt but its content is not a text file."),
    ("data.csv", "caf\u00e9;1\n".encode("latin-1"), "The file is named .csv but its content is not a CSV file."),
    ("empty.pdf", b"", "The file is empty."),
    ("evil.pdf.exe", PDF, "Files of type .exe are not accepted."),
]


def test_wrong_type_or_content_is_refused_with_the_reason_and_leaves_nothing(app, client, auth, db, ev):
    _login(auth, ev)
    for filename, content, reason in REJECTED:
        r = _upload(auth, ev["add"], filename, content, title="Should not be kept")
        assert r.status_code == 422, filename
        html = r.get_data(as_text=True)
        error = re.search(r'<span class="usa-error-message" id="file-error">([^<]*)</span>', html)
        assert error and reason in error.group(1), (filename, error and error.group(1))
        assert 'value="Should not be kept"' in html  # the rest of the form is kept
        assert _count(db, Evidence) == 0, filename
        assert _blobs(app) == [], filename
        assert _temps(app) == [], filename
    assert _count(db, AuditEvent, AuditEvent.action.like("evidence%")) == 0


def test_zip_with_too_many_parts_is_refused(app, client, auth, db, ev):
    parts = {"[Content_Types].xml": CONTENT_TYPES, "word/document.xml": "<w:document/>"}
    parts.update({f"word/media/p{i}.xml": "" for i in range(2001)})
    _login(auth, ev)
    r = _upload(auth, ev["add"], "bomb.docx", _zip(parts))
    assert r.status_code == 422
    assert "The document has too many parts" in r.get_data(as_text=True)
    assert _count(db, Evidence) == 0 and _blobs(app) == [] and _temps(app) == []


def test_oversized_upload_is_413_and_leaves_nothing(db, ev, make_app):
    small = make_app(MAX_CONTENT_LENGTH=1024)
    auth = Auth(small.test_client())
    _login(auth, ev)
    r = _upload(auth, ev["add"], "big.pdf", PDF + b"0" * 4096)
    assert r.status_code == 413
    html = r.get_data(as_text=True)
    assert "File too large" in html and "The upload is larger than the 1 KB limit. Nothing was saved" in html
    assert _count(db, Evidence) == 0
    assert _store_files(small) == []  # no blob and no temporary file
    # A request under the limit still goes through on the same app (kind and visibility take their defaults).
    r = auth.post(ev["add"], {"title": "t", "file": (io.BytesIO(PDF), "s.pdf")}, content_type="multipart/form-data")
    assert r.status_code == 303
    assert _count(db, Evidence) == 1


def test_stream_over_the_limit_is_refused_while_staging(app, db, ev):
    """Without a Content-Length the limit is enforced while streaming; the temp file is removed."""
    upload = FileStorage(stream=io.BytesIO(PDF + b"0" * 5000), filename="big.pdf")
    with pytest.raises(ValidationFailed) as exc:
        evidence_service.stage_upload(upload, max_bytes=1024)
    assert exc.value.errors == {"file": "The file is larger than the upload limit."}
    assert _store_files(app) == []


def test_store_removes_the_temp_file_when_the_check_fails(tmp_path):
    store = LocalStore(tmp_path / "store")

    def refuse(path):
        assert Path(path).exists() and Path(path).parent == tmp_path / "store" / "tmp"
        raise ValueError("no")

    with pytest.raises(ValueError):
        store.put(io.BytesIO(b"data"), check=refuse)
    assert list((tmp_path / "store").rglob("*.*")) == [] and list((tmp_path / "store" / "tmp").iterdir()) == []
    blob = store.put(io.BytesIO(b"data"))
    assert blob.sha256 == _sha(b"data") and store.path_for(blob.sha256).read_bytes() == b"data"
    with pytest.raises(ValueError):
        store.path_for("../../etc/passwd")


BAD_METADATA = [
    ({"title": ""}, "title", "Give the evidence a title."),
    ({"title": "   "}, "title", "Give the evidence a title."),
    ({"period_start": "2026-03-31", "period_end": "2026-01-01"}, "period_end",
     "The period must end on or after its start."),
    ({"period_start": "31/03/2026"}, "period_start", "Not a valid date value."),
    ({"visibility": "public"}, "visibility", "Not a valid choice"),
]


def test_bad_metadata_is_refused_and_no_file_is_kept(app, client, auth, db, ev):
    _login(auth, ev)
    for fields, field, message in BAD_METADATA:
        r = _upload(auth, ev["add"], "report.pdf", PDF, **fields)
        assert r.status_code == 422, fields
        html = r.get_data(as_text=True)
        if field != "visibility":
            assert re.search(rf'id="{field}-error">[^<]*{re.escape(message)}', html), fields
        else:
            assert message in html
        assert _count(db, Evidence) == 0 and _blobs(app) == [] and _temps(app) == [], fields


def test_missing_file_or_unknown_kind(client, auth, db, ev):
    _login(auth, ev)
    r = _upload(auth, ev["add"], None, b"")
    assert r.status_code == 422 and "Choose a file to upload." in r.get_data(as_text=True)
    r = auth.post(ev["add"], {"kind": "script", "title": "x", "url": "https://example.org"})
    assert r.status_code == 422
    assert _count(db, Evidence) == 0


@pytest.mark.parametrize("role", ["monitor", "committee"])
def test_only_officers_add_evidence(app, client, auth, db, ev, role):
    _login(auth, ev, role)
    assert _upload(auth, ev["add"], "report.pdf", PDF).status_code == 403
    assert auth.post(ev["add"], {"kind": "link", "url": "https://example.org", "title": "x"}).status_code == 403
    assert _count(db, Evidence) == 0 and _store_files(app) == []


def test_same_file_twice_is_one_blob_and_two_rows(app, client, auth, db, ev):
    _login(auth, ev)
    assert _upload(auth, ev["add"], "a.pdf", PDF, title="First").status_code == 303
    assert _upload(auth, ev["add"], "b.pdf", PDF, title="Second").status_code == 303
    rows = db.session.execute(sa.select(Evidence).order_by(Evidence.id)).scalars().all()
    assert [e.title for e in rows] == ["First", "Second"]
    assert {e.sha256 for e in rows} == {_sha(PDF)}
    assert _blobs(app) == [f"{_sha(PDF)[:2]}/{_sha(PDF)[2:4]}/{_sha(PDF)}"] and _temps(app) == []


# --- downloads ---------------------------------------------------------------------------------

def _add_file(db, ev, content=PDF, filename="report.pdf", visibility="restricted", **kw):
    """Put a blob in the store the way an upload does and record it."""
    blob = evidence_service.stage_upload(FileStorage(stream=io.BytesIO(content), filename=filename), 10**6)
    evidence = evidence_service.add_file(ev["req"], blob, {"title": kw.pop("title", "Doc"), "visibility": visibility},
                                         actor=ev["users"]["officer"])
    db.session.commit()
    return evidence


def test_download_is_an_attachment_with_safe_headers(app, client, auth, db, ev):
    evidence = _add_file(db, ev)
    _login(auth, ev)
    with client.get(f"/agencies/agency-a/evidence/{evidence.id}/download") as r:
        assert r.status_code == 200
        assert r.get_data() == PDF
        assert r.mimetype == "application/pdf"
        disposition, options = parse_options_header(r.headers["Content-Disposition"])
        assert disposition == "attachment" and options["filename"] == "report.pdf"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Content-Security-Policy"].startswith("sandbox")
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["X-Evidence-SHA256"] == _sha(PDF)


CRAFTED_NAMES = [
    # CR/LF arrive through an RFC 2231 encoded name; they must never reach a response header.
    ("filename*=UTF-8''report%0D%0AX-Injected%3A%20yes.pdf", "reportX-Injected: yes.pdf"),
    ('filename="../../etc/passwd.txt"', "passwd.txt"),
    ('filename="..\\\\..\\\\windows\\\\evil.txt"', "evil.txt"),
    ("filename*=UTF-8''invoice%E2%80%AEfdp.txt", "invoicefdp.txt"),          # U+202E right-to-left override
    ("filename*=UTF-8''a%22%3B%20filename%3D%22evil.html.txt", 'a"; filename="evil.html.txt'),
    ("filename*=UTF-8''Bericht%20M%C3%A4rz.pdf", "Bericht März.pdf"),
]


def test_stored_filename_is_cleaned_and_cannot_inject_headers(app, client, auth, db, ev):
    _login(auth, ev)
    for disposition, stored in CRAFTED_NAMES:
        content = (PDF if stored.endswith(".pdf") else TXT) + stored.encode()  # a distinct blob per case
        r = _raw_upload(auth, ev["add"], disposition, content, title=stored)
        assert r.status_code == 303, (disposition, r.get_data(as_text=True)[-1500:])
        evidence = db.session.execute(sa.select(Evidence).where(Evidence.title == stored)).scalar_one()
        assert evidence.filename == stored, disposition
        # The blob path is only the hash: nothing named after the user's file exists anywhere.
        assert f"{_sha(content)[:2]}/{_sha(content)[2:4]}/{_sha(content)}" in _blobs(app)
        with client.get(f"/agencies/agency-a/evidence/{evidence.id}/download") as r:
            assert r.status_code == 200
            header = r.headers["Content-Disposition"]
            assert "\r" not in header and "\n" not in header and "\u202e" not in header, header
            assert "X-Injected" not in r.headers
            kind, options = parse_options_header(header)
            assert kind == "attachment"
            assert options["filename"] == stored, header
            assert r.get_data() == content
    assert all(re.fullmatch(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}", p) for p in _blobs(app))
    assert len(_blobs(app)) == len(CRAFTED_NAMES) and _temps(app) == []
    assert not (Path(app.config["EVIDENCE_DIR"]).parent / "etc").exists()


def test_very_long_filename_is_shortened_keeping_its_extension(app, client, auth, db, ev):
    _login(auth, ev)
    r = _upload(auth, ev["add"], "x" * 300 + ".pdf", PDF)
    assert r.status_code == 303
    evidence = _only_evidence(db)
    assert len(evidence.filename) <= 200 and evidence.filename.endswith(".pdf")
    with client.get(f"/agencies/agency-a/evidence/{evidence.id}/download") as r:
        assert r.status_code == 200
        assert parse_options_header(r.headers["Content-Disposition"])[1]["filename"] == evidence.filename


def test_committee_downloads_shareable_but_not_restricted(client, auth, db, ev):
    restricted = _add_file(db, ev, title="Internal memo")
    shareable = _add_file(db, ev, content=TXT, filename="summary.txt", visibility="shareable", title="Summary")
    _login(auth, ev, "committee")
    with client.get(f"/agencies/agency-a/evidence/{restricted.id}/download") as r:
        assert r.status_code == 403
    with client.get(f"/agencies/agency-a/evidence/{shareable.id}/download") as r:
        assert r.status_code == 200 and r.get_data() == TXT
    page = client.get(ev["page"]).get_data(as_text=True)
    # The title, never the file: no name, no hash, no link.
    assert "Internal memo" in page and "Restricted file: the agency and its monitors can open it." in page
    assert "report.pdf" not in page and restricted.sha256 not in page
    assert f"/evidence/{restricted.id}/download" not in page
    assert f"/evidence/{shareable.id}/download" in page


def test_monitor_downloads_restricted(client, auth, db, ev):
    restricted = _add_file(db, ev)
    _login(auth, ev, "monitor")
    with client.get(f"/agencies/agency-a/evidence/{restricted.id}/download") as r:
        assert r.status_code == 200 and r.get_data() == PDF


def test_another_agency_gets_404_on_evidence(app, client, auth, db, ev):
    evidence = _add_file(db, ev, visibility="shareable")
    _login(auth, ev, "officer_b")
    with client.get(f"/agencies/agency-a/evidence/{evidence.id}/download") as r:
        assert r.status_code == 404
    with client.get(f"/agencies/agency-b/evidence/{evidence.id}/download") as r:
        assert r.status_code == 404
    assert _upload(auth, ev["add"], "x.pdf", PDF).status_code == 404
    assert _upload(auth, f"/agencies/agency-a/evidence/{evidence.id}/versions", "x.pdf", PDF).status_code == 404
    # Own agency's slug with agency A's evidence id.
    assert _upload(auth, f"/agencies/agency-b/evidence/{evidence.id}/versions", "x.pdf", PDF).status_code == 404
    assert _upload(auth, f"/agencies/agency-b/requirements/{ev['req'].id}/evidence", "x.pdf", PDF
                   ).status_code == 404
    assert _count(db, Evidence) == 1 and len(_blobs(app)) == 1


def test_missing_blob_is_404_not_500(app, client, auth, db, ev):
    evidence = _add_file(db, ev)
    blob = Path(app.config["EVIDENCE_DIR"]) / _sha(PDF)[:2] / _sha(PDF)[2:4] / _sha(PDF)
    blob.unlink()
    _login(auth, ev)
    with client.get(f"/agencies/agency-a/evidence/{evidence.id}/download") as r:
        assert r.status_code == 404


# --- versions ----------------------------------------------------------------------------------

def test_new_version_supersedes_the_old_one(app, client, auth, db, ev):
    old = _add_file(db, ev, title="Roster v1")
    db.session.execute(sa.update(Evidence).where(Evidence.id == old.id).values(review_state="returned"))
    db.session.commit()
    _login(auth, ev)
    r = _upload(auth, f"/agencies/agency-a/evidence/{old.id}/versions", "roster-v2.txt", TXT, title="Roster v2")
    assert r.status_code == 303
    old = db.session.get(Evidence, old.id)
    new = db.session.execute(sa.select(Evidence).where(Evidence.title == "Roster v2")).scalar_one()
    assert old.superseded is True and old.review_state == "returned"  # the old row stays as it was
    assert new.supersedes_id == old.id and new.superseded is False and new.review_state == "submitted"
    assert new.sha256 == _sha(TXT) and new.requirement_id == ev["req"].id
    assert _count(db, AuditEvent, AuditEvent.action == "evidence.version") == 1
    assert len(_blobs(app)) == 2  # both versions' files are kept

    page = client.get(ev["page"]).get_data(as_text=True)
    assert "Roster v1" in page and "Superseded" in page and "New version of an earlier item" in page
    assert "added a new version “Roster v2”" in page
    # The old file stays downloadable.
    with client.get(f"/agencies/agency-a/evidence/{old.id}/download") as r:
        assert r.status_code == 200 and r.get_data() == PDF

    # The board counts only the current version.
    board = client.get("/agencies/agency-a").get_data(as_text=True)
    row = re.search(rf'<tr id="req-{ev["req"].id}">.*?</tr>', board, re.S).group(0)
    assert "1 item" in row and "1 submitted" in row and "returned" not in row

    # A version of the superseded item is refused with a message; nothing is written.
    r = _upload(auth, f"/agencies/agency-a/evidence/{old.id}/versions", "v3.pdf", PDF, title="Roster v3")
    assert r.status_code == 303
    assert "That item already has a newer version" in client.get(r.headers["Location"]).get_data(as_text=True)
    assert _count(db, Evidence) == 2
    # A link can be a new version too.
    r = auth.post(f"/agencies/agency-a/evidence/{new.id}/versions",
                  {"kind": "link", "url": "https://example.org/v3", "title": "Roster v3"})
    assert r.status_code == 303
    assert db.session.get(Evidence, new.id).superseded is True


def test_refused_new_version_leaves_the_old_one_current(app, client, auth, db, ev):
    old = _add_file(db, ev)
    _login(auth, ev)
    r = _upload(auth, f"/agencies/agency-a/evidence/{old.id}/versions", "v2.pdf", HTML, title="v2")
    assert r.status_code == 422
    assert "is not a PDF" in r.get_data(as_text=True)
    assert db.session.get(Evidence, old.id).superseded is False
    assert _count(db, Evidence) == 1 and len(_blobs(app)) == 1 and _temps(app) == []


@pytest.mark.parametrize("role", ["monitor", "committee"])
def test_only_officers_add_versions(client, auth, db, ev, role):
    old = _add_file(db, ev)
    _login(auth, ev, role)
    assert _upload(auth, f"/agencies/agency-a/evidence/{old.id}/versions", "v2.pdf", PDF).status_code == 403
    assert db.session.get(Evidence, old.id).superseded is False and _count(db, Evidence) == 1


def test_requirement_row_is_not_touched_by_evidence(client, auth, db, ev):
    """Evidence does not bump the requirement's row_version (no false edit conflicts)."""
    _login(auth, ev)
    _upload(auth, ev["add"], "report.pdf", PDF)
    assert db.session.get(Requirement, ev["req"].id).row_version == 1
