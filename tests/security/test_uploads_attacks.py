"""T22/T23: upload attacks tests/test_evidence.py does not already cover.

SVG and executables in disguise are refused; an HTML/PDF polyglot (and HTML saved as .txt/.csv, which the
content check cannot tell from text) is only ever served as an attachment of its allow-listed type, sandboxed
and not sniffable; hostile file names are metadata only (the blob is stored under its SHA-256) and come back
in an RFC 6266 Content-Disposition that cannot inject a header.
"""
import hashlib
import itertools
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.http import parse_options_header

from tests.security.conftest import PDF, TXT, post_multipart, signed_in
from tracker.filetypes import extension_of
from tracker.models import AuditEvent, Evidence
from tracker.services.evidence import clean_filename

pytestmark = pytest.mark.security

SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(document.domain)">'
       b"<script>alert(1)</script></svg>")
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + b"PE\x00\x00"
POLYGLOT = (b"%PDF-1.4\n<html><body><script>alert(document.domain)</script></body></html>\n"
            b"1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>\n"
_CONTROL_OR_BIDI = re.compile(r"[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def _store(app):
    root = Path(app.config["EVIDENCE_DIR"])
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _blobs(app):
    return [p for p in _store(app) if not p.startswith("tmp")]


def _count(db, model, *where):
    db.session.commit()
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _upload(officer, world, filename, content, title="Upload"):
    return post_multipart(officer, f"/agencies/agency-a/requirements/{world['req'].id}/evidence",
                          {"kind": "file", "title": title, "visibility": "restricted"}, [("file", filename, content)])


def _download(client, evidence_id):
    return client.get(f"/agencies/agency-a/evidence/{evidence_id}/download")


def _assert_safe_download(response, media_type):
    h = response.headers
    assert response.status_code == 200
    assert response.mimetype == media_type, h["Content-Type"]
    assert "html" not in h["Content-Type"] and "svg" not in h["Content-Type"]
    assert h["Content-Disposition"].startswith("attachment")
    assert h["X-Content-Type-Options"] == "nosniff"
    csp = h["Content-Security-Policy"]
    assert csp.startswith("sandbox") and "default-src 'none'" in csp and "allow-scripts" not in csp
    assert h["Cache-Control"] == "no-store"


REFUSED = [
    ("chart.svg", SVG, "Files of type .svg are not accepted."),
    ("chart.SVG", SVG, "Files of type .svg are not accepted."),
    ("chart.png", SVG, "The file is named .png but its content is not a PNG image."),
    ("photo.png", EXE, "The file is named .png but its content is not a PNG image."),
    ("photo.jpg", EXE, "The file is named .jpg but its content is not a JPEG image."),
    ("report.pdf", EXE, "The file is named .pdf but its content is not a PDF."),
    ("page.xhtml", HTML, "Files of type .xhtml are not accepted."),
    ("page.svgz", SVG, "Files of type .svgz are not accepted."),
    ("../../etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n", "Files of type .(none) are not accepted."),
    ("CON", TXT, "Files of type .(none) are not accepted."),
    (".htaccess", b"AddType text/html .pdf\n", "are not accepted."),
    ("evil.pdf\x00.exe", PDF, "Files of type .exe are not accepted."),   # NUL cannot cut the extension off
    ("evil.pdf\r\n.html", PDF, "Files of type .html are not accepted."),
]


def test_svg_executables_and_extensionless_files_are_refused(app, db, world):
    officer = signed_in(app, "officer@example.test")
    before = _blobs(app)
    events = _count(db, AuditEvent, AuditEvent.action == "evidence.create")
    for filename, content, reason in REFUSED:
        r = _upload(officer, world, filename, content, title="Refused upload")
        html = r.get_data(as_text=True)
        assert r.status_code == 422, (filename, r.status_code)
        error = re.search(r'id="file-error"[^>]*>([^<]*)<', html)
        assert error and reason in error.group(1), (filename, error and error.group(1))
    assert _count(db, Evidence, Evidence.title == "Refused upload") == 0
    assert _count(db, AuditEvent, AuditEvent.action == "evidence.create") == events
    assert _blobs(app) == before and not any(p.startswith("tmp/") for p in _store(app))
    assert not (Path(app.config["EVIDENCE_DIR"]).parent / "etc").exists()


@pytest.mark.parametrize("filename, content, media_type", [
    ("report.pdf", POLYGLOT, "application/pdf"),
    ("notes.txt", HTML, "text/plain"),
    ("table.csv", HTML, "text/csv"),
])
def test_html_that_passes_the_content_check_is_never_served_as_a_page(app, db, world, filename, content,
                                                                     media_type):
    """An HTML/PDF polyglot starts with %PDF- and HTML is valid UTF-8 text: if accepted, it must still
    reach the browser as an attachment of the allow-listed type, sandboxed and not sniffable."""
    officer = signed_in(app, "officer@example.test")
    r = _upload(officer, world, filename, content, title=f"Polyglot {filename}")
    if r.status_code == 422:
        return  # refused outright is fine too
    assert r.status_code == 303
    evidence = db.session.execute(sa.select(Evidence).where(Evidence.title == f"Polyglot {filename}")).scalar_one()
    assert evidence.media_type == media_type and evidence.sha256 == _sha(content)
    for who in ("officer@example.test", "monitor@example.test", "admin@example.test"):
        client = officer.client if who.startswith("officer") else signed_in(app, who).client
        for headers in ({}, {"Accept": "text/html"}, {"HX-Request": "true"}, {"Range": "bytes=0-99"}):
            with client.get(f"/agencies/agency-a/evidence/{evidence.id}/download", headers=headers) as response:
                partial = response.status_code == 206
                if partial:
                    response.status_code = 200
                _assert_safe_download(response, media_type)
                assert response.get_data() == (content[:100] if partial else content)


def _assert_stored_by_hash_only(app, evidence, content):
    sha = _sha(content)
    assert evidence.sha256 == sha
    assert f"{sha[:2]}/{sha[2:4]}/{sha}" in _blobs(app)
    assert all(re.fullmatch(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}", p) for p in _blobs(app))
    name = evidence.filename
    assert name and "/" not in name and "\\" not in name and not _CONTROL_OR_BIDI.search(name), repr(name)
    assert len(name) <= 200


def _assert_disposition(response, stored):
    header = response.headers["Content-Disposition"]
    assert "\r" not in header and "\n" not in header
    header.encode("ascii")  # RFC 6266: non-ASCII only inside filename*, percent-encoded
    kind, options = parse_options_header(header)
    assert kind == "attachment"
    assert options["filename"] == stored, (header, stored)
    try:
        stored.encode("ascii")
    except UnicodeEncodeError:
        # The exact name travels percent-encoded in filename*; filename= carries an ASCII fallback.
        assert "filename*=UTF-8''" in header, header
        assert re.search(r'(^|; )filename=', header), header
    assert set(response.headers.keys()) >= {"Content-Disposition"}
    assert not any(k.lower().startswith("x-injected") for k in response.headers.keys())


ACCEPTED = [
    ("evil\x00.pdf", PDF, "evil.pdf"),
    ("evil.exe\x00.pdf", PDF, "evil.exe.pdf"),
    ("CON.pdf", PDF, "CON.pdf"),
    ("nul.txt", TXT, "nul.txt"),
    ("AUX.PDF", PDF, "AUX.PDF"),
    ("/etc/passwd.pdf", PDF, "passwd.pdf"),
    ("C:\\Windows\\System32\\drivers\\etc\\hosts.txt", TXT, "hosts.txt"),
    ("..\\..\\..\\boot.ini.txt", TXT, "boot.ini.txt"),
    ("report\r\nContent-Type: text-html\r\n\r\n<script>.txt", TXT, "reportContent-Type: text-html<script>.txt"),
    ("invoice\u202egpj.pdf", PDF, "invoicegpj.pdf"),
    ("\u2067evil\u2069.txt", TXT, "evil.txt"),
    ("Bericht M\u00e4rz 2026.pdf", PDF, "Bericht M\u00e4rz 2026.pdf"),
    ("\u62a5\u544a.pdf", PDF, "\u62a5\u544a.pdf"),
    ("\u00e9" * 300 + ".pdf", PDF, "\u00e9" * 196 + ".pdf"),
    ('a"; filename="evil.html.txt', TXT, 'a"; filename="evil.html.txt'),
    ("semi;colon,comma%20pct.txt", TXT, "semi;colon,comma%20pct.txt"),
]


def test_hostile_filenames_are_metadata_only_and_encoded_on_download(app, db, world):
    officer = signed_in(app, "officer@example.test")
    for i, (filename, base, stored) in enumerate(ACCEPTED):
        content = base + f"\n{i}\n".encode()  # a distinct blob per case
        r = _upload(officer, world, filename, content, title=f"Name case {i}")
        assert r.status_code == 303, (filename, r.status_code, r.get_data(as_text=True)[-600:])
        evidence = db.session.execute(sa.select(Evidence).where(Evidence.title == f"Name case {i}")).scalar_one()
        assert evidence.filename == stored, (filename, evidence.filename)
        _assert_stored_by_hash_only(app, evidence, content)
        with _download(officer.client, evidence.id) as response:
            assert response.status_code == 200 and response.get_data() == content
            _assert_disposition(response, stored)
    root = Path(app.config["EVIDENCE_DIR"])
    assert not [p for p in root.parent.rglob("*") if p.name in ("passwd.pdf", "hosts.txt", "boot.ini.txt")]


_n = itertools.count()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stem=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80),
       ext=st.sampled_from(["txt", "TXT", "csv", "txt.exe", "html", ""]))
def test_any_filename_is_stored_by_hash_and_encoded_safely(app, db, world, stem, ext):
    if "_officer" not in world:
        world["_officer"] = signed_in(app, "officer@example.test")
    officer = world["_officer"]
    n = next(_n)
    filename = f"{stem}.{ext}" if ext else stem
    content = TXT + f"{n}\n".encode()
    r = _upload(officer, world, filename, content, title=f"Generated {n}")
    kept = extension_of(clean_filename(filename)) in ("txt", "csv")  # the content is text either way
    assert r.status_code == (303 if kept else 422), (filename, r.status_code)
    stored = db.session.execute(sa.select(Evidence).where(Evidence.title == f"Generated {n}")).scalars().all()
    if not kept:
        assert "are not accepted. Allowed:" in r.get_data(as_text=True) and stored == []
        return
    evidence = stored[0]
    assert len(stored) == 1
    assert evidence.filename.lower().endswith((".txt", ".csv"))
    _assert_stored_by_hash_only(app, evidence, content)
    with _download(officer.client, evidence.id) as response:
        assert response.status_code == 200
        _assert_disposition(response, evidence.filename)
        assert response.mimetype in ("text/plain", "text/csv")
