"""Advisory-committee meetings: when and where, agenda and minutes (Markdown, rendered safely), who was there,
and the papers (kept in the evidence store as DocumentFile rows).

Who edits is the view's decision (tracker/views/committee.py): the agency's compliance officers, the
committee chair and the administrator. Every agency member reads meetings. Only the administrator marks
a meeting's agenda or minutes public, and only while the agency's public page is on.
"""
import functools
import re
from datetime import datetime, time, timedelta

import sqlalchemy as sa
from icalendar import Event
from markdown_it import MarkdownIt
from markupsafe import Markup

from tracker.extensions import db
from tracker.models import Agency, DocumentFile, Meeting, Membership, User, utcnow
from tracker.services import audit
from tracker.services.errors import ValidationFailed
from tracker.services.evidence import check_link

MAX_TEXT = 50_000
MAX_GUESTS = 4000
SAFE_SCHEMES = {"http", "https", "mailto"}
_CONTROL = re.compile(r"[\x00-\x20\x7f]+")
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")


# --- Markdown ---------------------------------------------------------------------------------------------

def safe_link(url):
    """Links in minutes may go to http(s), mailto or a relative address; never javascript:, data: and the like.

    Browsers drop tabs, newlines and spaces inside a scheme, so the check does too."""
    probe = _CONTROL.sub("", url or "").lower()
    match = _SCHEME.match(probe)
    if match:
        return match.group(1) in SAFE_SCHEMES
    return ":" not in probe.split("/", 1)[0]


def _link_open(renderer, tokens, idx, options, env):
    tokens[idx].attrSet("rel", "nofollow noopener noreferrer")
    return renderer.renderToken(tokens, idx, options, env)


def _heading(renderer, tokens, idx, options, env):
    # The page has its own h1 and h2: the writer's headings start at h3 so the outline stays whole.
    token = tokens[idx]
    token.tag = f"h{min(int(token.tag[1]) + 2, 6)}"
    return renderer.renderToken(tokens, idx, options, env)


def _parser():
    # CommonMark with raw HTML off (a tag is shown as text), images off (no requests to other sites),
    # tables and strike-through on; every link checked by safe_link and marked rel=nofollow.
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"]).disable(["image", "html_block", "html_inline"])
    md.validateLink = safe_link
    md.add_render_rule("link_open", _link_open)
    md.add_render_rule("heading_open", _heading)
    md.add_render_rule("heading_close", _heading)
    return md


_MD = _parser()


def render_markdown(text):
    """Markdown as HTML that can carry no markup of the writer's own: safe to mark as Markup."""
    return Markup(f'<div class="tracker-markdown">{_MD.render(text or "")}</div>')  # noqa: S704 - html disabled: the writer's tags are escaped as text


# --- reading ----------------------------------------------------------------------------------------------

def meetings(agency):
    """Every meeting of the agency, newest first, with attendees and documents (three queries)."""
    return db.session.execute(
        sa.select(Meeting).where(Meeting.agency_id == agency.id)
        .options(sa.orm.selectinload(Meeting.attendees), sa.orm.selectinload(Meeting.documents))
        .order_by(Meeting.starts_at.desc(), Meeting.id.desc())
    ).scalars().all()


def upcoming(agency, limit=5):
    """Meetings from the start of today on, soonest first (times are the meeting's local time)."""
    start = datetime.combine(utcnow().date(), time.min)
    return db.session.execute(_upcoming_statement(), {"agency": agency.id, "start": start, "limit": limit}
                              ).scalars().all()


@functools.cache
def _upcoming_statement():
    """The dashboard asks on every render: built once, run with parameters."""
    return (sa.select(Meeting).where(Meeting.agency_id == sa.bindparam("agency"),
                                     Meeting.starts_at >= sa.bindparam("start"))
            .order_by(Meeting.starts_at, Meeting.id).limit(sa.bindparam("limit")))


def public_meetings(agency):
    """Meetings whose agenda or minutes the administrator published, newest first."""
    return db.session.execute(
        sa.select(Meeting).where(Meeting.agency_id == agency.id,
                                 sa.or_(Meeting.agenda_public.is_(True), Meeting.minutes_public.is_(True)))
        .order_by(Meeting.starts_at.desc(), Meeting.id.desc())
    ).scalars().all()


def attendee_choices(agency):
    """The agency's members (any role) who may be recorded as present, by name."""
    return db.session.execute(
        sa.select(User, Membership.role).join(Membership, Membership.user_id == User.id)
        .where(Membership.agency_id == agency.id).order_by(User.name, User.email)
    ).all()


def calendar_events(agency, base_url, stamp):
    """The agency's meetings as iCalendar events for its calendar feed (one query). Times are floating
    (the meeting's local time, as entered); an event lasts two hours unless a calendar is told otherwise."""
    rows = db.session.execute(
        sa.select(Meeting.id, Meeting.title, Meeting.starts_at, Meeting.location, Meeting.link)
        .where(Meeting.agency_id == agency.id).order_by(Meeting.starts_at)
    ).all()
    events = []
    for m in rows:
        event = Event()
        event.add("uid", f"meeting-{m.id}@{agency.slug}.decree-tracker")
        event.add("dtstamp", stamp)
        event.add("dtstart", m.starts_at)
        event.add("dtend", m.starts_at + timedelta(hours=2))
        event.add("summary", f"Advisory committee: {m.title}")
        if m.location or m.link:
            event.add("location", m.location or m.link)
        event.add("url", f"{base_url}agencies/{agency.slug}/committee/meetings/{m.id}")
        events.append(event)
    return events


# --- writing ----------------------------------------------------------------------------------------------

def _text(values, errors, name, label, max_len, required=False):
    value = (values.get(name) or "").strip()
    if required and not value:
        errors[name] = f"{label} is required."
    elif len(value) > max_len:
        errors[name] = f"{label} must be at most {max_len} characters."
    return value


def _clean(agency, values):
    errors = {}
    clean = {
        "title": _text(values, errors, "title", "The title", 300, required=True),
        "location": _text(values, errors, "location", "The place", 300),
        "agenda": _text(values, errors, "agenda", "The agenda", MAX_TEXT),
        "minutes": _text(values, errors, "minutes", "The minutes", MAX_TEXT),
        "guests": _text(values, errors, "guests", "Other people present", MAX_GUESTS),
    }
    starts_at = values.get("starts_at")
    if not isinstance(starts_at, datetime):
        errors["starts_at"] = "Enter the date and time of the meeting."
    clean["starts_at"] = starts_at
    link = (values.get("link") or "").strip()
    if link:
        link, problem = check_link(link)
        if problem:
            errors["link"] = problem
    clean["link"] = link or ""
    attendees = _attendees(agency, values.get("attendee_ids") or [], errors)
    if errors:
        raise ValidationFailed(errors)
    return clean, attendees


def _attendees(agency, ids, errors):
    try:
        wanted = {int(i) for i in ids}
    except (TypeError, ValueError):
        errors["attendee_ids"] = "Choose the people present from the list."
        return []
    members = {u.id: u for u, _role in attendee_choices(agency)}
    unknown = wanted - set(members)
    if unknown:
        errors["attendee_ids"] = "Only members of this agency can be recorded as present."
    return [members[i] for i in sorted(wanted & set(members), key=lambda i: members[i].name)]


def _snapshot(meeting):
    return {**audit.snapshot(meeting, ("title", "starts_at", "location", "link", "agenda", "minutes", "guests")),
            "attendees": sorted(u.email for u in meeting.attendees)}


def create_meeting(agency, values, *, actor):
    clean, attendees = _clean(agency, values)
    meeting = Meeting(agency_id=agency.id, created_by_id=actor.id, **clean)
    meeting.attendees = attendees
    db.session.add(meeting)
    db.session.flush()
    audit.record("meeting.create", meeting, after=_snapshot(meeting), actor=actor)
    return meeting


def update_meeting(meeting, values, *, actor):
    """Change a meeting; False when nothing changed (no audit event)."""
    clean, attendees = _clean(db.session.get(Agency, meeting.agency_id), values)
    before = _snapshot(meeting)
    for name, value in clean.items():
        setattr(meeting, name, value)
    meeting.attendees = attendees
    after = _snapshot(meeting)
    if after == before:
        return False
    meeting.updated_at = utcnow()
    db.session.flush()
    changed = {k for k in after if after[k] != before[k]}
    audit.record("meeting.update", meeting, before={k: before[k] for k in changed},
                 after={k: after[k] for k in changed}, actor=actor)
    return True


def add_document(meeting, staged, *, actor):
    """Attach a file already streamed into the store (evidence.stage_upload checked its type and size)."""
    blob, media_type, filename = staged
    document = DocumentFile(agency_id=meeting.agency_id, sha256=blob.sha256, size_bytes=blob.size,
                            filename=filename, media_type=media_type, uploaded_by_id=actor.id)
    db.session.add(document)
    meeting.documents.append(document)
    db.session.flush()
    audit.record("meeting.document", meeting, actor=actor,
                 after={"file_id": document.id, "filename": filename, "sha256": blob.sha256, "size": blob.size})
    return document


def meeting_document(meeting, file_id):
    """One of this meeting's documents, or None."""
    return next((d for d in meeting.documents if d.id == file_id), None)


def set_public(meeting, agency, agenda_public, minutes_public, *, actor):
    """The administrator's choice of what of a meeting the public page shows (only while it is on)."""
    agenda_public, minutes_public = bool(agenda_public), bool(minutes_public)
    if (agenda_public or minutes_public) and not agency.public_enabled:
        raise ValidationFailed({"agenda_public": "The agency's public page is off; turn it on before "
                                                 "publishing anything on it."})
    before = {"agenda_public": meeting.agenda_public, "minutes_public": meeting.minutes_public}
    after = {"agenda_public": agenda_public, "minutes_public": minutes_public}
    if before == after:
        return False
    meeting.agenda_public, meeting.minutes_public = agenda_public, minutes_public
    db.session.flush()
    audit.record("meeting.publish", meeting, before=before, after=after, actor=actor)
    return True
