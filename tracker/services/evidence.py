"""Evidence: files (stored by SHA-256) and links, versions, and the checks on what is uploaded."""
import os
import re
import time
from datetime import date
from urllib.parse import urlsplit

import sqlalchemy as sa

from tracker import filetypes
from tracker.extensions import db
from tracker.models import VISIBILITIES, DocumentFile, Evidence
from tracker.services import audit, notifications
from tracker.services.errors import ValidationFailed
from tracker.storage import get_store

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def clean_filename(name):
    """Display name only (never a path): no directories, control or bidi-override characters."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _CONTROL.sub("", name).strip().strip(".") or "file"
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 200 - len(ext) - 1] + dot + ext) if dot else name[:200]
    return name


def _metadata(values):
    errors = {}
    title = (values.get("title") or "").strip()
    if not title:
        errors["title"] = "Give the evidence a title."
    elif len(title) > 300:
        errors["title"] = "The title must be at most 300 characters."
    description = (values.get("description") or "").strip()
    if len(description) > 4000:
        errors["description"] = "The description must be at most 4000 characters."
    start, end = values.get("period_start"), values.get("period_end")
    for name, value in (("period_start", start), ("period_end", end)):
        if value is not None and not isinstance(value, date):
            errors[name] = "Enter the date as YYYY-MM-DD."
    if isinstance(start, date) and isinstance(end, date) and end < start:
        errors["period_end"] = "The period must end on or after its start."
    visibility = values.get("visibility") or "restricted"
    if visibility not in VISIBILITIES:
        errors["visibility"] = "Choose restricted or shareable."
    return errors, {"title": title, "description": description, "period_start": start, "period_end": end,
                    "visibility": visibility}


def check_link(url):
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None, "Links must start with http:// or https:// and name a site."
    if len(url) > 2000:
        return None, "The link must be at most 2000 characters."
    return url, None


def stage_upload(file_storage, max_bytes):
    """Stream an upload into the store before any database work. Returns (blob, media_type, filename).

    Raises ValidationFailed (and keeps nothing) when the type or content is wrong.
    """
    filename = clean_filename(file_storage.filename)
    found = {}

    def check(path):
        try:
            found["ext"], found["media_type"] = filetypes.check(path, filename)
        except filetypes.FileTypeError as exc:
            raise ValidationFailed({"file": str(exc)}) from None

    try:
        blob = get_store().put(file_storage.stream, max_bytes=max_bytes, check=check)
    except ValueError:
        raise ValidationFailed({"file": "The file is larger than the upload limit."}) from None
    return blob, found["media_type"], filename


def _create(requirement, kind, values, *, actor, supersedes=None, blob=None, media_type=None, filename=None,
            url=None):
    errors, meta = _metadata(values)
    if errors:
        raise ValidationFailed(errors)
    evidence = Evidence(requirement_id=requirement.id, kind=kind, uploaded_by_id=actor.id, review_state="submitted",
                        supersedes_id=supersedes.id if supersedes else None, url=url, **meta)
    if blob is not None:
        evidence.sha256, evidence.size_bytes = blob.sha256, blob.size
        evidence.media_type, evidence.filename = media_type, filename
    if supersedes is not None:
        supersedes.superseded = True
    if requirement.recurring:  # a recurring duty's evidence shows the round it belongs to (issue 12)
        from tracker.services.occurrences import open_occurrence

        current = open_occurrence(requirement)
        evidence.occurrence_id = supersedes.occurrence_id if supersedes is not None and supersedes.occurrence_id \
            else current.id if current is not None else None
    db.session.add(evidence)
    db.session.flush()
    audit.record("evidence.version" if supersedes else "evidence.create", evidence,
                 agency_id=requirement.agency_id, actor=actor,
                 after={"title": meta["title"], "kind": kind, "sha256": evidence.sha256, "url": url,
                        "visibility": meta["visibility"], "supersedes": supersedes.id if supersedes else None})
    notifications.evidence_submitted(evidence, requirement, actor=actor)
    return evidence


def add_file(requirement, staged, values, *, actor, supersedes=None):
    blob, media_type, filename = staged
    return _create(requirement, "file", values, actor=actor, supersedes=supersedes, blob=blob,
                   media_type=media_type, filename=filename)


def add_link(requirement, url, values, *, actor, supersedes=None):
    clean, problem = check_link(url)
    errors, _ = _metadata(values)
    if problem:
        errors["url"] = problem
    if errors:
        raise ValidationFailed(errors)
    return _create(requirement, "link", values, actor=actor, supersedes=supersedes, url=clean)


def validate_metadata(values):
    errors, _ = _metadata(values)
    return errors


def referenced_blobs():
    """Every SHA-256 a row refers to: evidence files and documents (meeting papers, policy versions)."""
    query = sa.union(sa.select(Evidence.sha256).where(Evidence.sha256.is_not(None)),
                     sa.select(DocumentFile.sha256))
    return set(db.session.execute(query).scalars())


def remove_orphan_blobs(min_age_seconds=24 * 3600):
    """Delete stored files no row refers to (left by a crash mid-upload), older than a day."""
    store = get_store()
    known = referenced_blobs()
    removed = 0
    cutoff = time.time() - min_age_seconds
    for sha, modified in store.iter_blobs():
        if sha not in known and modified < cutoff:
            store.delete(sha)
            removed += 1
    for path in store.stale_temp_files(cutoff):
        os.unlink(path)
        removed += 1
    return removed
