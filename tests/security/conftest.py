"""Shared pieces of the security suite (SECURITY-PLAN section 4): a populated world, sign-in per role,
a whole-database checksum, a raw multipart builder and an HTML injection checker.

Everything runs against the app in-process (loopback only); test_rate_limit_redis.py starts gunicorn.
"""
import hashlib
import io
import re
import tempfile
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from hypothesis.configuration import set_hypothesis_home_dir
from jinja2 import BytecodeCache
from werkzeug.datastructures import FileStorage

from tests.conftest import Auth
from tests.factories import make_agency, make_module, make_recommendation, make_requirement, make_user
from tracker.models import Base, Finding, MonitoringPeriod

# Hypothesis keeps its example database and caches outside the working tree.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "decree-tracker-hypothesis")

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
TXT = b"Training roster, spring 2026\nAll 40 hours completed.\n"

# Columns a GET may legitimately touch: the session's activity time and a token's last use.
VOLATILE_COLUMNS = {("user_session", "last_seen_at"), ("api_token", "last_used_at")}
# Tables a GET may append to: a report or evidence package signs the audit chain's head when it moved since the
# newest checkpoint (issue 19), in a transaction of its own.
VOLATILE_TABLES = {"audit_checkpoint"}


class _SharedBytecode(BytecodeCache):
    """Compile each template once per run although each test builds its own app."""

    store = {}

    def load_bytecode(self, bucket):
        if bucket.key in self.store:
            bucket.bytecode_from_string(self.store[bucket.key])

    def dump_bytecode(self, bucket):
        self.store[bucket.key] = bucket.bytecode_to_string()


@pytest.fixture
def make_app(make_app):
    """The suite-wide factory, with the shared template cache on every app it builds."""

    def _make(**overrides):
        app = make_app(**overrides)
        app.jinja_env.bytecode_cache = _SharedBytecode()
        return app

    return _make


# --- database checksum -----------------------------------------------------------------------------

def table_digests(db, exclude=VOLATILE_COLUMNS):
    """{table: (row count, sha256 of every row)} for every table of the schema, in primary-key order."""
    result = {}
    for table in Base.metadata.sorted_tables:
        if table.name in VOLATILE_TABLES and exclude is VOLATILE_COLUMNS:
            continue
        cols = [c for c in table.columns if (table.name, c.name) not in exclude]
        rows = db.session.execute(sa.select(*cols).order_by(*table.primary_key.columns)).all()
        digest = hashlib.sha256()
        for row in rows:
            digest.update(repr(tuple(row)).encode())
            digest.update(b"\n")
        result[table.name] = (len(rows), digest.hexdigest())
    db.session.commit()  # end the read snapshot so later requests' commits are seen
    return result


def changed_tables(before, after):
    return sorted(name for name in before if before[name] != after[name])


# --- requests ----------------------------------------------------------------------------------------

def multipart(fields, files=(), boundary="----security-suite-boundary"):
    """A hand-built multipart body: file names go out as RFC 2231 `filename*` so any character survives.

    `files` is a list of (field name, file name, bytes). Returns (body, content type).
    """
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                     + str(value).encode() + b"\r\n")
    for name, filename, content in files:
        encoded = quote(filename, safe="")
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                     f"filename*=UTF-8''{encoded}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
                     + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post_multipart(auth, url, fields, files=(), **kwargs):
    body, content_type = multipart({"csrf_token": auth.token, **fields}, files)
    return auth.client.post(url, data=body, content_type=content_type, **kwargs)


def signed_in(app, email):
    auth = Auth(app.test_client())
    response = auth.login(email)
    assert response.status_code == 303, f"sign-in of {email} failed: {response.status_code}"
    return auth


# --- a populated world -------------------------------------------------------------------------------

def store_file(db, req, actor, content=PDF, filename="report.pdf", **values):
    from tracker.services import evidence as evidence_service

    staged = evidence_service.stage_upload(FileStorage(stream=io.BytesIO(content), filename=filename), 10**6)
    evidence = evidence_service.add_file(req, staged, {"title": values.pop("title", "Policy"),
                                                       "visibility": values.pop("visibility", "shareable"),
                                                       **values}, actor=actor)
    db.session.flush()
    return evidence


@pytest.fixture
def world(app, db):
    """Agency A (every role, a requirement with file and link evidence, an open and a closed period with
    findings, a comment, an API token and a calendar feed) and agency B next door."""
    from tracker.services import checkpoints, tokens
    from tracker.services import requirements as req_service

    module = make_module("cit", "Crisis Intervention Teams", 1)
    rec = make_recommendation("CIT-REC-1", module, title="Crisis line")
    a = make_agency(slug="agency-a", name="Harbor City PD", public_enabled=True)
    b = make_agency(slug="agency-b", name="Other Town PD")
    users = {
        "admin": make_user("admin@example.test", is_admin=True, name="Ada Admin"),
        "officer": make_user("officer@example.test", role="officer", agency=a, name="Olive Officer"),
        "officer2": make_user("officer2@example.test", role="officer", agency=a, name="Oscar Second"),
        "monitor": make_user("monitor@example.test", role="monitor", agency=a, name="Mona Monitor"),
        "committee": make_user("committee@example.test", role="committee", agency=a, name="Cole Committee"),
        "officer_b": make_user("officer-b@example.test", role="officer", agency=b, name="Bea Elsewhere"),
    }
    req = make_requirement(a, module=module, code="CIT-001", title="Crisis line staffing", recommendation_id=rec.id,
                           summary="Staff the crisis line.", citation_text="Decree ¶ 131(a)",
                           due_date=date(2026, 6, 30))
    req2 = make_requirement(a, module=module, code="CIT-002", title="Training")
    req_b = make_requirement(b, module=module, code="CIT-001", title="B's own requirement")
    officer = users["officer"]
    file_ev = store_file(db, req, officer, title="Policy 4.2", period_start=date(2025, 1, 1),
                         period_end=date(2025, 3, 31))
    from tracker.services import evidence as evidence_service

    link_ev = evidence_service.add_link(req, "https://example.org/policy", {"title": "Policy page"}, actor=officer)
    file_ev_b = store_file(db, req_b, users["officer_b"], content=PDF + b"%b", title="B's file")
    levels = {lvl.key: lvl for lvl in a.scale.levels}
    closed = MonitoringPeriod(agency_id=a.id, name="Report 1", start_date=date(2025, 1, 1),
                              end_date=date(2025, 6, 30), state="filed")
    open_ = MonitoringPeriod(agency_id=a.id, name="Report 2", start_date=date(2025, 7, 1),
                             end_date=date(2025, 12, 31))
    period_b = MonitoringPeriod(agency_id=b.id, name="B report", start_date=date(2025, 1, 1),
                                end_date=date(2025, 6, 30))
    db.session.add_all([closed, open_, period_b])
    db.session.flush()
    db.session.add_all([
        Finding(requirement_id=req.id, period_id=closed.id, level_id=levels["partial"].id, narrative="Half way.",
                monitor_id=users["monitor"].id),
        Finding(requirement_id=req.id, period_id=open_.id, level_id=levels["full"].id, narrative="Done.",
                monitor_id=users["monitor"].id),
    ])
    req_service.add_comment(req, "First comment.", actor=officer)
    from tracker.models import DocumentRequest

    doc_request = DocumentRequest(agency_id=a.id, period_id=open_.id, number=1, title="Crisis line rosters",
                                  due_date=date(2099, 1, 31), original_due_date=date(2099, 1, 31),
                                  created_by_id=users["monitor"].id, requirements=[req])
    db.session.add(doc_request)
    _api, api_secret = tokens.create(officer, "api", "report script")
    _cal, cal_secret = tokens.create(officer, "calendar", "", a)
    policy, public_policy = policy_documents(a, req, users)
    checkpoints.make("manual")  # issue 19: a signed checkpoint to download
    committee = committee_world(db, a, req, file_ev, users["committee"])  # issue 14
    db.session.commit()
    return {
        "a": a, "b": b, "module": module, "rec": rec, "users": users, "req": req, "req2": req2, "req_b": req_b,
        "file": file_ev, "link": link_ev, "file_b": file_ev_b, "closed": closed, "open": open_,
        "period_b": period_b, "levels": levels, "api_secret": api_secret, "cal_secret": cal_secret,
        "doc_request": doc_request, "policy": policy, "public_policy": public_policy, **committee,
    }


def committee_world(db, agency, req, evidence, member):
    """Issue 14: a committee meeting with one document (the evidence file's bytes), a submitted recommendation
    naming the requirement, and a member's draft."""
    from datetime import datetime

    from tracker.models import CommitteeRecommendation, DocumentFile, Meeting

    meeting = Meeting(agency_id=agency.id, title="Spring meeting", starts_at=datetime(2026, 4, 2, 18, 0),
                      agenda="1. Crisis line rosters", location="City Hall, room 2")
    meeting.documents = [DocumentFile(agency_id=agency.id, sha256=evidence.sha256, size_bytes=evidence.size_bytes,
                                      filename="agenda.pdf", media_type="application/pdf")]
    submitted = CommitteeRecommendation(
        agency_id=agency.id, number=1, title="Staff the line at night", body="Two call-takers after 22:00.",
        state="submitted", submitted_at=datetime(2026, 4, 3, 9, 0), response_due=date(2099, 1, 1),
        created_by_id=member.id, submitted_by_id=member.id, requirements=[req])
    draft = CommitteeRecommendation(agency_id=agency.id, number=2, title="Publish rosters", body="Monthly.",
                                    state="draft", created_by_id=member.id)
    db.session.add_all([meeting, submitted, draft])
    # Indicators: one of the agency's with a value, and a catalog suggestion not yet adopted.
    from tracker.models import CatalogIndicator, Indicator, IndicatorValue

    indicator = Indicator(agency_id=agency.id, key="cit-on-scene", name="CIT officer on scene", unit="percent",
                          direction="up", frequency="quarter", target_value=75)
    db.session.add_all([indicator, CatalogIndicator(
        key="crisis-arrest", module_id=req.module_id, name="Crisis calls ending in arrest", definition="Share.",
        unit="percent", direction="down")])
    db.session.flush()
    db.session.add(IndicatorValue(indicator_id=indicator.id, period_start=date(2025, 1, 1), value=40))
    db.session.flush()
    return {"meeting": meeting, "meeting_doc": meeting.documents[0], "committee_rec": submitted,
            "draft_rec": draft, "indicator": indicator}


def policy_documents(agency, req, users):
    """Issue 16: a draft policy with its first version, and a curriculum whose version is open for comment
    (committee and public) until a month from today."""
    from datetime import timedelta

    from tracker.services import evidence as evidence_service
    from tracker.services import policies

    made = []
    for title, kind, content in (("General Order 4.12: Crisis Intervention", "policy", PDF + b"%go"),
                                 ("CIT curriculum", "curriculum", PDF + b"%curriculum")):
        doc = policies.create_document(agency, {"title": title, "kind": kind, "requirement_ids": [req.id]},
                                       actor=users["officer"])
        staged = evidence_service.stage_upload(FileStorage(stream=io.BytesIO(content), filename="v1.pdf"), 10**6)
        policies.add_version(doc, staged, "", {}, actor=users["officer"])
        made.append(doc)
    today = policies.today()
    policies.open_window(made[1], agency, today, today + timedelta(days=30), True, actor=users["admin"])
    return made


# --- HTML injection checks ---------------------------------------------------------------------------

URL_ATTRIBUTES = {"href", "src", "action", "formaction", "hx-get", "hx-post", "hx-put", "hx-patch", "hx-delete",
                  "data", "poster", "background", "xlink:href"}
_STRIP_FOR_SCHEME = re.compile(r"[\x00-\x20\x7f]+")


class _TagCollector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    handle_startendtag = handle_starttag


def injection_problems(html):
    """What in this page could only come from markup a user smuggled in. Empty list when clean."""
    problems = []
    lowered = html.lower()
    for needle in ("<script>alert", "<img src=x", "<svg onload", "<div hx-get=\"/admin\"", "hx-trigger=\"load\"",
                   "<iframe", "onmouseover=\"alert"):
        if needle in lowered:
            problems.append(f"raw {needle!r} in the page")
    parser = _TagCollector()
    parser.feed(html)
    for tag, attrs in parser.tags:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            problems.append("inline <script>")
        if tag == "script" and not dict(attrs).get("src", "").startswith("/static/"):
            problems.append(f"script from {dict(attrs).get('src')!r}")
        for name, value in attrs:
            if name.startswith("on"):
                problems.append(f"event handler attribute {name}={value!r} on <{tag}>")
            if name == "hx-trigger" and value and "load" in value:
                problems.append(f"hx-trigger={value!r} on <{tag}>")
            if name in {"hx-on", "hx-vals", "hx-vars"} or name.startswith("hx-on"):
                problems.append(f"{name} on <{tag}>")
            if name in URL_ATTRIBUTES and value:
                scheme_probe = _STRIP_FOR_SCHEME.sub("", value).lower()
                if scheme_probe.startswith(("javascript:", "vbscript:", "data:")):
                    problems.append(f"{name}={value!r} on <{tag}>")
            if name == "hx-get" and value == "/admin":
                problems.append(f"hx-get=/admin on <{tag}>")
    return problems


def assert_clean(html, where):
    problems = injection_problems(html)
    assert not problems, f"{where}: {problems}"
