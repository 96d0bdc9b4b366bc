"""Policies and training curricula through review to approval.

A document (policy, general order, curriculum…) has versions kept in the evidence store. A review round on the
latest version gathers the monitoring team's comments until its deadline and ends with an outcome; a community
comment window lets committee members (and, when the admin allows it on a published agency, the public) comment;
the department answers each comment in its next version; the admin records the approval and the effective date.

States: draft → in review → (in community comment) → revised → … → approved → in effect (from the effective date,
derived, never written on a read) → superseded. Services flush and audit; views commit.
"""
import functools
from dataclasses import dataclass, field
from datetime import date, timedelta

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import (
    APPROVAL_KINDS,
    COMMENT_RESPONSES,
    DOCUMENT_KINDS,
    DOCUMENT_STATES,
    ROUND_OUTCOMES,
    CommentWindow,
    DocumentFile,
    PolicyComment,
    PolicyDocument,
    PolicyVersion,
    Requirement,
    ReviewRound,
    utcnow,
)
from tracker.models.policies import policy_document_requirement
from tracker.services import audit
from tracker.services.errors import ValidationFailed

# A version is a document file a reviewer opens: PDF or Word, at least; others are refused.
VERSION_TYPES = {"application/pdf": "PDF",
                 "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "Word (DOCX)"}
MAX_TITLE, MAX_ANCHOR, MAX_BODY, MAX_NOTE, MAX_REASON = 300, 200, 4000, 4000, 2000
MAX_PUBLIC_NAME = 100
CLOSED_STATES = ("approved", "in_effect", "superseded")
# Who comments where: the monitoring team in review rounds, committee members in community windows.
ROUND_COMMENTERS = {"monitor", "admin"}
WINDOW_COMMENTERS = {"committee", "monitor", "admin"}


def today():
    return utcnow().date()


def display_state(doc, on=None):
    """The state shown: an approved document is in effect from its effective date (derived, so a read writes
    nothing)."""
    on = on or today()
    if doc.state == "approved" and doc.effective_on is not None and doc.effective_on <= on:
        return "in_effect"
    return doc.state


def state_label(state):
    return DOCUMENT_STATES.get(state, state)


def state_condition(state, on):
    """SQL condition selecting documents whose displayed state is `state`."""
    effective = sa.and_(PolicyDocument.effective_on.is_not(None), PolicyDocument.effective_on <= on)
    if state == "in_effect":
        return sa.or_(PolicyDocument.state == "in_effect", sa.and_(PolicyDocument.state == "approved", effective))
    if state == "approved":
        return sa.and_(PolicyDocument.state == "approved", sa.not_(effective))
    return PolicyDocument.state == state


# --- documents -------------------------------------------------------------------------------------------

def _requirements_of(agency, ids):
    """The agency's requirements named by id; an id of another agency (or none) is an error, not ignored."""
    try:
        wanted = sorted({int(i) for i in ids or [] if str(i).strip()})
    except (TypeError, ValueError):
        raise ValidationFailed({"requirement_ids": "Choose requirements from the list."}) from None
    if not wanted:
        return []
    found = db.session.execute(
        sa.select(Requirement).where(Requirement.agency_id == agency.id, Requirement.id.in_(wanted))
        .order_by(Requirement.sort_key)).scalars().all()
    if len(found) != len(wanted):
        raise ValidationFailed({"requirement_ids": "Choose requirements of this agency from the list."})
    return found


def _document_values(values):
    errors = {}
    title = " ".join((values.get("title") or "").split())
    if not title:
        errors["title"] = "Give the document a title, e.g. “General Order 4.12: Crisis Intervention”."
    elif len(title) > MAX_TITLE:
        errors["title"] = f"The title must be at most {MAX_TITLE} characters."
    kind = values.get("kind") or ""
    if kind not in DOCUMENT_KINDS:
        errors["kind"] = "Choose the kind of document: " + ", ".join(DOCUMENT_KINDS.values()) + "."
    return errors, title, kind


def create_document(agency, values, *, actor):
    errors, title, kind = _document_values(values)
    try:
        requirements = _requirements_of(agency, values.get("requirement_ids"))
    except ValidationFailed as exc:
        errors.update(exc.errors)
        requirements = []
    if errors:
        raise ValidationFailed(errors)
    doc = PolicyDocument(agency_id=agency.id, title=title, kind=kind, state="draft", created_by_id=actor.id,
                         approval_ref="")
    doc.requirements = requirements
    db.session.add(doc)
    db.session.flush()
    audit.record("policy.create", doc, actor=actor,
                 after={"title": title, "kind": kind, "requirements": [r.code for r in requirements]})
    return doc


def update_document(doc, agency, values, row_version, *, actor):
    """Title, kind and the requirements it implements; refused when someone saved first."""
    if str(row_version) != str(doc.row_version):
        raise ValidationFailed({"row_version": "Someone changed this document since you opened the page; "
                                               "the form now shows the saved values."})
    errors, title, kind = _document_values(values)
    try:
        requirements = _requirements_of(agency, values.get("requirement_ids"))
    except ValidationFailed as exc:
        errors.update(exc.errors)
        requirements = []
    if errors:
        raise ValidationFailed(errors)
    before = {"title": doc.title, "kind": doc.kind, "requirements": [r.code for r in doc.requirements]}
    doc.title, doc.kind, doc.requirements = title, kind, requirements
    db.session.flush()
    audit.record("policy.update", doc, actor=actor, before=before,
                 after={"title": title, "kind": kind, "requirements": [r.code for r in requirements]})
    return doc


def latest_version(doc):
    return doc.versions[-1] if doc.versions else None


def open_round(doc):
    """The review round still waiting for its outcome, on any version of the document, or None."""
    return db.session.execute(
        sa.select(ReviewRound).join(PolicyVersion, PolicyVersion.id == ReviewRound.version_id)
        .where(PolicyVersion.document_id == doc.id, ReviewRound.outcome.is_(None))
        .order_by(ReviewRound.id.desc()).limit(1)).scalar_one_or_none()


def current_window(doc, on=None):
    """The community comment window on the latest version that has not closed yet (it may open later)."""
    version = latest_version(doc)
    if version is None:
        return None
    return db.session.execute(
        sa.select(CommentWindow).where(CommentWindow.version_id == version.id,
                                       CommentWindow.closes_on >= (on or today()))
        .order_by(CommentWindow.opens_on).limit(1)).scalar_one_or_none()


def _require_open(doc, what):
    if doc.state in CLOSED_STATES:
        raise ValidationFailed({"state": f"This document is {state_label(display_state(doc)).lower()}; "
                                         f"{what} is no longer possible."})


# --- versions and the department's answers -----------------------------------------------------------------

def _answers(doc, answers):
    """Check the answers given with a new version: {comment_id: (response, reason)} for comments on this
    document's earlier versions not answered yet. Returns [(comment, response, reason)]."""
    if not answers:
        return []
    comments = {c.id: c for c in db.session.execute(
        sa.select(PolicyComment).join(PolicyVersion, PolicyVersion.id == PolicyComment.version_id)
        .where(PolicyVersion.document_id == doc.id, PolicyComment.id.in_(list(answers)))).scalars()}
    errors, result = {}, []
    for comment_id, (response, reason) in sorted(answers.items()):
        comment = comments.get(comment_id)
        if comment is None or comment.state != "published" or comment.response is not None:
            errors[f"answer-{comment_id}"] = "That comment cannot be answered here (it was answered already?)."
            continue
        reason = (reason or "").strip()
        if response not in COMMENT_RESPONSES:
            errors[f"answer-{comment_id}"] = f"Comment {comment_id}: choose Accepted or Not accepted."
        elif response == "not_accepted" and not reason:
            errors[f"reason-{comment_id}"] = f"Comment {comment_id}: say why it is not accepted."
        elif len(reason) > MAX_REASON:
            errors[f"reason-{comment_id}"] = (f"Comment {comment_id}: the reason must be at most {MAX_REASON} "
                                              "characters.")
        else:
            result.append((comment, response, reason))
    if errors:
        raise ValidationFailed(errors)
    return result


def add_version(doc, staged, note, answers, *, actor):
    """A new version from a file already staged in the evidence store (evidence.stage_upload), with the
    department's answers to the comments on the versions before it."""
    blob, media_type, filename = staged
    errors = {}
    if media_type not in VERSION_TYPES:
        errors["file"] = "A version must be a PDF or a Word (DOCX) document."
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        errors["note"] = f"The note must be at most {MAX_NOTE} characters."
    if doc.state in CLOSED_STATES:
        errors["state"] = (f"This document is {state_label(display_state(doc)).lower()}; a changed text is a new "
                           "document that supersedes it.")
    if open_round(doc) is not None:
        errors["round"] = "A review round is still open; record its outcome before uploading the next version."
    if errors:
        raise ValidationFailed(errors)
    checked = _answers(doc, answers)
    file = DocumentFile(agency_id=doc.agency_id, sha256=blob.sha256, size_bytes=blob.size, filename=filename,
                        media_type=media_type, uploaded_by_id=actor.id)
    db.session.add(file)
    db.session.flush()
    number = (latest_version(doc).number if doc.versions else 0) + 1
    version = PolicyVersion(document_id=doc.id, number=number, file_id=file.id, note=note, created_by_id=actor.id)
    db.session.add(version)
    db.session.flush()
    for comment, response, reason in checked:
        comment.response, comment.response_reason = response, reason
        comment.answered_in_version_id = version.id
    before_state = doc.state
    if doc.state != "draft":
        doc.state = "revised"  # a second draft before any review stays a draft
    db.session.flush()
    db.session.refresh(doc, ["versions"])
    audit.record("policy.version", version, agency_id=doc.agency_id, actor=actor,
                 before={"state": before_state}, after={
                     "document": doc.id, "number": number, "sha256": blob.sha256, "filename": filename,
                     "state": doc.state, "answers": {c.id: r for c, r, _ in checked}})
    return version


# --- review rounds -----------------------------------------------------------------------------------------

def open_review_round(doc, agency, comment_due, outside_reviewers, *, actor):
    """Send the latest version to the monitoring team (and named outside reviewers) for comment until
    `comment_due` (default: the agency's review period, 30 days)."""
    _require_open(doc, "a review round")
    version = latest_version(doc)
    errors = {}
    if version is None:
        errors["version"] = "Upload a version first; reviewers comment on a version."
    if open_round(doc) is not None:
        errors["round"] = "A review round is already open on this document."
    start = today()
    comment_due = comment_due or start + timedelta(days=agency.review_comment_days)
    if not isinstance(comment_due, date):
        errors["comment_due"] = "Enter the comment deadline as YYYY-MM-DD."
    elif comment_due < start:
        errors["comment_due"] = "The comment deadline cannot be in the past."
    outside_reviewers = (outside_reviewers or "").strip()
    if len(outside_reviewers) > 2000:
        errors["outside_reviewers"] = "List at most 2,000 characters of outside reviewers."
    if errors:
        raise ValidationFailed(errors)
    review = ReviewRound(version_id=version.id, opened_on=start, comment_due=comment_due,
                         outside_reviewers=outside_reviewers, opened_by_id=actor.id)
    db.session.add(review)
    before = doc.state
    doc.state = "in_review"
    db.session.flush()
    audit.record("policy.round_open", review, agency_id=doc.agency_id, actor=actor, before={"state": before},
                 after={"document": doc.id, "version": version.number, "comment_due": comment_due,
                        "outside_reviewers": outside_reviewers})
    _notify("review_round_opened", doc, review, actor)
    return review


def close_review_round(doc, outcome, *, actor):
    review = open_round(doc)
    if review is None:
        raise ValidationFailed({"round": "No review round is open on this document."})
    if outcome not in ROUND_OUTCOMES:
        raise ValidationFailed({"outcome": "Choose the outcome: " + ", ".join(ROUND_OUTCOMES.values()) + "."})
    review.outcome, review.closed_on, review.closed_by_id = outcome, today(), actor.id
    db.session.flush()
    audit.record("policy.round_close", review, agency_id=doc.agency_id, actor=actor,
                 after={"document": doc.id, "outcome": outcome})
    return review


# --- comments ----------------------------------------------------------------------------------------------

def _comment_text(anchor, body):
    errors = {}
    anchor = " ".join((anchor or "").split())
    body = (body or "").strip()
    if len(anchor) > MAX_ANCHOR:
        errors["anchor"] = f"The section or page reference must be at most {MAX_ANCHOR} characters."
    if not body:
        errors["body"] = "Write the comment first."
    elif len(body) > MAX_BODY:
        errors["body"] = f"The comment must be at most {MAX_BODY:,} characters."
    return errors, anchor, body


def add_comment(doc, channel, anchor, body, *, actor, role):
    """A signed-in reviewer's comment: in the open review round (monitoring team) or in the open community
    window (committee members). Published at once; anchored to a section/page reference when given."""
    errors, anchor, body = _comment_text(anchor, body)
    on = today()
    round_id = window_id = None
    version = latest_version(doc)
    if channel == "round":
        review = open_round(doc)
        if role not in ROUND_COMMENTERS:
            errors["channel"] = "Review-round comments come from the monitoring team."
        elif review is None or version is None or review.version_id != version.id:
            errors["channel"] = "No review round is open on this document."
        elif on > review.comment_due:
            errors["channel"] = f"The comment period closed on {review.comment_due.isoformat()}."
        else:
            round_id = review.id
    elif channel == "window":
        window = current_window(doc, on)
        if role not in WINDOW_COMMENTERS:
            errors["channel"] = "Community comments come from committee members."
        elif window is None or window.opens_on > on:
            errors["channel"] = "No community comment window is open on this document."
        else:
            window_id = window.id
    else:
        errors["channel"] = "Choose where the comment goes."
    if errors:
        raise ValidationFailed(errors)
    comment = PolicyComment(version_id=version.id, round_id=round_id, window_id=window_id, author_id=actor.id,
                            anchor=anchor, body=body, state="published")
    db.session.add(comment)
    db.session.flush()
    audit.record("policy.comment", comment, agency_id=doc.agency_id, actor=actor,
                 after={"document": doc.id, "version": version.number, "channel": channel, "anchor": anchor,
                        "body": body})
    return comment


def public_window(doc, agency, on=None):
    """The window a member of the public may comment in right now, or None: the agency's public page is on,
    the admin allowed the public in this window, and it is open today."""
    on = on or today()
    if not agency.public_enabled or doc.state in CLOSED_STATES:
        return None
    window = current_window(doc, on)
    if window is None or not window.allow_public or window.opens_on > on:
        return None
    return window


def add_public_comment(doc, agency, name, anchor, body):
    """A comment from the public form: held for moderation, published only when the department approves it."""
    window = public_window(doc, agency)
    if window is None:
        raise ValidationFailed({"window": "This document is not open for public comment."})
    errors, anchor, body = _comment_text(anchor, body)
    name = " ".join((name or "").split())
    if len(name) > MAX_PUBLIC_NAME:
        errors["public_name"] = f"The name must be at most {MAX_PUBLIC_NAME} characters."
    if errors:
        raise ValidationFailed(errors)
    comment = PolicyComment(version_id=window.version_id, window_id=window.id, author_id=None,
                            public_name=name or "", anchor=anchor, body=body, state="pending")
    db.session.add(comment)
    db.session.flush()
    audit.record("policy.public_comment", comment, agency_id=agency.id, actor_label="public",
                 after={"document": doc.id, "window": window.id, "length": len(body)})
    return comment


def moderate(doc, comment_id, decision, *, actor):
    comment = _comment_of(doc, comment_id)
    if comment is None or comment.state != "pending":
        raise ValidationFailed({"comment": "That comment is not waiting for moderation."})
    if decision not in ("published", "rejected"):
        raise ValidationFailed({"decision": "Choose Publish or Do not publish."})
    comment.state, comment.moderated_by_id, comment.moderated_at = decision, actor.id, utcnow()
    db.session.flush()
    audit.record("policy.moderate", comment, agency_id=doc.agency_id, actor=actor, before={"state": "pending"},
                 after={"state": decision})
    return comment


def _comment_of(doc, comment_id):
    try:
        comment_id = int(comment_id)
    except (TypeError, ValueError):
        return None
    return db.session.execute(
        sa.select(PolicyComment).join(PolicyVersion, PolicyVersion.id == PolicyComment.version_id)
        .where(PolicyVersion.document_id == doc.id, PolicyComment.id == comment_id)).scalar_one_or_none()


# --- community comment windows -----------------------------------------------------------------------------

def open_window(doc, agency, opens_on, closes_on, allow_public, *, actor):
    _require_open(doc, "a comment window")
    version = latest_version(doc)
    errors = {}
    if version is None:
        errors["version"] = "Upload a version first; the community comments on a version."
    if not isinstance(opens_on, date):
        errors["opens_on"] = "Enter the first day of the window as YYYY-MM-DD."
    if not isinstance(closes_on, date):
        errors["closes_on"] = "Enter the last day of the window as YYYY-MM-DD."
    elif closes_on < today():
        errors["closes_on"] = "The window cannot close in the past."
    if isinstance(opens_on, date) and isinstance(closes_on, date) and closes_on < opens_on:
        errors["closes_on"] = "The window must close on or after the day it opens."
    if allow_public and not actor.is_admin:
        errors["allow_public"] = "Only an administrator may open a window to the public."
    elif allow_public and not agency.public_enabled:
        errors["allow_public"] = "The agency's public page is off; turn it on before inviting public comment."
    if version is not None and current_window(doc) is not None:
        errors["window"] = "A comment window is already open (or scheduled) on this version."
    if errors:
        raise ValidationFailed(errors)
    window = CommentWindow(version_id=version.id, opens_on=opens_on, closes_on=closes_on,
                           allow_public=bool(allow_public), opened_by_id=actor.id, summary="")
    db.session.add(window)
    before = doc.state
    doc.state = "in_comment"
    db.session.flush()
    audit.record("policy.window_open", window, agency_id=doc.agency_id, actor=actor, before={"state": before},
                 after={"document": doc.id, "version": version.number, "opens_on": opens_on,
                        "closes_on": closes_on, "allow_public": bool(allow_public)})
    _notify("comment_window_opened", doc, window, actor)
    return window


def publish_summary(doc, window_id, summary, *, actor):
    try:
        window = db.session.execute(
            sa.select(CommentWindow).join(PolicyVersion, PolicyVersion.id == CommentWindow.version_id)
            .where(PolicyVersion.document_id == doc.id, CommentWindow.id == int(window_id))).scalar_one_or_none()
    except (TypeError, ValueError):
        window = None
    summary = (summary or "").strip()
    if window is None:
        raise ValidationFailed({"window_id": "Choose a comment window of this document."})
    if not summary:
        raise ValidationFailed({"summary": "Write the summary of comments and responses."})
    if len(summary) > 20000:
        raise ValidationFailed({"summary": "The summary must be at most 20,000 characters."})
    before = window.summary
    window.summary, window.summary_published_at = summary, utcnow()
    db.session.flush()
    audit.record("policy.window_summary", window, agency_id=doc.agency_id, actor=actor,
                 before={"summary": before}, after={"summary": summary})
    return window


# --- approval and after ------------------------------------------------------------------------------------

def record_approval(doc, kind, approved_on, reference, effective_on, *, actor):
    """The monitor's no-objection or the court's order (date, docket reference) and the effective date."""
    errors = {}
    reference = " ".join((reference or "").split())
    if kind not in APPROVAL_KINDS:
        errors["approval_kind"] = "Choose how it was approved: the monitor's no objection or a court order."
    if not isinstance(approved_on, date):
        errors["approved_on"] = "Enter the date of the approval as YYYY-MM-DD."
    if kind == "court_order" and not reference:
        errors["approval_ref"] = "Cite the court's order, e.g. “Order of Mar 3, 2026 (Dkt. 512)”."
    elif len(reference) > 300:
        errors["approval_ref"] = "The reference must be at most 300 characters."
    if not isinstance(effective_on, date):
        errors["effective_on"] = "Enter the date it takes effect as YYYY-MM-DD."
    elif isinstance(approved_on, date) and effective_on < approved_on:
        errors["effective_on"] = "It cannot take effect before it was approved."
    if not doc.versions:
        errors["version"] = "Upload the approved version first."
    if open_round(doc) is not None:
        errors["round"] = "Record the open review round's outcome first."
    if doc.state in CLOSED_STATES:
        errors["state"] = f"This document is already {state_label(display_state(doc)).lower()}."
    if errors:
        raise ValidationFailed(errors)
    before = doc.state
    doc.state, doc.approval_kind, doc.approved_on = "approved", kind, approved_on
    doc.approval_ref, doc.effective_on = reference, effective_on
    db.session.flush()
    audit.record("policy.approve", doc, actor=actor, before={"state": before}, after={
        "approval_kind": kind, "approved_on": approved_on, "approval_ref": reference, "effective_on": effective_on,
        "version": latest_version(doc).number})
    return doc


def supersede(doc, agency, by_id, *, actor):
    """An approved document replaced by another of the agency's documents."""
    try:
        by = db.session.execute(sa.select(PolicyDocument).where(
            PolicyDocument.agency_id == agency.id, PolicyDocument.id == int(by_id))).scalar_one_or_none()
    except (TypeError, ValueError):
        by = None
    if by is None or by.id == doc.id:
        raise ValidationFailed({"superseded_by": "Choose the document of this agency that replaces it."})
    if doc.state not in ("approved", "in_effect"):
        raise ValidationFailed({"state": "Only an approved document can be superseded."})
    before = doc.state
    doc.state, doc.superseded_by_id = "superseded", by.id
    db.session.flush()
    audit.record("policy.supersede", doc, actor=actor, before={"state": before},
                 after={"state": "superseded", "superseded_by": by.id})
    return doc


def _notify(event, doc, obj, actor):
    """E-mail the people concerned once the notifications service has a policy_event(event, document, round or
    window, actor=) (issue 15); until then, nothing: the deadlines are in the calendar feed either way."""
    try:
        from tracker.services import notifications
    except ImportError:
        return
    send = getattr(notifications, "policy_event", None)
    if send is not None:
        send(event, doc, obj, actor=actor)


# --- reads -------------------------------------------------------------------------------------------------

@dataclass
class DocumentRow:
    doc: PolicyDocument
    state: str
    versions: int = 0
    round_due: date | None = None
    window_closes: date | None = None
    requirements: list = field(default_factory=list)

    @property
    def state_label(self):
        return state_label(self.state)


def list_documents(agency, *, state=None, kind=None, requirement_id=None, on=None):
    """The agency's documents with their displayed state, version count, open round and window, and the
    requirements they implement: five queries whatever the number of documents."""
    on = on or today()
    query = sa.select(PolicyDocument).where(PolicyDocument.agency_id == agency.id)
    if state in DOCUMENT_STATES:
        query = query.where(state_condition(state, on))
    if kind in DOCUMENT_KINDS:
        query = query.where(PolicyDocument.kind == kind)
    if requirement_id:
        query = query.where(PolicyDocument.id.in_(sa.select(policy_document_requirement.c.document_id).where(
            policy_document_requirement.c.requirement_id == requirement_id)))
    docs = db.session.execute(query.order_by(PolicyDocument.title, PolicyDocument.id)).scalars().all()
    return _rows(docs, on)


def _rows(docs, on):
    ids = [d.id for d in docs]
    if not ids:
        return []
    counts = dict(db.session.execute(sa.select(PolicyVersion.document_id, sa.func.count()).where(
        PolicyVersion.document_id.in_(ids)).group_by(PolicyVersion.document_id)).all())
    rounds = dict(db.session.execute(
        sa.select(PolicyVersion.document_id, sa.func.min(ReviewRound.comment_due))
        .join(ReviewRound, ReviewRound.version_id == PolicyVersion.id)
        .where(PolicyVersion.document_id.in_(ids), ReviewRound.outcome.is_(None))
        .group_by(PolicyVersion.document_id)).all())
    windows = dict(db.session.execute(
        sa.select(PolicyVersion.document_id, sa.func.min(CommentWindow.closes_on))
        .join(CommentWindow, CommentWindow.version_id == PolicyVersion.id)
        .where(PolicyVersion.document_id.in_(ids), CommentWindow.opens_on <= on, CommentWindow.closes_on >= on)
        .group_by(PolicyVersion.document_id)).all())
    links = {}
    for doc_id, req in db.session.execute(
            sa.select(policy_document_requirement.c.document_id, Requirement)
            .join(Requirement, Requirement.id == policy_document_requirement.c.requirement_id)
            .where(policy_document_requirement.c.document_id.in_(ids)).order_by(Requirement.sort_key)).all():
        links.setdefault(doc_id, []).append(req)
    return [DocumentRow(doc=d, state=display_state(d, on), versions=counts.get(d.id, 0), round_due=rounds.get(d.id),
                        window_closes=windows.get(d.id) if d.state not in CLOSED_STATES else None,
                        requirements=links.get(d.id, [])) for d in docs]


def for_requirement(requirement, on=None):
    """The documents implementing a requirement, with their displayed states, for its page."""
    docs = db.session.execute(
        sa.select(PolicyDocument).join(policy_document_requirement,
                                       policy_document_requirement.c.document_id == PolicyDocument.id)
        .where(policy_document_requirement.c.requirement_id == requirement.id)
        .order_by(PolicyDocument.title)).scalars().all()
    on = on or today()
    return [DocumentRow(doc=d, state=display_state(d, on)) for d in docs]


@dataclass
class Summary:
    by_state: dict
    open_windows: list   # [(document, closes_on)] soonest first
    rounds_due: list     # [(document, comment_due)] soonest first

    @property
    def in_review(self):
        return self.by_state.get("in_review", 0)

    @property
    def total(self):
        return sum(self.by_state.values())


def dashboard_summary(agency, on=None):
    """Counts by displayed state, and the open comment windows and review deadlines, for the dashboard."""
    on = on or today()
    docs = db.session.execute(_documents_statement(), {"agency": agency.id}).scalars().all()
    by_state = {}
    for d in docs:
        state = display_state(d, on)
        by_state[state] = by_state.get(state, 0) + 1
    by_id = {d.id: d for d in docs}
    if not docs:  # most agencies early in a decree: no deadline to look up
        return Summary(by_state=by_state, open_windows=[], rounds_due=[])
    # The open comment windows and the open review rounds' deadlines, in one statement.
    windows = (sa.select(PolicyVersion.document_id, CommentWindow.closes_on.label("due"),
                         sa.literal("window").label("kind"))
               .join(CommentWindow, CommentWindow.version_id == PolicyVersion.id)
               .where(PolicyVersion.document_id.in_(list(by_id)), CommentWindow.opens_on <= on,
                      CommentWindow.closes_on >= on))
    rounds = (sa.select(PolicyVersion.document_id, ReviewRound.comment_due, sa.literal("round"))
              .join(ReviewRound, ReviewRound.version_id == PolicyVersion.id)
              .where(PolicyVersion.document_id.in_(list(by_id)), ReviewRound.outcome.is_(None)))
    both = sa.union_all(windows, rounds).subquery()
    dated = db.session.execute(sa.select(both).order_by(both.c.due, both.c.document_id)).all()
    return Summary(by_state=by_state,
                   open_windows=[(by_id[d], c) for d, c, kind in dated
                                 if kind == "window" and by_id[d].state not in CLOSED_STATES],
                   rounds_due=[(by_id[d], c) for d, c, kind in dated if kind == "round"])


@functools.cache
def _documents_statement():
    """The dashboard asks on every render: built once, run with parameters."""
    return sa.select(PolicyDocument).where(PolicyDocument.agency_id == sa.bindparam("agency"))


def document_detail(doc):
    """Everything the document page shows, in a fixed number of queries."""
    version_ids = [v.id for v in doc.versions]
    rounds = db.session.execute(sa.select(ReviewRound).where(ReviewRound.version_id.in_(version_ids or [0]))
                                .order_by(ReviewRound.id)).scalars().all()
    windows = db.session.execute(sa.select(CommentWindow).where(CommentWindow.version_id.in_(version_ids or [0]))
                                 .order_by(CommentWindow.id)).scalars().all()
    comments = db.session.execute(
        sa.select(PolicyComment).where(PolicyComment.version_id.in_(version_ids or [0]))
        .options(sa.orm.joinedload(PolicyComment.author)).order_by(PolicyComment.id)).scalars().all()
    by_version = {v.id: {"version": v, "rounds": [], "windows": [], "comments": []} for v in doc.versions}
    for r in rounds:
        by_version[r.version_id]["rounds"].append(r)
    for w in windows:
        by_version[w.version_id]["windows"].append(w)
    for c in comments:
        by_version[c.version_id]["comments"].append(c)
    numbers = {v.id: v.number for v in doc.versions}
    unanswered = [c for c in comments if c.state == "published" and c.response is None]
    return {"versions": [by_version[v.id] for v in reversed(doc.versions)], "numbers": numbers,
            "unanswered": unanswered, "pending": [c for c in comments if c.state == "pending"],
            "open_round": next((r for r in rounds if r.outcome is None), None), "windows": windows}


def approved_in(agency, start, end):
    """{requirement_id: [document]} for documents approved between start and end (inclusive)."""
    rows = db.session.execute(
        sa.select(policy_document_requirement.c.requirement_id, PolicyDocument)
        .join(PolicyDocument, PolicyDocument.id == policy_document_requirement.c.document_id)
        .where(PolicyDocument.agency_id == agency.id, PolicyDocument.approved_on.is_not(None),
               PolicyDocument.approved_on >= start, PolicyDocument.approved_on <= end)
        .order_by(PolicyDocument.approved_on, PolicyDocument.id)).all()
    result = {}
    for req_id, doc in rows:
        result.setdefault(req_id, []).append(doc)
    return result


def calendar_events(agency, on=None):
    """Deadlines for the calendar feed: [(uid, date, summary, description, path)] — open review rounds'
    comment deadlines, comment windows' closing days, training target dates."""
    from tracker.services import training

    on = on or today()
    events = []
    rounds = db.session.execute(
        sa.select(ReviewRound, PolicyDocument).join(PolicyVersion, PolicyVersion.id == ReviewRound.version_id)
        .join(PolicyDocument, PolicyDocument.id == PolicyVersion.document_id)
        .where(PolicyDocument.agency_id == agency.id, ReviewRound.outcome.is_(None))).all()
    for review, doc in rounds:
        events.append((f"policy-round-{review.id}", review.comment_due, f"Review comments due: {doc.title}",
                       "Reviewers' comments on the version under review are due.", _doc_path(agency, doc)))
    windows = db.session.execute(
        sa.select(CommentWindow, PolicyDocument).join(PolicyVersion, PolicyVersion.id == CommentWindow.version_id)
        .join(PolicyDocument, PolicyDocument.id == PolicyVersion.document_id)
        .where(PolicyDocument.agency_id == agency.id, CommentWindow.closes_on >= on - timedelta(days=365))).all()
    for window, doc in windows:
        events.append((f"policy-window-{window.id}", window.closes_on, f"Comment window closes: {doc.title}",
                       f"Community comment window {window.opens_on.isoformat()} to {window.closes_on.isoformat()}.",
                       _doc_path(agency, doc)))
    for plan, doc in training.plans_with_targets(agency):
        events.append((f"training-target-{plan.id}", plan.target_date, f"Training target: {doc.title}",
                       f"{plan.target_pct}% of {plan.population} ({plan.population_size:,}) trained.",
                       _doc_path(agency, doc)))
    return sorted(events, key=lambda e: (e[1], e[0]))


def _doc_path(agency, doc):
    return f"agencies/{agency.slug}/policies/{doc.id}"
